"""Our decoding engines and strategies side by side: the same run, test split and token budget.

    python -m bench.decoding --run RUNDIR [--strategies NAME ...] [--limit N] --out FILE

- `fast`: the inference package's fast engine (what `eval generate` uses for Llama, Mistral,
  Qwen2 and Phi-3 models): preallocated KV cache, CUDA graphs per batch bucket; its stats (prefill
  and decode seconds, steps, buckets, graphs) are kept in the result.
- `rounds-dynamic-cache`, `rounds-static-cache`: the hf engine (`generate` in rounds: 64 new
  tokens, then rows that have not stopped get 128 more, then 256, ...), with a KV cache that grows
  by a token per step or one allocated per generate call (`hf_kv_cache`: the hf engine's).
- `one-round`: the same batching (dynamic cache) with the whole budget in one round, as before
  rounds: each `generate` call decodes until its longest row stops, finished rows riding along.
- `transformers-cb`: transformers' own continuous batching (`model.generate_batch`: paged KV
  cache, a finished row frees its slot, CUDA graphs), with the same greedy config.

The model is loaded once (`bench.common.load_run`, as `eval generate` loads it); each strategy
decodes all rows of the split and is compared with the first strategy, answer by answer
(`answers_equal_to_first_strategy`: the agreement).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import LoadedRun, load_run
from bench.metrics import write_json

STRATEGIES = ("fast", "rounds-static-cache", "rounds-dynamic-cache", "one-round", "transformers-cb")


def _continuous_batching(loaded: LoadedRun, max_new_tokens: int) -> list[Any]:
    from inference.decode import finish
    from inference.hf_rounds import greedy_config, pad_token_id

    stops = loaded.stops
    config = greedy_config(max_new_tokens, stops, pad_token_id(loaded.tokenizer, stops), "dynamic")
    outputs = loaded.model.generate_batch(
        loaded.prompts, generation_config=config, progress_bar=False
    )
    # Results are keyed by request id, req_<position in the input list>.
    return [
        finish(list(outputs[f"req_{i}"].generated_tokens), set(stops), loaded.tokenizer)
        for i in range(len(loaded.prompts))
    ]


def _decode(loaded: LoadedRun, strategy: str, max_new_tokens: int) -> tuple[list[Any], dict]:
    """One strategy over all the loaded rows: (generations, the engine's stats)."""
    from inference.decode import generate_greedy

    if strategy == "transformers-cb":
        return _continuous_batching(loaded, max_new_tokens), {}
    options: dict[str, Any] = {}
    if strategy != "fast":
        from inference.fast_decode import release

        release(loaded.model)  # the fast engine's KV cache and graphs: free for this strategy
        options["engine"] = "hf"
        if strategy == "one-round":
            options["first_round_tokens"] = max_new_tokens
        options["kv_cache"] = "static" if strategy == "rounds-static-cache" else "dynamic"
    return generate_greedy(
        loaded.model, loaded.tokenizer, loaded.prompts, max_new_tokens, loaded.stops,
        progress=True, **({"engine": "fast"} | options),
    )  # fmt: skip


def _cuda_sync() -> None:
    from bench.timer import cuda_sync  # it imports transformers' Trainer: only when measuring

    cuda_sync()


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

    from eval.generate import default_max_new_tokens
    from inference.hf_rounds import KV_CACHE

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
        "eval_generate_kv_cache": KV_CACHE,  # the hf engine's (name kept for bench.table)
        "hf_kv_cache": KV_CACHE,
        "first_strategy": strategies[0],
        "strategies": results,
    }
    reference = None
    for strategy in strategies:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the previous strategy's cache: free for this one
        _cuda_sync()
        started = time.perf_counter()
        generations, stats = _decode(loaded, strategy, max_new_tokens)
        _cuda_sync()
        seconds = time.perf_counter() - started
        texts = [g.text for g in generations]
        reference = reference or texts
        tokens = sum(g.new_tokens for g in generations)
        results[strategy] = {
            "seconds": round(seconds, 2),
            "rows_per_second": round(len(rows) / seconds, 2),
            "generated_tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1),
            "hit_max_new_tokens": sum(g.finish_reason == "length" for g in generations),
            "rounds": stats.get("rounds"),
            "engine_stats": stats or None,
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
