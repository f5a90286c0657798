"""The few places densecell reaches past Optuna's public API, in one module, each pinned by
``tests/test_optuna_contract.py`` for the Optuna versions the ``search`` extra allows: an Optuna release that changes
one of them fails that test, by name, rather than the search.

- a sampler writes a system attribute on the trial it is proposing for (:func:`set_trial_system_attr`): Optuna's
  public ``Trial.set_system_attr`` is gone, and a sampler holds a ``FrozenTrial``;
- a pruner sees the study through a filtered storage (:func:`study_on`): the public ``Study`` constructor takes any
  storage, but the study's own is private;
- a worker recognises the error of telling a trial that another worker has finished (:func:`told_twice`): Optuna
  raises a plain ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

__all__ = ["set_trial_system_attr", "storage_of", "study_on", "told_twice"]

_TOLD_TWICE = "Cannot tell a COMPLETE trial"
"""How Optuna's ``Study.tell`` error begins when the trial is already complete."""


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (``Study._storage``)."""
    return study._storage  # noqa: SLF001


def set_trial_system_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Write ``key`` into the system attributes of ``trial`` (a running trial, as a sampler sees it)."""
    storage_of(study).set_trial_system_attr(trial._trial_id, key, value)  # noqa: SLF001


def study_on(study: optuna.Study, storage: BaseStorage, pruner: BasePruner) -> optuna.Study:
    """The same study read through ``storage`` (a wrapper of its own) and deciding with ``pruner``."""
    return optuna.Study(study_name=study.study_name, storage=storage, sampler=study.sampler, pruner=pruner)


def told_twice(error: ValueError) -> bool:
    """Whether ``error`` is Optuna's refusal to tell a trial that is already complete."""
    return str(error).startswith(_TOLD_TWICE)
