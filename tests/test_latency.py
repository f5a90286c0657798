"""Latency for the user's device: timed right (warm-up, repeats until the spread is small, CUDA events on a GPU), a
device profile that predicts any cell's latency, and a search that never proposes a cell over its budget. No GPU
here: the CUDA path is checked with its events mocked (the order of record, synchronise and read)."""

import ast
import itertools
import random
import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch

from densecell.cell.space import Branch, Cell, Operation, SearchSpace, load_cell
from densecell.config import LatencySettings, StudySettings
from densecell.core.errors import ConfigError, InputError
from densecell.models import _onnx_timer, latency
from densecell.models.profile import DeviceProfile, build_profile, export_operations, import_timings, profile_cells
from densecell.search import DPCSpace
from densecell.search.study import make_space

SMALL = SearchSpace(2, (1, 3), (1, 2))
"""2 branches, 4 rates pairs, 4 grids: 9 operations, fast to profile."""


def test_repeats_stop_when_the_spread_is_small_and_not_before():
    steady = latency.timed_repeats(lambda: 1.0, latency.TimingPolicy(warmup=2, min_repeats=10, round_size=10))
    assert len(steady) == 10
    noisy = itertools.cycle([1.0, 2.0, 3.0, 4.0])
    policy = latency.TimingPolicy(warmup=0, min_repeats=10, max_repeats=50, round_size=10, max_seconds=60)
    assert len(latency.timed_repeats(lambda: next(noisy), policy)) == 50


def test_a_gpu_call_is_read_from_cuda_events_after_the_end_event_completes(monkeypatch):
    """Mocked: the events are recorded around the call and read only after ``end.synchronize()``: a host clock
    around PyTorch's launches times the launches, not the kernels."""
    order = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.name = "start" if not any(o.startswith("new") for o in order) else "end"
            order.append(f"new {self.name}")

        def record(self):
            order.append(f"record {self.name}")

        def synchronize(self):
            order.append(f"sync {self.name}")

        def elapsed_time(self, other):
            assert order[-1] == "sync end", order
            return 7.5

    monkeypatch.setattr(torch.cuda, "Event", Event)
    call = latency._cuda_call(lambda x: order.append("module"), torch.zeros(1))
    assert call() == 7.5
    assert order == ["new start", "new end", "record start", "module", "record end", "sync end"]


def test_a_head_times_in_torch_and_in_onnxruntime_and_names_a_missing_provider():
    head, features = latency.head_or_model("dpc", load_cell("cityscapes-top1"), "mobilenetv2_100", (129, 129))
    assert features.shape == (1, 320, 9, 9)
    policy = latency.TimingPolicy(warmup=1, min_repeats=3, max_repeats=6, round_size=3)
    eager = latency.time_module(head, features, "torch", threads=1, policy=policy)
    exported = latency.time_module(head, features, "onnxruntime", threads=1, policy=policy)
    for timing in (eager, exported):
        assert timing.median_ms > 0 and timing.threads == 1 and 3 <= timing.repeats <= 6 and timing.batch == 1
    with pytest.raises(InputError, match="no TensorrtExecutionProvider"):
        latency.time_module(head, features, "onnxruntime", provider="tensorrt", policy=policy)


@pytest.fixture(scope="module")
def small_profile():
    return build_profile("torch", threads=1, image_size=(65, 65), in_channels=16, filters=8, space=SMALL,
                         calibration=4)


def test_a_profile_predicts_every_cell_of_its_space_and_reads_back(small_profile, tmp_path):
    assert set(small_profile.operations) == {op.choice for op in SMALL.operations()}
    cells = profile_cells(SMALL, 10, seed=1)
    for cell in cells:
        lookup = small_profile.lookup_ms(cell)
        assert lookup > small_profile.merge_ms > 0
        assert small_profile.predict_ms(cell) == pytest.approx(small_profile.slope * lookup + small_profile.intercept)
    assert DeviceProfile.read(small_profile.write(tmp_path / "p.json")) == small_profile
    with pytest.raises(InputError, match="outside this profile's space"):
        small_profile.predict_ms(load_cell("cityscapes-top1"))
    (tmp_path / "bad.json").write_text('{"format": 1, "runtime": "torch"}')
    with pytest.raises(InputError, match=r"bad.json: not a device profile: provider"):
        DeviceProfile.read(tmp_path / "bad.json")
    with pytest.raises(InputError, match="device profile not found"):
        DeviceProfile.read(tmp_path / "none.json")


def test_a_separable_convolution_retargeted_in_onnx_is_the_one_exported_fresh(tmp_path):
    """Profiles export one separable convolution per input width and set the others' dilation and padding in the
    file (an export takes seconds): the retargeted file computes what a fresh export of that rate does."""
    from densecell.models.export import export_module
    from densecell.models.profile import _Units

    units = _Units(SMALL, 16, 8, (9, 9), 1, 16, [])
    first, other = [n for n in units.names() if n.startswith("ops/cell-sep")][:2]
    torch.manual_seed(0)
    units.export(first, tmp_path / "first.onnx")  # the template: its weights, the other's rate
    retargeted = units.export(other, tmp_path / "retargeted.onnx")
    torch.manual_seed(0)
    module, inputs = units.module(first)
    (wanted,) = [m for m in units.module(other)[0].modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    (conv,) = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert wanted.dilation != conv.dilation  # another rate
    conv.dilation, conv.padding = wanted.dilation, wanted.padding
    fresh = export_module(module, tmp_path / "fresh.onnx", inputs)
    outputs = []
    for path in (retargeted, fresh):
        runner = _onnx_timer.session(path)
        outputs.append(runner.run(None, {runner.get_inputs()[0].name: inputs.numpy()})[0])
    assert not np.allclose(outputs[0], 0) and np.allclose(*outputs, atol=1e-5)


def test_a_profile_travels_as_onnx_files_and_a_script_that_needs_only_onnxruntime(tmp_path):
    folder = export_operations(tmp_path / "ops", image_size=(65, 65), in_channels=16, filters=8, space=SMALL,
                               calibration=3)
    script = folder / "time_onnx.py"
    imported = {(node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
                for node in ast.walk(ast.parse(script.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))}
    imported.discard("__future__")
    assert imported <= {"argparse", "json", "os", "statistics", "time", "collections", "dataclasses", "pathlib",
                        "onnxruntime", "numpy"}, imported
    with pytest.raises(InputError, match="timings.json: not found"):
        import_timings(folder)
    done = subprocess.run([sys.executable, str(script), str(folder), "--threads", "1"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    profile = import_timings(folder)
    assert profile.runtime == "onnxruntime" and profile.threads == 1 and len(profile.calibration) == 3
    assert profile.predict_ms(profile_cells(SMALL, 1, 5)[0]) > 0


def fixed_profile(tmp_path):
    """A profile with made-up timings: separable convolutions cost 3 ms, the rest 1 ms, the merge 0.5 ms."""
    operations = {op.choice: {"backbone": 3.0 if op.kind == "sep3x3" else 1.0,
                              "cell": 3.0 if op.kind == "sep3x3" else 1.0} for op in SearchSpace().operations()}
    profile = DeviceProfile(runtime="torch", provider="cpu", device="test", threads=1, image_size=(513, 513),
                            output_stride=16, in_channels=320, filters=256, num_branches=5, operations=operations,
                            merge_ms=0.5)
    return profile.write(tmp_path / "device.json"), profile


@pytest.mark.parametrize("sampler", ["random", "vizier", "evolution", "local-search", "predictor", "tpe"])
def test_under_a_budget_no_sampler_proposes_a_cell_over_it(tmp_path, sampler):
    path, profile = fixed_profile(tmp_path)
    settings = StudySettings(cache_dir="x", sampler=sampler, latency=LatencySettings(profile=str(path),
                                                                                    budget_ms=8.0))
    space = make_space(settings)  # at most one separable convolution: 3 + 4 x 1 + 0.5 = 7.5 ms
    from densecell.core.registry import SAMPLERS

    study = optuna.create_study(direction="maximize", sampler=SAMPLERS[sampler](space, 0))
    for _ in range(15):
        trial = study.ask()
        cell = space.suggest_cell(trial)
        assert profile.predict_ms(cell) <= 8.0, (cell.short(), profile.predict_ms(cell))
        study.tell(trial, float(sum(b.op.kind == "pool" for b in cell)))


def test_a_queued_cell_over_the_budget_is_pruned_before_it_trains(tmp_path):
    from types import SimpleNamespace

    from densecell.search.worker import Objective

    path, profile = fixed_profile(tmp_path)
    heavy = Cell(tuple(Branch(-1, Operation.separable(1, 1)) for _ in range(5)))
    study = optuna.create_study()
    trial = study.ask()
    worker = SimpleNamespace(profile=profile, settings=SimpleNamespace(latency=LatencySettings(
        profile=str(path), budget_ms=8.0)))
    with pytest.raises(optuna.TrialPruned, match="over the 8 ms budget"):
        Objective.within_budget(worker, trial, heavy)
    assert study.trials[0].user_attrs["predicted_ms"] == 15.5
    assert "over the latency budget" in study.trials[0].user_attrs["error"]


def test_latency_settings_are_checked():
    with pytest.raises(ConfigError, match="budget_ms needs latency.profile"):
        LatencySettings(budget_ms=10)
    with pytest.raises(ConfigError, match="latency.profile is for the dpc space"):
        StudySettings(cache_dir="x", space="table=t.json", latency=LatencySettings(profile="p.json"))
    assert isinstance(make_space(StudySettings(cache_dir="x")), DPCSpace)


def test_the_report_draws_the_latency_front_with_the_cells_measured_on_the_device(tmp_path):
    import json

    from densecell.search import record
    from densecell.search.record import TrialRecord
    from densecell.search.report import ReportSummary, write_report

    path, profile = fixed_profile(tmp_path)
    study = optuna.create_study(study_name="fast", storage=f"sqlite:///{tmp_path / 'study.db'}",
                                directions=["maximize", "minimize"])
    study.set_user_attr("densecell", json.dumps({"cache_dir": str(tmp_path / "cache"), "trials": 8,
                                                 "sampler": "nsga2", "objectives": "miou+latency",
                                                 "latency": {"profile": str(path), "budget_ms": 12.0}}))
    space, rng = DPCSpace(), random.Random(0)
    for number in range(8):
        cell = SearchSpace().sample(rng)
        predicted = profile.predict_ms(cell)
        attrs = TrialRecord(cell=cell, params=1000, madds=10**6 * (number + 1), host="h", pid=1, seconds=1.0,
                            proxy_miou=0.5 + number / 50, predicted_ms=predicted).to_attrs()
        study.add_trial(optuna.trial.create_trial(params=space.params_of(cell), distributions=space.distributions(),
                                                  values=[0.5 + number / 50, predicted], user_attrs=attrs))
    record.store_measured_latency(study, 7, 11.0)
    outputs = write_report(study, tmp_path)
    summary = ReportSummary.read(outputs["report"].parent)
    assert (outputs["report"].parent / "latency.png").exists() and 7 in summary.latency_front_trials
    text = outputs["report"].read_text()
    assert "## The latency front" in text and "predicted by the device profile device.json" in text
    assert "budget of 12 ms" in text and "did not measure latency" not in text


def test_the_commands_time_a_head_and_refuse_bad_input_in_one_line(densecell, tmp_path):
    import json

    code, out, err = densecell("latency", "--image-size", "65", "--threads", "1", "--format", "json")
    assert code == 0, err
    found = json.loads(out)
    assert found["runtime"] == "torch" and found["threads"] == 1 and found["median_ms"] > 0
    path, _ = fixed_profile(tmp_path)
    code, out, _ = densecell("latency", "--image-size", "65", "--threads", "1", "--profile", path)
    assert code == 0 and "the profile predicts 15.50 ms" in " ".join(out.split())  # five separable branches
    for args, message in [(["latency", "--provider", "tpu"], "provider 'tpu'"),
                          (["profile"], "--output FILE"),
                          (["profile", "--import", tmp_path / "none", "-o", tmp_path / "p.json"], "manifest.json"),
                          (["latency", "--profile", tmp_path / "none.json"], "device profile not found")]:
        code, _, err = densecell(*args)
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)


def test_a_cell_is_re_timed_only_on_the_profiles_own_machine(small_profile):
    from densecell.models.profile import measure_on_host

    cell = profile_cells(SMALL, 1, seed=3)[0]
    assert measure_on_host(small_profile, cell) > 0
    assert measure_on_host(small_profile.model_copy(update={"host": "a-jetson"}), cell) is None
