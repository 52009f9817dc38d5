"""A saved tokenizer's tokenizer_config.json, completed so that loading it is one parse.

transformers 5 writes tokenizer_config.json without "added_tokens_decoder". Its
`from_pretrained` then reads the whole tokenizer.json with Python's json module only to find the
added tokens, before the tokenizers library parses the same file again: for Llama-3's 17 MB
tokenizer.json that pass is ~0.6 s of the ~2.1 s every load takes on our CPU (every `make eval`,
`make extract`, `make serve` start). With the key present, the format transformers 4 wrote and
Hub checkpoints carry, the pass is skipped. The tokens written are tokenizer.json's own
"added_tokens", so the loaded tokenizer is the same (tests/test_tokenizer_files.py compares).
"""

from __future__ import annotations

from pathlib import Path

from preprocessing.files import atomic_write_json, read_json

# What transformers' AddedToken takes, besides the id (the key of added_tokens_decoder).
_ADDED_TOKEN_FIELDS = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")


def complete_tokenizer_config(directory: str | Path) -> bool:
    """Add tokenizer.json's added tokens to DIRECTORY/tokenizer_config.json as
    "added_tokens_decoder" where it has none; True when the file was rewritten."""
    directory = Path(directory)
    config_path, tokenizer_path = directory / "tokenizer_config.json", directory / "tokenizer.json"
    config = read_json(config_path)
    if not isinstance(config, dict) or "added_tokens_decoder" in config:
        return False
    added = (read_json(tokenizer_path) or {}).get("added_tokens")
    if not added or not all(isinstance(token, dict) and "id" in token for token in added):
        return False
    config["added_tokens_decoder"] = {
        str(token["id"]): {field: token[field] for field in _ADDED_TOKEN_FIELDS if field in token}
        for token in added
    }
    atomic_write_json(config_path, config)
    return True
