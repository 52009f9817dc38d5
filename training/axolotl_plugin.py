"""Our Axolotl plugin, listed in every recipe's `plugins:` (so `axolotl train recipes/X.yml` gets
it too). It changes nothing that is trained; it does three things:

1. Records where the run's time goes (training/phases.py): start-up, tokenisation, model load,
   optimizer steps, each evaluation, each checkpoint save, the best-model reload, the final save.
   Marks go to `<output_dir>/phase_marks.json` as they happen, so a killed run keeps them.
2. Loss-only evaluation without logits. With Liger's fused linear + cross-entropy, training never
   materialises the (tokens x vocab) logits, but Liger only skips them in training mode: an
   in-training eval of one 8,192-token pack on a 128k vocabulary builds 2 GB of bf16 logits and a
   4 GB fp32 copy for the loss. When the Trainer only needs the loss (no compute_metrics), we ask
   the fused kernel for it in eval too (`skip_logits=True`): the same loss over the same tokens.
3. No evaluation before the first step (Axolotl forces one whenever eval_steps is set).
4. A single-process run ends right after Axolotl's last hook, without the interpreter's teardown
   (~3 s of freeing torch and CUDA state; preprocessing/process_exit.py): exit handlers still
   run, and only when no plugin after this one has a `post_train_unload` of its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from preprocessing.process_exit import exit_without_teardown
from training.phases import MARKS_FILE, PhaseMarks, epoch_tokens


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


class _Recorder(TrainerCallback):
    """Marks the trainer's phases; the wrappers below call `around` for eval/save/reload."""

    def __init__(self, marks: PhaseMarks, path: Path) -> None:
        self.marks, self.path = marks, path
        self.steps_open = False  # optimizer steps are running since the last mark
        self.stepped = False  # ...and at least one has ended since

    def mark(self, phase: str) -> None:
        self.marks.mark(phase)
        if _rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.marks.write(self.path)

    def close_steps(self) -> None:
        if self.steps_open and self.stepped:
            self.mark("optimizer steps")
        self.steps_open = self.stepped = False

    def around(self, phase: str, call, *args, **kwargs):
        """``call`` timed as its own phase, cut out of the optimizer steps around it."""
        resume = self.steps_open
        self.close_steps()
        try:
            return call(*args, **kwargs)
        finally:
            self.mark(phase)
            self.steps_open = resume

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark("trainer set-up")
        self.steps_open = True

    def on_step_end(self, args, state, control, **kwargs):
        self.stepped = True

    def on_train_end(self, args, state, control, **kwargs):
        self.close_steps()
        self.marks.meta.update(
            optimizer_steps=state.global_step,
            epochs=state.epoch,
            best_checkpoint=state.best_model_checkpoint,
        )


def _loss_only_without_logits(trainer) -> None:
    step = trainer.prediction_step
    supported = [True]  # until a forward refuses the keyword (a model Liger did not patch)

    def prediction_step(model, inputs, prediction_loss_only, ignore_keys=None):
        if supported[0] and prediction_loss_only and "labels" in inputs:
            try:
                return step(
                    model, {**inputs, "skip_logits": True}, prediction_loss_only, ignore_keys
                )
            except TypeError as err:
                if "skip_logits" not in str(err):
                    raise
                supported[0] = False
        return step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    trainer.prediction_step = prediction_step


class RunPlugin(BasePlugin):
    def __init__(self) -> None:
        super().__init__()
        self.marks = PhaseMarks(start=None)
        self.marks.keep_peaks_across_resets()  # Axolotl resets the counter at every log line
        self.recorder: _Recorder | None = None
        self.post_train_calls = 0

    def _mark(self, cfg: Any, phase: str) -> None:
        if self.recorder is None:
            self.recorder = _Recorder(self.marks, Path(cfg.output_dir) / MARKS_FILE)
        self.recorder.mark(phase)

    def register(self, cfg: dict) -> None:
        # Plugins are registered while Axolotl loads the config: Python, torch and Axolotl are
        # imported by now.
        self.marks.mark("start-up: python + axolotl import")

    def pre_model_load(self, cfg) -> None:
        self._mark(cfg, "data: config checks + tokenise + pack")

    def post_model_load(self, cfg, model) -> None:
        self._mark(cfg, "model: load + quantise + adapter")

    def post_trainer_create(self, cfg, trainer) -> None:
        # Axolotl turns on eval_on_start whenever eval_steps is set (no key turns it off): a
        # whole extra evaluation of the random starting point. The seed plan evaluates every
        # eval_steps steps and at the end; so do we.
        trainer.args.eval_on_start = False
        recorder = self.recorder or _Recorder(self.marks, Path(cfg.output_dir) / MARKS_FILE)
        self.recorder = recorder
        trainer.add_callback(recorder)
        self.marks.meta.update(
            train_tokens_per_epoch=epoch_tokens(trainer.train_dataset),
            train_rows=len(trainer.train_dataset),
            eval_rows=len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
        )
        for name, phase in (
            ("evaluate", "evaluation"),
            ("_save_checkpoint", "checkpoint save"),
            ("_load_best_model", "best-model reload"),
        ):
            method = getattr(trainer, name, None)
            if method is None:
                continue

            def timed(*args, _method=method, _phase=phase, **kwargs):
                return recorder.around(
                    f"{_phase} @ step {trainer.state.global_step}", _method, *args, **kwargs
                )

            setattr(trainer, name, timed)
        if cfg.liger_fused_linear_cross_entropy and trainer.compute_metrics is None:
            _loss_only_without_logits(trainer)

    def post_train(self, cfg, model) -> None:
        # Called twice by Axolotl: after trainer.train(), then after the final save + card.
        self.post_train_calls += 1
        if self.post_train_calls == 1:
            self._mark(cfg, "after the last step")
        else:
            self._mark(cfg, "final save: adapter + tokenizer + hub push")

    def post_train_unload(self, cfg) -> None:
        self._mark(cfg, "axolotl clean-up")
        # Axolotl's last act: do_train returns to its CLI, which exits (status 0).
        if _single_process() and _last_to_unload(self):
            exit_without_teardown(0)


def _single_process() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1


def _last_to_unload(plugin: BasePlugin) -> bool:
    """No plugin registered after `plugin` has a post_train_unload hook still to run."""
    from axolotl.integrations.base import PluginManager

    plugins = list(PluginManager.get_instance().plugins.values())
    if plugin not in plugins:
        return False
    later = plugins[plugins.index(plugin) + 1 :]
    return all(type(p).post_train_unload is BasePlugin.post_train_unload for p in later)
