"""Where a decoding step's time goes: the hf engine's `generate` steps, timed and profiled.

    python -m bench.profile_generate --run RUNDIR --batch-sizes 1 256 --new-tokens 32 \
        --kv-caches static dynamic --out FILE

The model is loaded exactly as `eval generate` loads it (`inference.load.load_model`: bf16, LoRA
merged); each batch is the longest test prompts, left-padded as the hf engine does, and decodes
exactly `--new-tokens` tokens (`min_new_tokens` keeps every row going, so steps are comparable)
with the KV cache the hf engine uses (`--kv-caches`: each one asked for; default the engine's).
The fast engine's own per-step figures are in `python -m bench decoding` (its `engine_stats`).
Per batch size and cache: milliseconds per decoding step without the profiler (prefill
subtracted), then the same generation under torch.profiler, summarised by
`bench.profile.summarize_profile`. A step whose time hardly changes from batch 1 to batch 256 is
bound by fixed per-step work, not by the GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import load_run
from bench.metrics import write_json
from bench.profile import activities, summarize_profile
from bench.timer import cuda_sync


def _timed_generate(model: Any, inputs: dict[str, Any], config: Any) -> float:
    import torch

    cuda_sync()
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(**inputs, generation_config=config)
    cuda_sync()
    return time.perf_counter() - started


def profile_generation(
    run_dir: Path, batch_sizes: list[int], new_tokens: int, kv_caches: list[str]
) -> dict[str, Any]:
    import torch

    from inference.hf_rounds import greedy_config, left_padded, pad_token_id

    loaded = load_run(run_dir)
    model = loaded.model
    prompts = sorted(loaded.prompts, key=len, reverse=True)
    pad_id = pad_token_id(loaded.tokenizer, loaded.stops)

    def config(tokens: int, kv_cache: str) -> Any:
        # the hf engine's config, every row kept going for exactly `tokens` steps
        return greedy_config(tokens, loaded.stops, pad_id, kv_cache, min_new_tokens=tokens)

    results = {}
    for kv_cache, size in ((cache, size) for cache in kv_caches for size in batch_sizes):
        batch = prompts[:size]  # the longest prompts, as eval's first batch
        inputs = left_padded(batch, pad_id, model.device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the previous batch's cache: free for this one
        _timed_generate(model, inputs, config(2, kv_cache))  # warm-up: kernels, allocator
        prefill = _timed_generate(model, inputs, config(1, kv_cache))
        total = _timed_generate(model, inputs, config(new_tokens, kv_cache))
        step_s = (total - prefill) / max(new_tokens - 1, 1)
        with torch.profiler.profile(activities=activities()) as prof:
            wall = _timed_generate(model, inputs, config(new_tokens, kv_cache))
        summary = summarize_profile(prof.events(), wall, new_tokens)
        results[f"{len(batch)} rows, {kv_cache} cache"] = {
            "rows": len(batch),
            "kv_cache": kv_cache,
            "prompt_tokens_padded": inputs["input_ids"].shape[1],
            "new_tokens": new_tokens,
            "prefill_ms": round(prefill * 1e3, 1),
            "decode_ms_per_step": round(step_s * 1e3, 2),
            "decode_tokens_per_s": round(len(batch) / step_s, 1) if step_s else None,
            "profile": summary,
        }
        print(f"batch {len(batch)}, {kv_cache} cache: {step_s * 1e3:.1f} ms per step", flush=True)
    return {
        "run": str(run_dir),
        "model": loaded.target.model,
        "adapter_merged": bool(loaded.target.adapter),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "batches": results,
        "note": "profile figures are per step of the profiled generate call (prefill included "
        "in its first step); decode_ms_per_step is measured without the profiler",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_generate", description=__doc__)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--kv-caches", nargs="+", choices=["static", "dynamic"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from inference.hf_rounds import KV_CACHE

    data = profile_generation(
        args.run, args.batch_sizes, args.new_tokens, args.kv_caches or [KV_CACHE]
    )
    write_json(args.out, {**data, "eval_generate_kv_cache": KV_CACHE})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
