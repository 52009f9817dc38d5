"""Our eval's decoding strategies side by side: the same run, test split and token budget.

    python -m bench.decoding --run RUNDIR [--strategies NAME ...] [--limit N] --out FILE

- `rounds-dynamic-cache`, `rounds-static-cache`: what `eval generate` does (`generate_greedy`:
  64 new tokens, then rows that have not stopped get 128 more, then 256, ...), with a KV cache
  that grows by a token per step or one allocated per generate call (the result's
  `eval_generate_kv_cache` says which one `eval generate` uses).
- `one-round`: the same batching (dynamic cache) with the whole budget in one round, as before
  rounds: each `generate` call decodes until its longest row stops, finished rows riding along.
- `transformers-cb`: transformers' own continuous batching (`model.generate_batch`: paged KV
  cache, a finished row frees its slot, CUDA graphs), with the same greedy config.

The model is loaded once (`bench.common.load_run`, as `eval generate` loads it); each strategy
decodes all rows of the split and is compared with the first strategy, answer by answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import LoadedRun, load_run
from bench.metrics import write_json
from bench.timer import cuda_sync

STRATEGIES = ("rounds-static-cache", "rounds-dynamic-cache", "one-round", "transformers-cb")


def _continuous_batching(loaded: LoadedRun, max_new_tokens: int) -> list[Any]:
    from eval.generate import _finish, greedy_config, pad_token_id

    stops = loaded.stops
    config = greedy_config(max_new_tokens, stops, pad_token_id(loaded.tokenizer, stops), "dynamic")
    outputs = loaded.model.generate_batch(
        loaded.prompts, generation_config=config, progress_bar=False
    )
    # Results are keyed by request id, req_<position in the input list>.
    return [
        _finish(list(outputs[f"req_{i}"].generated_tokens), set(stops), loaded.tokenizer)
        for i in range(len(loaded.prompts))
    ]


def compare_strategies(
    run_dir: Path,
    strategies: list[str],
    limit: int | None,
    max_new_tokens: int | None,
    out: Path,
) -> dict[str, Any]:
    """Each strategy over the same rows; `out` is rewritten after each (a strategy that hangs
    or fails leaves the earlier ones' figures)."""
    import torch

    from eval.generate import KV_CACHE, default_max_new_tokens, generate_greedy

    loaded = load_run(run_dir, limit)
    rows = loaded.rows
    max_new_tokens = max_new_tokens or default_max_new_tokens(loaded.tokenizer, rows)
    results: dict[str, Any] = {}
    data = {
        "run": str(run_dir),
        "model": loaded.target.model,
        "adapter_merged": bool(loaded.target.adapter),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "rows": len(rows),
        "rows_in_split": loaded.rows_in_split,
        "max_new_tokens": max_new_tokens,
        "load_seconds": round(loaded.load_seconds, 2),
        "eval_generate_kv_cache": KV_CACHE,
        "first_strategy": strategies[0],
        "strategies": results,
    }
    reference = None
    for strategy in strategies:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the previous strategy's cache: free for this one
        cuda_sync()
        started = time.perf_counter()
        rounds = None
        if strategy == "transformers-cb":
            generations = _continuous_batching(loaded, max_new_tokens)
        else:
            options: dict[str, Any] = {}
            if strategy == "one-round":
                options["first_round_tokens"] = max_new_tokens
            options["kv_cache"] = "static" if strategy == "rounds-static-cache" else "dynamic"
            generations, rounds = generate_greedy(
                loaded.model, loaded.tokenizer, loaded.prompts, max_new_tokens, loaded.stops,
                progress=True, **options,
            )  # fmt: skip
        cuda_sync()
        seconds = time.perf_counter() - started
        texts = [g.text for g in generations]
        reference = reference or texts
        results[strategy] = {
            "seconds": round(seconds, 2),
            "rows_per_second": round(len(rows) / seconds, 2),
            "generated_tokens": sum(g.tokens for g in generations),
            "hit_max_new_tokens": sum(g.finish_reason == "length" for g in generations),
            "rounds": rounds,
            "answers_equal_to_first_strategy": sum(
                a == b for a, b in zip(texts, reference, strict=True)
            ),
        }
        write_json(out, data)
        print(f"{strategy}: {seconds:.1f} s for {len(rows)} rows", flush=True)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--limit", type=int, help="first N test rows (default: all)")
    parser.add_argument("--max-new-tokens", type=int, help="default: as `eval generate`")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    compare_strategies(args.run, args.strategies, args.limit, args.max_new_tokens, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
