"""The ground truth for comparing searches: the proxy score of 1,000 uniformly drawn cells on the demo's synthetic data
with the demo's proxy settings, each at every rung, with its MAdds, params and seconds; the published cell; and 50
cells trained a second time with another seed (the noise floor).

    python benchmarks/search_table.py build     # densecell search, configs/search-synthetic-table.yaml (2 cores: hours)
    python benchmarks/search_table.py export    # -> benchmarks/data/synthetic-proxy-table.json.gz

``build`` writes the synthetic data if needed, queues the published cell and the 50 repeated cells (each twice: a
trial's seed is its number) in the study, and runs ``densecell search`` itself, whose uniform sampler draws the rest;
it resumes where it stopped. ``export`` reads the study and writes the table with the commit and the command that
made it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from densecell import record
from densecell.config import load_search_config
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.search import cell_params, create_study
from densecell.space import load_cell
from densecell.stages import feature_cache

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "configs" / "search-synthetic-table.yaml"
DATA = ROOT / "runs" / "synthetic-data"
TABLE = ROOT / "benchmarks" / "data" / "synthetic-proxy-table.json.gz"
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
        study.enqueue_trial(cell_params(cell))


def build() -> None:
    if not DATA.exists():
        write_synthetic_cityscapes(DATA, 48, 16, seed=0)  # what `densecell synthetic runs/synthetic-data` writes
    settings = config()
    feature_cache(settings)
    study = create_study(settings.name, settings.storage_url, settings.search_settings())
    queue_extras(study, settings.search.space)
    subprocess.run([sys.executable, "-m", "densecell", "search", "--config", str(RECIPE), "--data-root", str(DATA)],
                   check=True)


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def export() -> None:
    settings = config()
    study = optuna.load_study(study_name=settings.name, storage=settings.storage_url)
    published = load_cell("cityscapes-top1")
    rows, seen = [], {}
    for trial in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        facts = record.TrialRecord.from_trial(trial)
        kind = "published" if facts.cell == published else ("repeat" if facts.cell in seen else "uniform")
        seen.setdefault(facts.cell, trial.number)
        rungs = {str(step): miou for step, miou in sorted(trial.intermediate_values.items())}
        rows.append({"trial": trial.number, "seed": trial.number, "kind": kind, "cell": facts.cell.to_records(),
                     "miou": facts.values[0], "rungs": rungs, "madds": facts.madds, "params": facts.params,
                     "seconds": facts.seconds})
    table = {"commit": commit(), "command": "python benchmarks/search_table.py build && python "
                                            "benchmarks/search_table.py export",
             "recipe": str(RECIPE.relative_to(ROOT)), "proxy": settings.proxy.model_dump(mode="json"),
             "baseline_1x1": record.baseline(study), "rows": rows}
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(TABLE, "wt") as handle:
        json.dump(table, handle)
    kinds = {kind: sum(r["kind"] == kind for r in rows) for kind in ("uniform", "published", "repeat")}
    print(f"wrote {TABLE}: {len(rows)} trials ({kinds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["build", "export"])
    {"build": build, "export": export}[parser.parse_args().step]()


if __name__ == "__main__":
    main()
