"""The start-up of a command that loads a model to decode with: how long its process took to
reach the command, and the packages it can start without.

`python -m eval` and `python -m inference` call `own_process()` when they run as a program (not
when a test or another program calls them in its own process), and end with
`exit_without_teardown(status)`; then

- `process_age()` says how long the process has been running (interpreter start, imports,
  argument parsing included), for the phase breakdown of metrics.json;
- `keep_out_unused(model, engine)` keeps packages that transformers and peft import only
  because they are installed out of the process. Measured on CPU (`python -X importtime -m eval
  generate`): 12.6 s of imports before, 6.9 s after.

  - scikit-learn (2.2 s): transformers.generation.candidate_generator imports
    `sklearn.metrics.roc_curve` for assisted decoding's confidence threshold. Assisted decoding
    (a draft model proposing tokens) is the only user of scikit-learn in transformers, and
    nothing here uses it: decoding is greedy, without an assistant model.
  - scipy (0.65 s): transformers.loss imports `scipy.optimize.linear_sum_assignment` for the
    Hungarian matching of the object-detection losses (DETR family); decoding computes no loss.
    Quantization code may use it (bitsandbytes can build its NF4 table with scipy.stats): it
    goes with bitsandbytes and torchao.
  - bitsandbytes (1.7 s): peft.helpers imports it to know its 4-/8-bit layer types; torchao
    (1.1 s): transformers' torchao quantizer imports it. inference.load loads a model in
    bf16/fp16/fp32, never quantized, so none of the three is used, unless the checkpoint itself
    is quantized (a `quantization_config` in its config.json) or cannot be read: then all three
    stay importable.

  How: `sys.modules[name] = None`, Python's documented way to make `import name` fail with
  ModuleNotFoundError; importlib.util.find_spec(name) then returns None, which is how transformers'
  and peft's `is_*_available()` checks read "not installed", a case both libraries support.
  It must happen before transformers is imported (those checks are cached at their first
  call), and never in a process that already imported one of the packages or that may need it
  later (a training process, a test session): hence `own_process()`.
- `exit_without_teardown(status)` (preprocessing/process_exit.py) ends the process without the
  interpreter's teardown, which took 1.3-1.9 s on CPU after torch, transformers and peft were
  imported: the exit handlers run, the output is flushed, then the OS takes the memory back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from preprocessing.process_clock import process_age as own_process_age

# Never used by greedy decoding without an assistant model; the second group unless quantized.
UNUSED = ("sklearn",)
UNUSED_UNLESS_QUANTIZED = ("scipy", "bitsandbytes", "torchao")
# Engines whose imports are ours to know: vLLM brings its own and may need any of them.
TRIMMED_ENGINES = ("auto", "fast", "hf")

_own_process = False
_kept_out: list[str] = []


def own_process() -> None:
    """This process runs one command and exits: it may time its start-up and keep packages out."""
    global _own_process
    _own_process = True


def process_age() -> float | None:
    """Seconds since this process started (preprocessing.process_clock); None in a process that
    is not the command's own (its age would not be the command's) or where /proc cannot say."""
    return own_process_age() if _own_process else None


def is_quantized(model: str) -> bool | None:
    """Whether the checkpoint `model` (a local directory or a Hub id) says it is quantized; None
    when its config.json cannot be read (a Hub model not in the local cache)."""
    config_path = Path(model) / "config.json"
    if not config_path.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(model, "config.json")
        except ValueError:  # not a Hub id either (huggingface_hub's HFValidationError)
            return None
        if not isinstance(cached, str):
            return None
        config_path = Path(cached)
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return isinstance(config, dict) and bool(config.get("quantization_config"))


def keep_out_unused(model: str, engine: str) -> list[str]:
    """Keep the packages that decoding `model` with `engine` never uses out of this process (see
    the module's docstring); the names kept out ([] when not the command's own process)."""
    if not _own_process or engine not in TRIMMED_ENGINES:
        return []
    if "transformers" in sys.modules or "peft" in sys.modules:
        # Their availability checks may have run: a package kept out now could break them.
        return []
    names = list(UNUSED)
    if is_quantized(model) is False:
        names += UNUSED_UNLESS_QUANTIZED
    kept_out = []
    for name in names:
        if name not in sys.modules:  # one already imported (or already kept out) stays as is
            sys.modules[name] = None  # type: ignore[assignment]
            kept_out.append(name)
    _kept_out.extend(kept_out)
    return kept_out


def kept_out_packages() -> list[str]:
    """Every package keep_out_unused has kept out of this process."""
    return list(_kept_out)


def import_decoding_stack(adapter: bool, model: bool = True) -> None:
    """Import what loading and decoding import anyway (torch, transformers' tokenizer and, with
    `model`, model classes, peft for an adapter) in one place, so that a command's phases show
    the imports apart."""
    import torch  # noqa: F401
    from transformers import AutoTokenizer  # noqa: F401

    if model:
        from transformers import AutoModelForCausalLM  # noqa: F401
    if adapter:
        import peft  # noqa: F401
