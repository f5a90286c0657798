"""The doors for extensions: name -> factory registries for every kind densecell can be extended with.

A registry maps each name to its factory, or to a ``"module:attribute"`` reference to it that is imported the first
time it is used, and to one line that says what it is. The names alone are what the settings check
(:mod:`densecell.config`), what the command line offers and what ``densecell list`` prints, so validating a recipe or
listing the doors never imports Optuna or torch; a new kind is its factory and one entry here (or a
:meth:`Registry.register` call from the user's own code). What each kind's factory is called with:

- ``SAMPLERS[name](space, seed)`` -> an Optuna sampler that proposes points of ``space`` (a
  :class:`densecell.search.spaces.SamplerSpace`: the DPC space, or a ground-truth table's);
- ``PRUNERS[name](eval_every, iterations)`` -> an Optuna pruner, whose rungs are every ``eval_every`` steps of
  ``iterations``;
- ``SEARCH_MODES[name]()`` -> a :class:`densecell.search.stages.SearchMode`: what runs before the study's workers;
- ``SPACES[name](source)`` -> a :class:`densecell.search.spaces.SamplerSpace` (``dpc``: from a
  :class:`~densecell.cell.space.SearchSpace`; ``table``: from a ground-truth table file);
- ``HEADS[name](cell, in_channels, *, filters, dropout, output_stride, pooling, crop_size, bn_momentum)`` -> the
  context head module;
- ``OPERATIONS[family](op, in_channels, filters, *, output_stride, pooling, crop_size, bn_momentum)`` -> the module
  of an operation family of :data:`densecell.cell.space.FAMILIES` (its ``forward(x, op)`` also computes the family's
  other operations, for the supernet);
- ``DATASETS[name](root, split, transform, **options)`` -> a :class:`densecell.data.base.SegmentationDataset`, its
  options checked by the class (``data.options`` in a recipe);
- ``RANKERS[name](cache, filters, seed, device)`` -> a :class:`densecell.search.rankers.Ranker`: a cheap score of
  a cell;
- ``PROTOCOLS[name](config, argument, out_dir, progress)`` -> a scorer of cells for ``densecell fidelity --against``
  (``NAME`` or ``NAME=ARGUMENT``; a ranker's name is a protocol too).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from .aliases import warn_renamed
from .errors import ConfigError
from .plugins import BUILTIN, current_source, load_plugins

__all__ = ["DATASETS", "HEADS", "OPERATIONS", "PROTOCOLS", "PRUNERS", "RANKERS", "REGISTRIES", "Registry", "SAMPLERS",
           "SEARCH_MODES", "SPACES"]


class Registry(MutableMapping[str, Any]):
    """Names of one kind of extension and their factories (or ``"module:attribute"`` references to them), each with
    a one-line description and its source (densecell, an installed plugin, or the running program's code). Reading
    a registry first loads the installed plugins (:mod:`densecell.core.plugins`); an old name of ``renamed`` is found
    as its new name, with a warning."""

    def __init__(self, kind: str, entries: dict[str, Any], descriptions: dict[str, str] | None = None,
                 renamed: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._descriptions = dict(descriptions or {})
        self._sources = dict.fromkeys(entries, BUILTIN)
        self._renamed = dict(renamed or {})

    def name(self, name: str) -> str:
        """``name``, or the current name of an old one (with a warning)."""
        load_plugins()
        if name in self._renamed and name not in self._entries:
            warn_renamed(f"{self.kind} {name!r}", repr(self._renamed[name]))
            return self._renamed[name]
        return name

    def __getitem__(self, name: str) -> Any:
        name = self.name(name)
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
        self._sources[name] = current_source()

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        self._descriptions.pop(name, None)
        self._sources.pop(name, None)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries or name in self._renamed

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        load_plugins()
        return len(self._entries)

    def describe(self, name: str) -> str:
        """One line on what ``name`` is: its registered description, else the first line of its factory's
        docstring."""
        if name in self._descriptions:
            return self._descriptions[name]
        doc = (getattr(self[name], "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""

    def source(self, name: str) -> str:
        """Where ``name`` came from: ``densecell``, ``plugin DIST VERSION``, or ``registered in code``."""
        return self._sources[self.name(name)]

    def check(self, name: str, error: type[Exception] = ConfigError) -> str:
        """``name`` (an old name: its current one) if it is registered, else a one-line ``error`` that lists the
        names."""
        name = self.name(name)
        if name not in self._entries:
            raise error(f"unknown {self.kind} {name!r} (one of {', '.join(self._entries)})")
        return name

    def register(self, name: str, factory: Any = None, description: str | None = None) -> Any:
        """Add ``factory`` under ``name`` (or use as a decorator: ``@SAMPLERS.register("mine")``)."""
        def add(entry: Any) -> Any:
            self[name] = entry
            if description is not None:
                self._descriptions[name] = description
            return entry

        return add if factory is None else add(factory)


def _registry(kind: str, entries: dict[str, tuple[str, str]], renamed: dict[str, str] | None = None) -> Registry:
    return Registry(kind, {name: ref for name, (ref, _) in entries.items()},
                    {name: text for name, (_, text) in entries.items()}, renamed)


SAMPLERS = _registry("sampler", {
    "random": ("densecell.search.samplers:UniformSampler.create", "uniform draws without replacement (the paper's)"),
    "vizier": ("densecell.search.samplers:VizierSampler.create",
              "the paper's: Vizier's random search, half uniform draws, half mutations of the 5 best"),
    "evolution": ("densecell.search.samplers:EvolutionSampler.create", "regularized (aging) evolution"),
    "local-search": ("densecell.search.samplers:LocalSearchSampler.create",
                     "the neighbours of the best, a restart at a local optimum (White et al. 2020)"),
    "predictor": ("densecell.search.samplers:PredictorSampler.create",
                  "Bayesian optimisation: a Gaussian process on the cell's encoding, upper confidence bound"),
    "tpe": ("densecell.search.samplers:tpe_sampler", "Optuna's TPE"),
    "nsga2": ("densecell.search.samplers:nsga2_sampler", "Optuna's NSGA-II, two objectives (miou+madds|latency)"),
}, renamed={"local": "vizier"})
"""Samplers, for ``search.sampler``: ``(space, seed) -> optuna sampler``."""
PRUNERS = _registry("pruner", {
    "none": ("densecell.search.pruners:no_pruner", "every trial trains to the end"),
    "median": ("densecell.search.pruners:median_pruner", "Optuna's median pruner"),
    "successive-halving": ("densecell.search.pruners:successive_halving_pruner",
                           "Optuna's successive halving, rungs every proxy.eval_every steps"),
    "hyperband": ("densecell.search.pruners:hyperband_pruner", "Optuna's Hyperband, rungs every proxy.eval_every"),
})
"""Pruners, for ``search.pruner``: ``(eval_every, iterations) -> optuna pruner``."""
SEARCH_MODES = _registry("search mode", {
    "proxy": ("densecell.search.stages:ProxyMode", "every proposed cell trains on the proxy (the paper's)"),
    "oneshot": ("densecell.search.stages:OneShotMode",
                "a weight-sharing supernet screens cells, the best go to the proxy"),
})
"""Search modes, for ``search.mode``: what runs before the study's workers."""
SPACES = _registry("search space", {
    "dpc": ("densecell.search.spaces:DPCSpace", "the Dense Prediction Cell space (paper Sec. 3.1)"),
    "table": ("densecell.search.spaces:TableSpace.from_file", "the rows of a ground-truth table file"),
})
"""Search spaces a sampler searches: the DPC space, a ground-truth table's."""
HEADS = _registry("head", {
    "dpc": ("densecell.cell.heads:DensePredictionCell.from_settings", "a Dense Prediction Cell"),
    "aspp": ("densecell.cell.heads:ASPP.from_settings", "DeepLabv3's atrous spatial pyramid pooling"),
})
"""Context heads, for ``model.head``."""
_FAMILY_MODULES = {
    "conv1x1": ("densecell.cell.heads:conv1x1_module", "a 1x1 convolution"),
    "sep3x3": ("densecell.cell.heads:separable_module", "a 3x3 atrous separable convolution, rate r_h x r_w"),
    "pool": ("densecell.cell.heads:pooling_module", "average spatial pyramid pooling, grid g_h x g_w"),
}
OPERATIONS = _registry("operation", _FAMILY_MODULES)
"""The module of each operation family of :data:`densecell.cell.space.FAMILIES`, by the family's name."""
DATASETS = _registry("dataset", {
    "cityscapes": ("densecell.data.cityscapes:Cityscapes", "Cityscapes (leftImg8bit, gtFine or gtCoarse), 19 classes"),
    "voc": ("densecell.data.voc:PascalVOC", "PASCAL VOC 2012 (and SBD for train_aug), 21 classes"),
    "person_part": ("densecell.data.person_part:PersonPart", "PASCAL-Person-Part, 7 classes"),
    "folder": ("densecell.data.folder:FolderDataset", "your own data: images/ and masks/ folders and classes.yaml"),
})
"""Datasets, for ``data.dataset``: each reads its real on-disk layout."""
RANKERS = _registry("ranker", {
    "madds": ("densecell.search.rankers:cost_ranker", "fewer multiply-adds of the context module"),
    "params": ("densecell.search.rankers:cost_ranker", "fewer parameters of the context module"),
    **{f"count:{kind}": ("densecell.search.rankers:count_ranker", f"more {kind} branches") for kind in _FAMILY_MODULES},
    "gradnorm": ("densecell.search.rankers:zero_cost_ranker", "zero-cost: gradient norm at initialisation"),
    "snip": ("densecell.search.rankers:zero_cost_ranker", "zero-cost: SNIP saliency at initialisation"),
    "synflow": ("densecell.search.rankers:zero_cost_ranker", "zero-cost: SynFlow at initialisation (log)"),
    "naswot": ("densecell.search.rankers:zero_cost_ranker",
               "zero-cost: NASWOT activation-code kernel (log-determinant)"),
})
"""Cheap scores of a cell, for ``densecell fidelity --against NAME``."""
PROTOCOLS = _registry("protocol", {
    "end-to-end": ("densecell.search.fidelity:end_to_end", "each cell trained end to end with the re-ranking settings"),
    "oneshot": ("densecell.search.fidelity:oneshot", "the cell's score in the recipe's weight-sharing supernet"),
    "backbone": ("densecell.search.fidelity:other_backbone", "backbone=NAME: the proxy on another backbone's features"),
    "proxy": ("densecell.search.fidelity:changed_proxy", "proxy.FIELD=VALUE: the proxy with one setting changed"),
})
"""The second protocols of ``densecell fidelity --against`` (besides the rankers)."""
REGISTRIES: dict[str, Registry] = {
    "samplers": SAMPLERS, "pruners": PRUNERS, "modes": SEARCH_MODES, "spaces": SPACES, "heads": HEADS,
    "operations": OPERATIONS, "datasets": DATASETS, "rankers": RANKERS, "protocols": PROTOCOLS,
}
"""Every registry, by the name ``densecell list`` knows it by."""
