"""What a sampler costs as a study grows: seconds per ask+tell of each registered sampler on a SQLite study of the
DPC space with 1,000, 10,000 and 28,000 completed trials (the paper's search size), against a candidate's training.

    python benchmarks/search_overhead.py [--sizes 1000,10000,28000] [--asks 8] [--candidate-s 60]

The study is what a worker meets: ``densecell.search.open_storage`` on SQLite (heartbeats on), opened by
``optuna.load_study`` as a worker opens it, with the sampler the registry makes for the DPC space. For each size and
sampler: the first ask+tell of a fresh worker (its first read of the study), then the median and the largest of the
next ``--asks`` ask+tells, while ``--running`` other trials are in flight (31: the other workers of 32, whose cells
the predictor believes before it chooses). The completed trials are uniform cells with random scores, written once
per size (the file is kept in ``runs/search-overhead``, so a rerun only measures).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
import warnings
from pathlib import Path

import optuna

from common import at_least, table, write_result
from densecell.core.registry import SAMPLERS
from densecell.search import DPCSpace, open_storage

ROOT = Path(__file__).parent.parent
FOLDER = ROOT / "runs" / "search-overhead"
NAME = "overhead"


def grow(url: str, size: int, space: DPCSpace) -> None:
    """Add uniform cells with random scores until the study has ``size`` completed trials."""
    storage = open_storage(url)
    study = optuna.create_study(study_name=NAME, storage=storage, direction="maximize", load_if_exists=True)
    have = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    rng = random.Random(have)
    dists = space.distributions()
    start = time.perf_counter()
    for first in range(have, size, 1000):
        study.add_trials([optuna.trial.create_trial(params=space.params(space.sample(rng)), distributions=dists,
                                                    value=rng.random()) for _ in range(first, min(size, first + 1000))])
        print(f"  {min(size, first + 1000):,} completed trials ({time.perf_counter() - start:.0f} s)", flush=True)


def measure(url: str, sampler: str, space: DPCSpace, asks: int, running: int) -> dict[str, float]:
    """A fresh worker's first ask+tell and its next ``asks``, in seconds (each told a random score), with
    ``running`` other workers' trials in flight (asked by a uniform sampler, failed afterwards)."""
    others = optuna.load_study(study_name=NAME, storage=open_storage(url), sampler=SAMPLERS["random"](space, 2))
    flight = [others.ask() for _ in range(running)]
    for trial in flight:
        space.suggest(trial)
    study = optuna.load_study(study_name=NAME, storage=open_storage(url), sampler=SAMPLERS[sampler](space, 1))
    seconds = []
    for index in range(asks + 1):
        start = time.perf_counter()
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, random.Random(index).random())
        seconds.append(time.perf_counter() - start)
    for trial in flight:
        others.tell(trial, state=optuna.trial.TrialState.FAIL)
    return {"first": seconds[0], "median": statistics.median(seconds[1:]), "max": max(seconds[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,28000")
    parser.add_argument("--asks", type=at_least(1), default=8)
    parser.add_argument("--candidate-s", type=float, default=60.0, help="A candidate's training, to compare with.")
    parser.add_argument("--sampler", action="append", help="Only these samplers (default: the single-objective "
                        "ones).")
    parser.add_argument("--running", type=at_least(0), default=31, help="Other workers' trials in flight.")
    parser.add_argument("--folder", type=Path, default=FOLDER)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ask/tell here, as a worker's loop
    samplers = args.sampler or [name for name in SAMPLERS if name != "nsga2"]
    space = DPCSpace()
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in samplers}
    sizes = [int(size) for size in args.sizes.split(",")]
    previous = None
    for size in sizes:
        path = args.folder / f"study-{size}.db"
        if previous is not None and not path.exists():
            shutil.copy(previous, path)  # grown from the smaller study
        url = f"sqlite:///{path}"
        print(f"{size:,} completed trials:", flush=True)
        grow(url, size, space)
        previous = path
        for name in samplers:
            results[name][str(size)] = measure(url, name, space, args.asks, args.running)
            print(f"  {name}: {results[name][str(size)]}", flush=True)
    print(table(["sampler", *(f"{s:,}: first / median / max s" for s in sizes),
                 f"share of a {args.candidate_s:.0f} s candidate at {sizes[-1]:,}"],
                [[name, *(f"{r[str(s)]['first']:.2f} / {r[str(s)]['median']:.3f} / {r[str(s)]['max']:.2f}"
                          for s in sizes), f"{r[str(sizes[-1])]['median'] / args.candidate_s:.1%}"]
                 for name, r in results.items()]))
    write_result("search_overhead", {"sizes": sizes, "asks": args.asks, "candidate_s": args.candidate_s,
                                     "running": args.running, "storage": "sqlite", "samplers": results})


if __name__ == "__main__":
    main()
