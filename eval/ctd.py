"""Read CTD's published vocabularies (CTD_chemicals.tsv, CTD_diseases.tsv) into a Lexicon.

The format, as CTD publishes it: '#' comment lines first, one of them '# Fields:' and the next
'# ChemicalName<TAB>ChemicalID<TAB>...' (or DiseaseName/DiseaseID) naming the columns; then one
tab-separated row per concept; ids are written 'MESH:D012345'; 'Synonyms' is '|'-separated.
Only MeSH ids are kept (the corpus is annotated with MeSH; OMIM ids could never match), written
bare ('D012345') as the corpus writes them.
"""

from __future__ import annotations

from pathlib import Path

from eval.ground import Lexicon

# The columns when the file has no '# Fields:' header (CTD's documented order).
DEFAULT_COLUMNS = {
    "Chemical": ["ChemicalName", "ChemicalID", "CasRN", "Definition", "ParentIDs",
                 "TreeNumbers", "ParentTreeNumbers", "Synonyms"],
    "Disease": ["DiseaseName", "DiseaseID", "AltDiseaseIDs", "Definition", "ParentIDs",
                "TreeNumbers", "ParentTreeNumbers", "Synonyms", "SlimMappings"],
}  # fmt: skip


class CTDError(ValueError):
    """A malformed CTD file; the message names the file and line."""


def _columns(comments: list[str], kind: str) -> list[str]:
    for before, line in zip(comments, comments[1:], strict=False):
        if before.strip("# \t").rstrip(":") == "Fields":
            return [name.strip() for name in line.lstrip("#").strip().split("\t")]
    return DEFAULT_COLUMNS[kind]


def read_ctd(path: Path, kind: str) -> list[tuple[str, list[str]]]:
    """(MeSH id without prefix, [name, *synonyms]) per MeSH row of a CTD vocabulary file."""
    name_col, id_col = f"{kind}Name", f"{kind}ID"
    comments: list[str] = []
    columns: list[str] | None = None
    concepts = []
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip("\r\n")
            if line.startswith("#"):
                comments.append(line)
                continue
            if not line.strip():
                continue
            if columns is None:
                columns = _columns(comments, kind)
                if name_col not in columns or id_col not in columns:
                    raise CTDError(f"{path}:{number}: no {name_col}/{id_col} columns: {columns}")
            cells = dict(zip(columns, line.split("\t"), strict=False))
            if not cells.get(name_col) or not cells.get(id_col):
                raise CTDError(f"{path}:{number}: a row without {name_col} or {id_col}")
            prefix, _, concept = cells[id_col].partition(":")
            if prefix != "MESH" or not concept:
                continue
            synonyms = [s for s in cells.get("Synonyms", "").split("|") if s.strip()]
            concepts.append((concept, [cells[name_col], *synonyms]))
    return concepts


def add_ctd(lexicon: Lexicon, kind: str, path: Path) -> int:
    """Add a CTD vocabulary's names and synonyms (weight 1 each); returns the concepts added."""
    concepts = read_ctd(path, kind)
    for concept, names in concepts:
        for name in dict.fromkeys(names):
            lexicon.add(kind, name, concept)
    lexicon.sources.append(str(path))
    return len(concepts)
