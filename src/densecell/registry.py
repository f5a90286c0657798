"""The doors for extensions: name -> factory registries for samplers, pruners, search modes, heads and datasets.

A registry maps each name to its factory, or to a ``"module:attribute"`` reference to it that is imported the first
time it is used. The names alone are what the settings check (:mod:`densecell.config`) and what the command line
offers, so validating a recipe never imports Optuna or torch; a new kind is its factory and one entry here (or a
:meth:`Registry.register` call from the user's own code). What each kind's factory is called with:

- ``SAMPLERS[name](settings, seed)`` -> an Optuna sampler (``settings``: the study's :class:`SearchSettings`);
- ``PRUNERS[name](settings)`` -> an Optuna pruner, whose rungs are the proxy's ``eval_every`` steps;
- ``SEARCH_MODES[name]()`` -> a :class:`densecell.stages.SearchMode`: what runs before the study's workers;
- ``HEADS[name](cell, in_channels, *, filters, dropout, output_stride, pooling, crop_size, bn_momentum)`` -> the
  context head module;
- ``DATASETS[name](root, split, transform, **options)`` -> a :class:`densecell.data.SegmentationDataset`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from .errors import ConfigError

__all__ = ["DATASETS", "HEADS", "PRUNERS", "Registry", "SAMPLERS", "SEARCH_MODES"]


class Registry(MutableMapping[str, Any]):
    """Names of one kind of extension and their factories (or ``"module:attribute"`` references to them)."""

    def __init__(self, kind: str, entries: dict[str, Any]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Any:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, path = entry.partition(":")
            entry = importlib.import_module(module)
            for attribute in path.split("."):
                entry = getattr(entry, attribute)
            self._entries[name] = entry
        return entry

    def __setitem__(self, name: str, factory: Any) -> None:
        self._entries[name] = factory

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: str, error: type[Exception] = ConfigError) -> str:
        """``name`` if it is registered, else a one-line ``error`` that lists the names."""
        if name not in self._entries:
            raise error(f"unknown {self.kind} {name!r} (one of {', '.join(self._entries)})")
        return name

    def register(self, name: str, factory: Any = None) -> Any:
        """Add ``factory`` under ``name`` (or use as a decorator: ``@SAMPLERS.register("mine")``)."""
        def add(entry: Any) -> Any:
            self[name] = entry
            return entry

        return add if factory is None else add(factory)


SAMPLERS = Registry("sampler", {
    "random": "densecell.search:random_sampler",
    "local": "densecell.search:LocalSampler.from_settings",
    "evolution": "densecell.search:EvolutionSampler.from_settings",
    "tpe": "densecell.search:tpe_sampler",
    "nsga2": "densecell.search:nsga2_sampler",
    "predictor": "densecell.search:PredictorSampler.from_settings",
})
PRUNERS = Registry("pruner", {
    "none": "densecell.search:no_pruner",
    "median": "densecell.search:median_pruner",
    "successive-halving": "densecell.search:successive_halving_pruner",
    "hyperband": "densecell.search:hyperband_pruner",
})
SEARCH_MODES = Registry("search mode", {
    "proxy": "densecell.stages:ProxyMode",
    "oneshot": "densecell.stages:OneShotMode",
})
HEADS = Registry("head", {
    "dpc": "densecell.heads:DensePredictionCell.from_settings",
    "aspp": "densecell.heads:ASPP.from_settings",
})
DATASETS = Registry("dataset", {
    "cityscapes": "densecell.data.cityscapes:Cityscapes",
    "voc": "densecell.data.voc:PascalVOC",
    "person_part": "densecell.data.person_part:PersonPart",
    "folder": "densecell.data.folder:FolderDataset",
})
