"""Memory: peak RSS of building the feature cache and of a search worker, and the cache's size on disk for
Cityscapes-size data (2975 training and 500 val images of 1024x2048), extrapolated from a measured fraction.

    python benchmarks/memory.py [--images 16] [--image-size 1024x2048] [--steps 5]

Each measured command is the real CLI (`densecell cache`, `densecell search worker`) in a child process that reports
its own peak RSS. The cache holds MobileNet-v2 features (OS 16) of one 769x769 crop per training image, the paper's
proxy, and the full val images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import at_least, table, write_result
from densecell.config import ProxySettings, StudySettings
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.search import create_study

CITYSCAPES = {"train": 2975, "val": 500}
PEAK = ("import resource, runpy, sys\nsys.argv = ['densecell'] + sys.argv[1:]\ntry:\n"
        "    runpy.run_module('densecell', run_name='__main__')\nfinally:\n"
        "    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def peak_rss_mb(*args: str, env: dict[str, str] | None = None) -> float:
    """Run ``densecell ARGS`` in a child process; its peak resident memory in MiB."""
    done = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"densecell {' '.join(args)} failed: {done.stderr.strip().splitlines()[-2:]}")
    kb = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
    return kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=at_least(1), default=16)
    parser.add_argument("--image-size", default="1024x2048", help="HxW of the images (Cityscapes: 1024x2048)")
    parser.add_argument("--steps", type=at_least(1), default=5, help="proxy steps the measured search worker takes")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_cityscapes(Path(tmp) / "data", train=args.images, val=2, size=size)
        recipe = Path(tmp) / "search.yaml"
        recipe.write_text(json.dumps({
            "name": "memory", "output_dir": str(Path(tmp) / "runs"),
            "data": {"dataset": "cityscapes", "root": str(root), "crop_size": [769, 769], "batch_size": 8},
            "backbone": {"backbone": "mobilenetv2_100", "output_stride": 16}, "warmup": None,
            "allow_random_backbone": True, "cache": {"views": 1}}))
        cache_mb = peak_rss_mb("cache", "--config", str(recipe))
        cache = Path(tmp) / "runs" / "memory" / "cache"
        sizes = {name: (cache / f"{name}.npy").stat().st_size for name in
                 ("train.features", "train.labels", "val.features", "val.labels")}
        storage = f"sqlite:///{Path(tmp) / 'study.db'}"
        create_study("memory", storage, StudySettings(cache_dir=str(cache), trials=1, threads=2,
                                                       proxy=ProxySettings(iterations=args.steps, batch_size=8)))
        worker_mb = peak_rss_mb("search", "worker", "--study", "memory", "--device", "cpu",
                                env=os.environ | {"DENSECELL_STORAGE": storage})
    per_train = (sizes["train.features"] + sizes["train.labels"]) / args.images
    per_val = (sizes["val.features"] + sizes["val.labels"]) / 2
    per_cityscapes_val = per_val * (1024 * 2048) / (size[0] * size[1])  # features and labels scale with the area
    full_gb = (per_train * CITYSCAPES["train"] + per_cityscapes_val * CITYSCAPES["val"]) / 1e9
    rows = [["peak RSS, densecell cache", f"{cache_mb:.0f} MiB"],
            ["peak RSS, densecell search worker (paper proxy: batch 8, 256 filters)", f"{worker_mb:.0f} MiB"],
            ["cache per training crop (features + labels)", f"{per_train / 1e6:.2f} MB"],
            [f"cache per val image ({args.image_size})", f"{per_val / 1e6:.2f} MB"],
            ["Cityscapes cache, 1 view (extrapolated)", f"{full_gb:.2f} GB"]]
    print(table(["what", "measured"], rows))
    write_result("memory", {"images_measured": args.images, "image_size": args.image_size,
                            "worker_steps": args.steps, "cache_peak_rss_mib": cache_mb,
                            "worker_peak_rss_mib": worker_mb, "bytes": sizes, "bytes_per_train_crop": per_train,
                            "bytes_per_val_image": per_val, "cityscapes_cache_gb_per_view": full_gb})


if __name__ == "__main__":
    main()
