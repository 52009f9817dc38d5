"""The model card: RUNDIR/README.md with Hub metadata, hyperparameters, timing and eval results.

`write_model_card(run_dir)` builds it from what the run left on disk (run.json, config.yml,
eval/metrics.json and runs/<recipe>-base/eval/metrics.json when they exist), so it can be
regenerated at any time: at the end of training, and again when eval finishes.
`push_model_card(run_dir)` uploads it to the run's hub repo when hub pushes are on.

    python -m eval.model_card runs/<dir> [--push]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from eval.bc5cdr_report import model_index_metrics, read_official
from eval.report import same_test
from preprocessing.task import TASKS, answer_cue, instruction

LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]

# Licence of known base models (Hub licence identifiers), first match wins. Qwen2.5 3B and 72B
# are not Apache-2.0 (qwen-research / qwen licences), the other Qwen2.5 sizes are.
_LICENSES: list[tuple[str, str, str | None]] = [
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

# config.yml keys shown in the hyperparameter table, in this order, when set.
_HYPERPARAMETERS = (
    "adapter",
    "load_in_4bit",
    "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lora_target_linear",
    "sequence_len",
    "sample_packing",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "num_epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_ratio",
    "warmup_steps",
    "weight_decay",
    "optimizer",
    "bf16",
    "fp16",
    "gradient_checkpointing",
    "chat_template",
    "seed",
)

# Tiny stand-in abstract for the usage snippet (our own sentence, not corpus text).
_EXAMPLE_ABSTRACT = (
    "Two patients developed acute renal failure after treatment with cisplatin; "
    "renal function recovered after the drug was withdrawn."
)


def license_of(base_model: str) -> tuple[str, str | None]:
    """(Hub licence id, licence_name for 'other') of a base model; local models are unknown."""
    name = base_model.lower()
    for pattern, license_id, license_name in _LICENSES:
        if re.search(pattern, name):
            return license_id, license_name
    return "other", "unknown"


def _local(name: str) -> Path:
    """run.json's paths are repo-relative (training/train.py); absolute ones stay as they are."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else ROOT / path


def is_hub_id(model: str) -> bool:
    """True for 'owner/name' ids; a path that exists locally (the tiny model) is not one."""
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", model)) and not _local(model).exists()


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error


def _load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    run = _read_json(run_dir / "run.json")
    if run is None:
        raise FileNotFoundError(f"{run_dir / 'run.json'}: missing; is {run_dir} a run directory?")
    config_path = run_dir / "config.yml"
    if not config_path.is_file():
        return run, {}
    return run, yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}


def _recipe(run: dict[str, Any], run_dir: Path) -> str:
    # Run dirs are named <recipe>-<YYYYMMDD_HHMMSS>; run.json says it directly when it can.
    return run.get("recipe") or re.sub(r"-\d{8}_\d{6}$", "", run_dir.name)


def _metric_entries(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """model-index metrics: per-task F1, micro P/R/F1 and macro F1, strict and normalized."""
    entries = []
    for mode in ("strict", "normalized"):
        block = metrics[mode]
        for task in TASKS:
            entries.append(
                {
                    "type": "f1",
                    "name": f"{task} F1 ({mode})",
                    "value": block["per_task"][task]["f1"],
                }
            )
        for stat in ("precision", "recall", "f1"):
            entries.append(
                {"type": stat, "name": f"micro {stat} ({mode})", "value": block["micro"][stat]}
            )
        entries.append({"type": "f1", "name": f"macro F1 ({mode})", "value": block["macro_f1"]})
    return entries


def _metadata(
    run: dict, config: dict, run_dir: Path, metrics: dict | None, manifest: dict | None
) -> dict[str, Any]:
    base_model = str(run.get("base_model") or config.get("base_model") or "unknown")
    license_id, license_name = license_of(base_model)
    adapter = config.get("adapter") or "lora"
    meta: dict[str, Any] = {}
    if is_hub_id(base_model):
        meta["base_model"] = base_model
    meta["license"] = license_id
    if license_name:
        meta["license_name"] = license_name
    meta["library_name"] = "peft"
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = [
        "axolotl",
        "peft",
        adapter,
        "biomedical",
        "named-entity-recognition",
        "relation-extraction",
        "bc5cdr",
        "chemical-disease-relation",
    ]
    meta["language"] = ["en"]
    if metrics is not None:
        meta["model-index"] = [
            {
                "name": run.get("hub_repo") or run_dir.name,
                "results": [
                    {
                        "task": {
                            "type": "text-generation",  # a generative adapter, scored as NER
                            "name": "Chemical, disease and chemical-disease relation extraction",
                        },
                        "dataset": {
                            "type": "bc5cdr",
                            "name": (
                                "synthetic sample in BC5CDR format"
                                if _is_sample(manifest)
                                else "BC5CDR-derived instructions"
                            ),
                            "split": "test",
                        },
                        "metrics": _metric_entries(metrics),
                    }
                ],
            }
        ]
        official = read_official(run_dir / "eval")
        if official is not None:  # the official kit's measures, beside the recipe's own
            meta["model-index"][0]["results"].append(
                {
                    "task": {"type": "token-classification", "name": "BioCreative V CDR"},
                    "dataset": {
                        "type": "bc5cdr",
                        "name": f"BC5CDR, official evaluation against {official['gold_file']}",
                        "split": "test",
                    },
                    "metrics": model_index_metrics(official),
                }
            )
    return meta


def _hyperparameter_table(config: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    rows = [
        f"| `{key}` | `{shown(config[key])}` |"
        for key in _HYPERPARAMETERS
        if config.get(key) is not None
    ]
    if not rows:
        return "No `config.yml` was found in the run directory.\n"
    micro, accumulation = config.get("micro_batch_size"), config.get("gradient_accumulation_steps")
    note = ""
    if isinstance(micro, int) and isinstance(accumulation, int):
        unit = "packed sequences" if config.get("sample_packing") else "examples"
        note = (
            f"\nEach optimizer step: {micro} × {accumulation} {unit} per GPU "
            "(micro-batch × gradient accumulation).\n"
        )
    return "| Setting | Value |\n|---|---|\n" + "\n".join(rows) + "\n" + note


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _hardware(hardware: Any) -> str:
    """run.json's hardware record (training/train.py) in one line."""
    if not isinstance(hardware, dict):
        return str(hardware) if hardware else "unknown"
    gpus = hardware.get("gpu_names") or []
    if gpus:
        names = sorted(set(gpus))
        device = ", ".join(f"{gpus.count(name)} × {name}" for name in names)
    else:
        device = f"CPU only ({hardware.get('cpu_count', '?')} cores)"
    versions = ", ".join(
        f"{key} {hardware[key]}" for key in ("torch", "cuda", "axolotl") if hardware.get(key)
    )
    return device + (f"; {versions}" if versions else "")


def _kept_checkpoint(run: dict[str, Any]) -> str:
    """Which checkpoint the adapter is and why (run.json's "kept_checkpoint", training/train.py)."""
    kept = run.get("kept_checkpoint")
    if not isinstance(kept, dict):
        if run.get("evaluations"):
            return "the last step's weights (no best-checkpoint selection)"
        return "unknown"
    value = kept.get("value")
    shown = f"{value:.4f}" if isinstance(value, int | float) else str(value)
    best = "highest" if kept.get("greater_is_better") else "lowest"
    return (
        f"`{kept.get('checkpoint')}` (step {kept.get('step')}): the {best} "
        f"`{kept.get('metric')}` on the validation rows, {shown}, of "
        f"{kept.get('evaluations')} in-training evaluations (`load_best_model_at_end`)"
    )


def _results_section(metrics: dict | None, base: dict | None, recipe: str) -> str:
    if metrics is None:
        return (
            "Not evaluated yet. Run `make eval RUN=<this run>` (and `make eval-base "
            f"RECIPE={recipe}` for the untuned base); this card is regenerated with the "
            "numbers.\n"
        )
    columns = [
        ("strict", base, "base"),
        ("strict", metrics, "fine-tuned"),
        ("normalized", base, "base"),
        ("normalized", metrics, "fine-tuned"),
    ]
    columns = [column for column in columns if column[1] is not None]
    header = "| Task | " + " | ".join(f"F1 {mode}, {who}" for mode, _, who in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for row in (*TASKS, "micro", "macro"):
        cells = []
        for mode, source, _ in columns:
            block = source[mode]
            value = (
                block["macro_f1"]
                if row == "macro"
                else block["micro"]["f1"]
                if row == "micro"
                else block["per_task"][row]["f1"]
            )
            cells.append(f"{value:.3f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    evaluated = ""
    if metrics.get("rows_evaluated") is not None:
        evaluated = (
            f" Evaluated on {metrics['rows_evaluated']} of "
            f"{metrics.get('rows_in_split', '?')} test rows"
            f"{', backend ' + str(metrics['backend']) if metrics.get('backend') else ''}."
        )
    text = (
        "Entity and relation F1 on the held-out test split (`python -m eval score`: items are "
        "list lines, compared as sets per abstract; *strict* compares stripped strings, "
        "*normalized* also ignores case, Unicode form, dash variants and trailing punctuation). "
        f"Details, format errors and worst examples: `eval/report.md` in the run directory."
        f"{evaluated}\n\n" + "\n".join(lines) + "\n"
    )
    if base is None:
        text += (
            "\nNo base-model evaluation on the same test file and rows "
            f"(`make eval-base RECIPE={recipe}`).\n"
        )
    if recipe == "tiny-cpu":
        text += (
            "\n**These numbers come from a tiny randomly initialised model trained for a "
            "few steps on CPU: they only show that the pipeline runs and mean nothing "
            "about extraction quality.**\n"
        )
    return text


def _usage_snippet(run: dict, config: dict, run_dir: Path) -> str:
    base_model = str(run.get("base_model") or config.get("base_model"))
    if not is_hub_id(base_model):
        base_model = str(_local(base_model).resolve())  # a local model: runnable from any cwd
    adapter = run.get("hub_repo") or str(run_dir.resolve())
    system = run.get("system_prompt")
    system_line = f'    {{"role": "system", "content": {system!r}}},\n' if system else ""
    return f"""```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_id = {base_model!r}
adapter_id = {adapter!r}
tokenizer = AutoTokenizer.from_pretrained(adapter_id)  # carries the chat template used in training
model = AutoModelForCausalLM.from_pretrained(base_id, dtype="auto", device_map="auto")
model = PeftModel.from_pretrained(model, adapter_id).eval()

abstract = {_EXAMPLE_ABSTRACT!r}
# The chemical task; the disease and relation prompts differ as in the task table above.
prompt = {instruction("chemical")!r} + abstract + {answer_cue("chemical")!r}
messages = [
{system_line}    {{"role": "user", "content": prompt}},
]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
).to(model.device)
output = model.generate(**inputs, max_new_tokens=256, do_sample=False)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```
"""


def _task_table() -> str:
    lines = [
        "| Task | Instruction (before the abstract) | Cue (after it) | Answer format |",
        "|---|---|---|---|",
    ]
    formats = {
        "chemical": "`- name` per line",
        "disease": "`- name` per line",
        "relation": "`- Chemical X influences disease Y` per line",
    }
    for task in TASKS:
        lines.append(
            f"| {task} | {instruction(task).strip()!r} | {answer_cue(task).strip()!r} "
            f"| {formats[task]} |"
        )
    return "\n".join(lines) + "\n"


def _manifest(run: dict) -> dict[str, Any] | None:
    processed = run.get("processed_dir") or run.get("processed")
    return _read_json(_local(processed) / "manifest.json") if processed else None


def _is_sample(manifest: dict | None) -> bool:
    return bool(manifest) and "data/sample/" in str(manifest.get("input", {}).get("path", ""))


def _data_section(manifest: dict | None) -> str:
    if _is_sample(manifest):
        text = (
            "The repository's **synthetic sample data** (`data/sample/`: invented abstracts in "
            "BC5CDR's format), not the real corpus: this run only demonstrates the pipeline.\n"
        )
    else:
        text = (
            "Instruction rows derived from BC5CDR (BioCreative V Chemical Disease Relation "
            "corpus: PubMed abstracts annotated with chemicals, diseases and chemical-"
            "induced-disease relations).\n"
        )
    text += (
        "Each abstract yields three rows, one per task; the splits are by abstract, so no "
        "test abstract was seen in training.\n"
    )
    if not manifest or not isinstance(manifest.get("rows"), dict):
        return text
    source = manifest.get("input", {})
    text += (
        f"\nSource file `{source.get('path', '?')}` (sha256 "
        f"`{str(source.get('sha256', '?'))[:16]}…`), prepared by `python -m preprocessing "
        "prepare`:\n\n| split | abstracts | "
        + " | ".join(TASKS)
        + " |\n|---"
        + "|---" * (len(TASKS) + 1)
        + "|\n"
    )
    for split, rows in manifest["rows"].items():
        abstracts = manifest.get("abstracts", {}).get(split, "?")
        text += f"| {split} | {abstracts} | " + " | ".join(str(rows.get(t, "?")) for t in TASKS)
        text += " |\n"
    return text


def render_model_card(run_dir: str | Path) -> str:
    """The card's text (YAML header + Markdown) for a run directory."""
    run_dir = Path(run_dir)
    run, config = _load_run(run_dir)
    recipe = _recipe(run, run_dir)
    metrics = _read_json(run_dir / "eval" / "metrics.json")
    manifest = _manifest(run)
    base = _read_json(run_dir.parent / f"{recipe}-base" / "eval" / "metrics.json")
    if base is not None and metrics is not None and not same_test(metrics, base):
        base = None  # scored on another test file or rows: not comparable
    base_model = str(run.get("base_model") or config.get("base_model"))
    license_id, license_name = license_of(base_model)
    header = yaml.safe_dump(
        _metadata(run, config, run_dir, metrics, manifest), sort_keys=False, allow_unicode=True
    )
    licence_note = (
        f"`{license_id}`"
        if license_name is None
        else f"`{license_name}` (check the base model's own licence before use)"
    )
    base_shown = (
        f"[`{base_model}`](https://huggingface.co/{base_model})"
        if is_hub_id(base_model)
        else f"`{base_model}` (a local model)"
    )
    system = run.get("system_prompt")
    system_note = f"System prompt: `{system}`\n" if system else ""
    sequence_len = config.get("sequence_len", "see config.yml")
    adapter_name = {"qlora": "QLoRA", "lora": "LoRA"}.get(config.get("adapter"), "LoRA")
    return f"""---
{header}---

# {run_dir.name}

A {adapter_name} adapter for {base_shown} that
extracts **chemicals**, **diseases** and **chemical → disease relations** from biomedical
abstracts. Trained with [Axolotl](https://github.com/axolotl-ai-cloud/axolotl), recipe
`{recipe}`. The adapter inherits the base model's licence: {licence_note}.

## Intended use and limitations

- For research on biomedical information extraction: literature triage, curation support,
  benchmarking. **Not for clinical decisions** or any use where a missed or invented
  chemical, disease or relation could harm a patient.
- It extracts only what an abstract says, in the style of BC5CDR annotations (chemical-induced
  disease relations at document level); it does not judge whether a claim is true.
- Outputs can miss entities, invent them, or break the answer format; check them against the
  text. Scores below are on BC5CDR-style abstracts and will not transfer unchanged to other text.
- English PubMed abstracts only. Training examples were at most `{sequence_len}` tokens
  (prompt + answer); much longer inputs are outside what it was trained on.

## Tasks and prompt format

Each abstract is asked three times, once per task, as the user turn of the base model's chat
template{" with the system prompt below" if system else ""}:

{_task_table()}
{system_note}
## Usage

{_usage_snippet(run, config, run_dir)}
Or, from a checkout of the training repository: `python -m eval extract --run <run dir>
--text abstract.txt --json` (all three tasks in one batched call, parsed to JSON), and
`make merge RUN=<run dir>` for a standalone merged model in `merged/` that plain
`transformers` loads without `peft`.

## Results

{_results_section(metrics, base, recipe)}
## Training data

{_data_section(manifest)}
## Training procedure

Key hyperparameters (the full resolved Axolotl config is `config.yml` in the run directory):

{_hyperparameter_table(config)}
- Training time: {_duration(run.get("train_seconds"))}
- Checkpoint kept as this adapter: {_kept_checkpoint(run)}
- Hardware: {_hardware(run.get("hardware"))}
- Started: {run.get("started", "unknown")}; finished: {run.get("finished", "unknown")}
"""


def write_model_card(run_dir: str | Path) -> Path:
    """Write (or rewrite) RUNDIR/README.md and return its path."""
    path = Path(run_dir) / "README.md"
    path.write_text(render_model_card(run_dir), encoding="utf-8")
    return path


def push_model_card(run_dir: str | Path) -> bool:
    """Upload RUNDIR/README.md to run.json's hub_repo; False (with a warning) when not pushed.

    Hub pushes are on when run.json names a hub_repo and a token is available (HF_TOKEN or a
    logged-in huggingface-hub). Offline or refused uploads warn and never raise; the token is
    never printed.
    """
    run_dir = Path(run_dir)
    run, _ = _load_run(run_dir)
    repo = run.get("hub_repo")
    card = run_dir / "README.md"
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
            path_in_repo="README.md",
            repo_id=repo,
            repo_type="model",
            commit_message="Update model card",
        )
    except Exception as error:  # noqa: BLE001 - offline, refused, rate-limited: all just warn
        message = str(error).replace(token, "***")
        LOG.warning(
            "model card not pushed to %s (%s): %s; it stays at %s",
            repo,
            type(error).__name__,
            message.splitlines()[0] if message else "",
            card,
        )
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.model_card", description=__doc__)
    parser.add_argument("run", type=Path, help="run directory (runs/<recipe>-<timestamp>)")
    parser.add_argument("--push", action="store_true", help="also upload it to the hub repo")
    args = parser.parse_args(argv)
    print(f"model card: {write_model_card(args.run)}")
    if args.push:
        print("pushed" if push_model_card(args.run) else "not pushed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
