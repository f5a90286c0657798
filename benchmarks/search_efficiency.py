"""Which search finds good cells for the least compute: every registered sampler (and pruner, where the table has
rungs), exactly as ``search.sampler`` names it, run through Optuna's ask/tell on a ground-truth table, over seeds.

    python benchmarks/search_efficiency.py --table ../shared/tables/nas-bench-mr-seg.json.gz
    python benchmarks/search_efficiency.py --table benchmarks/data/dpc-synthetic-proxy.json.gz --seeds 50
    python benchmarks/search_efficiency.py --table T.json.gz --sampler random --variant predictor:startup=5,refit=0.1

A table is any file in the format of ``densecell.search.tables`` (``../shared/tables/README.md``). Each sampler is
made by its registry factory (``densecell.registry.SAMPLERS[name](space, seed)``) on the table's space
(``densecell.search.TableSpace``): its draws are the table's rows, and a proposal that is not an untried row becomes
the nearest untried row (fewest differing positions), for every sampler alike. A trained cell costs 1; under a
pruner, a stopped cell costs the share of the rungs it trained.

What it reports per strategy, over the seeds: the share of random search's compute needed to reach random search's
median best after 100 and after 500 cells (that median computed exactly from the table: the median of the best of R
uniform draws without replacement; a strategy reaches it when the median over seeds of its best so far does), the
median regret (the table's best minus the best found) and its quartiles at fixed budgets, the chance of having
trained a top-1% row, and the sampler's own seconds per proposal (ask and suggest); also the Spearman rho of each
extra column of the table (its cheap features: FLOPs, a zero-cost score) with the score, and the noise floor where
the table records repeated trainings. The JSON goes to
``benchmarks/results/search_efficiency_<table>.json`` (naming the table file), with a plot of the regret curves.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from common import RESULTS, table, write_result
from densecell.registry import PRUNERS, SAMPLERS, SPACES
from densecell.search import TableSpace, load_table
from densecell.search.tables import Table

REACH = (100, 500)
"""Random search's budgets whose median best a strategy must reach."""
BUDGETS = (10, 20, 50, 100, 200, 500)
"""Compute (in trained cells) at which the regret and the top-1% chance are given."""
SINGLE_OBJECTIVE_ONLY = {"nsga2": "needs two objectives"}
RECIPE = Path(__file__).parent.parent / "configs" / "search-synthetic.yaml"


@dataclass(frozen=True)
class Strategy:
    """A registered sampler (with options, for a measured variant) and a registered pruner."""

    sampler: str
    pruner: str = "none"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        options = ",".join(f"{key}={value}" for key, value in self.options)
        return self.sampler + (f"({options})" if options else "") + ("" if self.pruner == "none" else
                                                                     f"+{self.pruner}")


_TABLE: Table | None = None
_SPACE: TableSpace | None = None


def _load(path: str) -> None:
    global _TABLE, _SPACE
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _SPACE = SPACES["table"](path)
    _TABLE = _SPACE.table


def run(strategy: Strategy, seed: int, budget: float) -> dict[str, list[float]]:
    """One search: the compute spent and the best score so far after each trained cell, and the seconds of each
    proposal."""
    table, space = _TABLE, _SPACE
    sampler = SAMPLERS[strategy.sampler](space, seed, **dict(strategy.options))
    steps = sorted(table.rungs[0]) if table.rungs and strategy.pruner != "none" else []
    pruner = PRUNERS[strategy.pruner](steps[0], steps[-1]) if steps else None
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    spent, best, trace, seconds = 0.0, -math.inf, {"compute": [], "best": []}, []
    for _ in range(len(table)):
        if spent >= budget:
            break
        start = time.perf_counter()
        trial = study.ask()
        point = space.suggest(trial)
        seconds.append(time.perf_counter() - start)
        if point not in space:
            raise SystemExit(f"{strategy.name}: proposed {point}, not a row of the table")
        row = space.row(point)
        cost, complete = 1.0, True
        for step in steps[:-1]:
            trial.report(table.rungs[row][step], step)
            if trial.should_prune():
                cost, complete = step / steps[-1], False
                break
        if complete:
            study.tell(trial, float(table.scores[row]))
            best = max(best, float(table.scores[row]))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        spent += cost
        if best > -math.inf:
            trace["compute"].append(spent)
            trace["best"].append(best)
    return trace | {"seconds": seconds}


def _task(args: tuple[Strategy, int, float]) -> tuple[Strategy, int, dict]:
    strategy, seed, budget = args
    return strategy, seed, run(strategy, seed, budget)


def best_at(trace: dict[str, list[float]], compute: float) -> float:
    """The best score a search had found with ``compute`` spent (-inf before its first completed cell)."""
    index = int(np.searchsorted(trace["compute"], compute + 1e-9, side="right"))
    return trace["best"][index - 1] if index else -math.inf


def summarise(table: Table, runs: list[dict], budget: float) -> dict[str, Any]:
    """The strategy's figures over its seeds (see the module's docstring)."""
    grid = np.arange(1, int(budget) + 1)
    curves = np.array([[best_at(r, c) for c in grid] for r in runs])
    median = np.sort(curves, 0)[(len(runs) - 1) // 2]  # the lower median over the seeds
    reach = {}
    for cells in REACH:
        if cells > len(table):
            continue
        target = table.random_median_best(cells)
        hit = np.flatnonzero(median >= target)
        reach[str(cells)] = {"target": target, "cells": int(grid[hit[0]]) if len(hit) else None,
                             "share": float(grid[hit[0]] / cells) if len(hit) else None}
    top = table.top_score(0.01)
    at = [b for b in BUDGETS if b <= budget]
    regrets = {str(b): table.best - curves[:, b - 1] for b in at}
    seconds = [s for r in runs for s in r["seconds"]]
    return {
        "reach": reach,
        "median_regret": {b: _finite(float(np.median(r))) for b, r in regrets.items()},
        "regret_quartiles": {b: [_finite(float(np.percentile(r, q))) for q in (25, 75)] for b, r in regrets.items()},
        "p_top1": {str(b): float(np.mean(curves[:, b - 1] >= top)) for b in at},
        "seconds_per_proposal": {"median": statistics.median(seconds), "p90": float(np.percentile(seconds, 90)),
                                 "max": max(seconds)},
        "median_curve": [_finite(float(v)) for v in median],
    }


def _finite(value: float) -> float | None:
    """A figure for JSON: None where no seed had a completed cell yet."""
    return value if math.isfinite(value) else None


def recipe_sampler() -> str:
    """The sampler the shipped search recipes use (the one that should win)."""
    return yaml.safe_load(RECIPE.read_text())["search"]["sampler"]


def strategies(table: Table, samplers: list[str] | None, variants: list[Strategy]) -> tuple[list, dict]:
    """Every registered single-objective sampler (or ``samplers``, and the ``variants``); with rungs, every pruner
    under the random sampler and the recipes' sampler. Returns them and the skipped ones with why."""
    names = samplers if samplers is not None else ([] if variants else list(SAMPLERS))
    skipped = {name: why for name, why in SINGLE_OBJECTIVE_ONLY.items() if name in names}
    chosen = [Strategy(name) for name in names if name not in skipped] + variants
    if table.rungs and samplers is None and not variants:
        for pruner in (p for p in PRUNERS if p != "none"):
            chosen += [Strategy(name, pruner) for name in dict.fromkeys(["random", recipe_sampler()])]
    elif samplers is None and not variants:
        skipped |= {f"+{p}": "the table has no rungs" for p in PRUNERS if p != "none"}
    return chosen, skipped


def plot(table: Table, summary: dict[str, dict], seeds: int, path: Path) -> Path:
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for name, s in summary.items():
        curve = np.array([np.nan if v is None else table.best - v for v in s["median_curve"]])
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name, lw=2 if name in ("random", recipe_sampler()) else 1)
    ax.set_xscale("log")
    ax.set_xlabel("compute (cells trained)")
    ax.set_ylabel(f"median regret ({table.meta.get('metric', 'score')})")
    ax.set_title(f"{table.name}: {len(table):,} rows, {seeds} seeds", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def parse_variant(value: str) -> Strategy:
    """``predictor:startup=5,refit=0.1`` -> that sampler with those options (values parsed as YAML)."""
    sampler, _, spec = value.partition(":")
    options = {}
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        if not key or not raw:
            raise SystemExit(f"error: --variant {value!r}: expected SAMPLER:OPTION=VALUE,...")
        options[key] = yaml.safe_load(raw)
    if sampler not in SAMPLERS:
        raise SystemExit(f"error: unknown sampler {sampler!r} (one of {', '.join(SAMPLERS)})")
    return Strategy(sampler, "none", tuple(sorted(options.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True, help="A table in the shared format (.json.gz).")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--budget", type=int, default=500, help="Compute per search, in trained cells.")
    parser.add_argument("--sampler", action="append", help="Only these samplers (repeatable); default: all.")
    parser.add_argument("--variant", action="append", default=[], help="SAMPLER:OPTION=VALUE,...: a sampler with "
                        "other options than its defaults, measured beside the rest (repeatable).")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="Processes running searches.")
    parser.add_argument("--name", help="The result's name (default: search_efficiency_<table name>).")
    args = parser.parse_args()
    try:
        table_data = load_table(args.table)
    except Exception as exc:
        raise SystemExit(f"error: {exc}") from None
    for name in args.sampler or []:
        if name not in SAMPLERS:
            raise SystemExit(f"error: unknown sampler {name!r} (one of {', '.join(SAMPLERS)})")
    chosen, skipped = strategies(table_data, args.sampler, [parse_variant(v) for v in args.variant])
    budget = min(args.budget, len(table_data))
    tasks = [(s, args.seed_offset + seed, budget) for s in chosen for seed in range(args.seeds)]
    results: dict[Strategy, dict[int, dict]] = {s: {} for s in chosen}
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs, _load, (str(args.table),)) as pool:
        for done, (strategy, seed, trace) in enumerate(pool.imap_unordered(_task, tasks), 1):
            results[strategy][seed] = trace
            if len(results[strategy]) == args.seeds:
                print(f"[{done}/{len(tasks)} searches, {time.perf_counter() - start:.0f} s] {strategy.name} done",
                      flush=True)
    summary = {s.name: summarise(table_data, [results[s][k] for k in sorted(results[s])], budget) for s in chosen}
    targets = {str(c): table_data.random_median_best(c) for c in REACH if c <= len(table_data)}
    print(f"\n{table_data.name}: {len(table_data):,} rows ({'complete' if table_data.complete else 'a sample'}), "
          f"best {table_data.best:.4g}; random search's median best after "
          + ", ".join(f"{c} cells: {t:.4g}" for c, t in targets.items()) + f"; {args.seeds} seeds")
    shown = [b for b in dict.fromkeys(("20", "100", str(budget))) if b in next(iter(summary.values()))["median_regret"]]
    print(table(["strategy", *(f"share @{c}" for c in targets), *(f"regret @{b} [IQR]" for b in shown),
                 f"P(top 1%) @{shown[-1]}", "s/proposal (median, p90)"],
                [[name, *(_share(s["reach"].get(c), budget, int(c)) for c in targets),
                  *(_regret(s, b) for b in shown), f"{s['p_top1'][shown[-1]]:.2f}",
                  f"{s['seconds_per_proposal']['median']:.3f}, {s['seconds_per_proposal']['p90']:.3f}"]
                 for name, s in summary.items()]))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    name = args.name or "search_efficiency_" + table_data.name.replace("/", "-")
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure = plot(table_data, summary, args.seeds, RESULTS / f"{name}.png")
    write_result(name, {
        "table": args.table.name, "table_name": table_data.name, "rows": len(table_data),
        "complete": table_data.complete, "source": table_data.meta.get("source"),
        "licence": table_data.meta.get("licence"), "metric": table_data.meta.get("metric"),
        "best": table_data.best, "seeds": args.seeds, "seed_offset": args.seed_offset, "budget": budget,
        "random_median_best": targets, "recipe_sampler": recipe_sampler(), "skipped": skipped,
        "strategies": summary, "plot": figure.name, "noise": noise(table_data),
        "features": {key: float(spearmanr(values, table_data.scores).statistic)
                     for key, values in table_data.extras.items()}})


def noise(table: Table) -> dict[str, Any] | None:
    """The table's noise floor, where it records cells trained twice (``repeats``: pairs of scores)."""
    pairs = table.meta.get("repeats")
    if not pairs or len(pairs) < 3:
        return None
    return {"pairs": len(pairs), "rho": float(spearmanr(*zip(*pairs)).statistic)}


def _share(reach: dict | None, budget: float, cells: int) -> str:
    """A share of random search's compute, or where the budget ended before the strategy got there."""
    if reach is None:
        return "-"
    return f"> {budget / cells:.0%}" if reach["share"] is None else f"{reach['share']:.0%}"


def _regret(summary: dict, budget: str) -> str:
    median, (low, high) = summary["median_regret"][budget], summary["regret_quartiles"][budget]
    return "-" if median is None else f"{median:.3g} [{low:.3g}, {high:.3g}]"


if __name__ == "__main__":
    main()
