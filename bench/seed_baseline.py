"""The seed plan's `train.py`, reimplemented faithfully as the training benchmark's baseline.

What the seed did, and this does:
- HF `Trainer`; the model loaded in bitsandbytes 4-bit NF4 with double quantisation, compute
  dtype matching the mixed precision; `prepare_model_for_kbit_training` (which also turns on
  gradient checkpointing); PEFT LoRA r=16, alpha=32, dropout 0.05 on q/k/v/o/gate/up/down.
- fp16 mixed precision (bf16 if fp16 fails: the failure is recorded), per-device batch 4 x
  gradient accumulation 4, `paged_adamw_8bit`, lr 2e-4.
- Each row rendered as ONE Llama-3 string (system, user, assistant turns, see `SEED_FORMAT`),
  tokenized with the tokenizer's defaults, truncated at 2,048 tokens, trained on the WHOLE
  sequence (prompt and system text included: the seed had no label mask), no packing;
  `DataCollatorForLanguageModeling(mlm=False)` pads each batch to its longest row, with the pad
  token set to the EOS token (so every <|eot_id|> is masked from the loss too, as in the seed).

What differs, on purpose: checkpoint saving is off (the timed window must not include it), the
Trainer subclass counts each micro-batch's tokens for the benchmark (`bench.metrics`), and the
data is our processed train split so both sides train on the same rows. Without CUDA (tests)
there is no bitsandbytes: fp32 weights, no 4-bit, `adamw_torch`; the result records each
deviation under "deviations".

    python -m bench.seed_baseline --model DIR --processed DIR --warmup 3 --steps 20 --out FILE
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path
from typing import Any

from preprocessing.files import FileFormatError, read_jsonl
from preprocessing.task import DEFAULT_SYSTEM_PROMPT

SEED_FORMAT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{completion}<|eot_id|>"
)
MAX_LENGTH = 2048
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH, ACCUMULATION, LR = 4, 4, 2e-4


def seed_text(row: dict[str, Any]) -> str:
    """A processed row in the seed's single-string Llama-3 format."""
    messages = row.get("messages") or []
    system = next((m["content"] for m in messages if m["role"] == "system"), DEFAULT_SYSTEM_PROMPT)
    return SEED_FORMAT.format(system=system, prompt=row["prompt"], completion=row["completion"])


def read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        rows = [row for _, row in read_jsonl(path)]
    except FileFormatError as err:
        raise SystemExit(str(err)) from None
    if not rows:
        raise SystemExit(f"{path}: no rows")
    return rows


def _load_model(model_dir: Path, precision: str, cuda: bool):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if cuda:
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, quantization_config=quant, dtype=dtype, device_map={"": 0}
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS, bias="none",
        task_type="CAUSAL_LM",
    )  # fmt: skip
    return get_peft_model(model, lora)


def _train(model_dir: Path, dataset, tokenizer, precision: str, warmup: int, steps: int):
    """One Trainer run with the seed's arguments; returns (timer, model)."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from bench.timer import StepTimer

    cuda = torch.cuda.is_available()
    model = _load_model(model_dir, precision, cuda)
    timer = StepTimer(warmup, steps, tokenizer.pad_token_id)

    class CountingTrainer(Trainer):
        def training_step(self, model, inputs, *args, **kwargs):
            timer.count(inputs)
            return super().training_step(model, inputs, *args, **kwargs)

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="seed-baseline-"),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        learning_rate=LR,
        max_steps=warmup + steps,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        optim="paged_adamw_8bit" if cuda else "adamw_torch",
        gradient_checkpointing=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=42,
        use_cpu=not cuda,
    )
    trainer = CountingTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[timer],
    )
    trainer.train()
    return timer, model


def _train_seed_precision(
    model_dir: Path, dataset, tokenizer, warmup: int, steps: int, cuda: bool, deviations: list
) -> tuple[Any, Any, str, str | None]:
    """Train in the seed's fp16, falling back to bf16 (said in ``deviations``) where fp16 fails
    on this stack; (timer, model, precision used, fp16's error or None)."""
    import torch

    fp16_error = None
    for precision in ["fp16", "bf16"] if cuda else ["fp32"]:
        if fp16_error:  # the failed attempt's model is unreferenced now: free its memory
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()  # the peak reported is this attempt's
        try:
            timer, model = _train(model_dir, dataset, tokenizer, precision, warmup, steps)
            return timer, model, precision, fp16_error
        except Exception as err:  # the seed's fp16 may fail on this stack: fall back, say why
            if precision != "fp16":
                raise
            fp16_error = f"{type(err).__name__}: {err}"[:500]
            deviations.append(f"fp16 failed ({fp16_error}); bf16 used instead")
    raise AssertionError("unreachable: the last precision either returns or raises")


def run(model_dir: Path, processed: Path, warmup: int, steps: int) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import AutoTokenizer

    from bench.kernels import kernels_in_use
    from bench.metrics import merge_ranks

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.eos_token  # the seed's choice (Llama-3 ships no pad token)
    texts = [seed_text(row) for row in read_rows(processed / "train.jsonl")]
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
    dataset = datasets.Dataset.from_dict(dict(encoded))
    epoch_real_tokens = sum(len(ids) for ids in encoded["input_ids"])

    deviations = ["checkpoint saving off (kept out of the timed window)"]
    if not cuda:
        deviations += [
            "no CUDA: fp32 weights, no bitsandbytes 4-bit quantisation",
            "no CUDA: adamw_torch instead of paged_adamw_8bit",
            "no CUDA: fp32 instead of fp16 mixed precision",
        ]
    timer, model, precision, fp16_error = _train_seed_precision(
        model_dir, dataset, tokenizer, warmup, steps, cuda, deviations
    )
    record = timer.record(epoch_real_tokens)
    return {
        "pipeline": "seed",
        "precision": precision,
        "fp16_error": fp16_error,
        "quantization": "bitsandbytes 4-bit NF4, double quant" if cuda else "none (no CUDA)",
        "optimizer": "paged_adamw_8bit" if cuda else "adamw_torch",
        "settings": {
            "micro_batch_size": BATCH,
            "gradient_accumulation_steps": ACCUMULATION,
            "learning_rate": LR,
            "max_length": MAX_LENGTH,
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": LORA_TARGETS},
            "gradient_checkpointing": True,
            "packing": False,
            "loss_on": "whole sequence (no label mask), pad=eos so every <|eot_id|> masked",
            "bos_tokens_at_start": sum(
                1 for i in encoded["input_ids"][0][:2] if i == tokenizer.bos_token_id
            ),
        },
        "kernels": kernels_in_use(model),
        "deviations": deviations,
        "timing": merge_ranks([record]),
        "rank_records": [record],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_baseline", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="model + tokenizer directory")
    parser.add_argument("--processed", type=Path, required=True, help="has train.jsonl")
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps before timing")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    from bench.metrics import write_json

    write_json(args.out, run(args.model, args.processed, args.warmup, args.steps))
    print(f"seed baseline: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
