"""An Axolotl plugin that times our real training run, changing nothing it measures.

`python -m bench train` adds `bench.axolotl_plugin.BenchTimingPlugin` to the recipe's `plugins`
through the launcher's `--override`. After Axolotl has built the trainer exactly as the recipe
says, the plugin attaches `bench.metrics.StepTimer` and wraps `trainer.training_step` with a call
that only counts the micro-batch's tokens (on the device, no synchronize) before handing it on.
At the end each rank writes `<output_dir>/bench_timing.rank<N>.json`.

Why a plugin rather than Axolotl's own logs: Axolotl's `tokens/train_per_sec_per_gpu` counts
*trained* (label != -100) tokens and `tokens/total` counts padded slots, and its windows are
host-clock intervals between logs; the seed script must be measured by the same arithmetic
(real, non-padding tokens over a device-synchronized window), so both sides share one timer.

Warm-up length comes from `BENCH_WARMUP_STEPS` (default 3); the timed steps are the rest of
`max_steps`. With `BENCH_PROFILE_STEPS=N` (`python -m bench profile`) the plugin also profiles the
N steps after warm-up (`bench.profile.StepProfiler` -> `<output_dir>/bench_profile.rank<N>.json`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin

from bench.kernels import kernels_in_use
from bench.metrics import write_json
from bench.timer import StepTimer
from training.phases import epoch_tokens

# Config keys that decide speed and memory; copied into the results as the run resolved them.
REPORTED_KEYS = (
    "base_model", "adapter", "load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "sequence_len",
    "sample_packing", "pad_to_sequence_len", "micro_batch_size", "gradient_accumulation_steps",
    "gradient_checkpointing", "attn_implementation", "flash_attention", "sdp_attention",
    "lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "plugins", "liger_rope",
    "liger_rms_norm", "liger_glu_activation", "liger_fused_linear_cross_entropy", "bf16", "fp16",
    "tf32", "optimizer", "torch_compile", "include_tkps", "dataloader_num_workers", "deepspeed",
    "fsdp", "max_steps",
)  # fmt: skip


def _plain(value: Any) -> Any:
    """JSON-safe copy of a config value (DictDefault, enums, paths)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


class _RunTimer(StepTimer):
    def __init__(self, out: Path, meta: dict[str, Any], epoch_real_tokens: int | None, **kw):
        super().__init__(**kw)
        self.out, self.meta, self.epoch_real_tokens = out, meta, epoch_real_tokens

    def on_train_end(self, args, state, control, **kwargs):
        write_json(self.out, {**self.meta, **self.record(self.epoch_real_tokens)})


class BenchTimingPlugin(BasePlugin):
    def post_trainer_create(self, cfg, trainer) -> None:
        max_steps = int(trainer.args.max_steps)
        warmup = int(os.environ.get("BENCH_WARMUP_STEPS", "3"))
        tokenizer = getattr(trainer, "processing_class", None) or trainer.tokenizer
        meta = {
            "rank": _rank(),
            "config": {k: _plain(cfg.get(k)) for k in REPORTED_KEYS if cfg.get(k) is not None},
            "kernels": kernels_in_use(trainer.model),
        }
        timer = _RunTimer(
            out=Path(trainer.args.output_dir) / f"bench_timing.rank{_rank()}.json",
            meta=meta,
            epoch_real_tokens=epoch_tokens(trainer.train_dataset),
            warmup=warmup,
            steps=max_steps - warmup,
            pad_token_id=tokenizer.pad_token_id,
        )
        step = trainer.training_step

        def counted_training_step(model, inputs, *args, **kwargs):
            timer.count(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted_training_step
        trainer.add_callback(timer)
        profile_steps = int(os.environ.get("BENCH_PROFILE_STEPS", "0"))
        if profile_steps:
            from bench.profile import StepProfiler

            out = Path(trainer.args.output_dir) / f"bench_profile.rank{_rank()}.json"
            trainer.add_callback(StepProfiler(out, warmup, profile_steps))
