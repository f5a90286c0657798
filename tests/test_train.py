import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader

from densecell.config import load_config
from densecell.core.errors import RunExistsError, TrainingError
from densecell.data import Cityscapes, TrainTransform
from densecell.models.backbones import resolve_normalization
from densecell.models.model import build_model
from densecell.training.checkpoint import load_checkpoint, load_run
from densecell.training.train import IterationSampler, train
from helpers import Held, recipe, tiny_overrides

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_iteration_sampler_is_a_function_of_seed_and_iteration():
    full = take(iter(IterationSampler(10, 4, seed=3)), 4 * 7)
    resumed = take(iter(IterationSampler(10, 4, seed=3, start_iteration=5)), 4 * 2)
    assert resumed == full[20:28]
    epoch0 = sorted(index for index, _ in full[:10])
    assert epoch0 == list(range(10))  # each epoch is a permutation
    assert take(iter(IterationSampler(10, 4, seed=4)), 8) != full[:8]


def test_ranks_split_each_global_batch():
    single = take(iter(IterationSampler(10, 4, seed=1)), 12)
    ranks = [take(iter(IterationSampler(10, 4, seed=1, rank=r, world=2)), 6) for r in range(2)]
    for iteration in range(3):
        batch = single[iteration * 4:(iteration + 1) * 4]
        assert ranks[0][iteration * 2:(iteration + 1) * 2] + ranks[1][iteration * 2:(iteration + 1) * 2] == \
            [batch[0], batch[2], batch[1], batch[3]]


def test_batches_do_not_depend_on_the_number_of_workers(synthetic_root):
    """Same items, same augmentation; only the resize's float rounding differs (workers run one thread)."""
    data = Cityscapes(synthetic_root, "train", TrainTransform((32, 32), normalization=NORMALIZATION))
    batches = []
    for workers in (0, 2):
        loader = DataLoader(data, batch_size=4, sampler=IterationSampler(len(data), 4, seed=0), num_workers=workers)
        batches.append(take(iter(loader), 3))
    for (a_img, a_lab), (b_img, b_lab) in zip(*batches):
        assert torch.allclose(a_img, b_img, atol=1e-6) and torch.equal(a_lab, b_lab)


def test_run_writes_checkpoint_metrics_and_refuses_to_overwrite(synthetic_root, tmp_path):
    config = load_config(None, tiny_overrides(synthetic_root, tmp_path, "run", iterations=4))
    result = train(config)
    assert result.iteration == 4 and json.loads((tmp_path / "run" / "val.json").read_text())["val_miou"] == \
        result.val_miou
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["iteration"] == 4 and len(state["classes"]) == 19
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "iteration,loss,lr,seconds,val_miou" and len(rows) == 1 + 4 + 1
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    with pytest.raises(RunExistsError, match="a run with this name exists"):
        train(config)
    model = load_run(tmp_path / "run" / "checkpoint.pt", output_stride=8).model
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 19, 32, 32)


def test_non_finite_loss_stops_with_a_clear_message(synthetic_root, tmp_path):
    config = load_config(None, tiny_overrides(synthetic_root, tmp_path, "nan", iterations=10, **{"optim.lr": 1e12}))
    with pytest.raises(TrainingError, match=r"loss is nan at iteration \d+"):
        train(config)


def run_cli(args, env=None, **kwargs):
    env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "densecell", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(synthetic_root, tmp_path):
    overrides = lambda name: tiny_overrides(synthetic_root, tmp_path, name, iterations=60,  # noqa: E731
                                            **{"checkpoint_every": 5, "data.val_split": "null",
                                               "deterministic": "true"})  # exact on a GPU too
    reference = train(load_config(None, overrides("straight")))
    held = Held(tmp_path / "held", "checkpoint", 2)  # just after the checkpoint of iteration 10
    process = run_cli(["train", *sum((["--set", o] for o in overrides("killed")), [])], env=held.env)
    held.wait(process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 10
    train(load_config(None, overrides("killed")), resume=True)
    a = load_checkpoint(reference.run_dir / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 60
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    rows = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 61))  # no row lost, none twice


@pytest.mark.slow
def test_ctrl_c_saves_state_and_says_how_to_resume(synthetic_root, tmp_path):
    overrides = tiny_overrides(synthetic_root, tmp_path, "sigint", iterations=100000,
                               **{"checkpoint_every": 100000, "data.val_split": "null"})
    process = run_cli(["train", *sum((["--set", o] for o in overrides), [])])
    deadline = time.time() + 120
    metrics = tmp_path / "sigint" / "metrics.csv"
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "state saved to" in err and "--resume" in err
    state = load_checkpoint(tmp_path / "sigint" / "checkpoint.pt")
    assert state["iteration"] >= 3


@pytest.mark.slow
def test_two_process_ddp_on_cpu(synthetic_root, tmp_path):
    overrides = tiny_overrides(synthetic_root, tmp_path, "ddp", iterations=4, **{"data.batch_size": 4})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "densecell", "train", *sum((["--set", o] for o in overrides), [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})  # gloo on CPUs, also on a GPU machine
    assert result.returncode == 0, result.stderr[-3000:]
    run = load_run(tmp_path / "ddp" / "checkpoint.pt")
    model, payload = run.model, load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert run.iteration == 4
    assert not any("module." in key for key in payload["model"])  # saved from the unwrapped model
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


@pytest.mark.slow
def test_synthetic_training_beats_chance_by_far(synthetic_root, tmp_path):
    """MobileNet-v2 + DPC from scratch on the synthetic data learns its classes: 200 iterations of batch 4 on CPU."""
    from densecell.data.synthetic import write_synthetic_cityscapes

    root = write_synthetic_cityscapes(tmp_path / "data", train=32, val=8, seed=1)
    config = load_config(recipe("synthetic-mobilenetv2-dpc.yaml"), [
        f"data.root={root}", f"output_dir={tmp_path}", "optim.iterations=200", "data.batch_size=4", "eval_every=0",
        "data.workers=0"])
    result = train(config)
    # chance: predicting background everywhere gives ~0.17 (IoU ~0.85 on 1 of 5 classes)
    assert result.val_miou > 0.4


def test_training_normalises_as_timm_says_for_the_backbone(synthetic_root, tmp_path, monkeypatch):
    """xception71 (TF-ported weights): inputs are 2x/255 - 1, mean = std = 0.5, in training and in the checkpoint."""
    import timm
    from timm.data import resolve_data_config

    from densecell.training import train as training

    seen = []
    real = training.build_datasets
    monkeypatch.setattr(training, "build_datasets", lambda data, stats: seen.append(stats) or real(data, stats))
    overrides = tiny_overrides(synthetic_root, tmp_path, "xception", iterations=1,
                               **{"model.backbone": "xception71", "data.val_split": "null", "model.decoder": "false"})
    train(load_config(None, overrides))
    expected = resolve_data_config({}, model=timm.create_model("xception71"))
    assert seen == [(tuple(expected["mean"]), tuple(expected["std"]))] == [((0.5,) * 3, (0.5,) * 3)]
    assert load_run(tmp_path / "xception" / "checkpoint.pt").model.normalization == seen[0]


def test_init_from_starts_a_fine_tuning_stage_from_another_runs_weights(synthetic_root, tmp_path, densecell):
    first = tiny_overrides(synthetic_root, tmp_path, "coarse", iterations=2, **{"data.val_split": "null"})
    train(load_config(None, first))
    source = load_checkpoint(tmp_path / "coarse" / "checkpoint.pt")["model"]
    second = tiny_overrides(synthetic_root, tmp_path, "fine", iterations=1,
                            **{"data.val_split": "null", "optim.lr": 1e-12, "optim.weight_decay": 0})
    code, _, err = densecell("train", "--init-from", tmp_path / "coarse" / "checkpoint.pt",
                             *sum((["--set", o] for o in second), []))
    assert code == 0, err
    tuned = load_checkpoint(tmp_path / "fine" / "checkpoint.pt")
    assert tuned["iteration"] == 1 and tuned["config"]["init_from"].endswith("checkpoint.pt")
    for key in ("head.branches.0.conv_dw.weight", "classifier.weight", "backbone.conv_stem.weight"):
        assert torch.allclose(tuned["model"][key], source[key], atol=1e-6), key
    code, _, err = densecell("train", "--init-from", tmp_path / "coarse" / "checkpoint.pt",
                             *sum((["--set", o] for o in second + ["name=other", "model.filters=16"]), []))
    assert code == 2 and "does not fit this model" in err


def test_a_run_without_pretrained_weights_says_so_at_its_start_and_records_it(synthetic_root, tmp_path, densecell):
    """DeepLab never trains its backbone from scratch: a forgotten ``model.pretrained`` is one line at the start of
    the run (before hours go into it) and is in the run's record; a recipe that means it says so."""
    overrides = tiny_overrides(synthetic_root, tmp_path, "scratch", iterations=1, allow_random_backbone="false")
    code, out, err = densecell("train", *sum((["--set", o] for o in overrides), []))
    assert code == 0, err
    warning = [line for line in err.splitlines() if "model.pretrained is not set" in line]
    assert len(warning) == 1 and "starts from random weights" in warning[0] and "mobilenetv2_100" in warning[0]
    assert load_run(tmp_path / "scratch" / "checkpoint.pt").backbone_weights is None
    assert json.loads((tmp_path / "scratch" / "val.json").read_text())["backbone_weights"] is None
    weights = tmp_path / "mobilenetv2.pth"
    torch.save(build_model(num_classes=19).backbone.state_dict(), weights)
    for name, extra in (("meant", "allow_random_backbone=true"), ("file", f"model.pretrained={weights}")):
        code, _, err = densecell("train", *sum((["--set", o] for o in tiny_overrides(
            synthetic_root, tmp_path, name, iterations=1, allow_random_backbone="false") + [extra]), []))
        assert code == 0 and "model.pretrained is not set" not in err, err
    assert load_run(tmp_path / "file" / "checkpoint.pt").backbone_weights == str(weights.resolve())
