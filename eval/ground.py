"""MeSH ids of chemical or disease names (lexicon from PubTator, optional CTD).

Grounding: map an extracted chemical or disease name, in its abstract, to a MeSH id or '-1'.

A Lexicon maps surface forms to ids with counts, per entity type, at four levels from strict to
loose (`variant_keys`): the text with whitespace collapsed; task.normalize (NFKC, case-fold,
dashes); then Greek letters spelled out, possessive 's, hyphens and other punctuation as spaces;
then each word's plural or inflection ending removed. A name is looked up level by level; the
first level with a hit answers with its most frequent id (ties: the smaller id string), so the
answer is deterministic. Its sources:
- PubTator annotations (a training set): every mention's text with its id string, composite
  ids kept whole ('D1|D2', as the corpus writes them) and unnormalised mentions as '-1';
- optionally CTD's published vocabularies (CTD_chemicals.tsv, CTD_diseases.tsv): names and
  synonyms, counted once each, so corpus evidence (usually several counts) outweighs them.
Before the lexicon, an abbreviation defined in the same text ("puromycin aminonucleoside (PAN)")
is grounded through its long form (`abbreviations`).
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from preprocessing.bc5cdr import Document
from preprocessing.task import normalize

TYPES: tuple[str, ...] = ("Chemical", "Disease")
UNGROUNDED = "-1"
TYPE_OF_TASK = {"chemical": "Chemical", "disease": "Disease"}

_GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta",
    "η": "eta", "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu",
    "ξ": "xi", "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau",
    "υ": "upsilon", "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
}  # fmt: skip
_GREEK_RE = re.compile("|".join(_GREEK))
_POSSESSIVE = re.compile(r"(?<=\w)'s\b")
_PUNCT = re.compile(r"[^\w\s]|_")
# Word endings removed at the loosest level, once, the longest that fits (the stem keeps >= 4
# characters), chosen so that the forms of one word meet: 'dyskinesia'/'dyskinesias'/
# 'dyskinetic', 'ischemia'/'ischemic', 'catalepsy'/'cataleptic', 'psychosis'/'psychoses'/
# 'psychotic', 'toxicity'/'toxicities', 'injury'/'injuries', 'disease'/'diseases'.
_ENDINGS = tuple(
    sorted(
        ("esias", "esia", "esic", "etic", "oses", "osis", "otic", "ities", "ity", "ies", "ias",
         "ics", "tic", "sy", "ia", "ic", "al", "es", "s", "y", "e"),
        key=len,
        reverse=True,
    )
)  # fmt: skip
_KEEP = ("ss", "us", "is")  # 'mass', 'status', 'analysis' lose no plural 's'
# British spellings folded at the loosest level: 'anaemia', 'oedema', 'tumour'.
_BRITISH = (("ae", "e"), ("oe", "e"), ("our", "or"))


def _stem(word: str) -> str:
    for british, american in _BRITISH:
        word = word.replace(british, american)
    if word.isdigit():
        return word
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            if ending in ("s", "es") and word.endswith(_KEEP):
                return word
            return word[: -len(ending)]
    return word


def variant_keys(name: str) -> tuple[str, str, str, str]:
    """The four lookup keys of a name, strict to loose (see the module docstring)."""
    exact = " ".join(name.split())
    folded = normalize(exact)
    spelled = _GREEK_RE.sub(lambda m: _GREEK[m.group(0)], unicodedata.normalize("NFKD", folded))
    spelled = "".join(ch for ch in spelled if not unicodedata.combining(ch))
    loose = " ".join(_PUNCT.sub(" ", _POSSESSIVE.sub("", spelled)).split())
    stemmed = " ".join(_stem(word) for word in loose.split())
    return exact, folded, loose, stemmed


def _best(ids: Counter) -> str:
    return min(ids.items(), key=lambda item: (-item[1], item[0]))[0]


@dataclass
class Lexicon:
    """surface variants -> id counts, per type and level (index into variant_keys)."""

    tables: dict[str, list[dict[str, Counter]]] = field(
        default_factory=lambda: {kind: [{}, {}, {}, {}] for kind in TYPES}
    )
    sources: list[str] = field(default_factory=list)

    def add(self, kind: str, name: str, ids: str, weight: int = 1) -> None:
        if kind not in self.tables or not name.strip():
            return
        for level, key in zip(self.tables[kind], variant_keys(name), strict=True):
            if key:
                level.setdefault(key, Counter())[ids] += weight

    def lookup(self, kind: str, name: str) -> str | None:
        """The most frequent id of the strictest level that knows the name, else None."""
        for level, key in zip(self.tables.get(kind, ()), variant_keys(name), strict=False):
            if key in level:
                return _best(level[key])
        return None

    def entries(self) -> dict[str, int]:
        return {kind: len(levels[0]) for kind, levels in self.tables.items()}


def mention_ids(raw_ids: list[str]) -> str:
    """A mention's id string as the corpus writes it: 'D1', 'D1|D2', or '-1' when it has none."""
    return "|".join(raw_ids) if raw_ids else UNGROUNDED


def add_documents(lexicon: Lexicon, documents: Iterable[Document], source: str) -> None:
    for document in documents:
        for mention in document.mentions:
            lexicon.add(mention.type, mention.text, mention_ids(mention.ids))
    lexicon.sources.append(source)


# ---- abbreviations defined in the text ---------------------------------------------------------

_PAREN = re.compile(r"\(([^()]{1,12})\)")
_WORD = re.compile(r"[\w\-'/+,.]+")


def _long_form(words: list[str], short: str) -> str | None:
    """The shortest run of trailing words that starts with the short form's first letter and
    contains its letters in order (Schwartz & Hearst's rule, simplified)."""
    letters = [ch.lower() for ch in short if ch.isalnum()]
    if not letters:
        return None
    for size in range(1, min(len(words), len(letters) + 5) + 1):
        candidate = words[-size:]
        if not candidate[0][:1].lower() == letters[0]:
            continue
        text = " ".join(candidate).lower()
        position = 0
        for letter in letters:
            position = text.find(letter, position)
            if position < 0:
                break
            position += 1
        else:
            return " ".join(candidate)
    return None


def abbreviations(text: str) -> dict[str, str]:
    """Short form -> long form for every 'long form (SF)' in the text (first definition wins)."""
    found: dict[str, str] = {}
    for match in _PAREN.finditer(text):
        short = match.group(1).strip()
        if not (2 <= len(short) <= 10 and short[0].isalnum() and any(c.isalpha() for c in short)):
            continue
        if " " in short or short in found:
            continue
        sentence = re.split(r"[.;:(]\s", text[: match.start()])[-1]
        long_form = _long_form(_WORD.findall(sentence), short)
        if long_form and len(long_form) > len(short):
            found[short] = long_form.strip(",.")
    return found


def ground(lexicon: Lexicon, kind: str, name: str, defined: dict[str, str] | None = None) -> str:
    """The id of `name` (type `kind`) in a text whose abbreviations are `defined`; '-1' if none."""
    if defined and name.strip() in defined:
        long_form = defined[name.strip()]
        for candidate in (long_form, *_trailing_words(long_form)):
            found = lexicon.lookup(kind, candidate)
            if found is not None and found != UNGROUNDED:
                return found
    found = lexicon.lookup(kind, name)
    return UNGROUNDED if found is None else found


def _trailing_words(text: str) -> list[str]:
    words = text.split()
    return [" ".join(words[i:]) for i in range(1, len(words))]


def read_lexicon(pubtator: Iterable[Path], ctd_chemicals: Path | None = None,
                 ctd_diseases: Path | None = None) -> Lexicon:  # fmt: skip
    """A lexicon from PubTator files (and optional CTD vocabularies); errors name file and line."""
    from eval.ctd import add_ctd
    from preprocessing.bc5cdr import read_pubtator

    lexicon = Lexicon()
    for path in pubtator:
        add_documents(lexicon, read_pubtator(Path(path)), str(path))
    for kind, path in (("Chemical", ctd_chemicals), ("Disease", ctd_diseases)):
        if path is not None:
            add_ctd(lexicon, kind, Path(path))
    return lexicon


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--type", required=True, choices=TYPES, dest="kind")
    parser.add_argument("--lexicon-from", type=Path, nargs="+", required=True, metavar="TRAIN")
    parser.add_argument("--ctd-chemicals", type=Path, metavar="F", help="CTD_chemicals.tsv")
    parser.add_argument("--ctd-diseases", type=Path, metavar="F", help="CTD_diseases.tsv")
    parser.add_argument("--text", type=Path, help="the abstract the names come from (for its "
                        "abbreviations)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Print 'name<TAB>id' per name."""
    from eval.ctd import CTDError

    try:
        lexicon = read_lexicon(args.lexicon_from, args.ctd_chemicals, args.ctd_diseases)
        defined = abbreviations(args.text.read_text(encoding="utf-8")) if args.text else {}
    except (CTDError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in args.names:
        print(f"{name}\t{ground(lexicon, args.kind, name, defined)}")
    return 0
