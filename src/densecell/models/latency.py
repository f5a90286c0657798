"""Latency measured right: a module's inference time on a named runtime, as the device that deploys it would see it.

- **Runtimes.** ``torch`` (eager PyTorch, CPU or CUDA) and ``onnxruntime`` (the module exported through
  :mod:`densecell.models.export`, on the CPU provider, or CUDA / TensorRT where that onnxruntime has them).
- **A GPU is timed with CUDA events** recorded on the stream around each call, read after the end event has
  completed; PyTorch's launches return before the kernels run, so a wall clock around them times the launches.
- **Repeats until the spread is small**: warm-up calls first (allocators, cuDNN's and onnxruntime's choices), then
  rounds of calls until the interquartile range is within ``spread`` of the median (or ``max_repeats`` or
  ``max_seconds``). The result is the median and the IQR of all the timed calls, with the threads it ran on.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..core.errors import InputError
from ._onnx_timer import PROVIDERS, TimingPolicy, iqr, time_file, timed_repeats

__all__ = ["PROVIDERS", "RUNTIMES", "Timing", "TimingPolicy", "head_or_model", "time_module", "time_onnx",
           "time_torch", "torch_threads"]

RUNTIMES = ("torch", "onnxruntime")
Runtime = Literal["torch", "onnxruntime"]


@dataclass(frozen=True)
class Timing:
    """One module's latency on one runtime: the median and interquartile range of ``repeats`` timed calls (ms)."""

    runtime: str
    device: str
    threads: int
    batch: int
    median_ms: float
    iqr_ms: float
    repeats: int
    warmup: int

    @property
    def spread(self) -> float:
        """The IQR as a share of the median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"spread": self.spread}


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """torch's intra-op threads set to ``threads`` (None: left as they are) for the block, and restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _cuda_call(module: nn.Module, inputs: torch.Tensor) -> Callable[[], float]:
    """One call timed with CUDA events on the current stream (the clock the GPU keeps, not the host's)."""
    def call() -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        module(inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    return call


def _host_call(module: nn.Module, inputs: torch.Tensor) -> Callable[[], float]:
    def call() -> float:
        start = time.perf_counter()
        module(inputs)
        return (time.perf_counter() - start) * 1000

    return call


def time_torch(module: nn.Module, inputs: torch.Tensor, policy: TimingPolicy = TimingPolicy(),
               threads: int | None = None) -> Timing:
    """``module(inputs)`` in eager PyTorch, in inference mode, on the device the module and inputs are on."""
    device = inputs.device
    module = module.eval().to(device)
    with torch_threads(threads) as used, torch.inference_mode():
        call = _cuda_call(module, inputs) if device.type == "cuda" else _host_call(module, inputs)
        samples = timed_repeats(call, policy)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return Timing("torch", name, used, inputs.shape[0], statistics.median(samples), iqr(samples), len(samples),
                  policy.warmup)


def time_onnx(path: str | Path, provider: str = "cpu", threads: int | None = None,
              policy: TimingPolicy = TimingPolicy()) -> Timing:
    """An exported file in onnxruntime on ``provider`` (cpu, cuda or tensorrt), on a random input of its shape."""
    from .export import onnxruntime  # noqa: F401  (the export extra: one line if it is missing)

    try:
        found = time_file(path, provider, threads, policy)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    used = threads if threads is not None else len(os.sched_getaffinity(0))  # onnxruntime's default: one per core
    return Timing("onnxruntime", provider, used, int(found["batch"]), found["median_ms"], found["iqr_ms"],
                  int(found["repeats"]), policy.warmup)


def time_module(module: nn.Module, inputs: torch.Tensor, runtime: Runtime = "torch", provider: str = "cpu",
                threads: int | None = None, policy: TimingPolicy = TimingPolicy()) -> Timing:
    """``module`` on ``inputs`` in ``runtime``: eager PyTorch on the inputs' device, or onnxruntime on
    ``provider`` after an export of the module at the inputs' shape."""
    if runtime == "torch":
        return time_torch(module, inputs, policy, threads)
    if runtime != "onnxruntime":
        raise InputError(f"runtime {runtime!r}: one of {', '.join(RUNTIMES)}")
    from .export import export_module

    with tempfile.TemporaryDirectory(prefix="densecell-latency-") as folder:
        path = export_module(module.eval().cpu(), Path(folder) / "module.onnx", inputs.cpu())
        return time_onnx(path, provider, threads, policy)


def head_or_model(head: str = "dpc", cell: Any = "cityscapes-top1", backbone: str = "mobilenetv2_100",
                  image_size: tuple[int, int] = (513, 513), batch: int = 1, output_stride: int = 16,
                  whole: bool = False) -> tuple[nn.Module, torch.Tensor]:
    """What ``densecell latency`` times: the context head on the backbone's last feature at ``image_size`` (random
    weights: latency does not depend on them), or with ``whole`` the whole model on images."""
    from ..cell.heads import feature_size
    from .model import build_model

    if batch < 1:
        raise InputError(f"batch {batch}: at least 1")
    model = build_model(backbone=backbone, head=head, cell=cell, num_classes=19, output_stride=output_stride)
    if whole:
        return model.eval(), torch.randn(batch, 3, *image_size)
    return model.head.eval(), torch.randn(batch, model.head.in_channels, *feature_size(image_size, output_stride))
