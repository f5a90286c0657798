"""The study's record: one owner for its keys, and a study written by the first release (commit fbd9eb0) still
reads."""

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from densecell.cell.space import SearchSpace, load_cell
from densecell.config import StudySettings
from densecell.search import DPCSpace, completed_trials, load_study, record, study_status
from densecell.search.record import TrialRecord
from densecell.search.report import write_report

# What fbd9eb0 stored: the settings dataclass as JSON, and these user attributes.
OLD_SETTINGS = {
    "cache_dir": "/runs/old/cache", "trials": 2, "sampler": "local", "objectives": "miou",
    "proxy": {"iterations": 100, "batch_size": 8, "lr": 0.01, "power": 0.9, "momentum": 0.9, "weight_decay": 4e-05,
              "filters": 64, "eval_every": 0, "amp": "auto", "channels_last": True, "upsample_logits": True,
              "optimizer": "adam"},
    "num_branches": 5, "rates": [1, 3, 6, 9, 12, 15, 18, 21], "grids": [1, 2, 4, 8], "seed": 0, "prune": False,
    "threads": 1, "heartbeat_s": 5, "grace_s": 20, "max_retry": 3, "max_failures": 20,
}


def old_trial(cell, value, **attrs):
    space = SearchSpace()
    base = {"cell": cell.to_json(), "params": 1000, "madds": 2_000_000, "host": "old-host", "pid": 42,
            "proxy_miou": value, "seconds": 12.5}
    return create_trial(params=DPCSpace().params_of(cell), distributions=DPCSpace(space).distributions(), value=value,
                        user_attrs=base | attrs)


@pytest.fixture
def old_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    study.set_user_attr("densecell", json.dumps(OLD_SETTINGS))
    space = SearchSpace()
    study.add_trial(old_trial(load_cell("cityscapes-top1"), 0.7))
    study.add_trial(old_trial(space.sample(1), 0.5))
    study.add_trial(create_trial(params=DPCSpace().params_of(space.sample(2)),
                                 distributions=DPCSpace(space).distributions(),
                                 state=TrialState.FAIL, user_attrs={"cell": space.sample(2).to_json(),
                                                                    "error": "proxy loss is nan at iteration 3"}))
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={"surplus": True}))
    study.set_user_attr("full_miou:0", 0.66)
    study.set_user_attr("baseline_miou", 0.4)
    return storage


def test_an_old_study_reads(old_study, tmp_path):
    study, settings = load_study("old", old_study)
    assert settings.pruner == "none" and settings.proxy.memory_format == "channels_last"
    assert settings.proxy.optimizer == "adam" and settings.cell_space == SearchSpace()
    best = completed_trials(study)
    assert [t.number for t in best] == [0, 1] and best[0].cell == load_cell("cityscapes-top1")
    assert best[0].stage == "proxy" and best[0].host == "old-host" and best[0].seconds == 12.5
    assert record.full_scores(study) == {0: 0.66} and record.baseline(study) == 0.4
    status = study_status(study, settings)
    assert status.surplus == 1 and status.failures == [(2, "proxy loss is nan at iteration 3")]
    assert status.states == {"complete": 2, "fail": 1, "pruned": 1}
    outputs = write_report(study, tmp_path)
    summary = json.loads((outputs["report"].parent / "summary.json").read_text())
    assert summary["best_trial"] == 0 and summary["proxy_miou"]["baseline_1x1"] == 0.4


def test_settings_written_today_read_back_equal():
    settings = StudySettings(cache_dir="/x", trials=3, sampler="evolution", pruner="hyperband",
                              proxy={"eval_every": 10, "iterations": 30})
    assert StudySettings.from_json(settings.to_json()) == settings


def test_a_record_round_trips_and_refuses_unknown_facts():
    cell = load_cell("cityscapes-top1")
    facts = TrialRecord(cell=cell, params=3, madds=4, seconds=1.5, host="h", pid=9, proxy_miou=0.5, steps=100,
                        stage="oneshot", oneshot_miou=0.3, surplus=True)
    attrs = facts.to_attrs()
    assert TrialRecord.from_attrs(attrs) == facts
    assert "number" not in attrs and attrs["cell"] == cell.to_json()
    with pytest.raises(TypeError):
        TrialRecord(colour="red")


def test_distributions_are_categorical():
    assert all(isinstance(d, CategoricalDistribution) for d in DPCSpace(SearchSpace()).distributions().values())


def test_the_old_cell_functions_still_work_and_warn_once():
    """densecell 0.4's module functions are the DPC space's methods now; each old door warns the first time."""
    import warnings

    import densecell.search as search

    cell, space = SearchSpace().sample(0), SearchSpace()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = search.cell_params(cell)
        assert search.cell_from_params(params, space) == cell == DPCSpace(space).cell_of(params)
        assert search.distributions(space) == DPCSpace(space).distributions()
        search.cell_params(cell)
        assert search.Space is search.SamplerSpace and search.LocalSampler is search.VizierSampler
    moved = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert sum("cell_params" in text for text in moved) <= 1 and any("SamplerSpace" in text for text in moved)


def test_correlations_read_the_written_report_and_need_five_pairs(old_study, tmp_path):
    from densecell.core.errors import InputError
    from densecell.search.report import correlations

    with pytest.raises(InputError, match="no report"):
        correlations(tmp_path / "nothing")
    study, space = load_study("old", old_study)[0], SearchSpace()
    for seed in range(3, 9):
        study.add_trial(old_trial(space.sample(seed), 0.3 + seed / 100))
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    for number in complete[:4]:
        study.set_user_attr(f"full_miou:{number}", 0.2 + number / 50)
    report = write_report(study, tmp_path)["report"].parent
    with pytest.raises(InputError, match="at least 5 cells"):  # 4 pairs: a sentence in the report, no plot
        correlations(report)
    study.set_user_attr(f"full_miou:{complete[4]}", 0.5)
    report = write_report(study, tmp_path)["report"].parent
    before = {path: path.stat().st_mtime_ns for path in report.iterdir()}
    (found,) = correlations(report)
    assert found.what == "proxy vs end-to-end" and found.cells == 5 and found.plot.exists()
    assert {path: path.stat().st_mtime_ns for path in report.iterdir()} == before  # read, not written again
