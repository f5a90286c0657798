"""The architecture search, on Optuna's pattern: an Optuna study over a search space, run by any number of workers
on any machines, and the proxy task that scores each cell.

- :mod:`~densecell.search.spaces`: what a sampler searches (the DPC cell space, a ground-truth table's space);
- :mod:`~densecell.search.tables`: ground-truth tables in one plain format;
- :mod:`~densecell.search.samplers` and :mod:`~densecell.search.pruners`: the registered strategies;
- :mod:`~densecell.search.study`: storage, creation, the study's sampler and pruner;
- :mod:`~densecell.search.worker`: the worker loop (heartbeats, retries, an exact budget);
- :mod:`~densecell.search.status`: reading a study;
- :mod:`~densecell.search.cache` and :mod:`~densecell.search.proxy`: the proxy task on cached backbone features;
- :mod:`~densecell.search.supernet`, :mod:`~densecell.search.rankers`, :mod:`~densecell.search.fidelity`: cheaper
  scores of a cell and how far each is trusted;
- :mod:`~densecell.search.stages`, :mod:`~densecell.search.pipeline`, :mod:`~densecell.search.report`: the one
  command and what it writes.

The names below load with their module (Optuna's, for most) on first use.
"""

from ..core.aliases import renamed_names
from ..core.extras import missing_extra
from ..core.lazy import lazy_names

_HOMES = {
    "pruners": ("LiveTrialsPruner", "hyperband_pruner", "median_pruner", "no_pruner", "successive_halving_pruner"),
    "samplers": ("EvolutionSampler", "LocalSearchSampler", "OptunaSampler", "PredictorSampler", "SpaceSampler",
                 "UniformSampler", "VizierSampler", "nsga2_sampler", "tpe_sampler"),
    "spaces": ("DPCSpace", "SamplerSpace", "TableSpace"),
    "status": ("StudyStatus", "completed_trials", "proxy_full_pairs", "study_status", "top_cells"),
    "study": ("RetryCell", "check_storage", "create_study", "load_study", "make_pruner", "make_sampler", "make_space",
              "open_storage", "redact", "study_precision"),
    "tables": ("Lookup", "Table", "TableError", "load_table"),
    "worker": ("Counts", "Objective", "counts", "own_process", "run_worker", "start_workers"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

_DEPRECATED = {"spaces": ("cell_from_params", "cell_params", "distributions", "suggest_cell")}
"""densecell 0.4's module functions for DPC cells, now :class:`DPCSpace`'s methods (each warns once)."""

_lazy, __dir__ = lazy_names(__name__, _HOMES | {"spaces": _HOMES["spaces"] + _DEPRECATED["spaces"]}, globals(),
                            lambda exc: missing_extra(exc, "search"))
__getattr__ = renamed_names(__name__, {"Space": "SamplerSpace", "LocalSampler": "VizierSampler"}, globals(), _lazy)
