"""Plugins: a package a user installs adds samplers, pruners, heads, datasets, operations, rankers, spaces or
protocols to every densecell process (the command line, each search worker, on any machine, and the benchmarks) by
declaring an entry point in the group ``densecell.plugins``::

    # the plugin's pyproject.toml
    [project.entry-points."densecell.plugins"]
    mine = "densecell_mine"                  # a module whose import registers its kinds
    # or: mine = "densecell_mine:register"   # a function, called once with no arguments

Plugins load once per process, the first time a registry is read (so a stored study that names a plugin's sampler
finds it in a worker that was only told the study's name). ``DENSECELL_NO_PLUGINS=1`` skips them (to get past a
broken one). :meth:`densecell.core.registry.Registry.source` says where each entry came from."""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points

from .errors import PluginError, one_line

__all__ = ["BUILTIN", "GROUP", "IN_CODE", "current_source", "load_plugins"]

GROUP = "densecell.plugins"
BUILTIN = "densecell"
"""The source of densecell's own entries."""
IN_CODE = "registered in code"
"""The source of an entry that a ``register()`` call in the running program added."""

_state: dict[str, object] = {"loading": None, "loaded": None}


def _label(point: EntryPoint) -> str:
    dist = point.dist
    return f"plugin {dist.name} {dist.version}" if dist is not None else f"plugin {point.name}"


def current_source() -> str:
    """Where an entry registered now comes from: the plugin being loaded, else the running program's code."""
    return str(_state["loading"] or IN_CODE)


def load_plugins() -> list[str]:
    """Import every ``densecell.plugins`` entry point once (a no-op after the first call); a plugin that fails is a
    one-line :class:`~densecell.core.errors.PluginError` naming it."""
    if _state["loaded"] is not None or _state["loading"] is not None:
        return list(_state["loaded"] or [])
    loaded: list[str] = []
    if os.environ.get("DENSECELL_NO_PLUGINS", "") not in ("", "0"):
        _state["loaded"] = loaded
        return loaded
    try:
        for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
            _state["loading"] = _label(point)
            try:
                target = point.load()
                if point.attr is not None and callable(target):
                    target()
            except Exception as exc:
                raise PluginError(f"{_label(point)} (entry point {point.name} = {point.value}) failed to load: "
                                  f"{type(exc).__name__}: {one_line(exc)}; DENSECELL_NO_PLUGINS=1 skips "
                                  f"plugins") from None
            loaded.append(_label(point))
    finally:
        _state["loading"] = None
    _state["loaded"] = loaded
    return loaded

