"""Extract chemicals, diseases and relations from abstracts with a run: one abstract or a corpus.

    python -m inference extract --run runs/<dir> --input FILE|DIR|- [--out OUT.jsonl]

Input (inference.inputs): JSONL {"id", "text"} or {"id", "title", "abstract"} (prompts use the
abstract only, as in training), a folder of .txt files (id = file name), PubTator (id = PMID,
the |a| line), or one plain-text abstract (a file, or stdin with '-').

Without --out: stdout is only JSON, the list of results
[{"id", "chemicals", "diseases", "relations", "format_errors"}, ...]; progress goes to stderr.
With --out: one such JSON line per abstract, appended as each abstract's answers are done (in
the order they finish; on disk at least once a second). A rerun skips the ids already in OUT, so
a killed run continues where it stopped: a line torn by the kill is dropped and redone (no
abstract twice, none lost). Abstracts go to the model --chunk-size at a time; within a chunk,
rows that finish free their place for waiting ones (the engine's continuous batching). The model
is loaded once; a closing line on stderr gives the counts and abstracts per second (model load
included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from inference.decode import ENGINES
from inference.inputs import Abstract, read_abstracts
from inference.run import RunError, add_run_argument, no_run_message
from preprocessing.files import FileFormatError

# Abstracts per decode (x3 prompts): larger chunks keep the batch full for longer (each chunk
# ends with its longest answers decoding alone); the prompts of a chunk are held in memory.
DEFAULT_CHUNK = 1024
# Seconds between writes of finished results to OUT (and at the end of every chunk).
FLUSH_SECONDS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser)
    parser.add_argument(
        "--input", default="-", metavar="FILE|DIR|-", help="abstracts (default: stdin)"
    )
    parser.add_argument("--out", type=Path, help="append results to this JSONL; resumes")
    parser.add_argument("--merged", action="store_true", help="use RUN/merged, not the adapter")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument(
        "--chunk-size", type=int, default=DEFAULT_CHUNK, help="abstracts per decode"
    )
    parser.add_argument("--engine", choices=ENGINES, default="auto")


def completed_ids(out: Path) -> set[str]:
    """Ids already in OUT. A last line without its newline (torn by a kill) is cut off the
    file, to be redone; any other line that is not a result is an error."""
    if not out.exists():
        return set()
    if out.is_dir():
        raise FileFormatError(f"{out}: is a directory, not a file to append to")
    data = out.read_bytes()
    *lines, torn = data.split(b"\n")
    ids: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            ids.add(row["id"])
        except (ValueError, TypeError, KeyError):
            raise FileFormatError(
                f"{out}:{number}: not a result line (JSON with an id): not written by extract?"
            ) from None
    if torn:
        with open(out, "r+b") as handle:
            handle.truncate(len(data) - len(torn))
    return ids


def _append(out: Path, rows: list[dict[str, Any]]) -> None:
    """The rows as JSON lines in one write, on disk when this returns."""
    with open(out, "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        handle.flush()
        os.fsync(handle.fileno())


class _Writer:
    """Results of one chunk as they finish: into OUT (if any) at most FLUSH_SECONDS apart, and
    into `rows` in input order; the progress bar counts them."""

    def __init__(self, chunk: list[Abstract], out: Path | None, bar: Any) -> None:
        self.chunk, self.out, self.bar = chunk, out, bar
        self.rows: list[dict[str, Any] | None] = [None] * len(chunk)
        self.pending: list[dict[str, Any]] = []
        self.flushed = time.perf_counter()

    def __call__(self, index: int, result: dict[str, Any]) -> None:
        row = {"id": self.chunk[index].id, **result}
        self.rows[index] = row
        self.pending.append(row)
        self.bar.update(1)
        if time.perf_counter() - self.flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.out and self.pending:
            _append(self.out, self.pending)
        self.pending = []
        self.flushed = time.perf_counter()


def _check_lengths(extractor: Any, abstracts: list[Abstract]) -> None:
    for abstract in abstracts:
        tokens = extractor.prompt_tokens(abstract.text)
        if tokens > extractor.max_prompt_tokens:
            raise FileFormatError(
                f"{abstract.where}: id {abstract.id!r}: its prompt is {tokens} tokens; at most "
                f"{extractor.max_prompt_tokens} leave room for the answer"
            )


def extract_all(args: argparse.Namespace, abstracts: list[Abstract]) -> list[dict[str, Any]]:
    """Extract every abstract not yet in --out; the results (those of this run)."""
    from tqdm import tqdm

    from inference.extract import Extractor

    started = time.perf_counter()
    done = completed_ids(args.out) if args.out else set()
    todo = [a for a in abstracts if a.id not in done]
    if args.out:
        print(f"{len(done)} of {len(abstracts)} abstracts already in {args.out}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    if todo:
        extractor = Extractor(args.run, args.merged, args.max_new_tokens, args.engine)
        _check_lengths(extractor, todo)
        bar = tqdm(total=len(todo), desc="extract", unit="abstract", file=sys.stderr)
        with bar:
            for start in range(0, len(todo), args.chunk_size):
                chunk = todo[start : start + args.chunk_size]
                writer = _Writer(chunk, args.out, bar)
                extractor.extract([a.text for a in chunk], on_result=writer)
                writer.flush()
                results += writer.rows
        decoding = extractor.last_stats
        print(
            f"last chunk's decoding: {decoding.get('engine')} engine, "
            f"{decoding.get('rows_in_flight', '-')} rows in flight, "
            f"{decoding.get('decode_steps', '-')} steps, {decoding.get('generated_tokens')} "
            f"tokens at {decoding.get('tokens_per_second')} tokens/s",
            file=sys.stderr,
        )
    seconds = time.perf_counter() - started
    rate = f"{len(todo) / seconds:.2f}" if seconds else "-"
    print(
        f"extracted {len(todo)} abstracts in {seconds:.1f} s ({rate} abstracts/s, model load "
        f"included); {len(done)} skipped (already in the output); {len(abstracts)} in the input",
        file=sys.stderr,
    )
    return results


def run(args: argparse.Namespace) -> int:
    if args.run is None:
        print(no_run_message("extract"), file=sys.stderr)
        return 2
    try:
        if min(args.max_new_tokens, args.chunk_size) < 1:
            raise RunError("--max-new-tokens and --chunk-size must be at least 1")
        abstracts = read_abstracts(args.input)
        results = extract_all(args, abstracts)
    except (RunError, FileFormatError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out:
        print(f"results: {args.out}", file=sys.stderr)
    else:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    return 0
