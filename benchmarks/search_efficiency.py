"""Which search finds good cells for the least compute: the strategies simulated on the ground-truth table
(benchmarks/data/synthetic-proxy-table.json.gz, made by search_table.py), over many seeds, compute counted in proxy
steps.

    python benchmarks/search_efficiency.py                       # the table, seeds 0..19
    python benchmarks/search_efficiency.py --seeds 20 --seed-offset 1000   # the same on seeds not used before
    python benchmarks/search_efficiency.py --candidate-steps 30000         # a candidate at the paper's 30K steps

A simulated search may only train cells of the table (its pool, the 1,001 cells scored once), whose proxy score is
then what it observes. A strategy that proposes a cell outside the pool (a mutation, a TPE suggestion) takes the
pool's nearest cell to it that it has not trained (fewest differing branch inputs and operations). Compute: a
candidate costs ``--candidate-steps`` proxy steps (default: the table's 100), a pruned one the steps it took; a
supernet step one proxy step; a one-shot or zero-cost score of a cell the proxy steps its measured time is worth at the
paper's shape (the table's ``paper_costs``); multiply-adds, parameters and family counts cost nothing. Regret is the
table's best score minus the best score a search has trained.

The strategies: ``random`` (the paper's), ``local`` (the paper's Vizier-like: half uniform, half near the 5 best),
``evolution`` (regularized), ``tpe`` (Optuna's), ``hyperband`` (Optuna's pruner on the table's rungs), ``oneshot``
(a supernet screens every cell, then the proxy trains them best first), ``filter:NAME`` (a cheap ranker orders the
pool, the proxy trains it in that order) and ``predictor`` (a gradient-boosting surrogate, fitted on the cells trained
so far, picks the next ones; ``predictor+zc`` also sees the zero-cost scores, ``predictor+oneshot-...`` the
longest-trained supernet's scores, each paid for up front; ``predictor+hyperband`` is the predictor sampler with
the Hyperband pruner).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from common import RESULTS, table, write_result
from densecell.rankers import RANKERS, ZERO_COST, Predictor, cell_features
from densecell.search import cell_from_params, distributions
from densecell.space import Cell, SearchSpace

TABLE = Path(__file__).parent / "data" / "synthetic-proxy-table.json.gz"
SPACE = SearchSpace()


@dataclass
class Pool:
    """The table's cells (each once), their proxy scores and rungs, and the cheap rankers' scores."""

    cells: list[Cell]
    scores: np.ndarray
    rungs: list[dict[int, float]]
    rankers: dict[str, np.ndarray]
    ranker_steps: dict[str, float]
    supernet_steps: dict[str, int]
    candidate_steps: int
    repeats: list[tuple[float, float]]
    codes: np.ndarray = field(init=False)
    features: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.codes = np.array([[b.input for b in c] + [SPACE.operations().index(b.op) for b in c]
                               for c in self.cells])
        self.features = np.array([cell_features(c, SPACE) for c in self.cells])

    @property
    def best(self) -> float:
        return float(self.scores.max())

    def top(self, fraction: float) -> set[int]:
        count = max(1, round(len(self.cells) * fraction))
        return set(np.argsort(-self.scores)[:count].tolist())

    def nearest(self, cell: Cell, taken: set[int], rng: random.Random) -> int:
        """The pool's untrained cell with the fewest differing branch inputs and operations from ``cell``."""
        code = np.array([b.input for b in cell] + [SPACE.operations().index(b.op) for b in cell])
        distance = (self.codes != code).sum(1).astype(float) + np.array([rng.random() * 0.5 for _ in self.cells])
        distance[list(taken)] = np.inf
        return int(np.argmin(distance))


def load_pool(path: Path, candidate_steps: int | None) -> Pool:
    with gzip.open(path, "rt") as handle:
        data = json.load(handle)
    rows = data["rows"]
    keep = [i for i, row in enumerate(rows) if row["kind"] != "repeat"]
    first = {json.dumps(rows[i]["cell"]): i for i in keep}
    repeats = [(rows[first[json.dumps(row["cell"])]]["miou"], row["miou"]) for row in rows if row["kind"] == "repeat"]
    costs = data["paper_costs"]["in_proxy_steps"]
    rankers, steps, trained = {}, {}, {}
    for name, facts in data["rankers"].items():
        rankers[name] = np.array([facts["scores"][i] for i in keep], dtype=float)
        steps[name] = costs.get(name, costs["oneshot"] if name.startswith("oneshot") else 0.0)
        if name.startswith("oneshot"):
            trained[name] = facts["train_steps"]
    return Pool([Cell.from_records(rows[i]["cell"]) for i in keep], np.array([rows[i]["miou"] for i in keep]),
                [{int(k): v for k, v in rows[i]["rungs"].items()} for i in keep], rankers, steps, trained,
                candidate_steps or data["proxy"]["iterations"], repeats)


# --- the strategies: each returns its trace, (compute in proxy steps, best score trained so far) ------------------

Trace = list[tuple[float, float]]


def _train(pool: Pool, order: list[int], budget: float, spent: float = 0.0) -> Trace:
    trace, best = [], -math.inf
    for index in order:
        if spent + pool.candidate_steps > budget:
            break
        spent += pool.candidate_steps
        best = max(best, float(pool.scores[index]))
        trace.append((spent, best))
    return trace


def random_search(pool: Pool, rng: random.Random, budget: float) -> Trace:
    order = list(range(len(pool.cells)))
    rng.shuffle(order)
    return _train(pool, order, budget)


def _sequential(pool: Pool, rng: random.Random, budget: float, propose: Callable[[list[int]], Cell | None]) -> Trace:
    """Train cells one at a time: ``propose(trained)`` gives a cell (the pool's nearest untrained one is trained), or
    None for a uniform draw among the untrained."""
    trained: list[int] = []
    taken: set[int] = set()
    while len(taken) < len(pool.cells):
        cell = propose(trained)
        if cell is None:
            index = rng.choice([i for i in range(len(pool.cells)) if i not in taken])
        else:
            index = pool.nearest(cell, taken, rng)
        taken.add(index)
        trained.append(index)
        if len(trained) * pool.candidate_steps >= budget:
            break
    return _train(pool, trained, budget)


def local_search(pool: Pool, rng: random.Random, budget: float) -> Trace:
    def propose(trained: list[int]) -> Cell | None:
        if not trained or rng.random() < 0.5:
            return None
        best = sorted(trained, key=lambda i: -pool.scores[i])[:5]
        return SPACE.mutate(pool.cells[rng.choice(best)], rng)

    return _sequential(pool, rng, budget, propose)


def evolution(pool: Pool, rng: random.Random, budget: float) -> Trace:
    def propose(trained: list[int]) -> Cell | None:
        if len(trained) < 20:
            return None
        parent = max(rng.sample(trained[-20:], 5), key=lambda i: pool.scores[i])
        return SPACE.mutate(pool.cells[parent], rng)

    return _sequential(pool, rng, budget, propose)


def tpe(pool: Pool, rng: random.Random, budget: float) -> Trace:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
        seed=rng.randrange(2**31), n_startup_trials=10))
    dists = distributions(SPACE)
    taken: set[int] = set()
    order = []
    while len(order) * pool.candidate_steps < budget and len(taken) < len(pool.cells):
        trial = study.ask(dists)
        index = pool.nearest(cell_from_params(trial.params, SPACE), taken, rng)
        taken.add(index)
        order.append(index)
        study.tell(trial, float(pool.scores[index]))
    return _train(pool, order, budget)


class _Rungs:
    """Optuna's Hyperband pruner on the table's rungs: :meth:`train` reports a cell's score at each rung until the
    pruner stops it, and says what that cost and whether the cell completed."""

    def __init__(self, pool: Pool) -> None:
        self.pool, self.steps = pool, sorted(pool.rungs[0])
        pruner = optuna.pruners.HyperbandPruner(min_resource=self.steps[0], max_resource=self.steps[-1],
                                                reduction_factor=3)
        self.study = optuna.create_study(direction="maximize", pruner=pruner,
                                         sampler=optuna.samplers.RandomSampler(0))
        self.scale = pool.candidate_steps / self.steps[-1]

    def train(self, index: int) -> tuple[float, bool]:
        trial = self.study.ask()
        for step in self.steps:
            trial.report(self.pool.rungs[index][step], step)
            if step < self.steps[-1] and trial.should_prune():
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return step * self.scale, False
        self.study.tell(trial, float(self.pool.scores[index]))
        return self.steps[-1] * self.scale, True


def _pruned(pool: Pool, budget: float, propose: Callable[[list[int], set[int]], list[int]]) -> Trace:
    """Cells trained under :class:`_Rungs` until the budget is spent; ``propose(completed, taken)`` gives the next
    untrained cells to train."""
    rungs, completed, taken, queue = _Rungs(pool), [], set(), []
    trace, spent, best = [], 0.0, -math.inf
    while spent <= budget and len(taken) < len(pool.cells):
        queue = queue or propose(completed, taken)
        index = queue.pop(0)
        taken.add(index)
        cost, done = rungs.train(index)
        spent += cost
        if done:
            completed.append(index)
            best = max(best, float(pool.scores[index]))
        if spent <= budget and best > -math.inf:
            trace.append((spent, best))
    return trace


def hyperband(pool: Pool, rng: random.Random, budget: float) -> Trace:
    """Uniform cells under Hyperband: a trial reports its score at each rung and stops when pruned."""
    order = list(range(len(pool.cells)))
    rng.shuffle(order)
    return _pruned(pool, budget, lambda completed, taken: [next(i for i in order if i not in taken)])


def ranked(name: str) -> Callable[[Pool, random.Random, float], Trace]:
    """Score every cell with a cheap ranker (or a supernet, trained first), then train them best first."""
    def strategy(pool: Pool, rng: random.Random, budget: float) -> Trace:
        scores = pool.rankers[name] + np.array([rng.random() * 1e-9 for _ in pool.cells])  # ties broken at random
        order = list(np.argsort(-scores))
        upfront = pool.supernet_steps.get(name, 0) + pool.ranker_steps[name] * len(pool.cells)
        return _train(pool, order, budget, upfront)

    return strategy


def _predicted(pool: Pool, rng: random.Random, extra: np.ndarray | None, trained: list[int],
               taken: set[int]) -> list[int]:
    """The 5 untrained cells that a :class:`~densecell.rankers.Predictor` fitted on ``trained`` predicts best."""
    model = Predictor(SPACE, rng.randrange(2**31)).fit([pool.cells[i] for i in trained], pool.scores[trained],
                                                       None if extra is None else extra[trained])
    left = [i for i in range(len(pool.cells)) if i not in taken]
    guess = model.predict([pool.cells[i] for i in left], None if extra is None else extra[left])
    return [left[i] for i in np.argsort(-guess)[:5]]


def predictor(extra_names: tuple[str, ...] = ()) -> Callable[[Pool, random.Random, float], Trace]:
    """densecell's ``predictor`` sampler (:class:`densecell.rankers.Predictor`, gradient boosting on the cell's
    encoding; with ``extra_names`` also on those rankers' scores of every cell, which it pays for up front, a
    supernet's training included), refitted every 5 cells on the cells trained so far; the 5 untrained pool cells it
    predicts best are trained next. The first 10 cells are uniform."""
    def strategy(pool: Pool, rng: random.Random, budget: float) -> Trace:
        extra = np.stack([pool.rankers[n] for n in extra_names], 1) if extra_names else None
        upfront = sum(pool.supernet_steps.get(n, 0) + pool.ranker_steps[n] * len(pool.cells) for n in extra_names)
        order = list(range(len(pool.cells)))
        rng.shuffle(order)
        trained = order[:10]
        while (len(trained) + 5) * pool.candidate_steps + upfront <= budget and len(trained) < len(pool.cells):
            trained += _predicted(pool, rng, extra, trained, set(trained))
        return _train(pool, trained, budget, upfront)

    return strategy


def predictor_hyperband(pool: Pool, rng: random.Random, budget: float) -> Trace:
    """``search.sampler: predictor`` with ``search.pruner: hyperband``: the predictor is fitted on the completed
    trials only (as the sampler is), uniform cells until 10 have completed."""
    order = list(range(len(pool.cells)))
    rng.shuffle(order)

    def propose(completed: list[int], taken: set[int]) -> list[int]:
        if len(completed) < 10:
            return [next(i for i in order if i not in taken)]
        return _predicted(pool, rng, None, completed, taken)

    return _pruned(pool, budget, propose)


def strategies(pool: Pool) -> dict[str, Callable[[Pool, random.Random, float], Trace]]:
    found = {"random": random_search, "local": local_search, "evolution": evolution, "tpe": tpe,
             "hyperband": hyperband}
    found |= {f"oneshot ({name.removeprefix('oneshot-')})": ranked(name) for name in pool.rankers
              if name.startswith("oneshot")}
    found |= {f"filter:{name}": ranked(name) for name in RANKERS if name in pool.rankers}
    found |= {"predictor": predictor(), "predictor+zc": predictor(ZERO_COST),
              "predictor+hyperband": predictor_hyperband}
    supernets = sorted((n for n in pool.rankers if n.startswith("oneshot")), key=lambda n: -pool.supernet_steps[n])
    if supernets:  # the longest-trained supernet's scores as the surrogate's extra column
        found[f"predictor+{supernets[0]}"] = predictor((supernets[0],))
    return found


# --- what the traces say -------------------------------------------------------------------------------------------

def best_at(trace: Trace, compute: float) -> float:
    best = -math.inf
    for spent, value in trace:
        if spent > compute:
            break
        best = value
    return best


def ranker_rows(pool: Pool) -> list[list]:
    """Each ranker's Spearman rho with the proxy score, its top-5 and top-1% overlap, and its cost per cell."""
    rows = []
    top = pool.top(0.01)
    for name, scores in pool.rankers.items():
        order = np.argsort(-scores)
        rho = float(spearmanr(scores, pool.scores).statistic)
        rows.append([name, rho, len(set(order[:5].tolist()) & pool.top(5 / len(pool.cells))),
                     len(set(order[:len(top)].tolist()) & top), pool.ranker_steps[name]])
    return rows


def summarise(pool: Pool, traces: dict[str, list[Trace]], budget: float) -> dict:
    """Median regret and its spread at each compute, the chance of a top-1% cell, and the compute at which a
    strategy's median best (over the seeds) first matches random search's median best after 100 cells, also as a
    share of the compute at which random search's own median best first gets there (the pool's top scores are few, so
    the median best is a step function and random's median may get there before 100 cells)."""
    grid = [budget * f for f in (0.05, 0.1, 0.2, 0.5, 1.0)]
    target = statistics.median_low(best_at(t, 100 * pool.candidate_steps) for t in traces["random"])
    top_score = float(np.sort(pool.scores)[-max(1, round(len(pool.cells) * 0.01))])
    steps = np.arange(1, int(budget // pool.candidate_steps) + 1) * pool.candidate_steps

    def reach(runs: list[Trace]) -> float:
        median_best = (statistics.median_low(best_at(t, c) for t in runs) for c in steps)
        return next((float(c) for c, best in zip(steps, median_best) if best >= target), math.inf)

    random_reach = reach(traces["random"])
    summary = {}
    for name, runs in traces.items():
        regrets = [[pool.best - best_at(t, c) for t in runs] for c in grid]
        reached = reach(runs)
        summary[name] = {
            "median_regret": [_finite(statistics.median_low(r)) for r in regrets],
            "regret_iqr": [[_finite(float(np.percentile(r, q))) for q in (25, 75)] for r in regrets],
            "p_top1": [sum(best_at(t, c) >= top_score for t in runs) / len(runs) for c in grid],
            "compute_to_match_random_100": _finite(reached),
            "fraction_of_random": _finite(reached / random_reach),
        }
    return {"grid": grid, "target": target, "random_reach": random_reach, "top1_score": top_score,
            "strategies": summary}


def _finite(value: float) -> float | None:
    """A figure for JSON: None where a strategy never got there (in this budget, or before spending its upfront
    cost)."""
    return value if math.isfinite(value) else None


def plot(pool: Pool, traces: dict[str, list[Trace]], budget: float, path: Path) -> Path:
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    grid = np.geomspace(pool.candidate_steps, budget, 40)
    for name, runs in traces.items():
        if name.startswith("filter:") and name not in ("filter:naswot", "filter:synflow"):
            continue
        curve = np.array([[pool.best - best_at(t, c) for t in runs] for c in grid])
        curve[~np.isfinite(curve)] = np.nan  # before a strategy has trained a cell
        with warnings.catch_warnings():  # all-NaN columns: compute at which no run of the strategy has trained a cell
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(grid, np.nanmedian(curve, 1) * 100, label=name, lw=2 if name in ("random", "predictor") else 1)
            ax.fill_between(grid, np.nanpercentile(curve, 25, 1) * 100, np.nanpercentile(curve, 75, 1) * 100,
                            alpha=0.08)
    ax.set_xscale("log")
    ax.set_xlabel("compute (proxy steps)")
    ax.set_ylabel("regret: the table's best minus the best found (mIoU points)")
    ax.set_title(f"{len(pool.cells)} cells, {len(next(iter(traces.values())))} seeds; median and quartiles")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--candidate-steps", type=int, default=None, help="Proxy steps a candidate costs.")
    parser.add_argument("--budget-cells", type=int, default=300, help="The budget, in candidates.")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not args.table.is_file():
        raise SystemExit(f"error: no table at {args.table}: build it with `make table` (hours on 2 cores), or pass "
                         "--table")
    pool = load_pool(args.table, args.candidate_steps)
    budget = args.budget_cells * pool.candidate_steps
    traces = {name: [strategy(pool, random.Random(args.seed_offset + seed), budget) for seed in range(args.seeds)]
              for name, strategy in strategies(pool).items()}
    result = summarise(pool, traces, budget)
    noise = float(spearmanr(*zip(*pool.repeats)).statistic) if len(pool.repeats) > 2 else math.nan
    print(f"{len(pool.cells)} cells, best {pool.best:.4f}; noise floor: rho {noise:.3f} between two seeds of "
          f"{len(pool.repeats)} cells; a candidate costs {pool.candidate_steps} proxy steps")
    print(table(["ranker", "Spearman rho", "top-5 overlap", "top-1% overlap", "proxy steps per cell"],
                ranker_rows(pool)))
    print(table(["strategy", *(f"regret @{c:.0f}" for c in result["grid"]), "P(top-1%) @ budget",
                 "compute to match random@100", "of random's"],
                [[name, *("-" if r is None else f"{r * 100:.2f}" for r in s["median_regret"]),
                  f"{s['p_top1'][-1]:.2f}", s["compute_to_match_random_100"] or "-",
                  "-" if s["fraction_of_random"] is None else f"{s['fraction_of_random']:.0%}"]
                 for name, s in result["strategies"].items()]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"search_efficiency_{pool.candidate_steps}" + (f"_seeds{args.seed_offset}" if args.seed_offset else "")
    figure = plot(pool, traces, budget, RESULTS / f"{name}.png")
    write_result(name, {
        "seeds": args.seeds, "seed_offset": args.seed_offset, "cells": len(pool.cells), "best": pool.best,
        "candidate_steps": pool.candidate_steps, "budget": budget, "noise_rho": noise, "repeats": len(pool.repeats),
        "rankers": {r[0]: {"rho": r[1], "top5": r[2], "top1pct": r[3], "steps_per_cell": r[4]}
                    for r in ranker_rows(pool)}, **result, "plot": figure.name})


if __name__ == "__main__":
    main()
