"""What the cheaper searches cost in ranking, on the synthetic demo data (the cache of configs/search-synthetic.yaml):

    python benchmarks/search_fidelity.py multifidelity [--cells 40] [--pruner hyperband]
    python benchmarks/search_fidelity.py oneshot [--recipe configs/search-synthetic-oneshot.yaml]

multifidelity: a search with an Optuna pruner (rungs every proxy.eval_every steps) runs on a random sampler until N
trials complete; every cell it touched is then also trained at the full budget. Reported: the proxy steps it spent
against the full budget of all its cells, Spearman rho between the score each cell had when it stopped and its full
score, the top-5 overlap, and the best cell it kept against the best of all its cells at full budget.

oneshot: one-shot screen + proxy top-N (the recipe's search) against plain random search on the proxy at equal
compute (the same wall-clock seconds on this machine, side by side): the best proxy mIoU each found.

Both write benchmarks/results/search_fidelity_*.json. The data: `densecell synthetic runs/synthetic-data`, then
`densecell cache --config configs/search-synthetic.yaml --data-root runs/synthetic-data` (make demo does both).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from common import at_least, table, write_result
from densecell.config import load_search_config
from densecell.core.ranking import spearman, top_overlap
from densecell.search import completed_trials, create_study, load_study, record, run_worker
from densecell.search.cache import FeatureCache
from densecell.search.pipeline import run_pipeline
from densecell.search.proxy import train_candidate
from densecell.search.stages import feature_cache

THREADS = 2
"""torch threads for the in-process proxy runs (the recipes' workers run one thread each, two at a time)."""


def full_scores(cells, cache, proxy) -> list[float]:
    full = proxy.model_copy(update={"eval_every": 0})
    return [train_candidate(cell, cache, full, seed=i).miou for i, cell in enumerate(cells)]


def multifidelity(args) -> dict:
    base = load_search_config(args.recipe, [f"data.root={args.data_root}"])
    cache_folder = feature_cache(base)
    proxy = base.proxy.model_copy(update={"eval_every": args.eval_every})
    with tempfile.TemporaryDirectory() as tmp:
        config = base.model_copy(update={"output_dir": Path(tmp), "proxy": proxy, "cache": base.cache.model_copy(
            update={"dir": cache_folder})})
        settings = config.search_settings().model_copy(update={"pruner": args.pruner, "sampler": "random",
                                                               "trials": args.complete})
        create_study("mf", f"sqlite:///{tmp}/study.db", settings.model_copy(update={"threads": THREADS}))
        run_worker("mf", f"sqlite:///{tmp}/study.db", worker_seed=0)
        study, _ = load_study("mf", f"sqlite:///{tmp}/study.db")
        touched = [t for t in record.records(study) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   and not t.surplus]
    cache = FeatureCache.load(cache_folder)
    truth = full_scores([t.cell for t in touched], cache, proxy)
    reached = [(t.proxy_miou, full) for t, full in zip(touched, truth)]
    kept = [full for t, full in zip(touched, truth) if t.state == TrialState.COMPLETE]
    spent = sum(t.steps for t in touched)
    return {"pruner": args.pruner, "cells": len(touched), "complete": len(kept), "eval_every": args.eval_every,
            "steps_spent": spent, "steps_full_budget": len(touched) * proxy.iterations,
            "compute_saved": 1 - spent / (len(touched) * proxy.iterations),
            "rho_stopped_vs_full": spearman(reached), "top5_overlap": top_overlap(reached),
            "best_kept_full_miou": max(kept), "best_of_all_full_miou": max(truth),
            "pairs": reached}


def random_search(cache, proxy, space, seconds: float, seed: int) -> tuple[float, int]:
    """Random cells on the proxy until ``seconds`` are spent: the best score and how many cells."""
    rng, best, count, start = random.Random(seed), 0.0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        best = max(best, train_candidate(space.sample(rng), cache, proxy, seed=count).miou)
        count += 1
    return best, count


def oneshot(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = load_search_config(args.recipe, [f"data.root={args.data_root}", f"output_dir={tmp}"])
        cache = FeatureCache.load(config.cache_dir)
        start = time.perf_counter()
        run_pipeline(config)
        seconds = time.perf_counter() - start
        study, _ = load_study(config.name, config.storage_url)
        found = completed_trials(study)[0]
        pairs = [(t.oneshot_miou, t.values[0]) for t in completed_trials(study)]
    torch.set_num_threads(THREADS)
    best_random, tried = random_search(cache, config.proxy, config.search_settings().cell_space, seconds, args.seed)
    return {"seconds": seconds, "oneshot_cells": config.search.oneshot_cells, "proxy_trials": config.search.trials,
            "oneshot_best_proxy_miou": found.values[0], "oneshot_best_cell": found.cell.to_json(),
            "random_cells": tried, "random_best_proxy_miou": best_random, "top_n_pairs": pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=["multifidelity", "oneshot"])
    parser.add_argument("--data-root", default="runs/synthetic-data")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--pruner", default="hyperband", choices=["median", "successive-halving", "hyperband"])
    parser.add_argument("--complete", type=at_least(1), default=20, help="multifidelity: trials that must complete")
    parser.add_argument("--eval-every", type=at_least(1), default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.study == "multifidelity":
        args.recipe = args.recipe or "configs/search-synthetic.yaml"
        result = multifidelity(args)
        print(table(["measure", "value"], [[k, v] for k, v in result.items() if k != "pairs"]))
    else:
        args.recipe = args.recipe or "configs/search-synthetic-oneshot.yaml"
        result = oneshot(args)
        print(table(["measure", "value"], [[k, v] for k, v in result.items() if k != "top_n_pairs"]))
    write_result(f"search_fidelity_{args.study}", result)


if __name__ == "__main__":
    main()
