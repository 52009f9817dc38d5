"""Pack-length sweep behind the GPU recipes' `sequence_len` / accumulation choice.

Trains the same QLoRA setup (NF4 double-quant, r=16, packing, sdpa varlen, LoRA kernels, Liger,
paged AdamW 8-bit) at several pack lengths, accumulations and checkpointing settings, each for
4 warm-up + 10 timed optimizer steps, timed by bench.axolotl_plugin, and prints one JSON line per
variant. Results of the 2026-11-27 H100 run: bench/results/sweep.json.

    python -m preprocessing prepare data/both_rel_instruct_all.jsonl --out /tmp/proc
    python -m training build-model --arch models/architectures/llama-3.2-3b.json \\
        --out /tmp/llama3b --data /tmp/proc/train.jsonl --vocab-size 16384
    python -m bench.sweep --model /tmp/llama3b --processed /tmp/proc [VARIANT ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VARIANTS = {  # name: (sequence_len, gradient_accumulation_steps, gradient_checkpointing)
    "s4096_gc_ga4": (4096, 4, True),
    "s4096_gc_ga1": (4096, 1, True),
    "s5120_gc_ga1": (5120, 1, True),
    "s6144_gc_ga1": (6144, 1, True),
    "s8192_gc_ga1": (8192, 1, True),
    "s8192_nogc_ga1": (8192, 1, False),
    "s16384_gc_ga1": (16384, 1, True),
    "s16384_nogc_ga1": (16384, 1, False),
}


def config(model: Path, processed: Path, work: Path, name: str) -> dict:
    sequence_len, accumulation, checkpointing = VARIANTS[name]
    return {
        "base_model": str(model),
        "load_in_4bit": True,
        "adapter": "qlora",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "lora_target_modules": LORA_TARGETS,
        "chat_template": "llama3",
        "datasets": [
            {
                "path": str(processed / "train.jsonl"),
                "ds_type": "json",
                "type": "chat_template",
                "field_messages": "messages",
                "roles_to_train": ["assistant"],
                "train_on_eos": "turn",
            }
        ],
        "eot_tokens": ["<|eot_id|>"],
        "sample_packing": True,
        "pad_to_sequence_len": True,
        "sequence_len": sequence_len,
        "micro_batch_size": 1,
        "gradient_accumulation_steps": accumulation,
        "gradient_checkpointing": checkpointing,
        "attn_implementation": "sdpa",
        "lora_mlp_kernel": True,
        "lora_qkv_kernel": True,
        "lora_o_kernel": True,
        "plugins": [
            "axolotl.integrations.liger.LigerPlugin",
            "bench.axolotl_plugin.BenchTimingPlugin",
        ],
        "liger_rope": True,
        "liger_rms_norm": True,
        "liger_fused_linear_cross_entropy": True,
        "learning_rate": 2e-4,
        "lr_scheduler": "cosine",
        "optimizer": "paged_adamw_8bit",
        "bf16": True,
        "tf32": True,
        "num_epochs": 1,
        "max_steps": 14,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 42,
        "output_dir": str(work / name),
        "dataset_prepared_path": str(work / f"prepared-{sequence_len}"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help=", ".join(VARIANTS))
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--processed", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sweep")
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    for name in args.variants or list(VARIANTS):
        cfg = config(args.model, args.processed, args.work, name)
        out = Path(cfg["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yml").write_text(yaml.safe_dump(cfg), "utf-8")
        env = {**os.environ, "BENCH_WARMUP_STEPS": "4"}
        command = [sys.executable, "-m", "axolotl.cli.train", str(out / "config.yml")]
        subprocess.run(command, env=env, check=True)
        timing = json.loads((out / "bench_timing.rank0.json").read_text("utf-8"))
        raw = timing["raw"]
        print(
            json.dumps(
                {
                    "variant": name,
                    "real_tokens_per_s": round(raw["real_tokens"] / raw["seconds"], 1),
                    "seconds_per_step": round(raw["seconds"] / raw["steps"], 4),
                    "examples_per_step": round(raw["examples"] / raw["steps"], 1),
                    "peak_memory_gib": timing["peak_memory_gib"],
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
