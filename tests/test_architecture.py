"""The code's shape: stages import only earlier stages, nothing private crosses a package, and no
module or function grows past what a reader can hold in mind.

Stage order: preprocessing < training < inference < eval < bench. A module may import its own
package and any earlier one; an import inside a function counts like one at the top.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ["preprocessing", "training", "inference", "eval", "bench"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Exceptions to the rules below (none today: a new entry needs a reason beside it).
SIZE_ALLOWED: list[str] = []
PRIVATE_IMPORT_ALLOWED: list[str] = []


def modules() -> Iterator[Path]:
    for stage in STAGES:
        yield from sorted((REPO / stage).rglob("*.py")) if (REPO / stage).is_dir() else ()


def relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def imports(tree: ast.AST) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def import_violations(path: Path) -> list[str]:
    own = relative(path).split("/")[0]
    found = []
    for line, module, names in imports(ast.parse(path.read_text("utf-8"))):
        target = module.split(".")[0]
        if target not in STAGES or target == own:
            continue
        where = f"{relative(path)}:{line}"
        if STAGES.index(target) > STAGES.index(own):
            found.append(f"{where}: {own} imports the later stage {module}")
        parts = module.split(".")[1:] + names
        private = [p for p in parts if p.startswith("_") and not p.startswith("__")]
        if private and relative(path) not in PRIVATE_IMPORT_ALLOWED:
            found.append(f"{where}: imports {module}'s private {', '.join(private)}")
    return found


def size_allowed(path: Path) -> bool:
    return any(fnmatch(relative(path), pattern) for pattern in SIZE_ALLOWED)


def size_violations(path: Path) -> list[str]:
    text = path.read_text("utf-8")
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{relative(path)}: {lines} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{relative(path)}:{node.lineno}: {node.name}() is {length} lines "
                    f"(limit {MAX_FUNCTION_LINES})"
                )
    return found


def test_stages_import_only_earlier_stages_and_nothing_private():
    violations = [v for path in modules() for v in import_violations(path)]
    assert not violations, "\n".join(violations)


def test_no_module_or_function_is_too_long():
    violations = [v for path in modules() if not size_allowed(path) for v in size_violations(path)]
    assert not violations, "\n".join(violations)


def test_the_checks_see_a_violation(tmp_path, monkeypatch):
    """The walkers catch what they claim to: a later stage imported inside a function, a
    private name from another package, a module and a function over the limits."""
    stage = tmp_path / "training"
    stage.mkdir()
    module = stage / "bad.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module.write_text("def f():\n    from eval.score import _private\n" + body + "\n" + "\n" * 400)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = import_violations(module)
    assert found == [
        "training/bad.py:2: training imports the later stage eval.score",
        "training/bad.py:2: imports eval.score's private _private",
    ]
    sizes = size_violations(module)
    assert any("lines (limit 400)" in s for s in sizes)
    assert any("f() is 62 lines" in s for s in sizes)
