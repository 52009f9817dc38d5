"""What to decode with: a training run (or a recipe's untuned base model) resolved to its model,
adapter, tokenizer, chat template and system prompt, plus the prompt encoding and stop tokens
that go with them.

A run decodes with exactly what training saw: its own saved tokenizer and chat template, the
system prompt run.json records, and the template's end-of-turn token as a stop.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preprocessing.files import REPO, FileFormatError, load_yaml, read_json
from preprocessing.task import DEFAULT_SYSTEM_PROMPT

# Runs listed when a command is given none.
NEWEST_SHOWN = 5


class RunError(ValueError):
    """A run, model or input that cannot be used; the message is one line saying why."""


@dataclass
class ModelSource:
    """Where a model to decode with comes from."""

    kind: str  # "fine-tuned" (base + adapter), "merged" or "base"
    model: str  # base model id/path, or the merged model's directory
    adapter: str | None  # LoRA adapter directory, None for base and merged
    tokenizer: str  # where the tokenizer (and normally its chat template) is loaded from
    # Base models only: the recipe's (chat_template, chat_template_jinja), resolved by Axolotl.
    chat_template: tuple[str, str | None] | None
    recipe: str | None
    run: str | None


def local_or_hub(name: str) -> str:
    """A relative local path (e.g. models/built/tiny) works from any cwd; else a hub id."""
    for candidate in (Path(name), REPO / name):
        if candidate.exists():
            return str(candidate)
    return name


def run_records(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run.json, config.yml) of a run directory; {} for a file that is not there."""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    info = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    if not isinstance(info, dict):
        raise RunError(f"{run_dir / 'run.json'}: not a JSON object")
    config_path = run_dir / "config.yml"
    try:
        config = load_yaml(config_path) if config_path.exists() else {}
    except FileFormatError as error:
        raise RunError(str(error)) from None
    return info, config


def source_of_run(run_dir: Path, merged: bool = False) -> ModelSource:
    """A training run: its base model plus adapter, or (merged) RUN/merged on its own."""
    info, config = run_records(run_dir)
    base_model = info.get("base_model") or config.get("base_model")
    if not base_model:
        raise RunError(f"{run_dir}: neither run.json nor config.yml names a base_model")
    if merged:
        model_dir = run_dir / "merged"
        if not (model_dir / "config.json").exists():
            raise RunError(f"{model_dir}: no merged model (run `make merge RUN={run_dir}`)")
        model, adapter, kind = str(model_dir), None, "merged"
        tokenizer = str(model_dir if (model_dir / "tokenizer_config.json").exists() else run_dir)
    else:
        if not (run_dir / "adapter_config.json").exists():
            raise RunError(f"{run_dir}: no adapter_config.json (did training finish?)")
        model, adapter, kind = local_or_hub(base_model), str(run_dir), "fine-tuned"
        tokenizer = str(run_dir)
    if not (Path(tokenizer) / "tokenizer_config.json").exists():
        raise RunError(f"{tokenizer}: no saved tokenizer (tokenizer_config.json)")
    return ModelSource(
        kind=kind,
        model=model,
        adapter=adapter,
        tokenizer=tokenizer,
        chat_template=None,  # the saved tokenizer carries the template used in training
        recipe=info.get("recipe"),
        run=str(run_dir),
    )


def recipe_path(recipe: str) -> Path:
    """A recipe name in recipes/ or a path to a .yml."""
    path = Path(recipe)
    if path.suffix not in (".yml", ".yaml"):
        path = Path(local_or_hub(f"recipes/{recipe}.yml"))
    if not path.exists():
        raise RunError(f"{path}: no such recipe")
    return path


def recipe_config(recipe: str) -> tuple[Path, dict[str, Any]]:
    """(path, config) of a recipe that names a base_model."""
    path = recipe_path(recipe)
    try:
        config = load_yaml(path)
    except FileFormatError as error:
        raise RunError(str(error)) from None
    if not config.get("base_model"):
        raise RunError(f"{path}: no base_model")
    return path, config


def recipe_base_model(recipe: str) -> str:
    """The base model (local path or Hub id) a recipe trains, without Axolotl's imports."""
    return local_or_hub(recipe_config(recipe)[1]["base_model"])


def source_of_recipe(recipe: str) -> ModelSource:
    """The untuned base model of a recipe, with the chat template the recipe trains with."""
    path, config = recipe_config(recipe)
    return ModelSource(
        kind="base",
        model=local_or_hub(config["base_model"]),
        adapter=None,
        tokenizer=local_or_hub(config.get("tokenizer_config") or config["base_model"]),
        chat_template=_recipe_chat_template(config),
        recipe=path.stem,
        run=None,
    )


def _recipe_chat_template(config: dict) -> tuple[str, str | None]:
    """The recipe's chat template choice as Axolotl reads it (dataset entry, else top level)."""
    from axolotl.utils.chat_templates import extract_chat_template_args

    datasets = config.get("datasets") or []
    dataset = datasets[0] if datasets and isinstance(datasets[0], dict) else None
    return extract_chat_template_args(config, dataset)


def system_prompt_of(run_dir: Path) -> str | None:
    """The system prompt training used (run.json; None: the template had none); the default
    prompt for runs that predate the record."""
    info, _ = run_records(run_dir)
    return info.get("system_prompt", DEFAULT_SYSTEM_PROMPT)


# ---- which run? -------------------------------------------------------------------------------
# `make eval` / `extract` / `serve` without RUN= (and the CLIs without --run) say what to pass and
# list the newest runs, so the fix can be copied, instead of argparse's "expected one argument".


def add_run_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    """--run RUNDIR; a bare --run (make's `--run $(RUN)` with RUN unset) reads as no run."""
    parser.add_argument(
        "--run", type=Path, nargs="?", const=None, help="run directory runs/<recipe>-<stamp>"
    )


def newest_runs(runs_dir: Path, count: int = NEWEST_SHOWN) -> list[Path]:
    """Run directories (they hold run.json), newest first."""
    if not runs_dir.is_dir():
        return []
    runs = [path.parent for path in runs_dir.glob("*/run.json")]
    return sorted(runs, key=lambda path: path.stat().st_mtime, reverse=True)[:count]


def no_run_message(make_target: str, runs_dir: Path = Path("runs")) -> str:
    """The lines to print when no run was given."""
    lines = [
        f"error: which run? pass RUN=runs/<dir> (make {make_target} RUN=runs/<dir>) "
        "or --run runs/<dir>"
    ]
    runs = newest_runs(runs_dir)
    if runs:
        lines.append(f"newest runs in {runs_dir}/:")
        lines += [f"  make {make_target} RUN={run.as_posix()}" for run in runs]
    else:
        lines.append(f"no runs in {runs_dir}/ yet: train one first (make train, or make demo)")
    return "\n".join(lines)


# ---- tokenizer, prompts, stop tokens ---------------------------------------------------------


def load_tokenizer(source: ModelSource) -> Any:
    """The source's tokenizer with the chat template training used; left padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer)
    if source.chat_template is not None:
        # Axolotl's own resolution ("llama3", "chatml", "tokenizer_default", "jinja", ...), so
        # a base model renders prompts exactly as training with this recipe would.
        from axolotl.utils.chat_templates import get_chat_template

        choice, jinja = source.chat_template
        try:
            tokenizer.chat_template = get_chat_template(choice, jinja, tokenizer)
        except ValueError as error:
            raise RunError(f"chat_template {choice!r}: {error}") from None
    if not tokenizer.chat_template:
        raise RunError(f"{source.tokenizer}: the tokenizer has no chat template")
    tokenizer.padding_side = "left"
    return tokenizer


def encode_chats(tokenizer: Any, chats: list[list[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each chat (no answer turn) plus the assistant header."""
    texts = [
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        for chat in chats
    ]
    if not texts:
        return []
    # The template already wrote the BOS token; the tokenizer must not add a second one. One
    # call for all texts: the same ids as one call each, in half the time (300 test rows).
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_prompts(tokenizer: Any, rows: list[dict]) -> list[list[int]]:
    """Token ids of each row's chat without its answer (the last turn), plus the assistant
    header: exactly the tokens that preceded the answer in training."""
    return encode_chats(tokenizer, [row["messages"][:-1] for row in rows])


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """EOS ids of tokenizer and model, plus the token the chat template ends a turn with.

    The end-of-turn token is found by rendering a short chat and looking at what the template
    writes right after the assistant's words (<|eot_id|> for Llama-3, <|im_end|> for ChatML...).
    """
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    model_eos = getattr(generation_config, "eos_token_id", None)
    if model_eos is not None:
        ids.update([model_eos] if isinstance(model_eos, int) else model_eos)
    marker = "Marker4417"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}],
            tokenize=False,
        )
    except Exception as error:  # noqa: BLE001 - a template may reject this minimal chat
        print(
            f"warning: could not render a chat to find the end-of-turn token: {error}",
            file=sys.stderr,
        )
        return sorted(ids)
    if marker not in text:  # the template dropped the assistant's words: nothing to learn
        return sorted(ids)
    tail = tokenizer(text.split(marker, 1)[1], add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    if tail and tail[0] in special:
        ids.add(tail[0])
    if not ids:
        raise RunError("the tokenizer has no EOS and its chat template no end-of-turn token")
    return sorted(ids)
