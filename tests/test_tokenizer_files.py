"""A completed tokenizer_config.json: the same tokenizer, loaded without a Python parse of
tokenizer.json (the real Llama-3 tokenizer, built locally from the llama-models package)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.tokenizer_files import complete_tokenizer_config

TEXTS = [
    "Cisplatin-induced nephrotoxicity <|eot_id|> in 3 patients; naïve μg/kg dosing.",
    "<|start_header_id|>user<|end_header_id|>\n\nLithium<|finetune_right_pad_id|>",
]


@pytest.fixture(scope="module")
def as_saved(tmp_path_factory) -> Path:
    """The Llama-3 tokenizer as transformers saves it (no added_tokens_decoder)."""
    pytest.importorskip("llama_models")
    from training.build_model import build_tokenizer

    out = build_tokenizer("llama-3.2-3b", tmp_path_factory.mktemp("tok") / "saved")
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("added_tokens_decoder", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def tokenizer_json_loads(monkeypatch) -> list[str]:
    """Names of the files json.load reads from now on."""
    read: list[str] = []
    real = json.load

    def spy(handle, *args, **kwargs):
        read.append(Path(handle.name).name)
        return real(handle, *args, **kwargs)

    monkeypatch.setattr(json, "load", spy)
    return read


def test_completed_config_loads_the_same_tokenizer_without_parsing_tokenizer_json(
    as_saved, tmp_path, monkeypatch
):
    from transformers import AutoTokenizer

    completed = tmp_path / "completed"
    shutil.copytree(as_saved, completed)
    assert complete_tokenizer_config(completed)
    assert not complete_tokenizer_config(completed)  # once is enough
    decoder = json.loads((completed / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert decoder["128009"]["content"] == "<|eot_id|>" and decoder["128009"]["special"]

    read = tokenizer_json_loads(monkeypatch)
    before = AutoTokenizer.from_pretrained(as_saved)
    assert "tokenizer.json" in read  # transformers' extra pass, without the key
    read.clear()
    after = AutoTokenizer.from_pretrained(completed)
    assert "tokenizer.json" not in read

    for text in TEXTS:
        ids = before(text)["input_ids"]
        assert after(text)["input_ids"] == ids
        assert after.decode(ids, skip_special_tokens=True) == before.decode(
            ids, skip_special_tokens=True
        )
    assert str(after.added_tokens_decoder) == str(before.added_tokens_decoder)
    assert after.all_special_ids == before.all_special_ids and len(after) == len(before)
    assert (after.eos_token_id, after.pad_token_id) == (before.eos_token_id, before.pad_token_id)
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert after.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == (
        before.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    )


def test_directories_without_both_files_are_left_alone(tmp_path):
    assert not complete_tokenizer_config(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "x"}')
    assert not complete_tokenizer_config(tmp_path)  # no tokenizer.json to read tokens from
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {"eos_token": "x"}
