"""A device profile: the latency of each operation of the DPC space, timed once on one device and runtime, from which
any cell's latency is predicted without building it (as nn-Meter and FasterSeg's per-operator tables do).

A cell's latency is the sum of its branches' operations (each at its input: the backbone feature, ``in_channels``
wide, or an earlier branch's, ``filters`` wide) and of the merge (the concatenation and the 1x1 projection), a
lookup that misses what the operations share (caches, scheduling). A straight line fitted by scikit-learn on a few
whole cells timed on the same device (``calibration``) corrects it. The profile is a JSON file, so it travels: the
operations can be exported as ONNX files and timed on a device densecell does not run on
(:func:`export_operations`, then ``time_onnx.py`` there and :func:`import_timings` here).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from ..cell.heads import ConvBNReLU, DensePredictionCell, build_operation, feature_size
from ..cell.space import BACKBONE, PAPER_GRIDS, PAPER_RATES, Cell, SearchSpace
from ..core.errors import InputError, one_line
from ..core.extras import missing_extra
from ..core.files import write_text
from ..core.progress import Progress, report
from . import _onnx_timer
from .latency import Runtime, Timing, TimingPolicy, time_onnx, time_torch

__all__ = ["DeviceProfile", "Merge", "build_profile", "export_operations", "import_timings", "measure_on_host",
           "profile_cells"]

PROFILE_POLICY = TimingPolicy(warmup=3, min_repeats=10, max_repeats=60, round_size=10, spread=0.05, max_seconds=2.0)
"""The timing of each operation and calibration cell: short, since a profile times a few hundred modules."""


class Merge(nn.Module):
    """What follows the branches of a cell of ``branches`` branches: their concatenation and the 1x1 projection
    (dropout is the identity at inference)."""

    def __init__(self, branches: int, filters: int) -> None:
        super().__init__()
        self.branches = branches
        self.project = ConvBNReLU(filters * branches, filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([x] * self.branches, dim=1))


class DeviceProfile(BaseModel):
    """The timings of one device and runtime, and the settings they were taken at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    runtime: str
    provider: str
    device: str
    threads: int
    batch: int = Field(1, ge=1)
    image_size: tuple[int, int]
    output_stride: Literal[8, 16]
    in_channels: int = Field(ge=1)
    filters: int = Field(ge=1)
    num_branches: int = Field(ge=1)
    rates: tuple[int, ...] = PAPER_RATES
    grids: tuple[int, ...] = PAPER_GRIDS
    operations: dict[str, dict[Literal["backbone", "cell"], float]]
    """Milliseconds of each operation (by its choice name, ``sep3x3_6x3`` ...) on each kind of input."""
    merge_ms: float
    calibration: list[tuple[list[dict[str, Any]], float]] = []
    """Whole cells (TF JSON records) and their measured milliseconds."""
    slope: float = 1.0
    intercept: float = 0.0
    seconds: float = 0.0
    """How long the profile took to build."""
    host: str = ""
    """The machine it was timed on (empty: another device's timings, imported)."""

    def lookup_ms(self, cell: Cell) -> float:
        """The sum of the cell's operations and its merge, as timed alone."""
        missing = [str(b.op) for b in cell if b.op.choice not in self.operations]
        if missing or len(cell) != self.num_branches:
            raise InputError(f"cell {cell.short()}: outside this profile's space ({self.num_branches} branches; "
                             f"{', '.join(missing) or 'every operation known'})")
        return sum(self.operations[b.op.choice]["backbone" if b.input == BACKBONE else "cell"] for b in cell) + \
            self.merge_ms

    def predict_ms(self, cell: Cell) -> float:
        """The cell's latency on this device: the lookup, corrected by the line fitted on the calibration cells."""
        return self.slope * self.lookup_ms(cell) + self.intercept

    def write(self, path: str | Path) -> Path:
        return write_text(Path(path), self.model_dump_json(indent=1))

    @classmethod
    def read(cls, path: str | Path) -> DeviceProfile:
        """A profile file, or a one-line error that names it and the first bad field."""
        try:
            return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: device profile not found (densecell profile -o FILE makes one)") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise InputError(f"{path}: not a device profile: {where}: {first['msg']}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: {one_line(exc)}") from None


def _fit(profile: DeviceProfile) -> DeviceProfile:
    """The profile with its correction line fitted on its calibration cells (scikit-learn's least squares)."""
    if len(profile.calibration) < 2:
        return profile
    try:
        from sklearn.linear_model import LinearRegression
    except ImportError as exc:
        raise missing_extra(exc, "search") from None
    lookups = [[profile.lookup_ms(Cell.from_records(records))] for records, _ in profile.calibration]
    line = LinearRegression().fit(lookups, [measured for _, measured in profile.calibration])
    return profile.model_copy(update={"slope": float(line.coef_[0]), "intercept": float(line.intercept_)})


def profile_cells(space: SearchSpace, count: int, seed: int) -> list[Cell]:
    """``count`` distinct uniform cells of ``space`` (the calibration, or a held-out check)."""
    rng, cells = random.Random(seed), {}
    while len(cells) < min(count, space.size()):
        cell = space.sample(rng)
        cells[cell] = None
    return list(cells)


class _Units:
    """The modules a profile times, with the input each takes: every operation on both kinds of input, the merge,
    and the calibration cells whole."""

    def __init__(self, space: SearchSpace, in_channels: int, filters: int, feature: Sequence[int], batch: int,
                 output_stride: int, calibration: Sequence[Cell]) -> None:
        self.space, self.filters, self.output_stride = space, filters, output_stride
        self.widths = {"backbone": in_channels, "cell": filters}
        self.shape = (batch, *feature)
        self.calibration = list(calibration)
        self._templates: dict[str, Path] = {}

    @classmethod
    def of(cls, settings: dict[str, Any], calibration: Sequence[Cell]) -> _Units:
        """The units of a profile's settings (its fields, or a manifest's ``settings``)."""
        space = SearchSpace(settings["num_branches"], tuple(settings["rates"]), tuple(settings["grids"]))
        return cls(space, settings["in_channels"], settings["filters"],
                   feature_size(settings["image_size"], settings["output_stride"]), settings["batch"],
                   settings["output_stride"], calibration)

    def names(self) -> list[str]:
        ops = [f"ops/{kind}-{op.choice}.onnx" for op in self.space.operations() for kind in self.widths]
        return ops + ["merge.onnx"] + [f"cells/calibration-{i:03d}.onnx" for i in range(len(self.calibration))]

    def export(self, name: str, path: Path) -> Path:
        """``name``'s module as an ONNX file at ``path``. A separable convolution differs from the first one
        exported on its kind of input only in its depthwise convolution's dilation and padding: that file is copied
        with those two attributes set (an export takes a second or more; a profile has 128 of them)."""
        from .export import export_module

        module, inputs = self.module(name)
        kind, _, choice = name.removeprefix("ops/").partition("-")
        depthwise = [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        template = self._templates.get(kind) if name.startswith("ops/") and choice.startswith("sep") else None
        if template is None:
            export_module(module, path, inputs)
            if name.startswith("ops/") and choice.startswith("sep"):
                self._templates[kind] = path
            return path
        import onnx

        graph = onnx.load(str(template))
        node = next(n for n in graph.graph.node if n.op_type == "Conv" and
                    any(a.name == "group" and a.i > 1 for a in n.attribute))
        (conv,) = depthwise
        rest = [a for a in node.attribute if a.name not in ("dilations", "pads")]
        del node.attribute[:]
        node.attribute.extend(rest + [onnx.helper.make_attribute("dilations", list(conv.dilation)),
                                      onnx.helper.make_attribute("pads", [*conv.padding, *conv.padding])])
        onnx.save(graph, str(path))
        return path

    def module(self, name: str) -> tuple[nn.Module, torch.Tensor]:
        stem = name.removesuffix(".onnx")
        if stem == "merge":
            return Merge(self.space.num_branches, self.filters).eval(), torch.randn(self.shape[0], self.filters,
                                                                                      *self.shape[1:])
        if stem.startswith("cells/"):
            cell = self.calibration[int(stem.rsplit("-", 1)[1])]
            head = DensePredictionCell(cell, self.widths["backbone"], self.filters, self.filters,
                                       output_stride=self.output_stride)
            return head.eval(), torch.randn(self.shape[0], self.widths["backbone"], *self.shape[1:])
        kind, _, choice = stem.removeprefix("ops/").partition("-")
        op = next(op for op in self.space.operations() if op.choice == choice)
        module = build_operation(op, self.widths[kind], self.filters, output_stride=self.output_stride)
        return module.eval(), torch.randn(self.shape[0], self.widths[kind], *self.shape[1:])


def _assemble(units: _Units, settings: dict[str, Any], times: dict[str, float], seconds: float) -> DeviceProfile:
    operations: dict[str, dict[str, float]] = {}
    for op in units.space.operations():
        operations[op.choice] = {kind: times[f"ops/{kind}-{op.choice}.onnx"] for kind in units.widths}
    calibration = [(cell.to_records(), times[f"cells/calibration-{i:03d}.onnx"])
                   for i, cell in enumerate(units.calibration)]
    return _fit(DeviceProfile(**settings, operations=operations, merge_ms=times["merge.onnx"],
                              calibration=calibration, seconds=seconds))


def _units_and_settings(image_size: Sequence[int], output_stride: int, in_channels: int, filters: int, batch: int,
                        space: SearchSpace, calibration: int, seed: int) -> tuple[_Units, dict[str, Any]]:
    if output_stride not in (8, 16):
        raise InputError(f"output stride {output_stride}: 8 or 16")
    settings = {"batch": batch, "image_size": (int(image_size[0]), int(image_size[1])), "output_stride": output_stride,
                "in_channels": in_channels, "filters": filters, "num_branches": space.num_branches,
                "rates": space.rates, "grids": space.grids}
    return _Units.of(settings, profile_cells(space, calibration, seed)), settings


def build_profile(runtime: Runtime = "torch", provider: str = "cpu", threads: int | None = None,
                  image_size: Sequence[int] = (513, 513), output_stride: int = 16, in_channels: int = 320,
                  filters: int = 256, batch: int = 1, space: SearchSpace | None = None, calibration: int = 20,
                  seed: int = 0, progress: Progress | None = None) -> DeviceProfile:
    """Time the space's operations, the merge and ``calibration`` whole cells on this machine, in ``runtime``
    (``torch`` on ``provider`` cpu or cuda; ``onnxruntime`` on provider cpu, cuda or tensorrt)."""
    units, settings = _units_and_settings(image_size, output_stride, in_channels, filters, batch,
                                          space or SearchSpace(), calibration, seed)
    names, times, started = units.names(), {}, time.perf_counter()
    timing = None
    with tempfile.TemporaryDirectory(prefix="densecell-profile-") as folder:
        for index, name in enumerate(names):
            timing = _time_unit(units, name, runtime, provider, threads, Path(folder))
            times[name] = timing.median_ms
            report(progress, "device profile", index + 1, len(names))
    return _assemble(units, settings | {"runtime": runtime, "provider": provider, "device": timing.device,
                                        "threads": timing.threads, "host": socket.gethostname()}, times,
                     time.perf_counter() - started)


def _time_unit(units: _Units, name: str, runtime: str, provider: str, threads: int | None, folder: Path) -> Timing:
    """One of the profile's modules timed in ``runtime`` (exported into ``folder`` for onnxruntime)."""
    if runtime == "torch":
        device = torch.device("cuda" if provider == "cuda" else "cpu")
        module, inputs = units.module(name)
        return time_torch(module.to(device), inputs.to(device), PROFILE_POLICY, threads)
    path = units.export(name, folder / name.replace("/", "-"))
    return time_onnx(path, provider, threads, PROFILE_POLICY)


def measure_on_host(profile: DeviceProfile, cell: Cell) -> float | None:
    """The cell's head timed whole as the profile's calibration cells were, when this machine is the profile's
    (its host); None elsewhere (a profile made on another device is predicted from, never re-timed here)."""
    if profile.host != socket.gethostname():
        return None
    units = _Units.of(profile.model_dump(), [cell])
    with tempfile.TemporaryDirectory(prefix="densecell-latency-") as folder:
        return _time_unit(units, "cells/calibration-000.onnx", profile.runtime, profile.provider, profile.threads,
                          Path(folder)).median_ms


def export_operations(folder: str | Path, image_size: Sequence[int] = (513, 513), output_stride: int = 16,
                      in_channels: int = 320, filters: int = 256, batch: int = 1, space: SearchSpace | None = None,
                      calibration: int = 20, seed: int = 0, progress: Progress | None = None) -> Path:
    """The profile's modules as ONNX files in ``folder``, with ``manifest.json`` and ``time_onnx.py`` (which needs
    only onnxruntime): run it on the device, then :func:`import_timings`."""
    folder = Path(folder)
    units, settings = _units_and_settings(image_size, output_stride, in_channels, filters, batch,
                                          space or SearchSpace(), calibration, seed)
    names = units.names()
    for index, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        units.export(name, folder / name)
        report(progress, "ONNX files", index + 1, len(names))
    manifest = {"settings": settings, "seed": seed, "calibration": [c.to_records() for c in units.calibration],
                "policy": PROFILE_POLICY.__dict__, "files": names}
    write_text(folder / "manifest.json", json.dumps(manifest, indent=1))
    shutil.copyfile(_onnx_timer.__file__, folder / "time_onnx.py")
    return folder


def import_timings(folder: str | Path) -> DeviceProfile:
    """The profile of the timings ``time_onnx.py`` wrote into ``folder`` (``timings.json``), with the settings of
    its ``manifest.json``."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        found = json.loads((folder / "timings.json").read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{exc.filename}: not found (densecell profile --export-onnx writes manifest.json, "
                         f"time_onnx.py writes timings.json)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{folder}: a file is not JSON ({one_line(exc)})") from None
    settings = manifest["settings"]
    units = _Units.of(settings, [Cell.from_records(r) for r in manifest["calibration"]])
    missing = [name for name in manifest["files"] if name not in found["timings"]]
    if missing:
        raise InputError(f"{folder / 'timings.json'}: no timing of {missing[0]} (and {len(missing) - 1} more)")
    times = {name: found["timings"][name]["median_ms"] for name in manifest["files"]}
    return _assemble(units, settings | {"runtime": "onnxruntime", "provider": found["provider"],
                                        "device": found["device"], "threads": found["threads"]}, times, 0.0)

