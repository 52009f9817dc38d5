"""Formatting helpers of the benchmark document (bench/table.py): numbers, tables, sections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.kernels import STOCK


def load_result(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


def num(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:,.{digits}f}{unit}"
    return str(value)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def as_minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min ({seconds:,.0f} s)"


def times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def met(flag: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "–"}[flag]


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def short_name(name: str) -> str:
    """'liger_kernel.transformers.rms_norm.LigerRMSNorm' -> 'LigerRMSNorm (liger_kernel)'."""
    parts = name.split(".")
    return f"{parts[-1]} ({parts[0]})"


def kernel_summary(kernels: dict[str, Any] | None) -> str:
    if not kernels:
        return "–"
    names = [*kernels.get("non_stock_modules", []), *kernels.get("patched_forwards", [])]
    for key in ("model_forward", "rotary_embedding"):
        origin = kernels.get(key)
        if origin and not origin.startswith(STOCK):
            names.append(origin)
    return ", ".join(sorted({short_name(n) for n in names})) or "stock transformers modules only"


def source_line(path: Path, data: dict[str, Any]) -> str:
    smoke = " — **smoke run (tiny CPU model), not a benchmark**" if data.get("smoke") else ""
    versions = data.get("versions", {})
    stack = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return (
        f"Source: `bench/results/{path.name}` · {data.get('date', '–')} · "
        f"{data.get('device', '–')}{smoke}\n\nStack: {stack}"
    )


def model_summary(info: dict[str, Any] | None) -> str:
    if not info:
        return ""
    config = info.get("config", {})
    shape = ", ".join(f"{k} {config[k]}" for k in ("num_hidden_layers", "hidden_size",
                      "intermediate_size", "num_attention_heads", "num_key_value_heads",
                      "vocab_size") if k in config)  # fmt: skip
    params = info.get("parameters")
    parts = [f"Model: `{info.get('path_or_id')}`"]
    if info.get("architecture_of"):
        parts.append(
            f"random-init weights with the architecture of `{info['architecture_of']}`"
            " (compute per token equals the real model's)"
        )
    if params:
        parts.append(
            f"{params / 1e9:.2f} B parameters" if params >= 1e8 else f"{params:,} parameters"
        )
    if shape:
        parts.append(shape)
    if info.get("chars_per_token"):
        parts.append(f"{tokenizer_words(info)}, {info['chars_per_token']} characters/token")
    return "; ".join(parts) + "."


def tokenizer_words(info: dict[str, Any]) -> str:
    tokenizer = info.get("tokenizer") or {"source": "trained"}
    if tokenizer.get("source") == "shipped":
        return (
            f"the real tokenizer (`{tokenizer['file']}` from {tokenizer['package']} "
            f"{tokenizer['package_version']})"
        )
    return "tokenizer trained locally"


def commands_block(data: dict[str, Any]) -> str:
    commands = data.get("commands") or []
    return "Commands run:\n\n```\n" + "\n".join(commands) + "\n```" if commands else ""


def not_run(title: str, command: str) -> str:
    return f"## {title}\n\nNot run yet (`python -m bench {command}`)."


def decoding_rounds(ours: dict[str, Any]) -> str:
    """Like "rounds of 64/128 new tokens: 300/9 rows, batch 300/9" (older files: the batch)."""
    rounds = ours.get("rounds")
    if not rounds:
        return f"batch {num(ours.get('batch_size'), 0)}"
    tokens, rows = ("/".join(str(r[k]) for r in rounds) for k in ("new_tokens", "rows"))
    batches = "/".join(str(min(r["rows"], r["batch_size"])) for r in rounds)  # rows per call
    return f"rounds of {tokens} new tokens: {rows} rows, batch {batches}"


def ours_seconds(timing: dict[str, Any]) -> str:
    if "load_seconds" not in timing:  # files before load time was recorded: decoding only
        return f"{num(timing['seconds'])} generating (loading not recorded)"
    return f"{num(timing['seconds'])} generating + {num(timing['load_seconds'])} loading"


def section(
    title: str, path: Path, data: dict[str, Any], *body: str, model_line: str | None = None
) -> str:
    """One benchmark's section: heading, source and stack, model, the body, the commands run;
    empty parts left out."""
    model_line = model_summary(data.get("model")) if model_line is None else model_line
    parts = [f"## {title}", source_line(path, data), model_line, *body, commands_block(data)]
    return "\n\n".join(p for p in parts if p)


def step_counts(side: dict[str, Any]) -> str:
    raw = side["rank_records"][0]["raw"]
    return f"{raw['warmup_steps']} + {raw['steps']}"
