"""Proxy step time: head training on cached features vs. the same head on features that the frozen backbone
recomputes at every step (same items, same seeds). Prints a table and writes JSON.

    python benchmarks/proxy_speed.py                      # the paper's proxy shape: 769x769 crops, batch 8, OS 16
    python benchmarks/proxy_speed.py --crop 257 --images 8

Per-iteration seconds are measured by differencing two runs (N and 3N iterations), so the final evaluation cancels
out. Synthetic images stand in for Cityscapes (the timing does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from densecell.data import Cityscapes, EvalTransform, TrainTransform
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.model import build_model
from densecell.proxy import FeatureCache, FrozenBackboneFeatures, ProxySettings, build_cache, train_candidate


def seconds_per_iteration(cache: FeatureCache, iterations: int, batch: int) -> float:
    def run(n: int) -> float:
        start = time.perf_counter()
        train_candidate("cityscapes-top1", cache, ProxySettings(iterations=n, batch_size=batch), seed=0)
        return time.perf_counter() - start

    return (run(3 * iterations) - run(iterations)) / (2 * iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=769)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/proxy_speed.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_cityscapes(Path(tmp) / "data", train=args.images, val=2, size=(args.crop, args.crop))
        backbone = build_model(backbone="mobilenetv2_100", num_classes=19).backbone
        crop = (args.crop, args.crop)
        train_set = Cityscapes(root, "train", TrainTransform(crop, 1.0, 1.0))
        cache = FeatureCache.load(build_cache(backbone, train_set, Cityscapes(root, "val", EvalTransform()),
                                              Path(tmp) / "cache", output_stride=16, crop_size=crop, progress=False))
        fresh = FrozenBackboneFeatures(cache, backbone, train_set)
        cached_s = seconds_per_iteration(cache, args.iterations, args.batch)
        fresh_s = seconds_per_iteration(fresh, args.iterations, args.batch)
    row = {"crop": args.crop, "batch": args.batch, "feature": list(cache.train_features.shape[1:]),
           "cached_s_per_iter": cached_s, "frozen_backbone_s_per_iter": fresh_s, "ratio": fresh_s / cached_s,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor() or
           platform.machine()}
    print(f"{'step':<40}{'s/iter':>10}")
    print(f"{'cached features (ours)':<40}{cached_s:>10.3f}")
    print(f"{'frozen backbone run every step':<40}{fresh_s:>10.3f}")
    print(f"ratio {row['ratio']:.1f}x at {args.crop}x{args.crop}, batch {args.batch}, features {row['feature']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
