"""The latency model against whole cells timed on the same device: a device profile (densecell profile) is built, and
200 held-out uniform cells (none of the calibration's) are timed whole twice; the profile's prediction is compared
with the first timing, and the second timing with the first (the host's own noise, which bounds any model here).

    python benchmarks/latency_model.py [--runtime torch --runtime onnxruntime] [--cells 200] [--threads 1]

Goals (issue 32): Spearman >= 0.95 and >= 90% of cells within +-10% of measured, for PyTorch CPU and ONNX Runtime
CPU; a profile built in <= 5 minutes on 2 cores. Anchors: HELP, Spearman 0.932 after 10 samples on a new device;
nn-Meter, 99% within +-10% on a Pixel 4 CPU. Each profile is kept (results/profile_<runtime>_cpu.json) for the
search under a budget (search_efficiency.py --latency-profile).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from common import RESULTS, at_least, table, write_result
from densecell.cell.heads import DensePredictionCell
from densecell.cell.space import Cell, SearchSpace
from densecell.models.cost import feature_size
from densecell.models.latency import time_onnx, time_torch
from densecell.models.profile import PROFILE_POLICY, build_profile, profile_cells

CHANNELS, FILTERS = 320, 256
"""MobileNet-v2's feature (the paper's proxy backbone) and the paper's filters."""


def time_cells(cells: list, runtime: str, threads: int, feature: tuple[int, int]) -> tuple[list[float], list[float]]:
    """Each cell's head timed whole, twice (the second pass after the first has timed every cell)."""
    import torch

    from densecell.models.export import export_module

    first, second = [], []
    with tempfile.TemporaryDirectory() as folder:
        units = []
        for i, cell in enumerate(cells):
            head = DensePredictionCell(cell, CHANNELS, FILTERS, FILTERS).eval()
            features = torch.randn(1, CHANNELS, *feature)
            units.append((head, features) if runtime == "torch" else
                         export_module(head, Path(folder) / f"cell-{i}.onnx", features))
        for timings in (first, second):
            for unit in units:
                timing = time_torch(*unit, PROFILE_POLICY, threads) if runtime == "torch" else \
                    time_onnx(unit, "cpu", threads, PROFILE_POLICY)
                timings.append(timing.median_ms)
    return first, second


def agreement(predicted: list[float], measured: list[float]) -> dict[str, float]:
    predicted, measured = np.asarray(predicted), np.asarray(measured)
    return {"spearman": float(spearmanr(predicted, measured).statistic),
            "within_10pct": float(np.mean(np.abs(predicted - measured) <= 0.1 * measured)),
            "median_abs_error_pct": float(np.median(np.abs(predicted - measured) / measured) * 100)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", action="append", choices=["torch", "onnxruntime"])
    parser.add_argument("--cells", type=at_least(10), default=200, help="Held-out cells timed whole.")
    parser.add_argument("--threads", type=at_least(1), default=1)
    parser.add_argument("--image-size", default="513x513", help="The crop (the paper's proxy: 513x513, output stride "
                        "16, 33x33 features).")
    args = parser.parse_args()
    sides = [int(v) for v in args.image_size.split("x")]
    image = (sides[0], sides[-1])
    space = SearchSpace()
    results, rows = {"threads": args.threads, "image_size": image, "in_channels": CHANNELS,
                     "filters": FILTERS, "cells": args.cells, "runtimes": {}}, []
    for runtime in args.runtime or ["torch", "onnxruntime"]:
        profile = build_profile(runtime, "cpu", args.threads, image, 16, CHANNELS, FILTERS, space=space)
        RESULTS.mkdir(parents=True, exist_ok=True)
        profile.write(RESULTS / f"profile_{runtime}_cpu.json")
        calibration = {Cell.from_records(records) for records, _ in profile.calibration}
        cells = [c for c in profile_cells(space, args.cells + len(calibration), seed=1000)
                 if c not in calibration][:args.cells]
        started = time.perf_counter()
        first, second = time_cells(cells, runtime, args.threads, feature_size(image, 16))
        found = {"profile_seconds": profile.seconds, "timing_seconds": time.perf_counter() - started,
                 "slope": profile.slope, "intercept": profile.intercept,
                 "model": agreement([profile.predict_ms(c) for c in cells], first),
                 "lookup_only": agreement([profile.lookup_ms(c) for c in cells], first),
                 "noise": agreement(second, first), "measured_ms": {"min": min(first), "median": float(
                     np.median(first)), "max": max(first)}}
        results["runtimes"][runtime] = found
        for what in ("model", "lookup_only", "noise"):
            rows.append([runtime, what.replace("_", " "), f"{found[what]['spearman']:.3f}",
                         f"{found[what]['within_10pct']:.0%}", f"{found[what]['median_abs_error_pct']:.1f}%",
                         f"{profile.seconds:.0f} s" if what == "model" else ""])
    print(table(["runtime", "against the first timing", "Spearman", "within +-10%", "median |error|",
                 "profile built in"], rows))
    write_result("latency_model", results)


if __name__ == "__main__":
    main()
