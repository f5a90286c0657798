"""Time ONNX files in onnxruntime, needing nothing else (numpy comes with onnxruntime): densecell's own timing loop,
and the script a device profile travels with (``densecell profile --export-onnx DIR`` copies this file there as
``time_onnx.py``), so that a device densecell does not run on (a phone, a Jetson) times the same files the same way.

On the device::

    python time_onnx.py DIR [--provider cpu|cuda|tensorrt] [--threads N]    # writes DIR/timings.json

then, where densecell runs: ``densecell profile --import DIR -o mydevice.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
"""onnxruntime's execution providers, by the short name the command line takes."""


@dataclass(frozen=True)
class TimingPolicy:
    """How long to time: ``warmup`` calls, then rounds of ``round_size`` calls until the IQR is within ``spread`` of
    the median (at least ``min_repeats``, at most ``max_repeats`` calls or ``max_seconds``)."""

    warmup: int = 5
    min_repeats: int = 10
    max_repeats: int = 200
    round_size: int = 10
    spread: float = 0.05
    max_seconds: float = 10.0


def iqr(samples: list[float]) -> float:
    """The interquartile range of ``samples`` (0 for a single one)."""
    if len(samples) < 2:
        return 0.0
    low, _, high = statistics.quantiles(samples, n=4, method="inclusive")
    return high - low


def timed_repeats(call: Callable[[], float], policy: TimingPolicy) -> list[float]:
    """``call`` (which runs once and returns its own milliseconds) after the warm-up, repeated by ``policy``."""
    for _ in range(policy.warmup):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < policy.max_repeats:
        samples += [call() for _ in range(min(policy.round_size, policy.max_repeats - len(samples)))]
        if len(samples) < policy.min_repeats:
            continue
        settled = iqr(samples) <= policy.spread * statistics.median(samples)
        if settled or time.perf_counter() - started > policy.max_seconds:
            break
    return samples


def session(path: str | Path, provider: str = "cpu", threads: int | None = None):  # noqa: ANN201
    """An onnxruntime session of ``path`` on ``provider`` (the CPU provider behind it for what it cannot run)."""
    import onnxruntime

    if provider not in PROVIDERS:
        raise ValueError(f"provider {provider!r}: one of {', '.join(PROVIDERS)}")
    available = onnxruntime.get_available_providers()
    if PROVIDERS[provider] not in available:
        raise ValueError(f"onnxruntime has no {PROVIDERS[provider]} here (it has {', '.join(available)}); "
                         f"onnxruntime-gpu brings CUDA and TensorRT")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    chain = [PROVIDERS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
    return onnxruntime.InferenceSession(str(path), options, providers=chain)


def time_file(path: str | Path, provider: str = "cpu", threads: int | None = None,
              policy: TimingPolicy = TimingPolicy()) -> dict[str, float]:
    """One file's ``run`` on a random input of its declared shape: median and IQR (ms), the repeats, the batch. A GPU
    provider's ``run`` returns when its outputs are on the host, so the host's clock times the whole call."""
    import numpy as np

    runner = session(path, provider, threads)
    spec = runner.get_inputs()[0]
    feed = {spec.name: np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)}

    def call() -> float:
        start = time.perf_counter()
        runner.run(None, feed)
        return (time.perf_counter() - start) * 1000

    samples = timed_repeats(call, policy)
    return {"median_ms": statistics.median(samples), "iqr_ms": iqr(samples), "repeats": len(samples),
            "batch": int(spec.shape[0])}


def time_folder(folder: str | Path, provider: str = "cpu", threads: int | None = None) -> Path:
    """Time every file the folder's ``manifest.json`` lists, into ``timings.json`` beside it."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    policy = TimingPolicy(**manifest.get("policy", {}))
    timings = {}
    for index, name in enumerate(manifest["files"]):
        timings[name] = time_file(folder / name, provider, threads, policy)
        print(f"[{index + 1}/{len(manifest['files'])}] {name}: {timings[name]['median_ms']:.3f} ms", flush=True)
    used = threads if threads is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count()
    out = folder / "timings.json"
    out.write_text(json.dumps({"provider": provider, "threads": used, "device": os.uname().machine,
                               "timings": timings}, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the folder densecell profile --export-onnx wrote")
    parser.add_argument("--provider", choices=list(PROVIDERS), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    args = parser.parse_args()
    print(f"wrote {time_folder(args.folder, args.provider, args.threads)}")


if __name__ == "__main__":
    main()
