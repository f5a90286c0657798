"""Bad input, crashes and concurrent workers, through the command line as a user meets them (RELIABILITY.md lists
each case and the test that shows it)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from PIL import Image

from densecell.cell.space import Cell, CellError, SearchSpace
from densecell.config import ProxySettings, StudySettings
from densecell.core.errors import TrainingError
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.search import create_study, run_worker
from densecell.search import worker as worker_module
from helpers import BAD_CELLS, OUTSIDE_SPACE, Held, recipe, tiny_overrides, write_folder


def one_line_error(code, err, message, exit_code=2):
    assert code == exit_code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


def as_set(overrides):
    return sum((["--set", o] for o in overrides), [])


@pytest.fixture
def worker_threads():
    """``run_worker`` sets the process's torch threads (a worker owns its process); restore them for later tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def cli_process(*args, env=None):
    """``densecell ARGS`` in a child whose Ctrl-C is Python's default, even when the suite itself runs where SIGINT
    is ignored (a background job of a shell without job control passes SIG_IGN on to its children)."""
    return subprocess.Popen([sys.executable, "-m", "densecell", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {}),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# ---- cell JSON ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", BAD_CELLS)
def test_bad_cells_through_the_cli(densecell, text, message):
    code, _, err = densecell("cell", "show", text)
    one_line_error(code, err, message.split("[")[0])


@pytest.mark.parametrize("text", [text for text, _ in OUTSIDE_SPACE[:2]])
def test_valid_cells_outside_the_space_are_shown(densecell, text):
    code, out, err = densecell("cell", "show", text, "--backbone", "mobilenetv2_100", "--image-size", "65")
    assert code == 0, err


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 30) | st.floats(allow_nan=False) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
BRANCH = st.fixed_dictionaries({}, optional={
    "op": st.sampled_from(["conv", "pyramid_pooling", "dilated", 3]),
    "kernel": st.sampled_from([1, 3, 5, "3", None]),
    "rate": st.lists(st.integers(-1, 24), max_size=3) | JSON,
    "grid_size": st.lists(st.integers(0, 9), max_size=3) | JSON,
    "input": st.integers(-3, 6) | JSON,
    "extra": JSON,
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(BRANCH, max_size=7) | JSON)
def test_random_json_gives_a_cell_or_a_cell_error(value):
    """Any JSON value: the parser returns a cell of the space or raises the documented one-line CellError."""
    try:
        cell = Cell.from_json(json.dumps(value), SearchSpace())
    except CellError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert cell in SearchSpace() and Cell.from_json(cell.to_json()) == cell


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_random_text_gives_a_cell_or_a_cell_error(text):
    try:
        Cell.from_json(text, SearchSpace())
    except CellError as exc:
        assert "\n" not in str(exc)


# ---- data ---------------------------------------------------------------------------------------------------------

def damage_cityscapes(root, damage):
    """Apply one kind of damage to the (only) training image or its label; return the file the error must name."""
    image = sorted((root / "leftImg8bit" / "train").rglob("*.png"))[0]
    label = sorted((root / "gtFine" / "train").rglob("*_labelIds.png"))[0]
    if damage == "no label":
        label.unlink()
        return image
    if damage == "truncated png":
        image.write_bytes(image.read_bytes()[:100])
        return image
    if damage == "not an image":
        image.write_text("these are my notes, not a picture")
        return image
    if damage == "label values":
        Image.fromarray(np.full((64, 128), 200, dtype=np.uint8)).save(label)
        return label
    if damage == "size mismatch":
        Image.fromarray(np.full((32, 32), 7, dtype=np.uint8)).save(label)
        return label
    if damage == "empty split":
        shutil.rmtree(root / "leftImg8bit" / "train")
        (root / "leftImg8bit" / "train").mkdir()
        return root / "leftImg8bit" / "train"
    raise AssertionError(damage)


@pytest.mark.parametrize("damage,message", [
    ("no label", "no label"),
    ("truncated png", "corrupt or unreadable image"),
    ("not an image", "corrupt or unreadable image"),
    ("label values", "label values [200] are neither classes"),
    ("size mismatch", "label is 32x32 but its image"),
    ("empty split", "the split is empty"),
])
def test_bad_data_stops_training_with_one_line_and_no_checkpoint(densecell, tmp_path, damage, message):
    root = write_synthetic_cityscapes(tmp_path / "data", train=1, val=1, size=(64, 128), objects=2)
    named = damage_cityscapes(root, damage)
    code, _, err = densecell("train", *as_set(tiny_overrides(root, tmp_path / "runs", "bad", iterations=2)))
    one_line_error(code, err, message)
    assert str(named) in err or named.name in err
    assert not (tmp_path / "runs" / "bad" / "checkpoint.pt").exists()


def test_missing_data_root_and_corrupt_jpeg(densecell, tmp_path):
    code, _, err = densecell("train", *as_set(tiny_overrides(tmp_path / "nowhere", tmp_path / "runs", "x")))
    one_line_error(code, err, "nowhere: data root not found")
    root = write_folder(tmp_path / "folder", {"a": np.zeros((16, 16), np.uint8), "b": np.ones((16, 16), np.uint8)},
                        "classes: [sky, ground]\n")
    (root / "train" / "images" / "notes.txt").write_text("not an image: ignored, it is not an image file name")
    broken = sorted((root / "train" / "images").glob("*.jpg"))[0]
    broken.write_bytes(broken.read_bytes()[:200])
    overrides = tiny_overrides(root, tmp_path / "runs", "folder", iterations=2,
                               **{"data.dataset": "folder", "data.crop_size": "[16,16]", "data.val_split": "null"})
    code, _, err = densecell("train", *as_set(overrides))
    one_line_error(code, err, f"{broken}: corrupt or unreadable image")


# ---- configs ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("optim:\n  lrate: 0.1\n", "optim.lrate: unknown key"),
    ("data:\n  batch_size: many\n", "data.batch_size: Input should be a valid integer"),
    ("data:\n  batch_size: -8\n", "data.batch_size: Input should be greater than or equal to 1"),
    ("data:\n  crop_size: [0, 513]\n", "crop_size must be positive, got [0, 513]"),
    ("model:\n  output_stride: 32\n", "model.output_stride: Input should be 8 or 16"),
    ("model:\n  feature_stages: 0\n", "model.feature_stages"),
])
def test_bad_configs_through_the_cli(densecell, tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    code, _, err = densecell("train", "--config", recipe)
    one_line_error(code, err, message)
    assert str(recipe) in err


# ---- checkpoints --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-iteration run on synthetic data (19 Cityscapes classes, 32 filters)."""
    from densecell.config import load_config
    from densecell.training.train import train

    tmp = tmp_path_factory.mktemp("trained")
    root = write_synthetic_cityscapes(tmp / "data", train=2, val=1, size=(64, 128), objects=2)
    overrides = tiny_overrides(root, tmp / "runs", "run", iterations=2, **{"data.val_split": "null"})
    train(load_config(None, overrides))
    return root, tmp / "runs", overrides


def test_resuming_with_another_architecture_names_the_tensors(densecell, trained):
    _, _, overrides = trained
    code, _, err = densecell("train", "--resume", *as_set(overrides + ["model.filters=16", "optim.iterations=4"]))
    one_line_error(code, err, "does not fit this model (shape mismatch: head.")
    assert "(32," in err and "vs (16," in err


def test_resuming_with_another_class_count_names_the_classifier(densecell, trained, tmp_path):
    _, runs, overrides = trained
    shutil.copytree(runs / "run", tmp_path / "run")
    root = write_folder(tmp_path / "folder", {"a": np.zeros((64, 64), np.uint8)}, "classes: [sky, ground, tree]\n")
    code, _, err = densecell("train", "--resume", *as_set(overrides + [
        f"output_dir={tmp_path}", f"data.root={root}", "data.dataset=folder", "optim.iterations=4"]))
    one_line_error(code, err, "classifier.weight (19, 32, 1, 1) vs (3, 32, 1, 1)")


def test_truncated_and_foreign_checkpoints_are_refused(densecell, trained, tmp_path):
    root, runs, _ = trained
    image = sorted((root / "leftImg8bit" / "train").rglob("*.png"))[0]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((runs / "run" / "checkpoint.pt").read_bytes()[:5000])
    code, _, err = densecell("predict", image, "--checkpoint", truncated, "--output", tmp_path / "out")
    one_line_error(code, err, f"{truncated}: not a readable densecell checkpoint")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"model": {}, "model_config": {}, "payload": Payload(marker)}, hostile)
    code, _, err = densecell("predict", image, "--checkpoint", hostile, "--output", tmp_path / "out")
    one_line_error(code, err, f"{hostile}: not a readable densecell checkpoint")
    assert not marker.exists()  # weights_only=True: the pickled object was never built


class Payload:
    """An object whose unpickling would run code (it creates a file): what weights_only=True must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# ---- storage URLs -------------------------------------------------------------------------------------------------

def test_unreachable_database_through_the_cli_hides_the_password(densecell):
    code, out, err = densecell("search", "status", "--storage", "postgresql://alice:s3cret@127.0.0.1:1/optuna",
                               "--study", "x")
    one_line_error(code, err, "postgresql://alice:***@127.0.0.1:1/optuna")
    assert "s3cret" not in out + err


# ---- crashes ------------------------------------------------------------------------------------------------------

def cache_overrides(root, output_dir):
    return ["warmup=null", "allow_random_backbone=true", "cache.views=2", "cache.shard_size=2",
            "data.crop_size=[64,64]", "backbone.feature_stages=null", "backbone.decoder=true", f"data.root={root}",
            f"output_dir={output_dir}"]


@pytest.mark.slow
def test_killed_cache_resumes_to_identical_files(synthetic_root, tmp_path):
    from densecell.config import load_search_config
    from densecell.search.stages import feature_cache

    straight = feature_cache(load_search_config(recipe("search-synthetic.yaml"),
                                                      cache_overrides(synthetic_root, tmp_path / "a")))
    args = ["cache", "--config", recipe("search-synthetic.yaml"), *as_set(cache_overrides(synthetic_root,
                                                                                          tmp_path / "b"))]
    held = Held(tmp_path / "held", "shard", 3)  # just after the third shard
    process = cli_process(*args, env=held.env)
    shards = tmp_path / "b" / "search-synthetic" / "cache" / "train"
    held.wait(process)
    assert len(list(shards.glob("shard-*.features.npy"))) == 3
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (shards.parent / "complete").exists()  # an interrupted cache is never taken for a complete one
    again = cli_process(*args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    for name in ("train.features.npy", "train.labels.npy", "val.features.npy", "val.labels.npy"):
        assert (straight / name).read_bytes() == (shards.parent / name).read_bytes(), name


@pytest.mark.slow
def test_ctrl_c_stops_a_search_worker_and_the_study_completes_later(feature_cache, tmp_path, worker_threads):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    slow = ProxySettings(iterations=400, batch_size=2, lr=0.05, filters=8)
    create_study("int", storage, StudySettings(cache_dir=str(feature_cache[0]), trials=2, proxy=slow))
    worker = cli_process("search", "worker", "--study", "int", "--device", "cpu", env={"DENSECELL_STORAGE": storage})
    deadline = time.time() + 120
    while time.time() < deadline and not any(t.state == TrialState.RUNNING
                                             for t in optuna.load_study(study_name="int", storage=storage).trials):
        time.sleep(0.1)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130 and "run the same command again to resume" in err, err
    assert run_worker("int", storage, worker_seed=1) == 2
    trials = optuna.load_study(study_name="int", storage=storage).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert not any(t.state == TrialState.RUNNING for t in trials)


@pytest.mark.parametrize("where", ["a trial is created", "its heartbeat thread starts"])
def test_ctrl_c_while_optuna_keeps_its_books_leaves_no_thread_and_no_running_trial(feature_cache, tmp_path, where,
                                                                                 monkeypatch, worker_threads):
    """Ctrl-C in the windows Optuna does not guard (after the trial is written, before the heartbeat's ``try``): the
    worker still stops, its heartbeat thread with it (else the process never exits: the CI hang of stop 22)."""
    from optuna.storages import RDBStorage
    from optuna.storages._heartbeat import HeartbeatThread

    owner, method = (RDBStorage, "_create_new_trial") if where == "a trial is created" else (HeartbeatThread, "start")
    real, beats = getattr(owner, method), []

    def then_ctrl_c(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if isinstance(self, HeartbeatThread):
            beats.append(self)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("c", storage, StudySettings(cache_dir=str(feature_cache[0]), trials=1,
                                              proxy=ProxySettings(iterations=4, batch_size=2, filters=8)))
    monkeypatch.setattr(owner, method, then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_worker("c", storage, worker_seed=0)
        assert not [b for b in beats if b._thread.is_alive()]
    finally:
        for beat in beats:  # a failed check must not leave the test process beating forever
            beat._stop_event.set()
    monkeypatch.undo()
    assert [t.state for t in optuna.load_study(study_name="c", storage=storage).trials] == [TrialState.FAIL]
    assert run_worker("c", storage, worker_seed=1) == 1


def test_a_non_finite_trial_fails_with_its_reason_and_the_search_goes_on(feature_cache, tmp_path, monkeypatch,
                                                                         worker_threads):
    real = worker_module.train_candidate

    def diverge_on_trial_1(cell, cache, settings, seed, **kwargs):
        if seed == 1:
            raise TrainingError("proxy loss is nan at iteration 3")
        return real(cell, cache, settings, seed=seed, **kwargs)

    monkeypatch.setattr(worker_module, "train_candidate", diverge_on_trial_1)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    create_study("nan", storage, StudySettings(cache_dir=str(feature_cache[0]), trials=3,
                                                proxy=ProxySettings(iterations=4, batch_size=2, filters=8)))
    assert run_worker("nan", storage, worker_seed=0) == 3
    trials = optuna.load_study(study_name="nan", storage=storage).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1] and failed[0].user_attrs["error"] == "proxy loss is nan at iteration 3"
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
