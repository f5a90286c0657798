import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from huggingface_hub import ModelCard
from optuna.trial import TrialState

from densecell.cell.space import Cell, SearchSpace
from densecell.config import ProxySettings, StudySettings
from densecell.core.errors import ConfigError, StudyError
from densecell.search import (
    DPCSpace,
    EvolutionSampler,
    VizierSampler,
    create_study,
    load_study,
    redact,
    run_worker,
)
from densecell.search import study as study_module
from densecell.search import worker as worker_module
from helpers import Held

FAST = ProxySettings(iterations=8, batch_size=2, lr=0.05, filters=8)


def settings_for(cache, trials, **extra):
    """A study's settings for these tests: a heartbeat every second, and a trial stale after 30 s without one. A
    test that kills a worker asks for less; elsewhere a busy machine (the suite runs on 2 processes) must not make a
    live worker's trial look dead."""
    return StudySettings(cache_dir=str(cache), trials=trials, **({"proxy": FAST, "heartbeat_s": 1, "grace_s": 30}
                                                                 | extra))


def start_worker(storage, study, seed, env=None):
    env = os.environ | {"DENSECELL_STORAGE": storage, "PYTHONUNBUFFERED": "1"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "densecell", "search", "worker", "--study", study, "--seed",
                             str(seed), "--device", "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finished(study_name, storage):
    study = optuna.load_study(study_name=study_name, storage=storage)
    return study, study.get_trials(deepcopy=False)


def test_cell_parameters_round_trip():
    space = SearchSpace()
    for seed in range(50):
        cell = space.sample(seed)
        assert DPCSpace(space).cell_of(DPCSpace().params_of(cell)) == cell


@pytest.mark.parametrize("make", [lambda space: VizierSampler(space, explore=0.5, top=1, seed=0),
                                  lambda space: EvolutionSampler(space, population=2, sample=2, seed=0)],
                         ids=["vizier", "evolution"])
def test_mutation_samplers_never_repeat_a_proposed_cell_while_others_remain(make):
    """Two branches, one rate, one grid: 2 x 3**2 = 18 cells, where one-branch mutations often undo each other."""

    space = SearchSpace(num_branches=2, rates=(1,), grids=(1,))
    study = optuna.create_study(direction="maximize", sampler=make(DPCSpace(space)))
    cells = []
    for i in range(space.size()):
        trial = study.ask()
        cells.append(DPCSpace(space).suggest_cell(trial))
        study.tell(trial, float(i % 3))
    assert len(set(cells)) == space.size() == 18


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="sampler"):
        StudySettings(cache_dir="x", sampler="annealing")
    with pytest.raises(ConfigError, match="two objectives"):
        StudySettings(cache_dir="x", sampler="nsga2")
    with pytest.raises(ConfigError, match="proxy.eval_every"):
        StudySettings(cache_dir="x", pruner="median")


def test_redact_hides_the_password():
    assert redact("postgresql://user:s3cret@db.example:5432/optuna") == "postgresql://user:***@db.example:5432/optuna"


def test_unreachable_database_is_a_clear_error_without_the_password():
    with pytest.raises(StudyError) as info:
        load_study("s", "postgresql://user:s3cret@127.0.0.1:1/optuna")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def run_workers(storage, study, count):
    """``count`` worker processes on one study; all must exit cleanly without a lock error reaching the user."""
    workers = [start_worker(storage, study, seed) for seed in range(count)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert not any("locked" in err for _, err in outputs), outputs
    return workers


@pytest.mark.slow
@pytest.mark.parametrize("sampler,objectives,workers", [("random", "miou", 4), ("nsga2", "miou+madds", 2)])
def test_workers_finish_exactly_n_distinct_trials_on_sqlite(feature_cache, tmp_path, sampler, objectives, workers):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    longer = ProxySettings(iterations=60, batch_size=2, lr=0.05, filters=8)  # long enough for all to take trials
    n = 2 * workers + 2
    create_study("many", storage, settings_for(feature_cache[0], n, sampler=sampler, objectives=objectives,
                                               proxy=longer))
    processes = run_workers(storage, "many", workers)
    study, trials = finished("many", storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    assert len({t.user_attrs["cell"] for t in complete}) == n
    assert len({t.user_attrs["pid"] for t in complete} & {w.pid for w in processes}) >= 2  # they shared the work
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == TrialState.PRUNED)
    for t in complete:
        assert {"cell", "proxy_miou", "params", "madds", "seconds", "host"} <= t.user_attrs.keys()
        assert len(t.values) == (2 if objectives == "miou+madds" else 1)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_its_retry_starts_at_the_first_rung(feature_cache, tmp_path):
    """A worker SIGKILLed under Hyperband after its trial passed a rung: the trial is failed and retried with the
    same cell, exactly N trials complete, and the retry carries none of the dead trial's pruner state (Optuna's own
    retry copies its ``completed_rung_N`` markers, so the retry would skip rungs)."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    slow = ProxySettings(iterations=300, batch_size=2, lr=0.05, filters=8, eval_every=150)  # one bracket
    create_study("kill", storage, settings_for(feature_cache[0], 3, proxy=slow, pruner="hyperband", grace_s=3))
    held = Held(tmp_path / "held", "rung")  # just after its trial reported its first rung
    victim = start_worker(storage, "kill", 0, env=held.env)
    held.wait(victim)
    _, trials = finished("kill", storage)
    assert any(t.state == TrialState.RUNNING and t.user_attrs.get("pid") == victim.pid for t in trials)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = start_worker(storage, "kill", 1)
    out = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, out
    _, trials = finished("kill", storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 3
    assert len(failed) == 1 and failed[0].user_attrs["pid"] == victim.pid
    assert "completed_rung_0" in failed[0].system_attrs
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    retry = retried[0]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED) and retry.user_attrs["pid"] == survivor.pid
    assert retry.system_attrs["retry_history"] == [failed[0].number]
    rungs = {key: value for key, value in retry.system_attrs.items() if key.startswith("completed_rung_")}
    assert rungs and set(rungs.values()) <= set(retry.intermediate_values.values())  # its own, from rung 0 on
    assert failed[0].system_attrs["completed_rung_0"] not in retry.intermediate_values.values()


def test_a_dead_trials_rung_values_leave_the_pool_the_pruner_compares_against():
    """Successive halving promotes a trial that is in the top 1/eta of the values recorded at its rung. A trial
    whose worker died keeps its rung value; it must not keep a live trial from going on."""
    from optuna.pruners import SuccessiveHalvingPruner

    from densecell.search import LiveTrialsPruner

    def decision(pruner):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        dists = {"x": optuna.distributions.FloatDistribution(0, 1)}
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 0.1}, distributions=dists,
                                                  intermediate_values={1: 0.99},
                                                  system_attrs={"completed_rung_0": 0.99}))
        study.add_trial(optuna.trial.create_trial(params={"x": 0.2}, distributions=dists, value=0.6,
                                                  intermediate_values={1: 0.5, 2: 0.6},
                                                  system_attrs={"completed_rung_0": 0.5}))
        trial = study.ask({"x": dists["x"]})
        trial.report(0.7, 1)
        return trial.should_prune()

    assert decision(SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))  # Optuna's: pruned by a dead trial
    assert not decision(LiveTrialsPruner(SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)))


def test_the_precision_is_chosen_once_per_study_and_recorded_in_each_trial(feature_cache, tmp_path, monkeypatch):
    """Workers once chose the precision each for itself (``autotune.json`` without a lock), so one study could mix
    bf16- and fp16-trained trials. It is chosen once, when the study is created, stored with it, and every trial
    records the precision, layout and engine it trained with."""
    from densecell.search import run_worker
    from densecell.search.record import TrialRecord
    from densecell.training.precision import Precision

    calls = []
    monkeypatch.setattr(study_module, "resolve_precision", lambda *args: calls.append(args) or Precision("bf16"))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("p", storage, settings_for(feature_cache[0], 2))
    create_study("p", storage, settings_for(feature_cache[0], 2))  # a second command joins: no second choice
    assert len(calls) == 1
    assert run_worker("p", storage, worker_seed=0) == 2 and len(calls) == 1  # the worker took the study's
    study = optuna.load_study(study_name="p", storage=storage)
    assert study.user_attrs["precision"] == {"amp": "bf16", "channels_last": False, "device": "cpu"}
    records = [TrialRecord.from_trial(t) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert [(r.amp, r.memory_format, r.engine) for r in records] == [("bf16", "contiguous", "eager")] * 2


def find_postgres_bin():
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # the real bin folder, which also holds createdb
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        if os.environ.get("CI") == "true":  # .ci/run installs the server: there, this test must run
            raise AssertionError("PostgreSQL server binaries not found (CI=true): .ci/run installs them")
        pytest.skip("no PostgreSQL server binaries here (apt-get install postgresql); CI=true makes this required")
    return candidates[-1].parent


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1. As root (CI), the server
    runs as the ``postgres`` user, so the folder is outside pytest's private temporary root."""
    binaries = find_postgres_bin()
    tmp_path = Path(tempfile.mkdtemp(prefix="densecell-pg-"))
    data = tmp_path / "pgdata"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tmp_path.chmod(0o777)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(as_user + [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E",
                              "UTF8"], check=True, capture_output=True)
    subprocess.run(as_user + [str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(tmp_path / "pg.log"),
                              "-o", f"-p {port} -k {tmp_path} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_user + [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                  "densecell"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/densecell"
    finally:
        subprocess.run(as_user + [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_four_workers_on_postgresql(feature_cache, postgres):
    create_study("pg", postgres, settings_for(feature_cache[0], 8, sampler="vizier"))
    processes = run_workers(postgres, "pg", 4)
    _, trials = finished("pg", postgres)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8 and len({t.user_attrs["cell"] for t in complete}) == 8
    assert len({t.user_attrs["pid"] for t in complete} & {w.pid for w in processes}) >= 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def test_a_study_with_other_settings_is_refused(feature_cache, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("s", storage, settings_for(feature_cache[0], 3))
    with pytest.raises(StudyError, match="other settings"):
        create_study("s", storage, settings_for(feature_cache[0], 4))
    with pytest.raises(StudyError, match="no study 'nope'"):
        load_study("nope", storage)


def test_status_fits_80_columns_and_wide_shows_the_cells(feature_cache, tmp_path, densecell, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("status", storage, settings_for(feature_cache[0], 3))
    threads = __import__("torch").get_num_threads()
    try:
        from densecell.search import run_worker

        assert run_worker("status", storage, worker_seed=0) == 3
    finally:
        __import__("torch").set_num_threads(threads)
    code, out, _ = densecell("search", "status", "--storage", storage, "--study", "status")
    assert code == 0 and "complete 3" in out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    study = optuna.load_study(study_name="status", storage=storage)
    from densecell.search import completed_trials

    best = completed_trials(study)
    rows = [line for line in out.splitlines() if best[0].cell.digest() in line]
    assert len(rows) == 1  # one line per trial, the cell as its digest
    code, out, _ = densecell("search", "status", "--storage", storage, "--study", "status", "--wide")
    assert code == 0 and best[0].cell.short().split()[0] in out and "host" in out
    # the best cells as files to rank again, each with a card to publish it without a model
    code, out, err = densecell("search", "top", "--k", "2", "--output", tmp_path / "top", "--storage", storage,
                               "--study", "status")
    assert code == 0 and len(list((tmp_path / "top").glob("rank-*.json"))) == 2, err
    card_folder = tmp_path / "top" / "cards" / f"rank-01-trial-{best[0].number}"
    card = ModelCard.load(card_folder / "README.md")
    assert card.data.library_name == "densecell" and "dense-prediction-cell" in card.data.tags
    assert f"{best[0].values[0] * 100:.2f}%" in card.text and '"trials": 3' in card.text
    assert (card_folder / "cell.png").stat().st_size > 1000
    assert Cell.from_json(card_folder / "cell.json") == best[0].cell


@pytest.mark.slow
@pytest.mark.parametrize("pruner", ["median", "successive-halving", "hyperband"])
def test_pruned_trials_are_pruned_with_their_last_score_and_the_budget_stays_exact(feature_cache, tmp_path, pruner):
    """Multi-fidelity: trials report their proxy mIoU every eval_every steps and a pruner may stop them. A pruned trial
    is PRUNED (not failed), keeps its last score and the steps it took, and does not count towards the N complete."""
    from densecell.search import run_worker, study_status
    from densecell.search.record import TrialRecord

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proxy = ProxySettings(iterations=12, batch_size=2, lr=0.05, filters=8, eval_every=3)
    settings = settings_for(feature_cache[0], 8, proxy=proxy, pruner=pruner)
    create_study("mf", storage, settings)
    threads = __import__("torch").get_num_threads()
    try:
        assert run_worker("mf", storage, worker_seed=0) == 8
    finally:
        __import__("torch").set_num_threads(threads)
    study, trials = finished("mf", storage)
    records = [TrialRecord.from_trial(t) for t in trials]
    assert sum(t.state == TrialState.COMPLETE for t in records) == 8
    pruned = [t for t in records if t.state == TrialState.PRUNED and not t.surplus]
    assert not [t for t in records if t.state == TrialState.FAIL] and pruned  # measured: 2 to 8 are pruned
    for t in pruned:
        assert t.pruned_at in (3, 6, 9) and t.steps == t.pruned_at and t.values and t.values[0] == t.proxy_miou
    status = study_status(*load_study("mf", storage))
    assert status.pruned_steps == sum(t.steps for t in pruned)
    assert status.spent_steps == status.pruned_steps + 8 * 12


def test_the_predictor_sampler_searches_end_to_end(feature_cache, tmp_path):
    """The recipes' sampler in densecell search: after its uniform start, a forest fitted on the completed trials
    proposes cells the study has not tried."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("predictor", storage, settings_for(feature_cache[0], 13, sampler="predictor"))
    assert run_worker("predictor", storage, worker_seed=0) == 13
    _, trials = finished("predictor", storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 13 and len({t.user_attrs["cell"] for t in complete}) == 13


def test_a_queued_trial_taken_by_two_workers_is_recorded_once_and_the_worker_goes_on(feature_cache, tmp_path,
                                                                                   monkeypatch):
    """On SQLite (no row locks) two workers starting together can both pop one queued trial; the second's tell
    raises in Optuna. Simulated: another worker finishes the trial while this one trains it."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("twice", storage, settings_for(feature_cache[0], 2))
    real = worker_module.train_candidate

    def finished_meanwhile(cell, cache, settings, seed, **kwargs):
        result = real(cell, cache, settings, seed=seed, **kwargs)
        if seed == 0:  # the other worker tells trial 0 first
            study = optuna.load_study(study_name="twice", storage=storage)
            study.tell(0, result.miou)
        return result

    monkeypatch.setattr(worker_module, "train_candidate", finished_meanwhile)
    assert run_worker("twice", storage, worker_seed=1) == 1  # trial 0 counted once (the other's), trial 1 its own
    trials = optuna.load_study(study_name="twice", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
