"""Generate answers for the test split with a run (or a recipe's untuned base model), then score.

    python -m eval generate --run runs/<recipe>-<stamp> [--merged] [--engine auto|fast|hf|vllm]
    python -m eval generate --base <recipe> --processed data/processed

Prompts are the rows' chat messages without the assistant turn, rendered with the run's own
tokenizer and chat template (exactly what training saw) plus the generation prompt. Decoding is
greedy and stops at the template's end-of-turn token; the model is loaded and decoded by the
`inference` package (engine "auto": its fast engine for Llama, Mistral, Qwen2 and Phi-3 models,
HF `generate` in rounds otherwise; "vllm" when asked for and installed). metrics.json records the
engine and its timings.
Writes <run>/eval/{predictions.jsonl, metrics.json, report.md, f1.png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.generate_timing import PhaseClock, decoding_timing, print_summary
from eval.outputs import write_outputs
from eval.score import InputError, check_row, read_jsonl, score_rows
from inference.decode import Generation, generate_greedy
from inference.load import device_and_dtype, device_name, load_model
from inference.run import (
    ModelSource,
    RunError,
    add_run_argument,
    encode_prompts,
    load_tokenizer,
    local_or_hub,
    no_run_message,
    recipe_base_model,
    run_records,
    source_of_recipe,
    source_of_run,
    stop_token_ids,
)
from inference.startup import import_decoding_stack, keep_out_unused, kept_out_packages
from preprocessing.files import (
    FileFormatError,
    atomic_write_jsonl,
    sha256_file,
)

# Budget for one answer: 1.5 x the longest gold answer of the split (in tokens), within these.
MIN_NEW_TOKENS, MAX_NEW_TOKENS = 32, 1024
ENGINES = ("auto", "fast", "hf", "vllm")


@dataclass
class Target(ModelSource):
    """What to evaluate (the model source) and on what, and where the results go."""

    test_file: Path
    out_dir: Path


# ---- what to evaluate -----------------------------------------------------------------------


def resolve_run(run_dir: Path, split_file: Path | None, merged: bool) -> Target:
    """A training run: run.json / config.yml say the base model and the test split."""
    source = source_of_run(run_dir, merged)
    info, config = run_records(run_dir)
    test_file = split_file or _test_file_of(info, config, run_dir)
    return Target(**dataclasses.asdict(source), test_file=test_file, out_dir=run_dir / "eval")


def _test_file_of(info: dict, config: dict, run_dir: Path) -> Path:
    """run.json's test file; else test.jsonl beside the processed data the run trained on."""
    if info.get("test_file"):
        return Path(local_or_hub(info["test_file"]))
    processed = info.get("processed_dir") or info.get("processed")
    if not processed:
        datasets = config.get("datasets") or [{}]
        train_path = datasets[0].get("path", "") if isinstance(datasets[0], dict) else ""
        processed = str(Path(train_path).parent) if train_path.endswith("train.jsonl") else None
    if processed:
        return Path(local_or_hub(processed)) / "test.jsonl"
    raise InputError(f"{run_dir}/run.json names no test_file or processed_dir: pass --split-file")


def resolve_base(
    recipe: str, processed: Path | None, split_file: Path | None, runs_dir: Path
) -> Target:
    """The untuned base model of a recipe, with the chat template the recipe trains with."""
    source = source_of_recipe(recipe)
    if split_file is None and processed is None:
        raise InputError("--base needs --processed DIR (or --split-file)")
    return Target(
        **dataclasses.asdict(source),
        test_file=split_file or processed / "test.jsonl",
        out_dir=runs_dir / f"{source.recipe}-base" / "eval",
    )


# ---- rows and token budget --------------------------------------------------------------------


def load_test_rows(path: Path, limit: int | None) -> tuple[list[dict], int]:
    """(rows to evaluate, rows in the file); every row is checked before any model is loaded."""
    numbered = read_jsonl(path)
    for number, row in numbered:
        where = f"{path}:{number}"
        check_row({**row, "prediction": ""}, where)
        messages = row.get("messages")
        if not (
            isinstance(messages, list)
            and len(messages) >= 2
            and all(isinstance(m, dict) for m in messages)
            and messages[-1].get("role") == "assistant"
        ):
            raise InputError(
                f"{where}: 'messages' must be a list of chat turns ending with the "
                "assistant's answer"
            )
    rows = [row for _, row in numbered]
    return rows[:limit] if limit is not None else rows, len(rows)


def default_max_new_tokens(tokenizer: Any, rows: list[dict]) -> int:
    """1.5 x the longest gold answer in tokens (+ the stop token), within sane bounds."""
    answers = tokenizer([r["completion"] for r in rows], add_special_tokens=False)["input_ids"]
    longest = max(map(len, answers))
    return min(MAX_NEW_TOKENS, max(MIN_NEW_TOKENS, math.ceil(1.5 * longest) + 1))


# ---- decoding ----------------------------------------------------------------------------------


def decode(
    target: Target,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None,
    engine: str,
    clock: PhaseClock,
) -> tuple[list[Generation], dict[str, Any]]:
    """The target's model loaded once, then every prompt decoded: (generations, settings with
    `seconds` (decoding) and `load_seconds`); the clock's "load" and "decode" phases end."""
    if engine == "vllm":
        from inference.vllm_backend import generate_vllm

        generations, settings = generate_vllm(target, tokenizer, prompts, max_new_tokens)
        clock.end("decode")
        clock.move(settings["load_seconds"], "decode", "load")  # vLLM loads inside
        return generations, settings
    started = time.perf_counter()
    model = load_model(target.model, target.adapter, tokenizer)
    load_seconds = time.perf_counter() - started
    stops = stop_token_ids(tokenizer, model.generation_config)
    clock.end("load")
    generations, stats = generate_greedy(
        model, tokenizer, prompts, max_new_tokens, stops, batch_size, True, engine
    )
    clock.end("decode")
    return generations, {
        **stats,
        "load_seconds": round(load_seconds, 3),
        "device": device_name(),
        "dtype": str(device_and_dtype()[1]).removeprefix("torch."),
        "batch_size": batch_size or "auto",
        "stop_token_ids": stops,
    }


# ---- the command -----------------------------------------------------------------------------


def run_eval(
    target: Target,
    limit: int | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    engine: str = "auto",
    clock: PhaseClock | None = None,
) -> dict[str, Any]:
    """Generate, score and report; returns the metrics written to metrics.json. `clock`: the
    command's, started at its beginning (default: one started now)."""
    clock = clock or PhaseClock()
    rows, rows_in_split = load_test_rows(target.test_file, limit)
    if not rows:
        raise InputError(f"{target.test_file}: no rows to evaluate")
    full_eval_dir = target.out_dir
    target = dataclasses.replace(target, out_dir=eval_dir(full_eval_dir, len(rows), rows_in_split))
    clock.end("prepare")
    # vLLM loads the model with its own classes.
    import_decoding_stack(target.adapter is not None, model=engine != "vllm")
    clock.end("imports")
    import torch

    torch.manual_seed(0)
    started = time.perf_counter()
    tokenizer = load_tokenizer(target)
    prompts = encode_prompts(tokenizer, rows)
    max_new_tokens = max_new_tokens or default_max_new_tokens(tokenizer, rows)
    print(f"{len(rows)} rows; max_new_tokens={max_new_tokens}", file=sys.stderr)
    clock.end("prepare")
    generations, settings = decode(
        target, tokenizer, prompts, max_new_tokens, batch_size, engine, clock
    )
    print(
        f"engine: {settings['engine']} ({settings.get('engine_reason', 'requested')}); "
        f"{settings['generated_tokens']} tokens in {settings['seconds']:.1f} s "
        f"({settings['tokens_per_second']} tokens/s)",
        file=sys.stderr,
    )
    predictions = [
        {
            **row,
            "prediction": g.text,
            "finish_reason": g.finish_reason,
            "generated_tokens": g.new_tokens,
        }
        for row, g in zip(rows, generations, strict=True)
    ]
    predictions_path = target.out_dir / "predictions.jsonl"
    atomic_write_jsonl(predictions_path, predictions)
    metrics = score_rows(predictions, str(predictions_path))
    metrics.update(_metrics(target, rows_in_split, predictions, settings, max_new_tokens, started))
    metrics["timing"]["kept_out_packages"] = kept_out_packages()
    write_outputs(target.out_dir, metrics, predictions, clock, full_eval_dir)
    return metrics


def _metrics(
    target: Target,
    rows_in_split: int,
    predictions: list[dict],
    settings: dict[str, Any],
    max_new_tokens: int,
    started: float,
) -> dict[str, Any]:
    """What metrics.json says besides the scores."""
    from preprocessing.files import now

    engine_keys = ("device", "dtype", "batch_size", "rounds", "stop_token_ids")
    return {
        "kind": target.kind,
        "recipe": target.recipe,
        "run": target.run,
        "model": target.model,
        "adapter": target.adapter,
        "split_file": str(target.test_file),
        "split_sha256": sha256_file(target.test_file),
        "rows_evaluated": len(predictions),
        "rows_in_split": rows_in_split,
        "backend": settings["engine"],
        "backend_reason": settings.get("engine_reason", "requested"),
        **{key: settings[key] for key in engine_keys if key in settings},
        "engine": {k: v for k, v in settings.items() if k not in engine_keys},
        "max_new_tokens": max_new_tokens,
        "hit_max_new_tokens": sum(p["finish_reason"] == "length" for p in predictions),
        "timing": decoding_timing(settings, len(predictions), started),
        "created": now(),
    }


def eval_dir(full: Path, rows_evaluated: int, rows_in_split: int) -> Path:
    """Where an eval goes: ``full`` (eval/) for the whole split; eval-limit<N>/ beside it for the
    first N rows, so a quick --limit look never replaces the full evaluation."""
    if rows_evaluated >= rows_in_split:
        return full
    return full.with_name(f"{full.name}-limit{rows_evaluated}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()  # neither: run() lists the runs to pick from
    add_run_argument(which)
    which.add_argument(
        "--base",
        metavar="RECIPE",
        help="evaluate RECIPE's untuned base model (name in recipes/ or a .yml)",
    )
    parser.add_argument("--processed", type=Path, help="processed data dir (with --base)")
    parser.add_argument("--split-file", type=Path, help="test JSONL (default: the run's)")
    parser.add_argument("--merged", action="store_true", help="use RUN/merged instead of adapter")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="where --base results go: RUNS_DIR/<recipe>-base/eval (default runs)",
    )
    parser.add_argument("--limit", type=int, help="only the first N rows of the split")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="rows decoded together (default: fast engine, sized from free GPU memory, all "
        "rows up to 64 on CPU; hf engine, 8 per generate call on CPU, sized per round on a GPU)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, help="default: 1.5 x the longest gold answer, 32..1024"
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="auto: fast for llama/mistral/qwen2/phi3 models, else hf; vllm only when asked",
    )
    parser.add_argument(
        "--backend", choices=("auto", "hf", "vllm"), dest="engine", help="older name of --engine"
    )


def run(args: argparse.Namespace) -> int:
    clock = PhaseClock(from_process_start=True)
    if args.run is None and args.base is None:
        print(no_run_message("eval", args.runs_dir), file=sys.stderr)
        return 2
    try:
        if args.run is not None:
            if args.processed is not None:
                raise InputError("--processed goes with --base; a run knows its own split")
            target = resolve_run(args.run, args.split_file, args.merged)
            keep_out_unused(target.model, args.engine)
        else:
            if args.merged:
                raise InputError("--merged goes with --run")
            # Before the recipe's chat template brings in Axolotl, hence transformers.
            keep_out_unused(recipe_base_model(args.base), args.engine)
            target = resolve_base(args.base, args.processed, args.split_file, args.runs_dir)
        for name in ("limit", "batch_size", "max_new_tokens"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        metrics = run_eval(
            target, args.limit, args.batch_size, args.max_new_tokens, args.engine, clock
        )
    except (InputError, RunError, FileFormatError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    normalized = metrics["normalized"]
    print(
        "normalized F1: "
        + ", ".join(f"{task} {c['f1']:.3f}" for task, c in normalized["per_task"].items())
        + f"; micro {normalized['micro']['f1']:.3f}; macro {normalized['macro_f1']:.3f}"
    )
    out = eval_dir(target.out_dir, metrics["rows_evaluated"], metrics["rows_in_split"])
    print(f"wrote {out}/{{predictions.jsonl,metrics.json,report.md,f1.png}}")
    if out != target.out_dir:
        print(f"partial evaluation (--limit): {target.out_dir}/ and the model card are unchanged")
    print_summary(metrics["timing"]["phases"])
    return 0
