"""What densecell relies on in Optuna beyond its public API (``densecell.search._optuna``), pinned: an Optuna release
that changes one of these fails here, by name. ``make floors`` runs this file on the oldest Optuna the ``search``
extra allows as well."""

import optuna
import pytest
from optuna.pruners import NopPruner
from optuna.trial import TrialState

from densecell.search import _optuna
from densecell.search.pruners import LiveTrialsPruner, _LiveTrialsStorage


@pytest.fixture
def study(tmp_path):
    return optuna.create_study(study_name="pin", storage=f"sqlite:///{tmp_path / 'pin.db'}", direction="maximize")


def test_a_sampler_can_write_a_system_attribute_on_the_trial_it_proposes_for(study):
    seen = {}

    class Writes(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):  # trial is a FrozenTrial here
            _optuna.set_trial_system_attr(study, trial, "run", 3)
            seen["frozen"] = type(trial)
            return super().sample_independent(study, trial, name, distribution)

    study.sampler = Writes(seed=0)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert seen["frozen"] is optuna.trial.FrozenTrial
    assert study.trials[0].system_attrs["run"] == 3
    assert isinstance(_optuna.storage_of(study), optuna.storages.BaseStorage)


def test_a_study_read_through_a_wrapped_storage_sees_what_the_wrapper_shows(study):
    for value in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, state=TrialState.FAIL))
    live = _optuna.study_on(study, _LiveTrialsStorage(_optuna.storage_of(study)), NopPruner())
    assert [t.state for t in live.get_trials()] == [TrialState.COMPLETE] * 2
    assert live.study_name == study.study_name and isinstance(live.pruner, NopPruner)
    assert LiveTrialsPruner(NopPruner()).prune(study, study.trials[0]) is False


def test_telling_a_finished_trial_again_is_the_error_a_worker_recognises(study):
    trial = study.ask()
    study.tell(trial, 0.5)
    with pytest.raises(ValueError) as info:
        study.tell(trial, 0.6)
    assert _optuna.told_twice(info.value)
    assert not _optuna.told_twice(ValueError("something else"))
