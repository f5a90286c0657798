"""The pruners of a multi-fidelity search: Optuna's, on rungs at the proxy's ``eval_every`` steps, each comparing a
trial only with trials whose workers did not die. A pruner is registered in :data:`densecell.core.registry.PRUNERS` as a
factory ``(eval_every, iterations) -> pruner``: the first rung and the full training, in proxy steps."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.trial import FrozenTrial, TrialState

from ._optuna import storage_of, study_on

__all__ = ["hyperband_pruner", "LiveTrialsPruner", "median_pruner", "no_pruner", "successive_halving_pruner"]


class _LiveTrialsStorage:
    """A view of an Optuna storage without the trials whose workers died (FAIL)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [t for t in self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
                if t.state != TrialState.FAIL]


class LiveTrialsPruner(BasePruner):
    """An Optuna pruner that compares a trial only with trials that did not fail: the rung values that a dead
    worker's trial recorded (successive halving's ``completed_rung_N``) leave the pool that decides who goes on,
    as its retry (:class:`~densecell.search.study.RetryCell`) starts again at the first rung."""

    def __init__(self, pruner: BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        live = study_on(study, _LiveTrialsStorage(storage_of(study)), self.pruner)
        return self.pruner.prune(live, trial)


def no_pruner(eval_every: int, iterations: int) -> BasePruner:
    return NopPruner()


def median_pruner(eval_every: int, iterations: int) -> BasePruner:
    return MedianPruner(n_startup_trials=5)


def successive_halving_pruner(eval_every: int, iterations: int) -> BasePruner:
    return SuccessiveHalvingPruner(min_resource=eval_every, reduction_factor=3)


def hyperband_pruner(eval_every: int, iterations: int) -> BasePruner:
    return HyperbandPruner(min_resource=eval_every, max_resource=iterations, reduction_factor=3)
