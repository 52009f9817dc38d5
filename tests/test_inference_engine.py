"""The fast engine gives exactly the tokens of HF `generate` (the hf rounds engine), on CPU in
fp32: prompts of varied lengths from the sample data, rows that stop early and rows cut by
max_new_tokens, in one wave or several, with a LoRA adapter merged or not, on every model family
it claims (Llama, Mistral, Qwen2, Phi-3)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import SAMPLE, read_jsonl

from inference.decode import choose_engine, generate_greedy
from inference.fast_decode import bucket_for, rows_in_flight

NEW_TOKENS = 12


class IdTokenizer:
    """Enough of a tokenizer for decoding: text = the ids, so equal texts are equal ids."""

    pad_token_id = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(map(str, ids))


def answers(generations) -> list[tuple[str, str, int]]:
    return [(g.text, g.finish_reason, g.new_tokens) for g in generations]


def decode(model, prompts, stops, engine, batch_size=None) -> tuple[list, dict]:
    """(text, finish reason, new tokens) of each prompt, and the stats."""
    generations, stats = generate_greedy(
        model, IdTokenizer(), prompts, NEW_TOKENS, stops, batch_size, engine=engine
    )
    return answers(generations), stats


def stops_that_split(model, prompts: list[list[int]]) -> list[int]:
    """Stop tokens (a token the model writes in some rows, not at their first step) chosen so
    that some rows stop early and others run into max_new_tokens."""
    generations, _ = generate_greedy(model, IdTokenizer(), prompts, NEW_TOKENS, [-1], engine="hf")
    rows = [list(map(int, g.text.split())) for g in generations]
    counts = Counter(t for row in rows for t in set(row[1:]))
    for token, _ in counts.most_common():
        stopping = sum(token in row[1:] for row in rows)
        if 0 < stopping < len(rows):
            return [token]
    pytest.fail("the model writes no token that stops only some rows")


@pytest.fixture(scope="module")
def sample_prompts(tiny_model: Path) -> list[list[int]]:
    """Chat prompts of the sample rows with the tiny model's tokenizer, cut to varied lengths."""
    from transformers import AutoTokenizer

    from inference.run import encode_chats

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = read_jsonl(SAMPLE)[:9]
    chats = [[{"role": "user", "content": row["prompt"]}] for row in rows]
    prompts = encode_chats(tokenizer, chats)
    return [p[: 7 + 37 * i] for i, p in enumerate(prompts)]  # 7 .. 303 tokens


@pytest.fixture(scope="module")
def tiny(tiny_model: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval()


def test_buckets_are_powers_of_two_or_multiples_of_64() -> None:
    assert [bucket_for(n) for n in (1, 2, 3, 5, 64, 65, 129, 300, 512)] == [
        1, 2, 4, 8, 64, 128, 192, 320, 512,
    ]  # fmt: skip


def test_rows_in_flight_within_batch_size_and_memory() -> None:
    assert rows_in_flight(300, None, None, "cuda") == (300, 320)  # all rows, a bucket of 320
    assert rows_in_flight(300, 100, None, "cuda") == (100, 128)
    assert rows_in_flight(300, None, 310, "cuda") == (300, 310)  # 320 rows' cache won't fit
    assert rows_in_flight(300, None, 40, "cuda") == (40, 40)
    assert rows_in_flight(100, None, None, "cpu") == (64, 64)
    assert rows_in_flight(9, None, None, "cpu") == (9, 9)  # no graphs on CPU: no filler rows


def test_fast_engine_gives_the_hf_tokens(tiny, sample_prompts) -> None:
    stops = stops_that_split(tiny, sample_prompts)
    expected, _ = decode(tiny, sample_prompts, stops, "hf", batch_size=4)
    reasons = {reason for _, reason, _ in expected}
    assert reasons == {"stop", "length"}  # rows that stop early and rows cut by the budget
    fast, stats = decode(tiny, sample_prompts, stops, "fast")
    assert fast == expected
    assert stats["engine"] == "fast" and stats["graphs"] == "eager (cpu)"
    assert stats["generated_tokens"] == sum(tokens for _, _, tokens in expected)
    assert stats["rows_in_flight"] == 9 and stats["admissions"] == [len(sample_prompts)]
    assert stats["buckets"][0] == 9 and len(stats["buckets"]) > 1  # stopped rows compacted away
    # Rows reported as they finish: shortest answers first, each as in the result.
    finished = []
    generate_greedy(
        tiny, IdTokenizer(), sample_prompts, NEW_TOKENS, stops, engine="fast",
        on_done=lambda index, generation: finished.append((index, answers([generation])[0])),
    )  # fmt: skip
    assert sorted(finished) == list(enumerate(expected))
    assert [new for _, (_, _, new) in finished] == sorted(new for _, _, new in expected)
    # Four rows in flight (longest first): rows that stop free their slots for waiting rows.
    refilled, stats = decode(tiny, sample_prompts, stops, "fast", batch_size=4)
    assert refilled == expected
    assert stats["rows_in_flight"] == 4 and sum(stats["admissions"]) == len(sample_prompts)
    assert len(stats["admissions"]) > 2  # slots freed by stopped rows were refilled
    # Three rows at a time: the same tokens.
    threes, stats = decode(tiny, sample_prompts, stops, "fast", batch_size=3)
    assert threes == expected and stats["rows_in_flight"] == 3 and stats["buckets"][0] == 3
    # A cache cap that holds three rows: three in flight, a batch of exactly three.
    config = tiny.config
    head_dim = config.hidden_size // config.num_attention_heads
    per_row = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4  # fp32
    per_row *= stats["cache_length"] / 2**30  # GiB
    capped, stats = generate_greedy(
        tiny, IdTokenizer(), sample_prompts, NEW_TOKENS, stops, engine="fast",
        max_cache_gib=3.5 * per_row,
    )  # fmt: skip
    assert answers(capped) == expected
    assert stats["rows_in_flight"] == 3 and stats["buckets"][0] == 3
    # A KV-cache cap (decoding beside training) that holds one row: one row at a time.
    capped, stats = generate_greedy(
        tiny, IdTokenizer(), sample_prompts, NEW_TOKENS, stops, engine="fast", max_cache_gib=1e-6
    )
    assert answers(capped) == expected
    assert stats["rows_in_flight"] == 1 and stats["admissions"] == [1] * len(sample_prompts)


def test_auto_picks_fast_for_llama_and_hf_when_asked(tiny) -> None:
    assert choose_engine(tiny, "auto")[0] == "fast"
    assert choose_engine(tiny, "hf")[0] == "hf"
    with pytest.raises(ValueError, match="engine 'nope'"):
        choose_engine(tiny, "nope")


def test_rows_longer_than_a_sliding_window_go_to_hf() -> None:
    model = _family_model("mistral", sliding_window=64)
    assert choose_engine(model, "auto", longest=64)[0] == "fast"
    engine, why = choose_engine(model, "auto", longest=65)
    assert engine == "hf" and "64-token sliding window" in why
    with pytest.raises(ValueError, match="sliding window"):
        choose_engine(model, "fast", longest=65)
    # Qwen2 keeps a window in its config but does not use it by default.
    assert choose_engine(_family_model("qwen2", sliding_window=64), "auto", 500)[0] == "fast"


def test_lora_unmerged_training_mode_equals_merged(tiny_model: Path, sample_prompts) -> None:
    """A peft model with its adapter unmerged (as a training loop holds it, in training mode,
    dropout on) decodes to the tokens of the same adapter merged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.3, target_modules=targets,
                        init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(base, config)
    with torch.no_grad():  # an adapter that really changes the answers
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(20.0)
    peft_model.train()
    unmerged, _ = decode(peft_model, sample_prompts, [-1], "fast")
    assert peft_model.training  # the caller's mode is given back
    merged_model = peft_model.merge_and_unload().eval()
    merged, _ = decode(merged_model, sample_prompts, [-1], "fast")
    hf, _ = decode(merged_model, sample_prompts, [-1], "hf")
    assert unmerged == merged == hf
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    untuned, _ = decode(plain, sample_prompts, [-1], "auto")
    assert untuned != merged  # the adapter was applied


def _family_model(family: str, **extra: int):
    import torch
    import transformers

    torch.manual_seed(0)
    config_class, model_class = {
        "mistral": ("MistralConfig", "MistralForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "phi3": ("Phi3Config", "Phi3ForCausalLM"),
    }[family]
    config = getattr(transformers, config_class)(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra,
    )  # fmt: skip
    return getattr(transformers, model_class)(config).eval()


@pytest.mark.parametrize("family", ["mistral", "qwen2", "phi3"])
def test_other_families_give_the_hf_tokens(family: str) -> None:
    import torch

    model = _family_model(family)
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 300, (n,), generator=generator).tolist() for n in (3, 40, 9, 25)]
    stops = stops_that_split(model, prompts)
    expected, _ = decode(model, prompts, stops, "hf")
    fast, stats = decode(model, prompts, stops, "fast")
    assert stats["engine"] == "fast"
    assert fast == expected


def test_a_common_prefix_is_prefilled_once_with_the_same_tokens(tiny, sample_prompts, monkeypatch):
    """Rows that share their first 40 tokens (a system prompt, say): the prefix goes through the
    model once, the rows' own tokens attend to it, and the answers are HF generate's."""
    import inference.fast_prefill
    from inference.fast_prefill import shared_prefix

    prefix = sample_prompts[-1][:40]
    prompts = [prefix + p[-(5 + 3 * i) :] for i, p in enumerate(sample_prompts)]
    assert shared_prefix(prompts) >= 40
    stops = stops_that_split(tiny, prompts)
    expected, _ = decode(tiny, prompts, stops, "hf", batch_size=4)
    offsets = []
    original = inference.fast_prefill.prefill

    def spy(*args, offset=0, **kwargs):
        offsets.append((args[3].shape[0], offset))  # (rows, offset)
        return original(*args, offset=offset, **kwargs)

    monkeypatch.setattr(inference.fast_prefill, "prefill", spy)
    fast, _ = decode(tiny, prompts, stops, "fast")
    assert fast == expected
    assert offsets[0] == (1, 0) and offsets[1][1] >= 40  # the prefix once, then the rest on it
