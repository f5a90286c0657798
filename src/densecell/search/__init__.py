"""The architecture search, on Optuna's pattern: an Optuna study over a search space, run by any number of workers
on any machines.

- :mod:`~densecell.search.spaces`: what a sampler searches (the DPC cell space, a ground-truth table's space);
- :mod:`~densecell.search.tables`: ground-truth tables in one plain format;
- :mod:`~densecell.search.samplers` and :mod:`~densecell.search.pruners`: the registered strategies;
- :mod:`~densecell.search.study`: storage, creation, the study's sampler and pruner;
- :mod:`~densecell.search.worker`: the worker loop (heartbeats, retries, an exact budget);
- :mod:`~densecell.search.status`: reading a study.
"""

from ..extras import missing_extra

try:
    import optuna  # noqa: F401  (the search extra: one line that names it, before any of its modules fails)
except ImportError as exc:
    raise missing_extra(exc, "search") from None

from .pruners import LiveTrialsPruner, hyperband_pruner, median_pruner, no_pruner, successive_halving_pruner
from .samplers import (
    EvolutionSampler,
    LocalSampler,
    LocalSearchSampler,
    OptunaSampler,
    PredictorSampler,
    SpaceSampler,
    UniformSampler,
    nsga2_sampler,
    tpe_sampler,
)
from .spaces import DPCSpace, Space, TableSpace, cell_from_params, cell_params, distributions, suggest_cell
from .status import StudyStatus, completed_trials, proxy_full_pairs, study_status, top_cells
from .study import (
    RetryCell,
    check_storage,
    create_study,
    load_study,
    make_pruner,
    make_sampler,
    make_space,
    open_storage,
    redact,
    study_precision,
)
from .tables import Lookup, Table, TableError, load_table
from .worker import Counts, Objective, counts, own_process, run_worker, start_workers

__all__ = [
    "cell_from_params", "cell_params", "check_storage", "completed_trials", "Counts", "counts", "create_study",
    "distributions", "DPCSpace", "EvolutionSampler", "hyperband_pruner", "LiveTrialsPruner", "load_study",
    "load_table", "LocalSampler", "Lookup", "LocalSearchSampler", "make_pruner", "make_sampler",
    "make_space", "median_pruner", "no_pruner",
    "nsga2_sampler", "Objective", "open_storage", "OptunaSampler", "own_process", "PredictorSampler",
    "proxy_full_pairs", "redact", "RetryCell", "run_worker", "Space", "SpaceSampler", "start_workers",
    "study_precision", "study_status", "StudyStatus", "successive_halving_pruner", "suggest_cell", "Table",
    "TableError", "TableSpace", "top_cells", "tpe_sampler", "UniformSampler",
]
