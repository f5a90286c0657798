"""The search harness as a user's search runs (benchmarks/search_efficiency.py): W workers with trials in flight,
a noisy proxy, the pick as the best observed; one real worker on SQLite takes the harness's cells in its order, and
four real worker processes share one study."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from densecell.search import TableSpace, load_table
from helpers import write_table

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import search_efficiency

    return search_efficiency


@pytest.mark.parametrize("sampler", ["predictor", "random", "evolution"])
def test_w_workers_finish_exactly_the_budget_each_cell_once_and_pick_the_best_observed(harness, tmp_path, sampler):
    harness._SPACE = TableSpace(load_table(write_table(tmp_path / "t.json.gz", "sample")))
    table = harness._SPACE.table
    scenario = harness.Scenario(workers=4, noise=0.8, budget=40)
    trace = harness.run(harness.Strategy(sampler), 3, scenario)
    assert len(trace["rows"]) == 40 and len(set(trace["rows"])) == 40  # the budget, no cell trained twice
    assert trace["compute"] == list(range(1, 41))
    for done in range(1, 41):  # after each result: the table's score of the best observed so far
        observed = trace["observed"][:done]
        assert trace["best"][done - 1] == table.scores[trace["rows"][int(np.argmax(observed))]]
    noisy = np.array(trace["observed"]) - table.scores[trace["rows"]]
    assert 0.4 < noisy.std() < 1.3  # told scores scatter by the noise asked for
    assert harness.run(harness.Strategy(sampler), 3, scenario)["rows"] == trace["rows"]  # reproducible


def test_workers_ask_while_others_run(harness, tmp_path):
    """With W workers the W first proposals are made before any result: later ones see them as running."""
    harness._SPACE = TableSpace(load_table(write_table(tmp_path / "t.json.gz", "complete")))
    one = harness.run(harness.Strategy("predictor"), 0, harness.Scenario(workers=1, budget=20))
    eight = harness.run(harness.Strategy("predictor"), 0, harness.Scenario(workers=8, budget=20))
    assert len(eight["rows"]) == len(set(eight["rows"])) == 20 and one["rows"] != eight["rows"]


@pytest.mark.parametrize("sampler", ["predictor", "vizier", "local-search", "tpe"])
def test_one_real_worker_proposes_the_harness_cells_in_the_harness_order(harness, tmp_path, sampler):
    """The harness is densecell's own search without the waiting: a real worker (SQLite, the lookup objective, the
    study's seeded sampler) takes the same rows, in the same order, as the harness's one worker with that seed."""
    from densecell.config import StudySettings
    from densecell.search import create_study, run_worker

    table = write_table(tmp_path / "t.json.gz", "complete")
    harness._SPACE = TableSpace(load_table(table))
    simulated = harness.run(harness.Strategy(sampler), 3, harness.Scenario(workers=1, budget=20))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    settings = StudySettings(space=f"table={table}", sampler=sampler, trials=20, seed=3, cache_dir=str(tmp_path),
                             lookup={"seconds": 0.0, "spread": 0.0})
    study = create_study("one", storage, settings)
    assert run_worker("one", storage, worker_seed=0) == 20
    rows = [t.user_attrs["row"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert rows == simulated["rows"]


@pytest.mark.slow
def test_four_real_workers_on_a_table_train_the_budget_each_cell_once(tmp_path):
    """densecell search on a table's space: 4 worker processes, SQLite, heartbeats: exactly the budget, each cell
    once, in several processes, and a pick in the table's best quarter (a random search of 24 of the 81 cells misses
    all of its 20 best with probability 3e-4; a search that loses its scores or its rows does not)."""
    table = write_table(tmp_path / "t.json.gz", "complete")
    recipe = tmp_path / "table.yaml"
    recipe.write_text(yaml.safe_dump({"name": "table", "output_dir": str(tmp_path / "runs"), "search": {
        "space": f"table={table}", "sampler": "predictor", "trials": 24, "workers": 4,
        "lookup": {"seconds": 0.05, "spread": 0.3}}}))
    done = subprocess.run([sys.executable, "-m", "densecell", "search", "--config", str(recipe)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "complete 24" in done.stdout and "table row" in done.stdout
    study = optuna.load_study(study_name="table", storage=f"sqlite:///{tmp_path / 'runs' / 'table' / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    rows = [t.user_attrs["row"] for t in complete]
    assert len(rows) == len(set(rows)) == 24  # exactly the budget, each cell once
    assert len({t.user_attrs["pid"] for t in complete}) >= 2
    scores = load_table(table).scores
    assert all(t.value == scores[t.user_attrs["row"]] for t in complete)  # no noise asked for: the table's scores
    pick = complete[int(np.argmax([t.value for t in complete]))].user_attrs["row"]
    assert int(np.sum(scores > scores[pick])) < 20, sorted(scores[rows])


def test_the_harness_searches_a_dpc_table_under_a_latency_budget(tmp_path):
    """--latency-profile: only the rows predicted under the budget are searched (by every strategy, random search
    included), and the shares are read against the best row under it."""
    from densecell.cell.space import SearchSpace
    from densecell.models.profile import DeviceProfile
    from densecell.search import DPCSpace

    table = write_table(tmp_path / "t.json.gz", "dpc")
    operations = {op.choice: {"backbone": 3.0 if op.kind == "sep3x3" else 1.0, "cell": 2.0}
                  for op in SearchSpace().operations()}
    profile = DeviceProfile(runtime="torch", provider="cpu", device="test", threads=1, image_size=(513, 513),
                            output_stride=16, in_channels=320, filters=256, num_branches=5, operations=operations,
                            merge_ms=0.5).write(tmp_path / "device.json")
    env = os.environ | {"DENSECELL_BENCH_RESULTS": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "search_efficiency.py"), "--table", str(table),
                           "--latency-profile", str(profile), "--latency-budget", "11", "--budget", "20",
                           "--seeds", "3", "--sampler", "random", "--sampler", "predictor", "--jobs", "1",
                           "--name", "budget"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "budget.json").read_text())
    under = result["latency_budget"]
    assert under["budget_ms"] == 11 and 0 < under["rows_under"] < under["rows"] == 60
    assert result["rows"] == under["rows_under"] and str(under["rows_under"]) in result["random_reach"]
    space, predicted = DPCSpace(), DeviceProfile.read(profile)
    kept = load_table(table)
    assert sum(predicted.predict_ms(space.cell(p)) <= 11 for p in kept.points) == under["rows_under"]
