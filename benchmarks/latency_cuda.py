"""A head's CUDA latency as densecell times it (CUDA events around each call, read after the end event completes)
against the host's clock around calls that each end in ``torch.cuda.synchronize()``: the two must agree within 5%
(issue 32), and a clock without the synchronisation shows what it would get wrong. Needs a GPU
(benchmarks/gpu_check.sh).

    python benchmarks/latency_cuda.py [--image-size 1025x2049] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import at_least, table, write_result
from densecell.cell.space import load_cell
from densecell.models.latency import TimingPolicy, head_or_model, time_torch


def host_clock(module: torch.nn.Module, inputs: torch.Tensor, repeats: int, synchronize: bool) -> float:
    """Median ms of ``module(inputs)`` on the host's clock, each call ended by a synchronisation or not."""
    samples = []
    with torch.inference_mode():
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            module(inputs)
            if synchronize:
                torch.cuda.synchronize()
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", default="1025x2049")
    parser.add_argument("--repeats", type=at_least(5), default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU here")
    size = tuple(int(v) for v in args.image_size.split("x"))
    rows, results = [], {}
    for backbone in ("mobilenetv2_100", "xception71"):
        module, inputs = head_or_model("dpc", load_cell("cityscapes-top1"), backbone, size)
        module, inputs = module.cuda(), inputs.cuda()
        policy = TimingPolicy(warmup=10, min_repeats=args.repeats, max_repeats=args.repeats, round_size=args.repeats)
        events = time_torch(module, inputs, policy).median_ms
        synced, unsynced = (host_clock(module, inputs, args.repeats, s) for s in (True, False))
        results[backbone] = {"events_ms": events, "synchronised_ms": synced, "unsynchronised_ms": unsynced,
                             "agreement": events / synced}
        rows.append([backbone, f"{events:.3f}", f"{synced:.3f}", f"{events / synced:.3f}", f"{unsynced:.3f}",
                     "met" if abs(events / synced - 1) <= 0.05 else "missed"])
    print(table(["head on", "CUDA events ms", "synchronised clock ms", "ratio", "clock without sync ms",
                 "within 5%"], rows))
    write_result("latency_cuda", {"image_size": size, "device": torch.cuda.get_device_name(), "heads": results})


if __name__ == "__main__":
    main()
