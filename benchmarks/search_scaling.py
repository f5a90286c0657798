"""Search scaling: completed trials per minute with 1 and 2 worker processes on one SQLite study, one torch thread
each (the target: 2 workers reach 1.7x on 2 cores).

    python benchmarks/search_scaling.py [--trials 10] [--iterations 100]

Each worker is `densecell search worker`, as a user starts it. The rate counts from the first trial's start to the last
trial's end (the study's own timestamps), so it leaves out the seconds a worker takes to import torch; the wall time
with start-up is printed too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from common import at_least, table, write_result
from densecell.config import ProxySettings, StudySettings
from densecell.data import Cityscapes, EvalTransform, TrainTransform
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.models.backbones import resolve_normalization
from densecell.models.model import build_model
from densecell.search import create_study
from densecell.search.cache import build_cache

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's


def run(cache: Path, storage: str, workers: int, trials: int, iterations: int) -> dict[str, float]:
    name = f"scaling-{workers}"
    create_study(name, storage, StudySettings(cache_dir=str(cache), trials=trials, sampler="random", threads=1,
                                               proxy=ProxySettings(iterations=iterations, batch_size=8, filters=32)))
    env = os.environ | {"DENSECELL_STORAGE": storage}
    start = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "densecell", "search", "worker", "--study", name, "--seed",
                                   str(seed), "--device", "cpu"], env=env, stdout=subprocess.DEVNULL)
                 for seed in range(workers)]
    if any(process.wait() for process in processes):
        raise SystemExit(f"a worker failed with {workers} workers")
    wall = time.perf_counter() - start
    done = [t for t in optuna.load_study(study_name=name, storage=storage).trials if t.state == TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"trials": len(done), "trials_per_min": 60 * len(done) / span, "wall_s": wall,
            "trials_per_min_with_startup": 60 * len(done) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=at_least(1), default=10)
    parser.add_argument("--iterations", type=at_least(1), default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_cityscapes(Path(tmp) / "data", train=16, val=4, size=(128, 256))
        torch.manual_seed(0)
        backbone = build_model(backbone="mobilenetv2_100", num_classes=19, feature_stages=2).backbone
        train = Cityscapes(root, "train", TrainTransform((128, 128), 1.0, 1.0, normalization=NORMALIZATION))
        cache = build_cache(backbone, train, Cityscapes(root, "val", EvalTransform(NORMALIZATION)), Path(tmp) / "cache",
                            output_stride=16, crop_size=(128, 128))
        storage = f"sqlite:///{Path(tmp) / 'study.db'}"
        results = {workers: run(cache, storage, workers, args.trials, args.iterations) for workers in (1, 2)}
    speedup = results[2]["trials_per_min"] / results[1]["trials_per_min"]
    print(table(["workers", "trials", "trials/min", "wall s (with start-up)", "trials/min with start-up"],
                [[w, r["trials"], r["trials_per_min"], r["wall_s"], r["trials_per_min_with_startup"]]
                 for w, r in results.items()]))
    print(f"2 workers / 1 worker: {speedup:.2f}x (target 1.7x)")
    write_result("search_scaling", {"trials": args.trials, "iterations_per_trial": args.iterations,
                                    "workers": results, "speedup_2_over_1": speedup})


if __name__ == "__main__":
    main()
