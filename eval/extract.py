"""Extract chemicals, diseases and chemical -> disease relations from abstracts with a trained run.

    python -m eval extract --run runs/<dir> [--text FILE|-] [--json] [--merged]

Input: one plain-text abstract, or JSONL rows {"text": ...} / {"abstract": ...} (recognised by
the first character being "{"). Every abstract is asked the three task prompts of
preprocessing.task, wrapped in chat messages with the run's system prompt exactly as in training;
the prompts of a batch of abstracts go through ONE greedy generate call, and the answers are
parsed with the shared task module into
{"chemicals": [...], "diseases": [...], "relations": [{"chemical", "disease"}], "format_errors"}.

Python: `Extractor("runs/<dir>").extract(["abstract one", "abstract two"])`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from eval.generate import (
    Generation,
    InputError,
    encode_prompts,
    generate_greedy,
    load_hf_model,
    load_tokenizer,
    resolve_run,
    stop_token_ids,
)
from eval.runs import add_run_argument, no_run_message
from preprocessing.task import (
    DEFAULT_SYSTEM_PROMPT,
    TASKS,
    build_prompt,
    parse_items,
    parse_relation,
)

# BC5CDR answers are at most a few hundred tokens; a model that never stops is cut here.
DEFAULT_MAX_NEW_TOKENS = 512
# Abstracts per generate call (x3 prompts): bounds memory on long JSONL inputs.
DEFAULT_BATCH_ABSTRACTS = 8
_KEYS = {"chemical": "chemicals", "disease": "diseases"}


def _unique(items: list[Any]) -> list[Any]:
    """Duplicates collapse, as in scoring; first occurrence order is kept."""
    return list(dict.fromkeys(items))


def parse_answers(answers: dict[str, Generation]) -> dict[str, Any]:
    """The three generations of one abstract -> the JSON result."""
    result: dict[str, Any] = {"chemicals": [], "diseases": [], "relations": [], "format_errors": []}
    for task in TASKS:
        answer = answers[task]
        if answer.finish_reason == "length":
            result["format_errors"].append(
                {"task": task, "problem": "no end of answer within max_new_tokens: cut off"}
            )
        items = parse_items(answer.text)
        if task != "relation":
            result[_KEYS[task]] = _unique(items)
            continue
        pairs = []
        for item in items:
            pair = parse_relation(item)
            if pair is None:
                result["format_errors"].append(
                    {"task": task, "problem": "not 'Chemical X influences disease Y'", "line": item}
                )
            else:
                pairs.append(pair)
        result["relations"] = [{"chemical": c, "disease": d} for c, d in _unique(pairs)]
    return result


class Extractor:
    """A run's model, loaded once; `extract(texts)` answers the three tasks for each text."""

    def __init__(
        self,
        run_dir: str | Path,
        merged: bool = False,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        run_dir = Path(run_dir)
        # Extraction has no test split; resolve_run only needs some file for it.
        self.target = resolve_run(run_dir, Path(os.devnull), merged)
        info_path = run_dir / "run.json"
        info = json.loads(info_path.read_text("utf-8")) if info_path.is_file() else {}
        # run.json's system prompt is what training used (None: the template had none).
        self.system_prompt = info.get("system_prompt", DEFAULT_SYSTEM_PROMPT)
        self.tokenizer = load_tokenizer(self.target)  # the run's own chat template, left padding
        # Loaded as `eval generate` loads it, but once, for every later call.
        self.model = load_hf_model(self.target.model, self.target.adapter, self.tokenizer)
        self.stops = stop_token_ids(self.tokenizer, self.model.generation_config)
        self.max_new_tokens = max_new_tokens

    def messages(self, task: str, text: str) -> list[dict[str, str]]:
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        # Abstracts are stored stripped in the training rows; a pasted one often is not.
        return [*turns, {"role": "user", "content": build_prompt(task, text.strip())}]

    def extract(self, texts: list[str]) -> list[dict[str, Any]]:
        """Chemicals, diseases, relations and format errors for each text, in input order."""
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"text {number}: expected a non-empty string")
        if not texts:
            return []
        # encode_prompts renders a row's messages minus the last (the answer) turn, exactly as
        # eval does; the empty assistant turn here only stands in for that answer.
        rows = [
            {"messages": [*self.messages(task, text), {"role": "assistant", "content": ""}]}
            for text in texts
            for task in TASKS
        ]
        prompts = encode_prompts(self.tokenizer, rows)
        # All prompts in one batch (per decoding round) for each extract() call and server request.
        generations, _ = generate_greedy(
            self.model, self.tokenizer, prompts, self.max_new_tokens, self.stops, len(prompts)
        )
        per_text = [generations[i : i + len(TASKS)] for i in range(0, len(generations), len(TASKS))]
        return [parse_answers(dict(zip(TASKS, answers, strict=True))) for answers in per_text]


# ---- the command -----------------------------------------------------------------------------


def read_texts(source: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(texts, their JSONL rows or [] for plain text) from a file or '-' (stdin)."""
    name = "<stdin>" if source == "-" else source
    try:
        content = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{name}: cannot read ({error})") from None
    if not content.strip():
        raise InputError(f"{name}: no text")
    if not content.lstrip().startswith("{"):
        return [content.strip()], []
    texts, rows = [], []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{name}:{number}: not valid JSON ({error.msg})") from None
        text = row.get("text", row.get("abstract")) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InputError(
                f'{name}:{number}: expected an object with a non-empty "text" or "abstract" string'
            )
        texts.append(text)
        rows.append(row)
    return texts, rows


def _human(result: dict[str, Any]) -> str:
    relations = [f"  {r['chemical']} -> {r['disease']}" for r in result["relations"]]
    lines = [
        f"Chemicals: {'; '.join(result['chemicals']) or '(none)'}",
        f"Diseases:  {'; '.join(result['diseases']) or '(none)'}",
        "Relations:" + ("" if relations else " (none)"),
        *relations,
    ]
    if result["format_errors"]:
        lines.append(f"Format errors: {len(result['format_errors'])}")
        lines += [
            f"  {e['task']}: {e['problem']}" + (f": {e['line']!r}" if "line" in e else "")
            for e in result["format_errors"]
        ]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="extract chemicals, diseases and relations from abstracts with a run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_argument(parser)
    parser.add_argument(
        "--text",
        default="-",
        metavar="FILE|-",
        help='plain-text abstract or JSONL of {"text"|"abstract"} rows (default: stdin)',
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON (one object per abstract, one line each for JSONL)",
    )
    parser.add_argument("--merged", action="store_true", help="use RUN/merged, not the adapter")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_ABSTRACTS,
        help="abstracts per generate call",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.run is None:
        print(no_run_message("extract"), file=sys.stderr)
        return 2
    try:
        if args.max_new_tokens < 1 or args.batch_size < 1:
            raise InputError("--max-new-tokens and --batch-size must be at least 1")
        texts, rows = read_texts(args.text)
        extractor = Extractor(args.run, merged=args.merged, max_new_tokens=args.max_new_tokens)
        results = []
        with tqdm(
            total=len(texts),
            desc="extract",
            unit="abstract",
            disable=len(texts) == 1,
            file=sys.stderr,
        ) as bar:
            for start in range(0, len(texts), args.batch_size):
                results += extractor.extract(texts[start : start + args.batch_size])
                bar.update(min(args.batch_size, len(texts) - start))
    except (InputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for number, result in enumerate(results):
        # Rows keep their own fields (ids) next to the result; plain text has none.
        shown = (
            {**{k: v for k, v in rows[number].items() if k not in ("text", "abstract")}, **result}
            if rows
            else result
        )
        if args.json:
            print(json.dumps(shown, ensure_ascii=False, indent=None if rows else 2))
        else:
            heading = f"# abstract {number + 1}\n" if rows else ""
            print(("\n" if number else "") + heading + _human(result))
    return 0
