"""Which search finds good cells for the least compute, as a user runs it: every registered sampler (and pruner,
where the table has rungs), exactly as ``search.sampler`` names it, run through Optuna's ask/tell on a ground-truth
table, over seeds, by W workers at once, told a noisy proxy's scores.

    python benchmarks/search_efficiency.py --table ../shared/tables/nas-bench-mr-seg.json.gz
    python benchmarks/search_efficiency.py --table T.json.gz --sampler predictor --workers 8 --noise --seed-set held-out
    python benchmarks/search_efficiency.py --table T.json.gz --sampler random --variant predictor:startup=5,refit=0.1

A table is any file in the format of ``densecell.search.tables`` (``../shared/tables/README.md``). Each sampler is
made by its registry factory (``densecell.core.registry.SAMPLERS[name](space, seed)``) on the table's space
(``densecell.search.TableSpace``): its draws are the table's rows, and a proposal that is not an untried row becomes
the nearest untried row (fewest differing positions), for every sampler alike. On a sample table that includes a
sampler's one-position mutations: most land on no row and become a row several positions away (a median of 14 of
27 on NAS-Bench-MR's), so samplers that live on mutation are measured there on jumps, not on steps.

**Workers** (``--workers W``): W trials are in flight at once, as W workers sharing one study run them; each worker
has its own sampler (seeded as a worker's is), and asks while the others' trials are RUNNING in the study, exactly as
real workers see them. A cell trains for a lognormal time (``--duration SECONDS,SPREAD``; the same cell the same time
in every strategy of a seed), so results land out of order. A trained cell costs 1; under a pruner (W = 1 only), a
stopped cell costs the share of the rungs it trained.

**Noise** (``--noise [SIGMA]``): the score a sampler is told is the table's score plus normal noise (bare ``--noise``:
the table's measured level, ``Table.noise_sigma``: from its repeated trainings where it has them, else the level at
which two trainings of every row rank-correlate 0.80, the DPC table's measured floor; the same draw for a cell in
every strategy of a seed). What a user gets is the cell the search would pick, its best observed; the figures read
the table's score of that cell.

What it reports per strategy, over the seeds: the share of random search's compute needed to reach random search's
median best after 100 and after 500 cells: cells / n*, n* being the fewest uniform draws whose median best reaches
that target, exactly, from the table (random search itself reaches it at n* <= R cells, so random's own share is
100%); a strategy reaches the target when the median over seeds of its pick's score does, with a bootstrap interval
over the seeds; the median regret (the table's best minus the pick's) and its quartiles at fixed budgets, the chance
of having picked a top-1% row, and the sampler's own seconds per proposal (ask and suggest); also the Spearman rho of
each extra column of the table (its cheap features) with the score, and the noise floor where the table records
repeated trainings. Two seed sets: ``tuning`` (seeds 0..) chooses defaults, ``held-out`` (seeds 5000..) only reports.
The JSON goes to ``benchmarks/results/search_efficiency_<table>[_w<W>][_noise][_held-out].json``, with W, the noise and
the seed set, and a plot of the regret curves.
"""

from __future__ import annotations

import argparse
import heapq
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

from common import RESULTS, at_least, table, write_result
from densecell.cell.space import load_cell
from densecell.core.errors import DensecellError
from densecell.core.registry import PRUNERS, SAMPLERS
from densecell.models.profile import DeviceProfile
from densecell.search import DPCSpace, Lookup, TableSpace, load_table
from densecell.search.tables import Table

REACH = (100, 500)
"""Random search's budgets whose median best a strategy must reach."""
BUDGETS = (10, 20, 50, 100, 200, 500)
"""Compute (in trained cells) at which the regret and the top-1% chance are given."""
SEED_SETS = {"tuning": 0, "held-out": 5000}
"""The first seed of each set: defaults are chosen on ``tuning``; ``held-out`` chooses nothing, it reports."""
BOOTSTRAP = 1000
"""Resamples of the seeds behind each share's interval."""
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


@dataclass(frozen=True)
class Scenario:
    """How the searches run: W workers at once, each cell's training time and the proxy's noise (a
    :class:`~densecell.search.tables.Lookup`'s), the compute budget."""

    workers: int = 1
    noise: float = 0.0
    seconds: float = 1.0
    spread: float = 0.3
    budget: float = 500


_SPACE: TableSpace | None = None  # set before the pool forks, so its processes start with the table


def run(strategy: Strategy, seed: int, scenario: Scenario) -> dict[str, list]:
    """One search by ``scenario.workers`` workers: after each trained cell, the compute spent and the table's score
    of the pick (the best observed); the rows in the order they finished, what the samplers were told, and the
    seconds of each proposal."""
    space = _SPACE
    table = space.table
    lookup = Lookup(table, scenario.noise, scenario.seconds, scenario.spread)
    steps = sorted(table.rungs[0]) if table.rungs and strategy.pruner != "none" else []
    storage = optuna.storages.InMemoryStorage()
    workers = [optuna.create_study(
        storage=storage, study_name="search", direction="maximize", load_if_exists=True,
        sampler=SAMPLERS[strategy.sampler](space, seed * 1000 + k, **dict(strategy.options)),
        pruner=PRUNERS[strategy.pruner](steps[0], steps[-1]) if steps else None) for k in range(scenario.workers)]
    trace: dict[str, list] = {"compute": [], "best": [], "rows": [], "observed": [], "seconds": []}
    running: list[tuple[float, int, int, Any, int]] = []  # (finish time, trial number, worker, trial, row)
    spent, pick, told = 0.0, None, -math.inf

    def start(worker: int, now: float) -> None:
        """The worker asks for a cell and starts training it (or a pruner stops it at once: the worker is free)."""
        nonlocal spent
        begin = time.perf_counter()
        trial = workers[worker].ask()
        point = space.suggest(trial)
        trace["seconds"].append(time.perf_counter() - begin)
        if point not in space:
            raise RuntimeError(f"{strategy.name}: proposed {point}, not a row of the table")
        row = space.row(point)
        for step in steps[:-1]:  # a pruner's rungs (one worker: reported as the trial starts)
            trial.report(table.rungs[row][step], step)
            if trial.should_prune():
                workers[worker].tell(trial, state=optuna.trial.TrialState.PRUNED)
                spent += step / steps[-1]
                free.append(worker)
                return
        heapq.heappush(running, (now + lookup.duration(_rng(seed, row, 1)), trial.number, worker, trial, row))

    now = 0.0
    free = list(range(scenario.workers))
    while True:
        while free and spent + len(running) < scenario.budget and len(trace["seconds"]) < len(table):
            start(free.pop(0), now)
        if not running:
            break
        now, _, worker, trial, row = heapq.heappop(running)
        observed = lookup.score(row, _rng(seed, row, 0))
        workers[worker].tell(trial, observed)
        free.append(worker)
        spent += 1
        if observed > told:
            pick, told = row, observed
        trace["compute"].append(spent)
        trace["best"].append(float(table.scores[pick]))
        trace["rows"].append(row)
        trace["observed"].append(observed)
    return trace


def _rng(seed: int, row: int, stream: int) -> np.random.Generator:
    """The draws of one cell in one seed (its noise, its training time): the same in every strategy."""
    return np.random.default_rng([seed, row, stream])


def _task(args: tuple[Strategy, int, Scenario]) -> tuple[Strategy, int, dict | str]:
    strategy, seed, scenario = args
    try:
        return strategy, seed, run(strategy, seed, scenario)
    except Exception as exc:  # one line to the parent, which stops the run
        return strategy, seed, f"{strategy.name}, seed {seed}: {type(exc).__name__}: {exc}"


def best_at(trace: dict[str, list[float]], compute: float) -> float:
    """The pick's score with ``compute`` spent (-inf before the first completed cell)."""
    index = int(np.searchsorted(trace["compute"], compute + 1e-9, side="right"))
    return trace["best"][index - 1] if index else -math.inf


def hitting(curves: np.ndarray, target: float) -> int | None:
    """The compute at which the (lower) median over seeds of the curves first reaches ``target``; None if never."""
    median = np.sort(curves, 0)[(len(curves) - 1) // 2]
    hit = np.flatnonzero(median >= target)
    return int(hit[0]) + 1 if len(hit) else None


def reach(table: Table, curves: np.ndarray, cells: int, seed: int = 0) -> dict[str, Any]:
    """The share of random search's compute to reach random search's median best after ``cells``: the strategy's
    cells over n* (random's own exact hitting point), with a 95% bootstrap interval over the seeds (None as a
    bound: beyond the budget)."""
    target = table.random_median_best(cells)
    n_star = table.random_reach(target)
    found = hitting(curves, target)
    rng = np.random.default_rng(seed)
    resampled = [hitting(curves[rng.integers(0, len(curves), len(curves))], target) for _ in range(BOOTSTRAP)]
    shares = np.array([math.inf if h is None else h / n_star for h in resampled])
    low, high = (float(np.quantile(shares, q, method="inverted_cdf")) for q in (0.025, 0.975))
    return {"target": target, "n_star": n_star, "cells": found, "share": None if found is None else found / n_star,
            "interval": [None if math.isinf(low) else low, None if math.isinf(high) else high]}


def summarise(table: Table, runs: list[dict], budget: float, targets: tuple[int, ...] = REACH) -> dict[str, Any]:
    """The strategy's figures over its seeds (see the module's docstring); ``targets``: the shares' points."""
    grid = np.arange(1, int(budget) + 1)
    curves = np.array([[best_at(r, c) for c in grid] for r in runs])
    top = table.top_score(0.01)
    at = sorted({b for b in BUDGETS if b <= budget} | {int(budget)})
    regrets = {str(b): table.best - curves[:, b - 1] for b in at}
    seconds = [s for r in runs for s in r["seconds"]]
    return {
        "reach": {str(cells): reach(table, curves, cells) for cells in targets if cells <= len(table)},
        "median_regret": {b: _finite(float(np.median(r))) for b, r in regrets.items()},
        "regret_quartiles": {b: [_finite(float(np.percentile(r, q))) for q in (25, 75)] for b, r in regrets.items()},
        "p_top1": {str(b): float(np.mean(curves[:, b - 1] >= top)) for b in at},
        "seconds_per_proposal": {"median": statistics.median(seconds), "p90": float(np.percentile(seconds, 90)),
                                 "max": max(seconds)},
        "median_curve": [_finite(float(v)) for v in np.sort(curves, 0)[(len(runs) - 1) // 2]],
        "final_picks": [_finite(float(v)) for v in curves[:, -1]],
    }


def _finite(value: float) -> float | None:
    """A figure for JSON: None where no seed had a completed cell yet."""
    return value if math.isfinite(value) else None


def recipe_sampler() -> str:
    """The sampler the shipped search recipes use (the one that should win)."""
    return yaml.safe_load(RECIPE.read_text())["search"]["sampler"]


def strategies(table: Table, samplers: list[str] | None, variants: list[Strategy], workers: int) -> tuple[list, dict]:
    """Every registered single-objective sampler (or ``samplers``, and the ``variants``); with rungs and one
    worker, every pruner under the random sampler and the recipes' sampler. Returns them and the skipped ones with
    why."""
    names = samplers if samplers is not None else ([] if variants else list(SAMPLERS))
    skipped = {name: why for name, why in SINGLE_OBJECTIVE_ONLY.items() if name in names}
    chosen = [Strategy(name) for name in names if name not in skipped] + variants
    pruners = [p for p in PRUNERS if p != "none"]
    if samplers is None and not variants:
        if not table.rungs:
            skipped |= {f"+{p}": "the table has no rungs" for p in pruners}
        elif workers > 1:
            skipped |= {f"+{p}": "pruners are simulated with one worker" for p in pruners}
        else:
            for pruner in pruners:
                chosen += [Strategy(name, pruner) for name in dict.fromkeys(["random", recipe_sampler()])]
    return chosen, skipped


def plot(table: Table, summary: dict[str, dict], title: str, path: Path) -> Path:
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for name, s in summary.items():
        curve = np.array([np.nan if v is None else table.best - v for v in s["median_curve"]])
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name, lw=2 if name in ("random", recipe_sampler()) else 1)
    ax.set_xscale("log")
    ax.set_xlabel("compute (cells trained)")
    ax.set_ylabel(f"median regret of the pick ({table.meta.get('metric', 'score')})")
    ax.set_title(title, fontsize=10)
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
            raise argparse.ArgumentTypeError(f"{value!r}: expected SAMPLER:OPTION=VALUE,...")
        options[key] = yaml.safe_load(raw)
    if sampler not in SAMPLERS:
        raise argparse.ArgumentTypeError(f"unknown sampler {sampler!r} (one of {', '.join(SAMPLERS)})")
    return Strategy(sampler, "none", tuple(sorted(options.items())))


def _sampler_name(text: str) -> str:
    if text not in SAMPLERS:
        raise argparse.ArgumentTypeError(f"unknown sampler {text!r} (one of {', '.join(SAMPLERS)})")
    return text


def _noise(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a standard deviation (a number >= 0) or auto") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a standard deviation (a number >= 0) or auto")
    return value


def _duration(text: str) -> tuple[float, float]:
    try:
        seconds, spread = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SECONDS,SPREAD (e.g. 1,0.3)") from None
    if not (seconds > 0 and spread >= 0 and math.isfinite(seconds) and math.isfinite(spread)):
        raise argparse.ArgumentTypeError(f"{text!r}: SECONDS must be > 0 and SPREAD >= 0")
    return seconds, spread


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, required=True, help="A table in the shared format (.json.gz).")
    parser.add_argument("--seeds", type=at_least(1), default=50, help="Searches per strategy (seeds).")
    parser.add_argument("--seed-set", choices=list(SEED_SETS), default="tuning",
                        help="tuning (seeds 0..) chooses defaults; held-out (seeds 5000..) only reports.")
    parser.add_argument("--budget", type=at_least(1), default=500, help="Compute per search, in trained cells.")
    parser.add_argument("--workers", type=at_least(1), default=1, help="Trials in flight at once (W).")
    parser.add_argument("--noise", type=_noise, nargs="?", const="auto", default=0.0,
                        help="Told scores scatter by this standard deviation; bare: the table's measured level.")
    parser.add_argument("--duration", type=_duration, default=(1.0, 0.3), metavar="SECONDS,SPREAD",
                        help="A cell's training time: lognormal, median SECONDS, log-spread SPREAD (default 1,0.3).")
    parser.add_argument("--sampler", type=_sampler_name, action="append",
                        help="Only these samplers (repeatable); default: all.")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="SAMPLER:OPTION=VALUE,...: a sampler with other options than its defaults, measured "
                        "beside the rest (repeatable).")
    parser.add_argument("--jobs", type=at_least(1), default=os.cpu_count() or 1, help="Processes running searches.")
    parser.add_argument("--latency-profile", type=Path, help="A device profile (densecell profile): search only the "
                        "rows of a DPC table whose cells it predicts under --latency-budget.")
    parser.add_argument("--latency-budget", default="published", help="MS, or published: the published cell's "
                        "predicted latency (default).")
    parser.add_argument("--name", help="The result's name (default: search_efficiency_<table name>[_w<W>][_noise]"
                        "[_held-out]).")
    return parser.parse_args()


def under_budget(table: Table, profile_path: Path, budget: str) -> tuple[Table, dict[str, Any]]:
    """The rows of a DPC table whose cells ``profile_path`` predicts at most ``budget`` ms (``published``: the
    published cell's latency), and what was kept: a search under a latency budget proposes only these."""
    if table.dpc is None:
        raise SystemExit(f"error: {table.name}: a latency budget needs a table of DPC cells")
    profile = DeviceProfile.read(profile_path)
    limit = profile.predict_ms(load_cell("cityscapes-top1")) if budget == "published" else float(budget)
    space = DPCSpace(table.dpc)
    keep = [i for i, point in enumerate(table.points) if profile.predict_ms(space.cell(point)) <= limit]
    if not keep:
        raise SystemExit(f"error: no row of {table.name} is under {limit:.3g} ms")
    return table.subset(keep, f"{table.name}_budget"), {
        "profile": profile_path.name, "device": profile.device, "runtime": profile.runtime, "budget_ms": limit,
        "by": budget, "rows_under": len(keep), "rows": len(table)}


def check(space: TableSpace, chosen: list[Strategy], skipped: dict[str, str]) -> None:
    """Stop with one line before any search: no strategy left, or a variant's options its sampler refuses."""
    if not chosen:
        raise SystemExit("error: no strategy to run (" + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
    for strategy in chosen:
        try:
            SAMPLERS[strategy.sampler](space, 0, **dict(strategy.options))
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"error: --variant {strategy.name}: {exc}") from None


def search_all(chosen: list[Strategy], seeds: list[int], scenario: Scenario, jobs: int) -> dict[Strategy, list]:
    """Every strategy on every seed, in ``jobs`` processes; the first failed search stops the run with its line."""
    tasks = [(s, seed, scenario) for s in chosen for seed in seeds]
    results: dict[Strategy, dict[int, dict]] = {s: {} for s in chosen}
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(jobs, _quiet) as pool:
        for done, (strategy, seed, trace) in enumerate(pool.imap_unordered(_task, tasks), 1):
            if isinstance(trace, str):
                pool.terminate()
                raise SystemExit(f"error: {trace}")
            results[strategy][seed] = trace
            if len(results[strategy]) == len(seeds):
                print(f"[{done}/{len(tasks)} searches, {time.perf_counter() - start:.0f} s] {strategy.name} done",
                      flush=True)
    return {s: [results[s][k] for k in sorted(results[s])] for s in chosen}


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main() -> None:
    global _SPACE
    args = arguments()
    try:
        _SPACE = TableSpace(load_table(args.table))
    except DensecellError as exc:
        raise SystemExit(f"error: {exc}") from None
    data, targets, budgeted = _SPACE.table, REACH, None
    if args.latency_profile is not None:
        data, budgeted = under_budget(data, args.latency_profile, args.latency_budget)
        _SPACE, targets = TableSpace(data), (*REACH, len(data))  # len(data): the best row under the budget
    chosen, skipped = strategies(data, args.sampler, args.variant, args.workers)
    if args.workers > 1 and any(s.pruner != "none" for s in chosen):
        raise SystemExit("error: pruners are simulated with one worker (--workers 1)")
    check(_SPACE, chosen, skipped)
    sigma = data.noise_sigma() if args.noise == "auto" else args.noise
    scenario = Scenario(args.workers, sigma, *args.duration, budget=min(args.budget, len(data)))
    seeds = [SEED_SETS[args.seed_set] + k for k in range(args.seeds)]
    summary = {s.name: summarise(data, runs, scenario.budget, targets)
               for s, runs in search_all(chosen, seeds, scenario, args.jobs).items()}
    setting = f"W = {args.workers}, " + (f"noise sd {sigma:.3g}" if sigma else "no noise") + \
        f", {args.seed_set} seeds {seeds[0]}-{seeds[-1]}"
    show(data, summary, scenario, setting, skipped, targets)
    name = args.name or "search_efficiency_" + data.name.replace("/", "-") + (
        f"_w{args.workers}" if args.workers > 1 else "") + ("_noise" if sigma else "") + (
        "_held-out" if args.seed_set == "held-out" else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure = plot(data, summary, f"{data.name}: {len(data):,} rows; {setting}", RESULTS / f"{name}.png")
    write_result(name, {
        "table": args.table.name, "table_name": data.name, "rows": len(data), "complete": data.complete,
        "source": data.meta.get("source"), "licence": data.meta.get("licence"), "metric": data.meta.get("metric"),
        "best": data.best, "seeds": args.seeds, "seed_set": args.seed_set, "seed_offset": seeds[0],
        "budget": scenario.budget, "workers": args.workers,
        "noise": {"sigma": sigma, "source": "the table's level (--noise)" if args.noise == "auto" else "given"},
        "duration": {"median_s": scenario.seconds, "log_spread": scenario.spread},
        "random_median_best": {str(c): data.random_median_best(c) for c in targets if c <= len(data)},
        "random_reach": {str(c): data.random_reach(data.random_median_best(c)) for c in targets if c <= len(data)},
        "latency_budget": budgeted,
        "recipe_sampler": recipe_sampler(), "skipped": skipped, "strategies": summary, "plot": figure.name,
        "noise_floor": noise_floor(data),
        "features": {key: float(spearmanr(values, data.scores).statistic) for key, values in data.extras.items()}})


def show(data: Table, summary: dict[str, dict], scenario: Scenario, setting: str, skipped: dict[str, str],
         points: tuple[int, ...] = REACH) -> None:
    """The table of figures, and what was skipped."""
    targets = {str(c): (data.random_median_best(c), data.random_reach(data.random_median_best(c)))
               for c in points if c <= len(data)}
    print(f"\n{data.name}: {len(data):,} rows ({'complete' if data.complete else 'a sample'}), best {data.best:.4g}; "
          + "".join(f"random search's median best after {c} cells {t:.4g}, reached at n* = {n}; " for c, (t, n) in
                    targets.items()) + setting)
    budget = int(scenario.budget)
    shown = [b for b in dict.fromkeys(("20", "100", str(budget))) if b in next(iter(summary.values()))["median_regret"]]
    print(table(["strategy", *(f"share @{c} [95% CI]" for c in targets), *(f"regret @{b} [IQR]" for b in shown),
                 f"P(top 1%) @{shown[-1]}", "s/proposal (median, p90)"],
                [[name, *(_share(s["reach"][c], budget) for c in targets), *(_regret(s, b) for b in shown),
                  f"{s['p_top1'][shown[-1]]:.2f}",
                  f"{s['seconds_per_proposal']['median']:.3f}, {s['seconds_per_proposal']['p90']:.3f}"]
                 for name, s in summary.items()]))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")


def noise_floor(table: Table) -> dict[str, Any] | None:
    """The table's noise floor, where it records cells trained twice (``repeats``: pairs of scores)."""
    pairs = table.meta.get("repeats")
    if not pairs or len(pairs) < 3:
        return None
    return {"pairs": len(pairs), "rho": float(spearmanr(*zip(*pairs)).statistic), "sigma": table.noise_sigma()}


def _share(reach: dict, budget: int) -> str:
    """A share of random search's compute with its interval, or where the budget ended before the strategy got
    there."""
    def share(value: float | None) -> str:
        return f"> {budget / reach['n_star']:.0%}" if value is None else f"{value:.0%}"

    low, high = reach["interval"]
    return f"{share(reach['share'])} [{share(low)}, {share(high)}]"


def _regret(summary: dict, budget: str) -> str:
    median, (low, high) = summary["median_regret"][budget], summary["regret_quartiles"][budget]
    return "-" if median is None else f"{median:.3g} [{low:.3g}, {high:.3g}]"


if __name__ == "__main__":
    main()
