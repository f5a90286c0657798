"""One run folder, one writer: two commands on the same run never collide (the run lock, densecell.core.lock)."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from densecell.core.errors import RunInUseError
from densecell.core.lock import RunLock
from helpers import Held, Output, recipe, tiny_overrides


def cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "densecell", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {}))


def as_set(overrides):
    return sum((["--set", o] for o in overrides), [])


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared: {process.communicate()}")


def test_a_held_lock_names_its_holder_and_a_released_one_is_free(tmp_path):
    with RunLock(tmp_path / "run", "densecell train"):
        with pytest.raises(RunInUseError, match=r"run is in use by densecell train \(pid \d+ on host .*\), started "):
            with RunLock(tmp_path / "run", "densecell cache"):
                pass
    with RunLock(tmp_path / "run", "densecell cache"):
        assert RunLock(tmp_path / "run", "x").holder().command == "densecell cache"
    assert RunLock(tmp_path / "run", "x").holder() is None  # released: no record left


@pytest.mark.slow
def test_a_second_train_on_a_run_in_use_exits_2_naming_the_holder(synthetic_root, tmp_path):
    overrides = tiny_overrides(synthetic_root, tmp_path, "busy", iterations=100000,
                               **{"checkpoint_every": 100000, "data.val_split": "null"})
    first = cli("train", *as_set(overrides))
    try:
        wait_for(tmp_path / "busy" / "metrics.csv", first)
        second = cli("train", "--resume", *as_set(overrides))
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and err.count("\n") == 1, err
        assert f"busy is in use by densecell train (pid {first.pid} on host" in err
        evaluated = cli("eval", "--checkpoint", tmp_path / "none.pt", "--output", tmp_path / "busy" / "eval.json")
        evaluated.communicate(timeout=60)  # (no checkpoint: refused before it writes anything)
        assert not (tmp_path / "busy" / "eval.json").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed command's lock is taken over, with one line that says so
    resumed = cli("train", "--resume", *as_set(tiny_overrides(synthetic_root, tmp_path, "busy", iterations=2,
                                                               **{"data.val_split": "null"})))
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"taking over the lock left by densecell train (pid {first.pid}" in err


SEARCH = ["warmup.iterations=6", "cache.views=1", "proxy.iterations=12", "proxy.filters=8", "search.trials=4",
          "search.workers=1", "rerank.top=1", "rerank.optim.iterations=2"]


def twice(command, synthetic_root, tmp_path):
    """``densecell COMMAND`` on the synthetic search recipe, a second time while the first is held (by the test
    hook, densecell.core.hold) just after it took the run's lock: the second says it is waiting, then the first goes
    on. Both outputs, after checking that both exit 0 and that the warm-up and the cache were built once."""
    args = [command, "--config", recipe("search-synthetic.yaml"), "--data-root", synthetic_root,
            *as_set(SEARCH + [f"output_dir={tmp_path}"])]
    held = Held(tmp_path / "held", "lock")
    first = cli(*args, env=held.env)
    held.wait(first)
    second = cli(*args)
    seen = Output(second.stdout)
    seen.wait_for(f"waiting for densecell {command}")
    held.release()
    first_out, first_err = first.communicate(timeout=600)
    second.wait(timeout=600)
    outputs = [(first_out, first_err), (seen.text(), second.stderr.read())]
    assert first.returncode == second.returncode == 0, outputs
    said = "".join(out for out, _ in outputs)
    assert said.count("backbone warm-up: 6 iterations") == 1 and said.count("caching the features") == 1
    return outputs, said


@pytest.mark.slow
def test_two_search_commands_on_one_run_share_the_work(synthetic_root, tmp_path):
    outputs, said = twice("search", synthetic_root, tmp_path)
    run = tmp_path / "search-synthetic"
    study = optuna.load_study(study_name="search-synthetic", storage=f"sqlite:///{run / 'study.db'}")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and len({t.user_attrs["cell"] for t in complete}) == 4
    assert said.count("report written") == 1 and said.count("report is up to date") == 1
    assert all("2/4 search" in out for out, _ in outputs)  # both ran the search stage (as workers of one study)


@pytest.mark.slow
def test_two_cache_commands_build_one_cache(synthetic_root, tmp_path):
    outputs, _ = twice("cache", synthetic_root, tmp_path)
    assert all("feature cache complete" in out for out, _ in outputs)
