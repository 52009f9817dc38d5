"""Where recipes live and how a recipe name becomes its config: the one recipe lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from preprocessing.files import REPO, FileFormatError, load_yaml
from training.errors import TrainError

RECIPES = REPO / "recipes"
RUNS = REPO / "runs"
# The CPU recipe of the demo and the tests: a tiny random model, numbers that mean nothing.
TINY_RECIPE = "tiny-cpu"


def recipe_names(include_tiny: bool = True) -> list[str]:
    """The recipes in recipes/, sorted by name."""
    names = sorted(path.stem for path in RECIPES.glob("*.yml"))
    return names if include_tiny else [name for name in names if name != TINY_RECIPE]


def recipe_path(recipe: str | Path) -> Path:
    """recipes/<name>.yml for a name, or the given .yml/.yaml file; TrainError when missing."""
    path = Path(recipe)
    if path.suffix in (".yml", ".yaml"):
        if not path.is_file():
            raise TrainError(f"{path}: recipe file not found")
        return path
    path = RECIPES / f"{recipe}.yml"
    if not path.is_file():
        raise TrainError(f"unknown recipe {recipe!r} (recipes/: {', '.join(recipe_names())})")
    return path


def load_config(path: Path) -> dict[str, Any]:
    """An Axolotl config file (a recipe or a run's config.yml); TrainError (one line) if bad."""
    try:
        return load_yaml(path, "a mapping of Axolotl config keys")
    except FileFormatError as error:
        raise TrainError(str(error)) from None


def load_recipe(recipe: str | Path) -> tuple[Path, dict[str, Any]]:
    """(recipe file, its config) for a recipe name or file."""
    path = recipe_path(recipe)
    return path, load_config(path)
