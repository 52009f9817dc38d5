"""bc5cdr.md and the console summary of `python -m eval bc5cdr` (from what bc5cdr.json holds),
and the official scores as a run's report.md, model card and `make compare` show them."""

from __future__ import annotations

from typing import Any

# Where a run's official evaluation lives: `make bc5cdr-eval RUN=runs/<dir>` writes it there.
from training.run_record import OFFICIAL_SUBDIR as RUN_SUBDIR

_WHAT = {
    "relation CID": "chemical-induced disease pairs (MeSH id, MeSH id) per document",
    "id Chemical": "chemical MeSH ids per document",
    "id Disease": "disease MeSH ids per document",
    "mention Chemical": "chemical mention spans (start, end)",
    "mention Disease": "disease mention spans (start, end)",
}


def _cell(score: dict[str, Any]) -> str:
    return f"{score['f1']:.3f} ({score['precision']:.3f} / {score['recall']:.3f})"


def _counts(score: dict[str, Any]) -> str:
    return f"{score['tp']} / {score['fp']} / {score['fn']}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One line per measure: F1 of the predictions and of the ceiling, and the engine."""
    pred, ceiling = result["predictions"], result["ceiling"]
    lines = [f"{'measure':18} {'F1':>6} {'ceiling':>8}   engine: {pred['engine']}"]
    for name in result["measures_order"]:
        lines.append(
            f"{name:18} {pred['measures'][name]['f1']:6.3f} {ceiling['measures'][name]['f1']:8.3f}"
        )
    docs = result["documents"]
    lines.append(
        f"{docs['scored_documents']} of {docs['gold_documents']} gold documents scored; "
        f"{docs['rows_matched']} of {docs['rows']} rows matched"
    )
    return lines


def _engines(block: dict[str, Any]) -> str:
    if block["jar"] is None:
        return f"Python twin only; the official jar was {block['jar_status']}"
    return "official jar; the Python twin gave the same TP/FP/FN on all five measures"


def render(result: dict[str, Any]) -> str:
    pred, ceiling, docs = result["predictions"], result["ceiling"], result["documents"]
    rows = [
        f"| {name} | {_WHAT[name]} | {_cell(pred['measures'][name])} | "
        f"{_counts(pred['measures'][name])} | {_cell(ceiling['measures'][name])} |"
        for name in result["measures_order"]
    ]
    unmatched = ""
    if docs["rows_unmatched"]:
        unmatched = (
            f" {docs['rows_unmatched']} row(s) had an abstract that is in no gold document and "
            f"were not scored (lines {', '.join(map(str, docs['unmatched_lines']))}"
            f"{', ...' if docs['rows_unmatched'] > len(docs['unmatched_lines']) else ''})."
        )
    lexicon = ", ".join(f"`{source}`" for source in result["lexicon"]["sources"])
    return "\n".join(
        [
            "# BioCreative V CDR: official measures",
            "",
            f"Predictions `{result['predictions_file']}` against gold `{result['gold_file']}`: "
            f"{docs['scored_documents']} of its {docs['gold_documents']} documents have rows "
            f"and are scored; {docs['rows_matched']} of {docs['rows']} rows matched "
            f"(per task: {docs['rows_per_task']}).{unmatched}",
            "",
            "| measure | what is compared | F1 (P / R) | TP / FP / FN | ceiling F1 (P / R) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Scored by: {_engines(pred)}. Ceiling scored by: {_engines(ceiling)}.",
            "",
            f"Grounding lexicon: {lexicon}. The **ceiling** runs the gold completions of the same "
            "rows through the same grounding, export and scoring: the best a perfect extractor "
            "could reach with this lexicon. Names the lexicon cannot ground get id -1 and count "
            "for no id or relation. The recipe's prompts hold the abstract only, while the "
            "official gold also annotates the title: mentions are found in title and abstract, "
            "but a concept named only in the title is out of reach.",
            "",
            f"Time: {result['seconds']['total']} s in all.",
            "",
        ]
    )


# ---- the official scores inside a run's eval outputs ------------------------------------------


def official_section(result: dict[str, Any]) -> list[str]:
    """report.md's section: the five official F1s beside the ceiling."""
    pred, ceiling = result["predictions"], result["ceiling"]
    rows = [
        f"| {name} | {_cell(pred['measures'][name])} | {_counts(pred['measures'][name])} | "
        f"{ceiling['measures'][name]['f1']:.3f} |"
        for name in result["measures_order"]
    ]
    return [
        "## Official BC5CDR measures",
        "",
        f"Against `{result['gold_file']}` ({result['documents']['scored_documents']} documents), "
        f"scored by the {pred['engine']} engine; ceiling = the gold answers through the same "
        f"grounding. Details: `{RUN_SUBDIR}/bc5cdr.md`.",
        "",
        "| measure | F1 (P / R) | TP / FP / FN | ceiling F1 |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
