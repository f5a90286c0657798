"""Recipes: YAML files (the package's own or the user's) read into the typed settings, with ``section.field=value``
overrides from the command line, and every error one line that names the file and the field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..core.errors import ConfigError, one_line
from .settings import SearchConfig, TrainConfig, validation_line

__all__ = ["apply_override", "load_config", "load_search_config", "recipe_path", "recipes"]


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Set ``a.b.c=value`` in a nested dict, the value parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {assignment!r}: expected key=value, e.g. optim.lr=0.02")
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {assignment!r}: the value is not valid YAML") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML recipe (or start from the defaults) and apply ``section.field=value`` overrides."""
    return _load(TrainConfig, path, overrides)  # type: ignore[return-value]


def recipes() -> dict[str, Path]:
    """The recipes that ship inside the package (``densecell/recipes/*.yaml``), by name: the paper's experiments,
    the demo's and the ground-truth table's."""
    folder = Path(str(resources.files("densecell").joinpath("recipes")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def recipe_path(spec: str | Path) -> Path:
    """A recipe file: ``spec`` itself when it is a file, else the built-in recipe of that name
    (``search-synthetic`` or ``search-synthetic.yaml``)."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{spec}: a folder, not a recipe file (a YAML file, or a built-in name: densecell list "
                          f"recipes)")
    known = recipes()
    name = path.name.removesuffix(".yaml") if path.parent == Path(".") else None
    if name in known:
        return known[name]
    raise ConfigError(f"{spec}: config file not found (and no built-in recipe of that name: "
                      f"{', '.join(known)})")


def _right_kind(kind: type[BaseModel], tree: dict[str, Any], origin: str) -> None:
    """A training recipe given to a search command, or the other way round: one line that says which command reads
    it (rather than "unknown key")."""
    other = {TrainConfig: (SearchConfig, "densecell search"), SearchConfig: (TrainConfig, "densecell train")}
    if kind in other:
        theirs, command = other[kind]
        only = sorted(set(tree) & (set(theirs.model_fields) - set(kind.model_fields)))
        if only:
            raise ConfigError(f"{origin}: a {'search' if theirs is SearchConfig else 'training'} recipe (it has "
                              f"{', '.join(only)}); {command} reads it")


def _load(kind: type[BaseModel], path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> BaseModel:
    tree: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        origin = str(path)
        path = recipe_path(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); a recipe is YAML text") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, model, optim, ...)")
        tree = loaded or {}
    for assignment in overrides:
        apply_override(tree, assignment)
    _right_kind(kind, tree, origin)
    try:
        return kind.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(validation_line(exc, origin)) from None




def load_search_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> SearchConfig:
    """Like :func:`load_config`, for a search recipe."""
    return _load(SearchConfig, path, overrides)  # type: ignore[return-value]
