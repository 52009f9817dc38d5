"""The launcher says how many rows a recipe's sequence_len drops, before training, counting with
the recipe's own tokenizer and chat template."""

from __future__ import annotations

import conftest
import pytest
import yaml

from training.row_lengths import (
    apply_recipe_template,
    count_lengths,
    fast_lengths,
    local_tokenizer,
    read_chats,
    report_long_rows,
    row_lengths,
)

TINY = yaml.safe_load((conftest.REPO / "recipes" / "tiny-cpu.yml").read_text())


def test_fast_count_equals_the_transformers_count(tiny_model, processed_sample):
    chats = read_chats(processed_sample / "train.jsonl")
    tokenizer = local_tokenizer(TINY)
    apply_recipe_template(TINY, tokenizer)
    exact = row_lengths(tokenizer, chats)
    assert fast_lengths(TINY, chats) == exact
    assert len(exact) == 48 and min(exact) > 100


def test_rows_too_short_in_bytes_are_not_tokenized(tiny_model, processed_sample, monkeypatch):
    """With a limit, rows whose rendered bytes (+ margin) stay within it get that bound instead
    of a count: never below their real length, never above the limit; every row that could be
    longer is counted exactly. A limit above every bound loads no tokenizer at all."""
    import tokenizers

    chats = read_chats(processed_sample / "train.jsonl")
    exact = fast_lengths(TINY, chats)
    pairs = list(zip(exact, fast_lengths(TINY, chats, 10**6), strict=True))  # (count, bound)
    assert all(count <= bound for count, bound in pairs)  # the byte bound holds
    for limit in (sorted(exact)[24], sorted(bound for _, bound in pairs)[24]):
        got = fast_lengths(TINY, chats, limit)
        for (count, bound), value in zip(pairs, got, strict=True):
            assert value == (bound if bound <= limit else count)
        assert sum(v > limit for v in got) == sum(count > limit for count in exact)

    def no_tokenizer(*args, **kwargs):
        raise AssertionError("no row needs tokenizing")

    monkeypatch.setattr(tokenizers.Tokenizer, "from_file", no_tokenizer)
    assert max(fast_lengths(TINY, chats, 10**6)) <= 10**6


def test_what_axolotl_tokenizes_is_what_is_counted(tiny_model, processed_sample):
    """The count is Axolotl's own tokenization of a row (its chat_template strategy)."""
    from axolotl.prompt_strategies.chat_template import load as load_strategy
    from axolotl.utils.dict import DictDefault

    chats = read_chats(processed_sample / "validation.jsonl")
    tokenizer = local_tokenizer(TINY)
    apply_recipe_template(TINY, tokenizer)
    dataset_config = DictDefault(TINY["datasets"][0])
    strategy = load_strategy(tokenizer, DictDefault(TINY), dataset_config)
    ids = [strategy.tokenize_prompt({"messages": chat})["input_ids"] for chat in chats]
    assert count_lengths(TINY, chats) == [len(row) for row in ids]


def test_sample_fits_tiny_cpu_and_a_short_limit_is_reported(tiny_model, processed_sample):
    said: list[str] = []
    counts = report_long_rows(TINY, processed_sample, said.append)
    assert counts == {"training": (0, 48), "validation": (0, 6)} and said == []
    lengths = sorted(count_lengths(TINY, read_chats(processed_sample / "train.jsonl")))
    limit = lengths[10]  # 37 of 48 rows are longer
    counts = report_long_rows({**TINY, "sequence_len": limit}, processed_sample, said.append)
    assert counts["training"] == (sum(n > limit for n in lengths), 48)
    assert said[0].startswith(f"WARNING {counts['training'][0]} of 48 training rows (train.jsonl)")
    assert (
        f"longer than sequence_len {limit} tokens" in said[0]
        and "OVERRIDE='sequence_len=" in said[0]
    )


def test_all_rows_too_long_stops_before_a_run_dir(tiny_model, processed_sample, tmp_path):
    result = conftest.run_cli(
        ["training", "train", "tiny-cpu", "--data", conftest.SAMPLE,
         "--processed", processed_sample, "--runs-dir", tmp_path / "runs",
         "--override", "sequence_len=64"],
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert "error: all 48 training rows" in result.stdout
    assert "longer than sequence_len 64 tokens" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_a_hub_tokenizer_not_here_is_said_not_guessed(tmp_path, processed_sample):
    said: list[str] = []
    config = {**TINY, "base_model": "someone/not-downloaded-model"}
    assert report_long_rows(config, processed_sample, said.append) == {}
    assert "not counted here: the tokenizer of someone/not-downloaded-model" in said[0]


def test_the_reference_file_on_tiny_cpu_drops_1448_of_2400(shared_data, tiny_model, tmp_path):
    from preprocessing.prepare import prepare

    prepare(shared_data / "both_rel_instruct_all.jsonl", tmp_path / "p", show_progress=False)
    said: list[str] = []
    counts = report_long_rows(TINY, tmp_path / "p", said.append)
    assert counts["training"] == (1448, 2400)
    assert said[0].startswith("WARNING 1,448 of 2,400 training rows (train.jsonl) are longer")


def test_unknown_template_falls_back_to_the_exact_path(tiny_model, processed_sample):
    chats = read_chats(processed_sample / "test.jsonl")
    config = {**TINY, "chat_template": "no-such-template"}
    with pytest.raises(LookupError):
        fast_lengths(config, chats)
    with pytest.raises(ValueError):  # Axolotl's own resolution refuses it too
        count_lengths(config, chats)
    said: list[str] = []  # the launcher only advises: it says so and leaves it to Axolotl
    assert report_long_rows(config, processed_sample, said.append) == {}
    assert "not counted here: ValueError:" in said[0]
