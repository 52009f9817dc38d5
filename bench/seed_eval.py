"""The seed plan's `validate_model.py` loop, as the eval benchmark's baseline.

One prompt at a time, in the seed's Llama-3 string format (up to the assistant header), through
HF `model.generate` with sampling at temperature 0.1, stopping at the model's EOS. The model is
loaded as our `eval generate` loads it on its HF path (base weights in bf16 on the GPU plus the
run's LoRA adapter), so the two loops differ only in how they drive the model.

    python -m bench.seed_eval --run RUNDIR --rows 20 --max-new-tokens M --out FILE

Only the first `--rows` rows of the run's test split are generated (the seed loop is slow); the
result gives the model loading time and seconds per row, from which the benchmark projects the
whole split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.seed_baseline import SEED_FORMAT

# The seed's prompt: its training format cut right after the assistant header.
SEED_PROMPT_FORMAT = SEED_FORMAT[: SEED_FORMAT.index("{completion}")]


def seed_prompt(row: dict[str, Any]) -> str:
    system = next(m["content"] for m in row["messages"] if m["role"] == "system")
    return SEED_PROMPT_FORMAT.format(system=system, prompt=row["prompt"])


def run(run_dir: Path, rows: int, max_new_tokens: int) -> dict[str, Any]:
    import torch
    from peft import PeftModel
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval.generate import load_test_rows, resolve_run

    target = resolve_run(run_dir, None, merged=False)
    test_rows, in_split = load_test_rows(target.test_file, rows)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32  # as eval generate's HF path
    tokenizer = AutoTokenizer.from_pretrained(target.tokenizer)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(target.model, dtype=dtype)
    model = PeftModel.from_pretrained(model, target.adapter).to(device).eval()
    if cuda:
        torch.cuda.synchronize()
    load_seconds = time.perf_counter() - started
    torch.manual_seed(0)

    generated, per_row = [], []
    loop_started = time.perf_counter()
    for row in tqdm(test_rows, desc="seed loop", unit="row"):
        row_started = time.perf_counter()
        inputs = tokenizer(seed_prompt(row), return_tensors="pt").to(device)
        with torch.no_grad():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=0.1,
                pad_token_id=tokenizer.eos_token_id,
            )
        tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        generated.append(int(output.shape[1] - inputs["input_ids"].shape[1]))
        per_row.append(time.perf_counter() - row_started)
    seconds = time.perf_counter() - loop_started
    return {
        "loop": "seed: one prompt at a time, do_sample=True, temperature=0.1",
        "run": str(run_dir),
        "model": target.model,
        "adapter": target.adapter,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "rows_generated": len(test_rows),
        "rows_in_split": in_split,
        "max_new_tokens": max_new_tokens,
        "hit_max_new_tokens": sum(n >= max_new_tokens for n in generated),
        "timing": {
            "seconds": round(seconds, 3),
            "rows_per_second": round(len(test_rows) / seconds, 4),
            "seconds_per_row": round(seconds / len(test_rows), 3),
            "generated_tokens": sum(generated),
            "tokens_per_second": round(sum(generated) / seconds, 1),
            "slowest_row_seconds": round(max(per_row), 3),
            "load_seconds": round(load_seconds, 3),  # base model + adapter onto the device
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_eval", description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="run directory with an adapter")
    parser.add_argument("--rows", type=int, default=20, help="first N rows of the test split")
    parser.add_argument("--max-new-tokens", type=int, required=True, help="as our eval uses")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    from bench.metrics import write_json

    write_json(args.out, run(args.run, args.rows, args.max_new_tokens))
    print(f"seed eval loop: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
