"""The contract every registered sampler keeps, on the DPC space and on generated tables (a complete one and a
sample): valid, distinct proposals through Optuna's ask/tell, the same proposals for the same seed, and two workers
on one study never proposing the same cell. Then what each strategy is for."""

import random

import optuna
import pytest
from optuna.trial import TrialState

from densecell.cell.space import SearchSpace
from densecell.core.registry import SAMPLERS
from densecell.search import DPCSpace, LocalSearchSampler, PredictorSampler, TableSpace, VizierSampler, load_table
from helpers import write_table

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["dpc", "complete", "sample"])
def space(request, tmp_path):
    if request.param == "dpc":
        return DPCSpace(SearchSpace(num_branches=3, rates=(1, 6), grids=(1, 2)))
    return TableSpace(load_table(write_table(tmp_path / "t.json.gz", request.param)))


def score(space, point):
    """A score the samplers can learn: the table's, or a function of the DPC cell."""
    if isinstance(space, TableSpace):
        return float(space.table.scores[space.row(point)])
    cell = space.cell(point)
    return sum(b.op.kind == "pool" for b in cell) + 0.1 * sum(b.input == -1 for b in cell)


def directions(name):
    return ["maximize", "minimize"] if name == "nsga2" else ["maximize"]


def values(name, space, point, index):
    return [score(space, point), float(index % 7)] if name == "nsga2" else score(space, point)


def search(name, space, seed, count):
    study = optuna.create_study(directions=directions(name), sampler=SAMPLERS[name](space, seed))
    points = []
    for index in range(count):
        trial = study.ask()
        points.append(space.suggest(trial))
        study.tell(trial, values(name, space, points[-1], index))
    return points


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_proposes_valid_distinct_cells_the_same_for_the_same_seed(name, space):
    count = 25
    points = search(name, space, 3, count)
    assert all(point in space for point in points)
    assert len(set(points)) == count  # no cell trained twice
    assert search(name, space, 3, count) == points


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_two_workers_on_one_study_never_take_the_same_cell(name, space):
    """Two samplers (two workers' seeds) on one storage, each asking while the other's trial is still running."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="shared", directions=directions(name))
    workers = [optuna.load_study(study_name="shared", storage=storage, sampler=SAMPLERS[name](space, seed))
               for seed in (1, 2)]
    points = []
    for index in range(12):
        running = [(study, study.ask()) for study in workers]
        points += [space.suggest(trial) for _, trial in running]
        for (study, trial), point in zip(running, points[-2:]):
            study.tell(trial, values(name, space, point, index))
    assert len(set(points)) == len(points) == 24 and all(point in space for point in points)


def test_a_proposal_outside_a_sample_table_becomes_the_nearest_untried_row(tmp_path):
    space = TableSpace(load_table(write_table(tmp_path / "t.json.gz", "sample")))
    row = space.table.points[0]
    outside = (7,) + row[1:]  # 7 is no choice of p0: one position differs from row 0 and more from the others
    rng = random.Random(0)
    assert space.project(outside, set(), rng) == row
    assert space.project(row, {row}, rng) != row
    nearest = space.project(row, {row}, rng)
    others = [p for p in space.table.points if p != row]
    assert sum(a != b for a, b in zip(nearest, row)) == min(sum(a != b for a, b in zip(p, row)) for p in others)


def test_every_row_is_taken_once_when_the_budget_exceeds_a_small_table(tmp_path):
    space = TableSpace(load_table(write_table(tmp_path / "t.json.gz", "complete")))
    assert sorted(search("predictor", space, 0, 81)) == sorted(space.table.points)


def test_the_local_sampler_mutates_the_best_cells():
    space = DPCSpace()
    study = optuna.create_study(direction="maximize", sampler=VizierSampler(space, explore=0.0, top=1, seed=0))
    best, other = space.sample(random.Random(1)), space.sample(random.Random(2))
    dists = space.distributions()
    study.add_trial(optuna.trial.create_trial(params=space.params(best), distributions=dists, value=0.9))
    study.add_trial(optuna.trial.create_trial(params=space.params(other), distributions=dists, value=0.1))
    for _ in range(5):
        trial = study.ask()
        child = space.suggest(trial)
        study.tell(trial, 0.0)
        assert sum(a != b for a, b in zip(space.cell(child), space.cell(best))) == 1  # one branch from the best


def test_local_search_trains_the_neighbours_of_the_best_and_restarts_at_a_local_optimum(tmp_path):
    """On a complete table every neighbour is a row: after its first (uniform) cell, a run trains only neighbours of
    its best so far; when all of the best's neighbours are trained and none is better, a new run starts."""
    space = TableSpace(load_table(write_table(tmp_path / "t.json.gz", "complete")))
    study = optuna.create_study(direction="maximize", sampler=LocalSearchSampler(space, seed=0))
    for _ in range(60):
        trial = study.ask()
        study.tell(trial, score(space, space.suggest(trial)))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    runs = [t.system_attrs[LocalSearchSampler.KEY] for t in trials]
    assert runs == sorted(runs) and runs[-1] >= 1  # it restarted at least once, and runs follow each other

    def best_of(run, before):
        return space.point(max((t for t in before if runs[t.number] == run), key=lambda t: t.value).params)

    for trial in trials[1:]:
        before, run = trials[:trial.number], runs[trial.number]
        if run in runs[:trial.number]:
            assert space.point(trial.params) in space.neighbours(best_of(run, before))
        else:  # a restart: every neighbour of the run it left was trained, and none was better
            assert set(space.neighbours(best_of(run - 1, before))) <= {space.point(t.params) for t in before}


def test_the_predictor_finds_the_best_rows_of_a_learnable_table_faster_than_uniform_draws(tmp_path):
    """On the generated sample table the score is a weighted sum of the positions: after its 10 uniform cells, the
    forest proposes better cells than uniform draws do (the median of 5 seeds' best after 30 cells)."""
    space = TableSpace(load_table(write_table(tmp_path / "t.json.gz", "sample")))

    def best(name):
        return sorted(max(score(space, p) for p in search(name, space, seed, 30)) for seed in range(5))[2]

    assert best("predictor") > best("random")
    assert best("predictor") >= space.table.top_score(0.02)


def test_the_predictor_tunes_on_its_cadence_and_fits_on_the_best_and_the_recent_only():
    """``refit=0.5``: the kernel is tuned anew once the completed cells have grown by half since the last tuning,
    and in between the process is conditioned on every new cell; ``fit_limit=20``: on the 10 best and the 10 most
    recent cells, however many there are."""
    space = DPCSpace()
    sampler = PredictorSampler(space, startup=5, refit=0.5, fit_limit=20, candidates=50, parents=2, mutations=5,
                               seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    tuned, values = [], []
    for _ in range(45):
        trial = study.ask()
        fitted = sampler._fitted
        values.append(score(space, space.suggest(trial)))
        study.tell(trial, values[-1])
        if sampler._fitted != fitted:
            tuned.append(sampler._fitted)
    assert tuned == [5, 8, 12, 18, 27, 41]
    trained = sampler._model.y_train_  # (normalised) values of the cells it was conditioned on, at the last ask
    assert len(trained) == 20
    assert sampler._best == max(values[:44])  # it had seen the 44 cells told before the last ask
