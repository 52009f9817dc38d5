"""Before training: which rows will Axolotl drop as longer than the recipe's sequence_len?

Axolotl silently drops every tokenized row longer than ``sequence_len`` (only a log line deep in
its output says so): tiny-cpu, at 512 tokens, would train on 952 of the reference file's 2,400
training rows. The launcher counts them first, with the recipe's own tokenizer and chat template
(Axolotl's resolution of it), and says how many and why in its own words. Without the tokenizer
on this machine (a hub model not downloaded yet) it says it cannot count, rather than guess.

Fast path: the `tokenizers` library on tokenizer.json and the template rendered with jinja2 as
transformers renders it (importing transformers and Axolotl alone would take 10-15 s on 2 cores).
Only rows that could be too long are tokenized: a token stands for at least one byte of the
rendered text (byte-level BPE; SentencePiece with byte fallback, which adds at most a word-start
marker per stretch of text between special tokens), so a row of at most `sequence_len` minus
BYTES_MARGIN bytes cannot be longer than `sequence_len` tokens. With our rows (~1,600 characters,
sequence_len 8,192) nothing is tokenized, and the tokenizer is not even loaded: 0.3 s instead of
4.3 s for 2,700 rows on 2 cores. Anything unusual takes the transformers path.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from preprocessing.files import REPO, read_jsonl
from training.preflight import PreflightError

SPECIAL_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token")
# Tokens a rendered row may have beyond its UTF-8 bytes (word-start markers; see above).
BYTES_MARGIN = 64


def local_tokenizer(config: dict[str, Any]) -> Any | None:
    """The recipe's tokenizer if it is on this machine (a local dir or the HF cache), else None."""
    from transformers import AutoTokenizer

    name = str(config.get("tokenizer_config") or config.get("base_model") or "")
    for candidate in (Path(name), REPO / name):
        if name and candidate.is_dir():
            return AutoTokenizer.from_pretrained(str(candidate))
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # not cached, not a tokenizer, no network: cannot count
        return None


def apply_recipe_template(config: dict[str, Any], tokenizer: Any) -> None:
    """Give ``tokenizer`` the chat template the recipe trains with (as Axolotl resolves it)."""
    try:
        from axolotl.utils.chat_templates import extract_chat_template_args, get_chat_template
    except ImportError:  # without Axolotl nothing trains anyway; keep the tokenizer's own
        return
    datasets = config.get("datasets") or []
    dataset = datasets[0] if datasets and isinstance(datasets[0], dict) else None
    choice, jinja = extract_chat_template_args(config, dataset)
    tokenizer.chat_template = get_chat_template(choice, jinja, tokenizer)


def read_chats(path: Path) -> list[list[dict[str, str]]]:
    """The chat of every row of a processed split."""
    return [row["messages"] for _, row in read_jsonl(path)]


def row_lengths(tokenizer: Any, chats: list[list[dict[str, str]]]) -> list[int]:
    """Tokens of each chat (transformers tokenizer), rendered as a whole conversation."""
    texts = [tokenizer.apply_chat_template(messages, tokenize=False) for messages in chats]
    # The template writes the BOS token itself; the tokenizer must not add another.
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [len(ids) for ids in encoded]


# ---- fast path ---------------------------------------------------------------------------------


def _tokenizer_file(config: dict[str, Any], name: str) -> Path | None:
    base = str(config.get("tokenizer_config") or config.get("base_model") or "")
    for directory in (Path(base), REPO / base):
        if base and (directory / name).is_file():
            return directory / name
    if len(base.split("/")) == 2:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(base, name)
        if isinstance(cached, str):
            return Path(cached)
    return None


def _template_source(config: dict[str, Any], tokenizer_config: dict[str, Any]) -> str:
    """The template text Axolotl trains with: a dataset's choice first, then the recipe's."""
    datasets = config.get("datasets") or []
    dataset = datasets[0] if datasets and isinstance(datasets[0], dict) else {}
    holder = dataset if dataset.get("chat_template") else config
    choice = holder.get("chat_template") or "tokenizer_default"
    if choice == "tokenizer_default":
        template = tokenizer_config.get("chat_template")
    elif choice == "jinja":
        jinja = str(holder.get("chat_template_jinja") or "")
        template = Path(jinja).read_text("utf-8") if Path(jinja).is_file() else jinja
    else:
        spec = importlib.util.find_spec("axolotl")  # its template files, without importing it
        roots = list(spec.submodule_search_locations or []) if spec else []
        files = [
            Path(r) / "utils" / "chat_templates" / "templates" / f"{choice}.jinja" for r in roots
        ]
        template = next((f.read_text("utf-8") for f in files if f.is_file()), None)
    if not isinstance(template, str) or not template:
        raise LookupError(f"chat_template {choice!r} not resolved here")
    return template


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def fast_lengths(
    config: dict[str, Any], chats: list[list[dict[str, str]]], limit: int | None = None
) -> list[int] | None:
    """Token counts via `tokenizers` + jinja2, or None where that path does not apply. With a
    `limit`, a row too short in bytes to pass it is not tokenized: its count is its byte length
    plus BYTES_MARGIN (an upper bound, at most `limit`)."""
    tokenizer_json = _tokenizer_file(config, "tokenizer.json")
    config_json = _tokenizer_file(config, "tokenizer_config.json")
    if tokenizer_json is None or config_json is None:
        return None
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    tokenizer_config = json.loads(config_json.read_text("utf-8"))
    # As transformers renders chat templates: these options, these globals.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    template = env.from_string(_template_source(config, tokenizer_config))
    specials = {key: _token_text(tokenizer_config.get(key)) for key in SPECIAL_TOKENS}
    texts = [template.render(messages=m, add_generation_prompt=False, **specials) for m in chats]
    bounds = [len(text.encode("utf-8")) + BYTES_MARGIN for text in texts]
    unsure = [i for i, bound in enumerate(bounds) if limit is None or bound > limit]
    if unsure:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
        encoded = tokenizer.encode_batch([texts[i] for i in unsure], add_special_tokens=False)
        for i, item in zip(unsure, encoded, strict=True):
            bounds[i] = len(item.ids)
    return bounds


def _raise(message: str) -> None:
    raise ValueError(message)


def count_lengths(
    config: dict[str, Any], chats: list[list[dict[str, str]]], limit: int | None = None
) -> list[int] | None:
    """Token counts of ``chats`` under the recipe; None when its tokenizer is not here. With a
    `limit`, counts that are certainly within it may be upper bounds (fast_lengths)."""
    try:
        lengths = fast_lengths(config, chats, limit)
    except Exception:  # an unusual template or tokenizer: the slow, exact path decides
        lengths = None
    if lengths is not None:
        return lengths
    tokenizer = local_tokenizer(config)
    if tokenizer is None:
        return None
    apply_recipe_template(config, tokenizer)
    return row_lengths(tokenizer, chats)


def _files(config: dict[str, Any], processed: Path) -> list[tuple[str, Path]]:
    found = []
    for key, role in (("datasets", "training"), ("test_datasets", "validation")):
        for dataset in config.get(key) or []:
            if isinstance(dataset, dict) and dataset.get("path"):
                found.append((role, processed / Path(dataset["path"]).name))
    return [(role, path) for role, path in found if path.is_file()]


def report_long_rows(
    config: dict[str, Any], processed: Path, say: Callable[[str], None]
) -> dict[str, tuple[int, int]]:
    """Say how many rows of each file the run will drop; returns {role: (dropped, rows)}."""
    limit = config.get("sequence_len")
    files = _files(config, processed)
    if not isinstance(limit, int) or not files:
        return {}
    counts: dict[str, tuple[int, int]] = {}
    for role, path in files:
        try:
            lengths = count_lengths(config, read_chats(path), limit)
        except Exception as err:  # counting is advice: Axolotl itself will say what is wrong
            lengths, why = None, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        else:
            why = f"the tokenizer of {config.get('base_model')} is not on this machine yet"
        if lengths is None:
            say(
                f"rows longer than sequence_len {limit} will be dropped by Axolotl; not counted "
                f"here: {why}"
            )
            return {}
        dropped = sum(length > limit for length in lengths)
        counts[role] = (dropped, len(lengths))
        if lengths and dropped == len(lengths):  # Axolotl would fail on an empty dataset
            raise PreflightError(
                f"all {dropped:,} {role} rows ({path}) are longer than sequence_len {limit} "
                f"tokens (shortest {min(lengths):,}): nothing would be left to train on; "
                f"use --override sequence_len={_enough(max(lengths))}"
            )
        if dropped:
            say(
                f"WARNING {dropped:,} of {len(lengths):,} {role} rows ({path.name}) are longer "
                f"than sequence_len {limit} tokens (longest {max(lengths):,}) and will be "
                f"dropped: raise it with OVERRIDE='sequence_len={_enough(max(lengths))}' "
                f"(--override sequence_len=...) to keep them"
            )
    return counts


def _enough(longest: int) -> int:
    """The next multiple of 256 that holds the longest row."""
    return -(-longest // 256) * 256
