"""Write a run's model card (RUNDIR/README.md); --push also uploads it to the run's hub repo.

The card is built from what the run directory holds (run.json, config.yml, eval/metrics.json,
eval/bc5cdr/bc5cdr.json and runs/<recipe>-base/eval/metrics.json when they exist; see
training/run_record.py), so it can be regenerated at any time: at the end of training, and again
whenever eval writes new results. The Hub metadata (licence, tags, model-index) is built with
huggingface_hub's ModelCardData and EvalResult, so the Hub reads back exactly our numbers.

    python -m training card runs/<dir> [--push]
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

from preprocessing.files import atomic_write_text
from preprocessing.task import TASKS
from training import card_sections as sections
from training import run_record

LOG = logging.getLogger(__name__)
CARD_FILE = "README.md"
TAGS = [
    "axolotl", "peft", "biomedical", "named-entity-recognition", "relation-extraction", "bc5cdr",
    "chemical-disease-relation",
]  # fmt: skip
# Licence of known base models (Hub licence identifiers), first match wins. Qwen2.5 3B and 72B
# are not Apache-2.0 (qwen-research / qwen licences), the other Qwen2.5 sizes are.
LICENSES: list[tuple[str, str, str | None]] = [
    (r"llama-?3\.3", "llama3.3", None),
    (r"llama-?3\.2", "llama3.2", None),
    (r"llama-?3\.1", "llama3.1", None),
    (r"llama-?3", "llama3", None),
    (r"mistral-7b|mistral-nemo|mixtral", "apache-2.0", None),
    (r"phi-3|phi-4", "mit", None),
    (r"qwen2\.5-3b", "other", "qwen-research"),
    (r"qwen2\.5-72b", "other", "qwen"),
    (r"qwen2\.5", "apache-2.0", None),
    (r"gemma", "gemma", None),
]


def license_of(base_model: str) -> tuple[str, str | None]:
    """(Hub licence id, licence_name for 'other') of a base model; local models are unknown."""
    name = base_model.lower()
    for pattern, license_id, license_name in LICENSES:
        if re.search(pattern, name):
            return license_id, license_name
    return "other", "unknown"


def recipe_metric_entries(metrics: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(type, name, value): per-task F1, micro P/R/F1 and macro F1, strict and normalized."""
    entries = []
    for mode in ("strict", "normalized"):
        block = metrics[mode]
        for task in TASKS:
            entries.append(("f1", f"{task} F1 ({mode})", block["per_task"][task]["f1"]))
        for stat in ("precision", "recall", "f1"):
            entries.append((stat, f"micro {stat} ({mode})", block["micro"][stat]))
        entries.append(("f1", f"macro F1 ({mode})", block["macro_f1"]))
    return entries


def official_metric_entries(official: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(type, name, value): precision, recall and F1 of each official BC5CDR measure."""
    return [
        (stat, f"{name} {stat} (official)", score[stat])
        for name, score in official["predictions"]["measures"].items()
        for stat in ("precision", "recall", "f1")
    ]


def eval_results(
    metrics: dict[str, Any], official: dict[str, Any] | None, sample: bool
) -> list[Any]:
    """The model-index as EvalResults: the recipe's own scores, then the official kit's."""
    from huggingface_hub import EvalResult

    dataset = "synthetic sample in BC5CDR format" if sample else "BC5CDR-derived instructions"
    results = [
        EvalResult(
            task_type="text-generation",  # a generative adapter, scored as NER
            task_name="Chemical, disease and chemical-disease relation extraction",
            dataset_type="bc5cdr",
            dataset_name=dataset,
            dataset_split="test",
            metric_type=kind,
            metric_name=name,
            metric_value=value,
        )  # fmt: skip
        for kind, name, value in recipe_metric_entries(metrics)
    ]
    if official is not None:
        results += [
            EvalResult(
                task_type="token-classification",
                task_name="BioCreative V CDR",
                dataset_type="bc5cdr",
                dataset_split="test",
                dataset_name=f"BC5CDR, official evaluation against {official['gold_file']}",
                metric_type=kind,
                metric_name=name,
                metric_value=value,
            )  # fmt: skip
            for kind, name, value in official_metric_entries(official)
        ]
    return results


def card_data(
    run: dict, config: dict, run_dir: Path, metrics: dict | None, manifest: dict | None
) -> Any:
    """The card's Hub metadata (huggingface_hub.ModelCardData)."""
    from huggingface_hub import ModelCardData

    base_model = str(run.get("base_model") or config.get("base_model") or "unknown")
    license_id, license_name = license_of(base_model)
    results = None
    if metrics is not None:
        official = run_record.read_official(run_dir / run_record.EVAL_DIR)
        results = eval_results(metrics, official, sections.is_sample(manifest))
    return ModelCardData(
        base_model=base_model if sections.is_hub_id(base_model) else None,
        license=license_id,
        license_name=license_name,
        library_name="peft",
        pipeline_tag="text-generation",
        tags=TAGS[:2] + [config.get("adapter") or "lora"] + TAGS[2:],
        language=["en"],
        model_name=run.get("hub_repo") or run_dir.name,
        eval_results=results,
    )


def card_metadata(
    run: dict, config: dict, run_dir: Path, metrics: dict | None, manifest: dict | None
) -> dict[str, Any]:
    """The card's YAML header as a dict (what the Hub reads)."""
    return card_data(run, config, run_dir, metrics, manifest).to_dict()


def _comparable_base(run_dir: Path, recipe: str, metrics: dict | None) -> dict | None:
    base = run_record.base_eval_metrics(run_dir, recipe)
    if base is not None and metrics is not None and not run_record.same_test(metrics, base):
        return None  # scored on another test file or rows: not comparable
    return base


def _manifest(run: dict) -> dict[str, Any] | None:
    processed = run.get("processed_dir") or run.get("processed")
    if not processed:
        return None
    return run_record.json_or_none(run_record.local_path(processed) / "manifest.json")


def render_model_card(run_dir: str | Path) -> str:
    """The card's text (YAML header + Markdown) for a run directory."""
    from huggingface_hub import ModelCard

    run_dir = Path(run_dir)
    run, config = run_record.read_record(run_dir), run_record.read_config(run_dir)
    recipe = run_record.recipe_of(run, run_dir)
    metrics = run_record.eval_metrics(run_dir)
    manifest = _manifest(run)
    data = card_data(run, config, run_dir, metrics, manifest)
    body = _body(run, config, run_dir, recipe, metrics, manifest)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def _body(run, config, run_dir: Path, recipe: str, metrics, manifest) -> str:
    base_model = str(run.get("base_model") or config.get("base_model"))
    license_id, license_name = license_of(base_model)
    licence_note = (
        f"`{license_id}`"
        if license_name is None
        else f"`{license_name}` (check the base model's own licence before use)"
    )
    base_shown = (
        f"[`{base_model}`](https://huggingface.co/{base_model})"
        if sections.is_hub_id(base_model)
        else f"`{base_model}` (a local model)"
    )
    adapter_name = {"qlora": "QLoRA", "lora": "LoRA"}.get(config.get("adapter"), "LoRA")
    base = _comparable_base(run_dir, recipe, metrics)
    return f"""
# {run_dir.name}

A {adapter_name} adapter for {base_shown} that
extracts **chemicals**, **diseases** and **chemical → disease relations** from biomedical
abstracts. Trained with [Axolotl](https://github.com/axolotl-ai-cloud/axolotl), recipe
`{recipe}`. The adapter inherits the base model's licence: {licence_note}.

{sections.use_and_tasks(run, config)}
## Usage

{sections.usage_snippet(run, config, run_dir)}
Or, from a checkout of the training repository: `python -m inference extract --run <run dir>
--input abstract.txt` (all three tasks in one batched call, parsed to JSON), and
`make merge RUN=<run dir>` for a standalone merged model in `merged/` that plain
`transformers` loads without `peft`.

## Results

{sections.results_section(metrics, base, recipe)}
## Training data

{sections.data_section(manifest)}
## Training procedure

Key hyperparameters (the full resolved Axolotl config is `config.yml` in the run directory):

{sections.hyperparameter_table(config)}
- Training time: {sections.duration(run.get("train_seconds"))}
- Checkpoint kept as this adapter: {sections.kept_checkpoint(run)}
- Hardware: {sections.hardware_line(run.get("hardware"))}
- Started: {run.get("started", "unknown")}; finished: {run.get("finished", "unknown")}
"""


def write_model_card(run_dir: str | Path) -> Path:
    """Write (or rewrite) RUNDIR/README.md atomically and return its path."""
    return atomic_write_text(Path(run_dir) / CARD_FILE, render_model_card(run_dir))


def push_model_card(run_dir: str | Path) -> bool:
    """Upload RUNDIR/README.md to run.json's hub_repo; False (with a warning) when not pushed.

    Hub pushes are on when run.json names a hub_repo and a token is available (HF_TOKEN or a
    logged-in huggingface-hub). Offline or refused uploads warn and never raise; the token is
    never printed.
    """
    run_dir = Path(run_dir)
    repo = run_record.read_record(run_dir).get("hub_repo")
    card = run_dir / CARD_FILE
    if not repo:
        return False
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        LOG.warning("model card not pushed to %s: no Hugging Face token", repo)
        return False
    if not card.is_file():
        write_model_card(run_dir)
    try:
        HfApi(token=token).upload_file(
            path_or_fileobj=str(card),
            path_in_repo=CARD_FILE,
            repo_id=repo,
            repo_type="model",
            commit_message="Update model card",
        )
    except Exception as error:  # noqa: BLE001 - offline, refused, rate-limited: all just warn
        message = str(error).replace(token, "***")
        first = message.splitlines()[0] if message else ""
        LOG.warning("model card not pushed to %s (%s): %s; it stays at %s", repo,
                    type(error).__name__, first, card)  # fmt: skip
        return False
    return True


def refresh_model_card(run_dir: str | Path) -> Path | None:
    """Rewrite the card and push it when hub pushes are on; warns, never raises (what the card
    describes is already on disk). The card's path, or None when it could not be written."""
    import sys

    try:
        card = write_model_card(run_dir)
        print(f"model card: {card}", file=sys.stderr)
        push_model_card(run_dir)
        return card
    except Exception as error:  # noqa: BLE001 - see docstring
        print(f"warning: model card of {run_dir} not updated: {error!r}", file=sys.stderr)
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run directory (runs/<recipe>-<timestamp>)")
    parser.add_argument("--push", action="store_true", help="also upload it to the hub repo")


def run(args: argparse.Namespace) -> int:
    import sys

    try:
        print(f"model card: {write_model_card(args.run)}")
    except (OSError, ValueError) as error:  # no run.json, bad JSON/YAML: one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.push:
        print("pushed" if push_model_card(args.run) else "not pushed")
    return 0
