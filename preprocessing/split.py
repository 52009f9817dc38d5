"""The split: 80/10/10 by abstract, stratified by each abstract's set of tasks, a pure function
of the abstracts and the seed (sha256, no ``hash()``), so reruns are byte-identical anywhere."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

from preprocessing.files import sha256_bytes
from preprocessing.task import TASKS

EVAL_FRACTION = Fraction(1, 10)  # validation and test each; train gets the rest (80 %)


def split_abstracts(doc_tasks: dict[str, set[str]], seed: int) -> dict[str, str]:
    """doc_id -> split, 80/10/10 by abstract, stratified by the abstract's set of tasks.

    Within each stratum abstracts are ordered by sha256(f"{seed}:{doc_id}") and given evenly
    spaced ranks in (0, 1); the pooled ranking is then cut at 80 % and 90 %. Every stratum is thus
    spread evenly over the three splits while the totals are exact.
    """

    def key(doc_id: str) -> str:
        return sha256_bytes(f"{seed}:{doc_id}".encode())

    strata: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for doc_id, tasks in doc_tasks.items():
        strata[tuple(t for t in TASKS if t in tasks)].append(doc_id)
    ranked = []
    for docs in strata.values():
        docs.sort(key=key)
        for i, doc_id in enumerate(docs):
            ranked.append((Fraction(2 * i + 1, 2 * len(docs)), key(doc_id), doc_id))
    ranked.sort()
    total = len(ranked)
    n_eval = round(total * EVAL_FRACTION)
    if total >= 3:  # a tiny input still gets one validation and one test abstract
        n_eval = max(n_eval, 1)
    n_train = total - 2 * n_eval
    assignment = {}
    for position, (_, _, doc_id) in enumerate(ranked):
        if position < n_train:
            assignment[doc_id] = "train"
        elif position < n_train + n_eval:
            assignment[doc_id] = "validation"
        else:
            assignment[doc_id] = "test"
    return assignment


def split_fixed_test(
    doc_tasks: dict[str, set[str]], test_doc_ids: set[str], seed: int
) -> dict[str, str]:
    """doc_id -> split when the test abstracts are named (the comparable setting): those are
    test; the others are split as split_abstracts would, its test share going to train (so
    validation is ~10 % of them, train ~90 %)."""
    rest = {doc: tasks for doc, tasks in doc_tasks.items() if doc not in test_doc_ids}
    assignment = {doc: "test" for doc in doc_tasks if doc in test_doc_ids}
    for doc, split in split_abstracts(rest, seed).items():
        assignment[doc] = "validation" if split == "validation" else "train"
    return assignment
