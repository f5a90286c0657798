"""Public names that load with their module on first use: a package's ``__init__`` names what it offers without
importing it, so ``import densecell`` or ``import densecell.search`` costs nothing until a name is used (timm and
torchvision take seconds; a search worker or ``densecell space`` never needs them)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: dict[str, tuple[str, ...]], namespace: dict[str, Any],
               on_import_error: Callable[[ImportError], Exception] | None = None
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose names live in the modules of ``homes`` (module ->
    names); ``on_import_error`` turns a missing optional dependency into the error to raise (one line)."""
    home = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = import_module(f".{home[name]}", package)
        except ImportError as exc:
            if on_import_error is None or (exc.name or "").startswith("densecell"):
                raise
            raise on_import_error(exc) from None
        namespace[name] = value = getattr(module, name)
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(home))

    return __getattr__, __dir__
