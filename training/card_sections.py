"""The model card's Markdown sections, each from what the run left on disk: hyperparameters,
timing, hardware, results, usage, tasks and data. training/model_card.py assembles them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from preprocessing.task import TASKS, answer_cue, instruction
from training.recipes import TINY_RECIPE
from training.run_record import local_path

# config.yml keys shown in the hyperparameter table, in this order, when set.
HYPERPARAMETERS = (
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
EXAMPLE_ABSTRACT = (
    "Two patients developed acute renal failure after treatment with cisplatin; "
    "renal function recovered after the drug was withdrawn."
)


def is_hub_id(model: str) -> bool:
    """True for 'owner/name' ids; a path that exists locally (the tiny model) is not one."""
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", model)) and not local_path(model).exists()


def hyperparameter_table(config: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    rows = [
        f"| `{key}` | `{shown(config[key])}` |"
        for key in HYPERPARAMETERS
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


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def hardware_line(hardware: Any) -> str:
    """run.json's hardware record (training/hardware.py) in one line."""
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


def results_section(metrics: dict | None, base: dict | None, recipe: str) -> str:
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
    if recipe == TINY_RECIPE:
        text += (
            "\n**These numbers come from a tiny randomly initialised model trained for a "
            "few steps on CPU: they only show that the pipeline runs and mean nothing "
            "about extraction quality.**\n"
        )
    return text


def usage_snippet(run: dict, config: dict, run_dir: Path) -> str:
    base_model = str(run.get("base_model") or config.get("base_model"))
    if not is_hub_id(base_model):
        base_model = str(local_path(base_model).resolve())  # a local model: runnable from any cwd
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

abstract = {EXAMPLE_ABSTRACT!r}
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


def task_table() -> str:
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


def is_sample(manifest: dict | None) -> bool:
    return bool(manifest) and "data/sample/" in str(manifest.get("input", {}).get("path", ""))


def data_section(manifest: dict | None) -> str:
    if is_sample(manifest):
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


def use_and_tasks(run: dict, config: dict) -> str:
    """ "Intended use and limitations" and "Tasks and prompt format"."""
    system = run.get("system_prompt")
    system_note = f"System prompt: `{system}`\n" if system else ""
    sequence_len = config.get("sequence_len", "see config.yml")
    return f"""## Intended use and limitations

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

{task_table()}
{system_note}"""


def kept_checkpoint(run: dict[str, Any]) -> str:
    """Which checkpoint the adapter is and why (run.json's "kept_checkpoint")."""
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
