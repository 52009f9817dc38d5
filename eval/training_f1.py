"""Entity and relation F1 at every in-training evaluation: an Axolotl plugin.

Listed in a recipe's `plugins:` (next to training.axolotl_plugin.RunPlugin) and switched on with
`eval_f1: true`. At each evaluation the Trainer runs, after the eval loss, the model being
trained (adapter live, nothing saved or reloaded) decodes the validation rows greedily exactly
as `make eval` does (same chat template, system prompt, prompt encoding, stop tokens, token
budget and decoding function), and the answers are scored by eval.score. The scores join the
evaluation's own metrics (`eval_normalized_micro_f1`, ...), so the Trainer logs them (console,
TensorBoard, trainer_state.json) and `metric_for_best_model` can select the checkpoint by them.
Each evaluation's answers are kept in `<output_dir>/_eval_f1/step-<N>.jsonl` ("_": not pushed
to the Hub with the checkpoints).

Keys (validated by Axolotl through TrainingF1Args):
  eval_f1                 on/off (default off)
  eval_f1_rows            decode a fixed task-stratified subset of N validation rows (default all)
  eval_f1_seed            which subset (default 0)
  eval_f1_max_new_tokens  token budget per answer (default: as make eval, 1.5 x the longest gold)
  eval_f1_cache_gib       cap on the decoding's KV cache, GiB (default 5: the evaluation stays
                          within the training's memory; fewer rows are then in flight)

Several GPUs (DDP, DeepSpeed ZeRO-2): each rank decodes its share of the rows, rank 0 gathers
and scores them, and every rank gets the same metrics (eval/training_f1_rows.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel, Field, model_validator

# The decoding and row handling `make eval` uses: one code path for both.
from eval.generate import default_max_new_tokens, load_test_rows
from eval.score import MODES, InputError, score_rows
from eval.training_f1_rows import broadcast_from_first, gather_shards, select_rows, shard_indices
from inference.decode import generate_greedy
from inference.run import encode_prompts, stop_token_ids
from preprocessing.files import atomic_write_jsonl
from preprocessing.task import TASKS

PREDICTIONS_DIR = "_eval_f1"
# KV cache of the F1 decoding, GiB. With a 3B model in 4-bit (~2.4 GiB with the adapter and its
# optimizer state) and the prefill's activations this keeps the evaluation under ~8.5 GiB, near
# what the training itself peaks at; more cache means more rows in flight, a faster evaluation.
DEFAULT_CACHE_GIB = 5.0
# What each evaluation adds (the Trainer prefixes "eval_"): per mode micro and macro F1, F1 per
# task and the answers' unparseable relation lines; then rows decoded, seconds, answers cut off.
METRIC_NAMES = tuple(
    name
    for mode in MODES
    for name in (
        f"{mode}_micro_f1",
        f"{mode}_macro_f1",
        *(f"{mode}_{task}_f1" for task in TASKS),
        f"{mode}_format_errors",
    )
) + (
    "f1_rows",
    "f1_seconds",
    "f1_hit_max_new_tokens",
    "f1_generated_tokens",
    "f1_decode_steps",
    "f1_rows_in_flight",
    "f1_prefill_seconds",
    "f1_decode_seconds",
)


class TrainingF1Args(BaseModel):
    """The plugin's recipe keys."""

    eval_f1: bool | None = Field(
        default=None,
        json_schema_extra={"description": "F1 of greedy answers on the validation rows at "
                           "every evaluation (eval.training_f1)"},
    )  # fmt: skip
    eval_f1_rows: int | None = Field(default=None, ge=1)
    eval_f1_seed: int = 0
    eval_f1_max_new_tokens: int | None = Field(default=None, ge=1)
    eval_f1_cache_gib: float = Field(default=DEFAULT_CACHE_GIB, gt=0)

    @model_validator(mode="before")
    @classmethod
    def f1_needs_its_inputs(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        metric = str(data.get("metric_for_best_model") or "")
        if metric.removeprefix("eval_") in METRIC_NAMES and not data.get("eval_f1"):
            raise ValueError(f"metric_for_best_model: {metric} is only computed with eval_f1: true")
        if data.get("eval_f1") and len(data.get("test_datasets") or []) != 1:
            raise ValueError(
                "eval_f1: true decodes the rows of one validation JSONL: give exactly one "
                "test_datasets entry (the prepared validation.jsonl)"
            )
        return data


def validation_file(cfg: Any) -> Path:
    """The local JSONL of the recipe's one test dataset."""
    (dataset,) = cfg.test_datasets
    path = Path(str(dataset.get("path") or ""))
    if not path.is_file():
        raise InputError(
            f"{path}: eval_f1 decodes the validation rows of a local JSONL (test_datasets' "
            "path), and this is no file"
        )
    return path


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """eval.score's nested metrics as the flat numbers the Trainer logs (METRIC_NAMES)."""
    flat: dict[str, float] = {}
    for mode in MODES:
        scores = metrics[mode]
        flat[f"{mode}_micro_f1"] = scores["micro"]["f1"]
        flat[f"{mode}_macro_f1"] = scores["macro_f1"]
        for task in TASKS:
            flat[f"{mode}_{task}_f1"] = scores["per_task"][task]["f1"]
        flat[f"{mode}_format_errors"] = scores["format_errors"]["prediction"]
    return flat


@contextmanager
def generation_state(model: Any, training_after: bool) -> Iterator[None]:
    """The model in eval mode (no dropout) for decoding; afterwards in train mode if
    ``training_after``, with its config's use_cache as it was (training keeps it off)."""
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    model.eval()
    try:
        yield
    finally:
        if config is not None:
            config.use_cache = use_cache
        model.train(training_after)


def _meter(step: int, rows: int, seconds: float, flat: dict[str, float]) -> str:
    """A finished progress line (the launcher's console shows progress lines)."""
    from tqdm import tqdm

    return tqdm.format_meter(
        rows,
        rows,
        seconds,
        prefix=f"eval F1 @ step {step}",
        unit="row",
        postfix=f"normalized micro F1 {flat['normalized_micro_f1']:.3f}, "
        f"strict {flat['strict_micro_f1']:.3f}",
    )


class InTrainingF1:
    """The chosen validation rows, encoded once; called at each evaluation with the trainer."""

    def __init__(self, cfg: Any, tokenizer: Any) -> None:
        self.source = validation_file(cfg)
        rows, _ = load_test_rows(self.source, None)
        if not rows:
            raise InputError(f"{self.source}: no validation rows to decode")
        chosen = select_rows(rows, cfg.eval_f1_rows, cfg.eval_f1_seed or 0)
        self.rows = [rows[i] for i in chosen]
        self.prompts = encode_prompts(tokenizer, self.rows)
        self.max_new_tokens = cfg.eval_f1_max_new_tokens or default_max_new_tokens(
            tokenizer, self.rows
        )
        self.cache_gib = cfg.eval_f1_cache_gib or DEFAULT_CACHE_GIB
        self.out_dir = Path(cfg.output_dir) / PREDICTIONS_DIR
        self.last_stats: dict[str, Any] = {}

    def decode(self, trainer: Any, training_after: bool) -> list[tuple[int, tuple]]:
        """This rank's share of the rows: [(position, (text, finish_reason, tokens))]."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = trainer.processing_class
        mine = shard_indices(len(self.rows), trainer.args.process_index, trainer.args.world_size)
        stops = stop_token_ids(tokenizer, model.generation_config)
        with generation_state(model, training_after):
            # Without labels Liger's fused loss computes logits as usual (it skips them only
            # when asked, or in train mode with labels), so generate sees real logits.
            generations, self.last_stats = generate_greedy(
                model,
                tokenizer,
                [self.prompts[i] for i in mine],
                self.max_new_tokens,
                stops,
                batch_size=None,
                progress=trainer.args.process_index == 0,
                max_cache_gib=self.cache_gib,
                keep_state=False,  # the cache and graphs go: the training needs the memory
            )
        return [
            (i, (g.text, g.finish_reason, g.new_tokens))
            for i, g in zip(mine, generations, strict=True)
        ]

    def __call__(self, trainer: Any, training_after: bool) -> dict[str, float]:
        started = time.perf_counter()
        results = gather_shards(self.decode(trainer, training_after), len(self.rows))
        flat = None
        if trainer.args.process_index == 0:
            predictions = [
                {**row, "prediction": text, "finish_reason": reason, "generated_tokens": tokens}
                for row, (text, reason, tokens) in zip(self.rows, results, strict=True)
            ]
            flat = flat_metrics(score_rows(predictions, str(self.source)))
            seconds = time.perf_counter() - started
            flat.update(
                f1_rows=len(predictions),
                f1_seconds=round(seconds, 2),
                f1_hit_max_new_tokens=sum(p["finish_reason"] == "length" for p in predictions),
                f1_generated_tokens=sum(p["generated_tokens"] for p in predictions),
                # rank 0's decoding (the others' is alike): its steps and batch
                f1_decode_steps=self.last_stats.get("decode_steps") or 0,
                f1_rows_in_flight=self.last_stats.get("rows_in_flight") or 0,
                f1_prefill_seconds=self.last_stats.get("prefill_seconds") or 0.0,
                f1_decode_seconds=self.last_stats.get("decode_seconds") or 0.0,
            )
            step = trainer.state.global_step
            atomic_write_jsonl(self.out_dir / f"step-{step}.jsonl", predictions)
            print(_meter(step, len(predictions), seconds, flat), file=sys.stderr, flush=True)
            graphs = self.last_stats.get("graphs", "")
            if graphs.startswith("eager (CUDA"):  # the slow path on a GPU: say why
                print(f"eval F1 @ step {step}: decoded {graphs}", file=sys.stderr, flush=True)
        return broadcast_from_first(flat)


def add_f1_to_evaluations(trainer: Any, f1: InTrainingF1) -> None:
    """trainer.evaluation_loop, then (for evaluate(), not predict()) the F1 into its metrics."""
    loop = trainer.evaluation_loop

    def evaluation_loop(
        dataloader, description, prediction_loss_only=None, ignore_keys=None,
        metric_key_prefix="eval",
    ):  # fmt: skip
        training = trainer.model.training  # the loss loop switches it off; we switch it back
        output = loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if description == "Evaluation":
            scores = f1(trainer, training_after=training)
            output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in scores.items()})
        return output

    trainer.evaluation_loop = evaluation_loop


class TrainingF1Plugin(BasePlugin):
    """Axolotl's hooks: the recipe keys, and the F1 wired into the trainer it builds."""

    def get_input_args(self) -> str:
        return "eval.training_f1.TrainingF1Args"

    def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
        if not cfg.eval_f1:
            return
        try:
            f1 = InTrainingF1(cfg, trainer.processing_class)
        except InputError as error:
            print(f"error: eval_f1: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        add_f1_to_evaluations(trainer, f1)
