"""The ground truth for comparing searches: the proxy score of 1,000 uniformly drawn cells on the demo's synthetic data
with the demo's proxy settings, each at every rung, with its MAdds, params and seconds; the published cell; and 50
cells trained a second time with another seed (the noise floor).

    python benchmarks/search_table.py build     # densecell search, configs/search-synthetic-table.yaml (2 cores: hours)
    python benchmarks/search_table.py rank      # the cheap rankers' scores of every cell, with their costs
    python benchmarks/search_table.py export    # -> benchmarks/data/synthetic-proxy-table.json.gz, and convert
    python benchmarks/search_table.py convert   # -> benchmarks/data/dpc-synthetic-proxy.json.gz (shared format)

``build`` writes the synthetic data if needed, queues the published cell and the 50 repeated cells (each twice: a
trial's seed is its number) in the study, and runs ``densecell search`` itself, whose uniform sampler draws the rest;
it resumes where it stopped. ``rank`` scores every cell with each cheap ranker (densecell.search.rankers) and with four
supernets (uniform and family-first sampling, 300 and 1,200 steps), and times each against a proxy step at the
paper's shape (769x769, batch 8, 320x49x49 features, 256 filters) on this machine; it keeps each cell's scores in
the run folder (``rankers.json``, by cell digest), so a stopped rank, or one after the table grew, scores only the
cells it lacks. ``export`` writes the table with the commit and the command that made it; ``convert`` writes it in
the format of the public tables (``densecell.search.tables``: the cell as its Optuna parameters, the proxy score, the
rungs, multiply-adds, parameters and the zero-cost scores as extra columns, the repeated cells as the noise floor),
which ``benchmarks/search_efficiency.py`` reads like any other table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from common import machine
from densecell.cell.space import Cell, load_cell
from densecell.config import ProxySettings, load_search_config
from densecell.core.files import write_text
from densecell.core.registry import RANKERS
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.search import DPCSpace, create_study, record
from densecell.search.cache import FeatureCache
from densecell.search.proxy import build_proxy_head
from densecell.search.rankers import ZERO_COST, ZeroCost, ranker
from densecell.search.stages import feature_cache
from densecell.search.supernet import Supernet, score_cell, train_supernet
from densecell.training.precision import Precision
from densecell.training.steps import EagerStep

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "configs" / "search-synthetic-table.yaml"
DATA = ROOT / "runs" / "synthetic-data"
TABLE = ROOT / "benchmarks" / "data" / "synthetic-proxy-table.json.gz"
SHARED = ROOT / "benchmarks" / "data" / "dpc-synthetic-proxy.json.gz"
REPEATS = 50
SEED = 20181203  # the repeated cells are drawn with their own generator, apart from the sampler's


def config():
    return load_search_config(RECIPE, [f"data.root={DATA}"])


def queue_extras(study: optuna.Study, space) -> None:
    """The published cell once and ``REPEATS`` uniform cells twice, queued once (before any other trial)."""
    if study.get_trials(deepcopy=False):
        return
    rng = random.Random(SEED)
    repeated = []
    while len(repeated) < REPEATS:
        cell = space.sample(rng)
        if cell not in repeated:
            repeated.append(cell)
    for cell in [load_cell("cityscapes-top1"), *repeated, *repeated]:
        study.enqueue_trial(DPCSpace().params_of(cell))


def build() -> None:
    if not DATA.exists():
        write_synthetic_cityscapes(DATA, 48, 16, seed=0)  # what `densecell synthetic runs/synthetic-data` writes
    settings = config()
    feature_cache(settings)
    study = create_study(settings.name, settings.storage_url, settings.search_settings())
    queue_extras(study, settings.search.cell_space)
    subprocess.run([sys.executable, "-m", "densecell", "search", "--config", str(RECIPE), "--data-root", str(DATA)],
                   check=True)


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def proxy_rows() -> list[dict]:
    """The study's completed trials as the table's rows, in trial order."""
    settings = config()
    study = optuna.load_study(study_name=settings.name, storage=settings.storage_url)
    published = load_cell("cityscapes-top1")
    rows, seen = [], set()
    for trial in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        facts = record.TrialRecord.from_trial(trial)
        kind = "published" if facts.cell == published else ("repeat" if facts.cell in seen else "uniform")
        seen.add(facts.cell)
        rungs = {str(step): miou for step, miou in sorted(trial.intermediate_values.items())}
        rows.append({"trial": trial.number, "seed": trial.number, "kind": kind, "cell": facts.cell.to_records(),
                     "miou": facts.values[0], "rungs": rungs, "madds": facts.madds, "params": facts.params,
                     "seconds": facts.seconds})
    return rows


SUPERNETS = [("uniform", 300), ("uniform", 1200), ("family-first", 300), ("family-first", 1200)]
"""The supernets scored: the demo's 300 steps and four times as many, with uniform and family-first sampling."""


def _timed(score, cells: list[Cell]) -> tuple[list[float], float]:
    start = time.perf_counter()
    values = [score(cell) for cell in cells]
    return values, (time.perf_counter() - start) / max(1, len(cells))


def _score(done: dict, names: tuple[str, ...], score: Callable[[Cell], dict[str, float]], cells: list[Cell],
           path: Path) -> None:
    """Score the cells that ``names`` lack, kept by cell digest (and saved every 50 cells), so that a stopped rank,
    or a table that grew, resumes with only the new cells; names scored together share their seconds."""
    entries = [done.setdefault(name, {"scores": {}, "seconds": 0.0}) for name in names]
    todo = [cell for cell in cells if any(cell.digest() not in entry["scores"] for entry in entries)]
    for count, cell in enumerate(todo, 1):
        start = time.perf_counter()
        values = score(cell)
        spent = time.perf_counter() - start
        for name, entry in zip(names, entries):
            entry["scores"][cell.digest()] = values[name]
            entry["seconds"] += spent
        if count % 50 == 0 or count == len(todo):
            write_text(path, json.dumps(done))
    if todo:
        per_cell = entries[0]["seconds"] / len(entries[0]["scores"])
        print(f"{'+'.join(names)}: {len(todo)} cells scored, {per_cell * 1e3:.0f} ms per cell", flush=True)


def _supernet(settings, cache: FeatureCache, sampling: str, steps: int, facts: dict):
    """The supernet trained (or loaded from its run folder) with ``sampling`` for ``steps`` steps."""
    folder = settings.run_dir / f"supernet-{sampling}-{steps}"
    supernet_settings = settings.supernet.model_copy(update={"steps": steps, "sampling": sampling})
    start = time.perf_counter()
    supernet = train_supernet(cache, settings.search.cell_space, settings.proxy, supernet_settings, folder,
                              settings.seed)
    facts.setdefault("train_seconds", time.perf_counter() - start)
    facts["train_steps"] = steps
    return supernet, supernet_settings


def paper_costs(repeats: int = 3) -> dict:
    """Seconds at the paper's proxy shape on this machine (random features: the timing does not depend on them): a
    proxy step, each zero-cost score of a cell, and the one-shot score of a cell (BatchNorm re-estimation on one batch
    of 16, and a pass over Cityscapes' 500 val images at 1025x2049, 65x129 features)."""
    torch.manual_seed(0)
    features = torch.randn(64, 320, 49, 49).half()
    labels = torch.randint(0, 19, (64, 769, 769), dtype=torch.uint8)
    cache = FeatureCache(features, labels, features[:4], labels[:4], tuple(f"c{i}" for i in range(19)), 16, None)
    settings = ProxySettings(iterations=100, batch_size=8)
    head = build_proxy_head("cityscapes-top1", 320, 19, 16, 256)
    step = EagerStep(head, lambda g: cache.train_batch(torch.randint(64, (8,), generator=g)), settings, Precision(),
                     torch.device("cpu"), 0)
    step.run(1)
    step_s = statistics.median(_timed(lambda _: step.run(1), [None])[1] for _ in range(repeats))
    cells = [load_cell("cityscapes-top1"), load_cell("cityscapes-top1")]
    zero = ZeroCost(cache, 256)
    costs = {name: _timed(lambda cell, n=name: zero.scores(cell, (n,)), cells)[1] for name in ZERO_COST}
    supernet = Supernet(config().search.cell_space, 320, 19, 256).eval()
    val = torch.randn(4, 320, 65, 129)
    with torch.no_grad():
        bn_s = _timed(lambda cell: supernet.train()(features[:16].float(), cell), cells[:1])[1]
        val_s = _timed(lambda cell: supernet.eval()(val, cell), cells[:1])[1] / 4 * 500
    return {"proxy_step_s": step_s, "zero_cost_s": costs, "oneshot_score_s": bn_s + val_s,
            "in_proxy_steps": {**{name: seconds / step_s for name, seconds in costs.items()},
                               "oneshot": (bn_s + val_s) / step_s}}


def rank() -> None:
    """Every distinct cell of the table scored by each cheap ranker and each supernet, kept in the run folder."""
    settings = config()
    path = settings.run_dir / "rankers.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    cells = list(dict.fromkeys(Cell.from_records(row["cell"]) for row in proxy_rows()))
    cache = FeatureCache.load(settings.cache_dir)
    for name in (n for n in RANKERS if n not in ZERO_COST):
        structural = ranker(name, cache, settings.proxy.filters).score
        _score(done, (name,), lambda cell, s=structural, n=name: {n: s(cell)}, cells, path)
    zero = ZeroCost(cache, settings.proxy.filters)
    for names in (("gradnorm", "snip"), ("synflow",), ("naswot",)):
        _score(done, names, lambda cell, n=names: zero.scores(cell, n), cells, path)
    for sampling, steps in SUPERNETS:
        name = f"oneshot-{sampling}-{steps}"
        facts = done.setdefault(name, {"scores": {}, "seconds": 0.0})
        supernet, supernet_settings = _supernet(settings, cache, sampling, steps, facts)
        _score(done, (name,), lambda cell, s=supernet, c=supernet_settings, n=name: {n: score_cell(s, cell, cache, c)},
               cells, path)
    if "paper_costs" not in done:
        done["paper_costs"] = paper_costs()
        write_text(path, json.dumps(done))
    print(f"{path}: {len(cells)} cells")


def export() -> None:
    settings = config()
    study = optuna.load_study(study_name=settings.name, storage=settings.storage_url)
    rows = proxy_rows()
    ranked = json.loads((settings.run_dir / "rankers.json").read_text())
    costs = ranked.pop("paper_costs")
    digests = [Cell.from_records(row["cell"]).digest() for row in rows]
    rankers = {name: {**{k: v for k, v in facts.items() if k not in ("scores", "seconds")},
                      "seconds_per_cell": facts["seconds"] / len(facts["scores"]),
                      "scores": [facts["scores"][digest] for digest in digests]} for name, facts in ranked.items()}
    table = {"commit": commit(), "machine": machine(),
             "command": "python benchmarks/search_table.py build && python benchmarks/search_table.py rank && "
                        "python benchmarks/search_table.py export",
             "recipe": str(RECIPE.relative_to(ROOT)), "proxy": settings.proxy.model_dump(mode="json"),
             "supernet": settings.supernet.model_dump(mode="json"), "baseline_1x1": record.baseline(study),
             "paper_costs": costs, "rankers": rankers, "rows": rows}
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(TABLE, "wt") as handle:
        json.dump(table, handle)
    kinds = {kind: sum(r["kind"] == kind for r in rows) for kind in ("uniform", "published", "repeat")}
    print(f"wrote {TABLE}: {len(rows)} trials ({kinds}), {len(rankers)} rankers")
    convert()


def convert() -> None:
    """The table in the shared format: each distinct cell once (its first training), the repeats as pairs."""
    with gzip.open(TABLE, "rt") as handle:
        raw = json.load(handle)
    space = DPCSpace(config().search_settings().cell_space)
    iterations = raw["proxy"]["iterations"]
    zero_cost = [name for name in raw["rankers"] if name in ZERO_COST or name.startswith("oneshot")]
    rows, first = [], {}
    for index, row in enumerate(raw["rows"]):
        cell = Cell.from_records(row["cell"])
        if row["kind"] == "repeat":
            continue
        first[cell] = row["miou"]
        rows.append({"x": list(space.of(cell)), "score": row["miou"], "madds": row["madds"], "params": row["params"],
                     **{name: raw["rankers"][name]["scores"][index] for name in zero_cost},
                     "rungs": {**row["rungs"], str(iterations): row["miou"]}})
    repeats = [[first[Cell.from_records(row["cell"])], row["miou"]] for row in raw["rows"] if row["kind"] == "repeat"]
    costs = raw["paper_costs"]["in_proxy_steps"]
    shared = {
        "name": "dpc-synthetic-proxy", "source": f"densecell, {raw['command']} at commit {raw['commit']}",
        "licence": "Apache-2.0 (densecell)", "task": "densecell's synthetic segmentation data (the demo's)",
        "metric": "proxy val mIoU", "complete": False,
        "note": f"{len(rows):,} cells of the DPC space ({len(rows) - 1:,} uniform and the published cell), each "
                f"trained on the demo's proxy ({iterations} steps; rungs every {raw['proxy']['eval_every']}); madds "
                "and params cost nothing to compute; a zero-cost or one-shot score (oneshot-SAMPLING-STEPS: a supernet "
                "trained that many steps) costs the proxy steps in feature_cost_in_proxy_steps; repeats: cells "
                "trained a second time with another seed",
        "feature_cost_in_proxy_steps": {name: costs["oneshot" if name.startswith("oneshot") else name]
                                        for name in zero_cost} | {"madds": 0, "params": 0},
        "repeats": repeats,
        "space": {"params": [{"name": name, "choices": list(dist.choices)}
                             for name, dist in space.distributions().items()],
                  "dpc": {"num_branches": space.cells.num_branches, "rates": list(space.cells.rates),
                          "grids": list(space.cells.grids)}},
        "rows": rows}
    with gzip.open(SHARED, "wt") as handle:
        json.dump(shared, handle)
    print(f"wrote {SHARED}: {len(rows)} rows, {len(repeats)} repeats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["build", "rank", "export", "convert"])
    {"build": build, "rank": rank, "export": export, "convert": convert}[parser.parse_args().step]()


if __name__ == "__main__":
    main()
