"""Official BC5CDR scores of a predictions JSONL (MeSH grounding, PubTator, the kit).

`python -m eval bc5cdr`: the official BioCreative V CDR evaluation of a predictions file.

PREDICTIONS (the eval's JSONL: prompt, completion, prediction) are matched to the documents of
GOLD (a PubTator file) by abstract, grounded to MeSH with a lexicon (PubTator training
annotations, optionally CTD vocabularies), exported as PubTator and scored on the five official
measures (CID relations; chemical and disease ids per document; chemical and disease mention
spans) by the official jar when Java and the kit are there, and always by its Python twin
(eval/official.py), which must agree with it exactly. The gold completions of the same rows go
through the same grounding and scoring: the ceiling, the best a perfect extractor could reach
with this lexicon.

Writes to DIR: predictions.PubTator.txt, ceiling.PubTator.txt, gold.PubTator.txt (the gold
documents that have rows), bc5cdr.json, bc5cdr.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from eval.bc5cdr_report import RUN_SUBDIR
from eval.official import MEASURES, OfficialError, measure_name
from preprocessing.files import REPO

# Where the README asks users to put the BioCreative V CDR files (data/ is never committed).
DEFAULT_KIT = REPO / "data" / "bc5cdr" / "BC5CDR_Evaluation-0.0.3.zip"
OUTPUTS = ("predictions", "ceiling")  # what is scored: the model's answers, the gold answers


class DisagreementError(RuntimeError):
    """The jar and the Python twin counted differently: a bug to fix, never to average away."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", type=Path, help="JSONL with prompt, completion, prediction")
    parser.add_argument(
        "--pubtator",
        type=Path,
        required=True,
        metavar="GOLD",
        help="the gold PubTator file of the evaluated abstracts",
    )
    parser.add_argument(
        "--lexicon-from",
        type=Path,
        nargs="+",
        required=True,
        metavar="TRAIN",
        help="PubTator file(s) whose annotations make the grounding lexicon",
    )
    parser.add_argument("--ctd-chemicals", type=Path, metavar="F", help="CTD_chemicals.tsv")
    parser.add_argument("--ctd-diseases", type=Path, metavar="F", help="CTD_diseases.tsv")
    parser.add_argument(
        "--kit",
        type=Path,
        default=DEFAULT_KIT,
        help=f"the official kit's zip (default: {DEFAULT_KIT})",
    )
    parser.add_argument("--no-jar", action="store_true", help="score with the Python twin only")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")


def _jar_or_reason(args: argparse.Namespace, gold: Path, exported: list[Path]) -> tuple:
    """(the jar's scores per file or None, what happened): a missing Java or kit is reported in
    the results, not fatal; a jar that fails is."""
    from eval.official import jar_scores

    if args.no_jar:
        return None, "not run (--no-jar)"
    try:
        return jar_scores(args.kit, gold, exported, cache=args.out / ".kit"), "ran"
    except OfficialError as error:
        if "java not found" in str(error) or "is not there" in str(error):
            return None, f"not run: {error}"
        raise


def _counts(scores: dict[str, dict]) -> dict[str, tuple[int, int, int]]:
    return {name: (s["tp"], s["fp"], s["fn"]) for name, s in scores.items()}


def combine(exported: Path, python: dict, jar: dict | None, status: str) -> dict[str, Any]:
    """One file's scores by both engines; raises DisagreementError when their counts differ."""
    if jar is not None and _counts(jar) != _counts(python):
        differing = [n for n in python if _counts(python)[n] != _counts(jar)[n]]
        raise DisagreementError(
            f"{exported}: the jar and the Python twin disagree on {', '.join(differing)}: "
            f"jar {[_counts(jar)[n] for n in differing]}, python "
            f"{[_counts(python)[n] for n in differing]}"
        )
    return {
        "engine": "jar" if jar is not None else "python",
        "measures": jar if jar is not None else python,
        "python": python,
        "jar": jar,
        "jar_status": status,
        "engines_agree": None if jar is None else True,
    }


def score_files(args: argparse.Namespace, gold: Path, exported: list[Path]) -> list[dict]:
    """Both engines on each exported file; the jar runs in the background meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from eval.official import python_scores

    with ThreadPoolExecutor(max_workers=1) as background:
        jar_job = background.submit(_jar_or_reason, args, gold, exported)
        python = [python_scores(gold, path) for path in exported]
        jar, status = jar_job.result()
    return [
        combine(path, twin, None if jar is None else jar[i], status)
        for i, (path, twin) in enumerate(zip(exported, python, strict=True))
    ]


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """The whole evaluation; returns what bc5cdr.json holds."""
    from eval.bc5cdr_export import export
    from eval.bc5cdr_match import gold_subset, match_rows
    from eval.bc5cdr_report import render
    from eval.ground import read_lexicon
    from preprocessing.bc5cdr import read_pubtator
    from preprocessing.files import atomic_write_text

    started = time.perf_counter()
    docs = read_pubtator(args.pubtator)
    matched = match_rows(args.predictions, docs)
    lexicon = read_lexicon(args.lexicon_from, args.ctd_chemicals, args.ctd_diseases)
    loaded = time.perf_counter()
    gold = atomic_write_text(args.out / "gold.PubTator.txt", gold_subset(args.pubtator, matched))
    result: dict[str, Any] = {
        "predictions_file": str(args.predictions),
        "gold_file": str(args.pubtator),
        "lexicon": {"sources": lexicon.sources, "surface_forms": lexicon.entries()},
        "documents": matched.summary(len(docs)),
        "measures_order": [measure_name(e, c) for e, c in MEASURES],
    }
    exported = [
        atomic_write_text(
            args.out / f"{output}.PubTator.txt", export(docs, getattr(matched, output), lexicon)
        )
        for output in OUTPUTS
    ]
    exported_at = time.perf_counter()
    result.update(zip(OUTPUTS, score_files(args, gold, exported), strict=True))
    result["seconds"] = {
        "read_and_lexicon": round(loaded - started, 2),
        "ground_and_export": round(exported_at - loaded, 2),
        "total": round(time.perf_counter() - started, 2),
    }
    atomic_write_text(args.out / "bc5cdr.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out / "bc5cdr.md", render(result))
    _refresh_run(args.out)
    return result


def _refresh_run(out: Path) -> None:
    """Written into a run's eval/bc5cdr: rewrite its report.md, plot and model card with it.
    The official results are on disk already, so a failing refresh only warns."""
    eval_dir = out.resolve().parent
    if out.name != RUN_SUBDIR or eval_dir.name != "eval":
        return
    if not (eval_dir / "metrics.json").is_file():
        return
    try:
        from eval.outputs import refresh_outputs

        refresh_outputs(eval_dir.parent)
    except Exception as error:  # noqa: BLE001 - see docstring
        print(f"warning: {eval_dir} report not refreshed: {error!r}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from eval.bc5cdr_report import summary_lines
    from eval.ctd import CTDError
    from eval.score import InputError

    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    try:
        result = evaluate(args)
    except (InputError, CTDError, OfficialError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DisagreementError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(result)))
    print(f"wrote {args.out / 'bc5cdr.json'} and {args.out / 'bc5cdr.md'}")
    return 0
