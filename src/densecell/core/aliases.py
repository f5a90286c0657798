"""Old names that still work: a module moved into its layer's package, or a public name renamed, is found under its
old name with one ``FutureWarning`` at its first use (as timm does for its moved modules), so a user's code and a
stored study keep working while they are updated."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["MovedModules", "renamed_names", "warn_renamed"]

_WARNED: set[str] = set()


def warn_renamed(old: str, new: str) -> None:
    """One ``FutureWarning`` per old name and process: ``old`` is now ``new``."""
    if old not in _WARNED:
        _WARNED.add(old)
        warnings.warn(f"{old} is now {new}; the old name goes in densecell 0.6", FutureWarning, stacklevel=4)


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``package.OLD`` (and its submodules) as the module it moved to, ``moves[OLD]``."""

    def __init__(self, package: str, moves: dict[str, str]) -> None:
        self.package, self.moves = package, moves

    def target(self, name: str) -> str | None:
        prefix = f"{self.package}."
        if not name.startswith(prefix):
            return None
        head, _, rest = name.removeprefix(prefix).partition(".")
        if head not in self.moves:
            return None
        return f"{self.package}.{self.moves[head]}" + (f".{rest}" if rest else "")

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(name, self) if self.target(name) else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = self.target(spec.name)
        warn_renamed(spec.name, new)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module it moved to has run already."""


def renamed_names(module: str, renames: dict[str, str], namespace: dict[str, Any],
                  fallback: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` under which each old name of ``renames`` (old -> new) is the new one, with a
    warning; other names go to ``fallback`` (a lazy loader) or are an AttributeError."""

    def __getattr__(name: str) -> Any:
        if name in renames:
            warn_renamed(f"{module}.{name}", f"{module}.{renames[name]}")
            return namespace[renames[name]] if renames[name] in namespace else __getattr__(renames[name])
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
