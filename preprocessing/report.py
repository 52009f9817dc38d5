"""What `prepare` tells a person: the terminal summary, the rejects message and report.md.

Everything is read from the manifest (its splits and finding kinds in order), so this module needs
nothing from prepare itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from preprocessing.task import TASKS

# How many rejects the error message lists one by one; all of them are in rejects.jsonl.
SHOWN_REJECTS = 20


def count_line(manifest: dict[str, Any]) -> str:
    return (
        f"rows in: {manifest['rows_in']} = kept {manifest['rows_kept']} "
        f"+ rejected {manifest['rows_rejected']}"
    )


def reject_lines(rejects: list[dict[str, Any]], out_dir: Path) -> list[str]:
    lines = [f"  line {r['line']}: {r['reason']}" for r in rejects[:SHOWN_REJECTS]]
    if len(rejects) > SHOWN_REJECTS:
        lines.append(f"  ... and {len(rejects) - SHOWN_REJECTS} more")
    lines.append(f"  all rejects: {out_dir / 'rejects.jsonl'}")
    return lines


def summary(manifest: dict[str, Any], out_dir: str | Path) -> str:
    """A few lines for the terminal after a successful run."""
    out = [count_line(manifest)]
    for split in manifest["rows"]:
        rows = manifest["rows"][split]
        by_task = ", ".join(f"{task} {rows[task]}" for task in TASKS)
        out.append(
            f"  {split:<10} {rows['total']:>6} rows ({by_task}), "
            f"{manifest['abstracts'][split]} abstracts"
        )
    overlap = sum(manifest["overlap"].values())
    out.append(f"abstracts shared between splits: {overlap}")
    findings = ", ".join(f"{k} {v}" for k, v in manifest["findings"].items() if v)
    out.append(f"findings: {findings or 'none'}; repairs: {manifest['repairs']}")
    out.append(f"written to {out_dir} (see report.md)")
    return "\n".join(out)


def render_report(manifest: dict[str, Any], rejects: list, findings: list, repairs: list) -> str:
    """report.md: the manifest's figures in a form a person reads in a minute."""
    n_examples = 5
    out = [
        "# Preprocessing report",
        "",
        f"Input: `{manifest['input']['path']}` (sha256 `{manifest['input']['sha256'][:16]}…`), "
        f"seed {manifest['seed']}.",
        "",
        f"**{count_line(manifest)}** ({manifest['blank_lines']} blank lines ignored).",
        "",
        "| split | " + " | ".join(TASKS) + " | rows | abstracts |",
        "|---|" + "---:|" * (len(TASKS) + 2),
    ]
    for split in manifest["rows"]:
        rows = manifest["rows"][split]
        cells = [str(rows[task]) for task in TASKS] + [str(rows["total"])]
        out.append(f"| {split} | " + " | ".join(cells) + f" | {manifest['abstracts'][split]} |")
    out += [
        "",
        f"Split: {manifest.get('split') or '80/10/10 by abstract'} (all tasks of an abstract in "
        "one split), stratified by the abstract's set of tasks. Abstracts shared between splits: "
        + ", ".join(f"{pair} {n}" for pair, n in manifest["overlap"].items())
        + ".",
        "",
        "## Rejected lines",
        "",
    ]
    out += [f"- line {r['line']}: {r['reason']}" for r in rejects[:n_examples]] or ["None."]
    if len(rejects) > n_examples:
        out.append(f"- … {len(rejects) - n_examples} more in `rejects.jsonl`")
    out += ["", "## Data-quality findings (kept rows, before repairs)", ""]
    for kind in manifest["findings"]:
        examples = [f for f in findings if f["kind"] == kind]
        out.append(f"- {kind}: {len(examples)}")
        out += [f"  - line {f['line']} ({f['task']}): {f['detail']}" for f in examples[:3]]
    keep = manifest["keep_none_relations"]
    out += [
        "",
        "## Repairs",
        "",
        (
            "Relation lines with a `None` argument were kept (--keep-none-relations)."
            if keep
            else f"{len(repairs)} relation lines with a `None` argument dropped from targets "
            f"({manifest['targets_emptied_by_repairs']} targets left empty); "
            "each drop is in `repairs.jsonl`."
        ),
        "",
    ]
    return "\n".join(out)


def rejects_message(
    input_path: Path, out_dir: Path, manifest: dict[str, Any], rejects: list[dict[str, Any]]
) -> str:
    return "\n".join(
        [
            f"{input_path}: {len(rejects)} line(s) rejected; {out_dir} now holds only "
            "rejects.jsonl",
            count_line(manifest),
            *reject_lines(rejects, out_dir),
            "Fix those lines, or rerun with --allow-rejects to go on without them.",
        ]
    )
