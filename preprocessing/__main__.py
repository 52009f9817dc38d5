"""python -m preprocessing build-bc5cdr PUBTATOR [PUBTATOR ...] --out FILE
python -m preprocessing prepare INPUT --out DIR [--seed 42] [--allow-rejects] ...
python -m preprocessing prepare-bc5cdr --train PUBTATOR [...] --test PUBTATOR [...] --out DIR"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from preprocessing.bc5cdr import build_file
from preprocessing.errors import PrepareError
from preprocessing.prepare import HOW_TO_GET_DATA, prepare, summary
from preprocessing.task import DEFAULT_SYSTEM_PROMPT

# Exit codes: 1 = the data is bad (rejected lines, malformed PubTator), 2 = input missing / usage.
EXIT_BAD_DATA, EXIT_MISSING = 1, 2


def _build(args: argparse.Namespace) -> int:
    missing = [path for path in args.pubtator if not path.is_file()]
    if missing:
        print(
            f"error: PubTator file(s) not found: {', '.join(map(str, missing))}. The BioCreative V "
            "CDR corpus (CDR_Data/CDR.Corpus.v010516/*.PubTator.txt) comes from BioCreative; "
            "pass CDR_TrainingSet.PubTator.txt then CDR_DevelopmentSet.PubTator.txt.",
            file=sys.stderr,
        )
        return EXIT_MISSING
    try:
        n_rows = build_file(args.pubtator, args.out)
    except ValueError as err:  # names file and line
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(f"wrote {n_rows} rows to {args.out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    try:
        manifest = prepare(
            args.input,
            args.out,
            seed=args.seed,
            allow_rejects=args.allow_rejects,
            system_prompt=args.system_prompt,
            keep_none_relations=args.keep_none_relations,
        )
    except PrepareError as err:  # missing, unusable or bad input: the message says which
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(summary(manifest, args.out))
    if manifest["rows_rejected"]:
        print(
            f"{manifest['rows_rejected']} line(s) rejected (--allow-rejects): "
            f"{Path(args.out) / 'rejects.jsonl'}"
        )
    return 0


def _prepare_comparable(args: argparse.Namespace) -> int:
    from preprocessing.comparable import prepare_comparable

    missing = [path for path in [*args.train, *args.test] if not path.is_file()]
    if missing:
        print(f"error: PubTator file(s) not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return EXIT_MISSING
    try:
        manifest = prepare_comparable(
            args.train,
            args.test,
            args.out,
            seed=args.seed,
            system_prompt=args.system_prompt,
            keep_none_relations=args.keep_none_relations,
        )
    except PrepareError as err:  # missing, unusable or bad input: the message says which
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except ValueError as err:  # malformed PubTator, a document on both sides
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_DATA
    print(summary(manifest, args.out))
    block = manifest["comparable"]
    print(
        f"comparable setting: {block['test_documents']} held-out documents are the test split; "
        f"train + validation come from {block['train_documents']} training documents"
    )
    return 0


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    parser.add_argument(
        "--system-prompt",
        default=DEFAULT_SYSTEM_PROMPT,
        metavar="TEXT",
        help="system turn of every chat row ('' for none); default: the seed's prompt",
    )
    parser.add_argument(
        "--keep-none-relations",
        action="store_true",
        help="keep relation lines with a None argument in the targets (dropped by default)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocessing",
        description="Build the instruction JSONL from BC5CDR, or validate and split one.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build-bc5cdr",
        help="build the instruction JSONL from BC5CDR PubTator files (train, then dev)",
    )
    build.add_argument("pubtator", nargs="+", type=Path, metavar="PUBTATOR")
    build.add_argument("--out", type=Path, required=True, metavar="FILE")
    build.set_defaults(run=_build)

    prep = commands.add_parser(
        "prepare",
        help="validate INPUT and split it by abstract into train/validation/test chat JSONL",
        epilog=f"Where to get INPUT: {HOW_TO_GET_DATA}",
    )
    prep.add_argument("input", type=Path, metavar="INPUT")
    prep.add_argument("--out", type=Path, required=True, metavar="DIR")
    prep.add_argument(
        "--allow-rejects",
        action="store_true",
        help="finish even if lines are rejected (they still go to DIR/rejects.jsonl)",
    )
    _common_options(prep)
    prep.set_defaults(run=_prepare)

    comparable = commands.add_parser(
        "prepare-bc5cdr",
        help="the comparable setting: train/validation from --train PubTator files, test = "
        "exactly the documents of --test (by PMID); writes the splits to DIR and the rows "
        "beside it (DIR.instructions.jsonl)",
    )
    comparable.add_argument("--train", type=Path, nargs="+", required=True, metavar="PUBTATOR")
    comparable.add_argument("--test", type=Path, nargs="+", required=True, metavar="PUBTATOR")
    comparable.add_argument("--out", type=Path, required=True, metavar="DIR")
    _common_options(comparable)
    comparable.set_defaults(run=_prepare_comparable)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
