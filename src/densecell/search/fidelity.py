"""Proxy fidelity (paper Fig. 3): the same cells scored by the proxy and by a second protocol, and how the two
rankings agree (Spearman's rho and the top-5 overlap), with a scatter plot.

The second protocol (``against``):

- ``end-to-end``: each cell trained end to end, backbone included, with the recipe's re-ranking settings (paper
  Fig. 3b, cached features against end-to-end training: rho = 0.47);
- ``backbone=NAME``: the proxy on the features of another backbone (paper Fig. 3a, MobileNet-v2 against Xception:
  rho = 0.36);
- ``proxy.FIELD=VALUE``: the proxy with one setting changed, such as a cheaper loss (``proxy.upsample_logits=false``)
  or a shorter budget (``proxy.iterations=25``, what a pruner decides on);
- ``oneshot``: the score the cell gets from the recipe's weight-sharing supernet (:mod:`densecell.search.supernet`;
  ``--set supernet.sampling=family-first`` for the fair one);
- a cheap ranker of :data:`densecell.core.registry.RANKERS`: ``madds``, ``params``, ``count:pool`` ..., or a zero-cost
  score (``gradnorm``, ``snip``, ``synflow``, ``naswot``).

Each protocol is an entry of :data:`densecell.core.registry.PROTOCOLS` (a ranker's name is a protocol too). Scores are
saved as each cell finishes (``scores.json``), so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..cell.space import Cell, SearchSpace, load_cell
from ..config import ProxySettings, SearchConfig
from ..core.errors import ConfigError, one_line
from ..core.figures import scatter
from ..core.files import make_dirs, write_text
from ..core.lock import RunLock
from ..core.progress import Progress, report
from ..core.ranking import describe_rho, spearman, top_overlap
from ..core.registry import PROTOCOLS, RANKERS
from ..models.backbones import check_backbone
from ..training.optim import default_device
from ..training.train import train
from . import stages
from .cache import FeatureCache
from .proxy import train_candidate
from .rankers import ranker
from .supernet import score_cell

__all__ = ["changed_proxy", "check_against", "choose_cells", "end_to_end", "FidelityResult", "MIN_CELLS", "oneshot",
           "other_backbone", "run_fidelity", "Scorer", "scorer"]

logger = logging.getLogger(__name__)
Scorer = Callable[[Cell, int], float]
"""Scores a cell by one protocol (its number in the study is its seed): a val mIoU."""


@dataclass
class FidelityResult:
    against: str
    cells: list[Cell]
    pairs: list[tuple[float, float]]
    rho: float
    top5: int
    files: dict[str, Path]


MIN_CELLS = 5
"""The fewest distinct cells that give a ranking: Spearman's rho needs 3, the top-5 overlap 5."""


def choose_cells(spec: str, space: SearchSpace, seed: int = 0) -> list[Cell]:
    """``spec`` is a number (that many distinct cells drawn uniformly) or a file: a JSON list of cells in the TF
    format, or a folder of cell JSON files (as ``densecell search top`` writes). Fewer than :data:`MIN_CELLS`
    distinct cells cannot be ranked, and are refused."""
    spec = str(spec).strip()
    if spec.lstrip("+-").isdigit():
        wanted = int(spec)
        _check_count(wanted, f"cells {spec}")
        if wanted > space.size():
            raise ConfigError(f"cells {spec}: the search space has only {space.size()} cells")
        rng, drawn = random.Random(seed), {}
        while len(drawn) < wanted:
            drawn[space.sample(rng)] = None
        return list(drawn)
    path = Path(spec)
    if path.is_dir():
        cells = [load_cell(file, space) for file in sorted(path.glob("*.json"))]
    elif path.is_file():
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a JSON list of cells ({one_line(exc)})") from None
        if not isinstance(records, list) or not records or not all(isinstance(r, list) for r in records):
            raise ConfigError(f"{path}: expected a JSON list of cells, each a list of branches")
        cells = [load_cell(json.dumps(cell), space) for cell in records]
    else:
        raise ConfigError(f"{path}: the cells are neither a number nor a cell file or folder")
    cells = list(dict.fromkeys(cells))  # each cell once, in order
    _check_count(len(cells), f"{path} ({len(cells)} distinct cells)")
    return cells


def _check_count(count: int, what: str) -> None:
    if count < MIN_CELLS:
        raise ConfigError(f"{what}: a ranking needs at least {MIN_CELLS} distinct cells (Spearman's rho needs 3, the "
                          f"top-5 overlap 5)")


def slug(against: str) -> str:
    """A folder name for a protocol: ``proxy.upsample_logits=false`` -> ``proxy.upsample_logits-false``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", against).strip("-")


def proxy_scorer(cache: FeatureCache, settings: ProxySettings) -> Scorer:
    """The proxy task as a scorer: the cell trained on ``cache`` with ``settings``, seeded by its number."""
    device = default_device()
    return lambda cell, seed: train_candidate(cell, cache, settings, seed=seed, device=device).miou


def end_to_end(config: SearchConfig, argument: str | None, out_dir: Path, progress: Progress | None) -> Scorer:
    """Each cell trained end to end, backbone included, with the recipe's re-ranking settings."""
    def score(cell: Cell, seed: int) -> float:
        run = stages.rerank_config(config, f"cell-{cell.digest()}", cell.to_json(), out_dir / "end-to-end")
        return train(run, resume=True, progress=progress, command="densecell fidelity").val_miou

    return score


def other_backbone(config: SearchConfig, argument: str | None, out_dir: Path, progress: Progress | None) -> Scorer:
    """The proxy on another backbone's features (``backbone=NAME``): its own cache (and warm-up, if the recipe
    warms up), with timm's default pretrained weights for it when the recipe's backbone is pretrained."""
    model = config.backbone.model_copy(update={"backbone": argument, "mean": None, "std": None,
                                               "pretrained": True if config.backbone.pretrained else None})
    other = config.model_copy(update={"name": f"backbone-{slug(str(argument))}", "output_dir": out_dir,
                                      "backbone": model, "cache": config.cache.model_copy(update={"dir": None})})
    folder = stages.feature_cache(other, progress, "densecell fidelity")
    return proxy_scorer(FeatureCache.load(folder, default_device()), config.proxy)


def oneshot(config: SearchConfig, argument: str | None, out_dir: Path, progress: Progress | None) -> Scorer:
    """The score a cell gets from the recipe's weight-sharing supernet."""
    supernet, cache = stages.supernet(config, progress)
    device = default_device()
    return lambda cell, seed: score_cell(supernet, cell, cache, config.supernet, device)


def changed_proxy(config: SearchConfig, argument: str | None, out_dir: Path, progress: Progress | None) -> Scorer:
    """The proxy with one setting changed (``proxy.FIELD=VALUE``; ``argument`` is ``FIELD=VALUE``)."""
    field, _, value = str(argument).partition("=")
    changed = ProxySettings(**(config.proxy.model_dump() | {field: yaml.safe_load(value)}))
    return proxy_scorer(FeatureCache.load(config.cache_dir, default_device()), changed)


def _protocol(against: str) -> tuple[str, str | None]:
    """The protocol's registered name and its argument: ``backbone=xception71`` -> (backbone, xception71),
    ``proxy.iterations=25`` -> (proxy, iterations=25), ``end-to-end`` -> (end-to-end, None)."""
    if against in RANKERS:
        return against, None
    key, equals, value = against.partition("=")
    if key.startswith("proxy.") and equals and value:
        return "proxy", f"{key.removeprefix('proxy.')}={value}"
    return key, (value or None) if equals else None


def check_against(against: str) -> str:
    """``against`` if it names a protocol (:data:`densecell.core.registry.PROTOCOLS`, or a ranker), else a one-line
    error."""
    name, argument = _protocol(against)
    takes = {"backbone": True, "proxy": True}
    if against not in RANKERS and (name not in PROTOCOLS or takes.get(name, False) != (argument is not None)):
        raise ConfigError(f"protocol {against!r}: expected end-to-end, oneshot, backbone=NAME, proxy.FIELD=VALUE "
                          f"or a cheap ranker ({', '.join(RANKERS)})")
    if name == "backbone":
        check_backbone(str(argument))
    return against


def scorer(config: SearchConfig, against: str, out_dir: Path, progress: Progress | None = None) -> Scorer:
    """The second protocol named by ``against`` (see the module's docstring)."""
    check_against(against)
    if against in RANKERS:
        score = ranker(against, FeatureCache.load(config.cache_dir, default_device()), config.proxy.filters,
                       config.seed, default_device()).score
        return lambda cell, seed: score(cell)
    name, argument = _protocol(against)
    return PROTOCOLS[name](config, argument, out_dir, progress)


def run_fidelity(config: SearchConfig, cells: str | Sequence[Cell], against: str,
                 out_dir: str | Path | None = None, progress: Progress | None = None,
                 seed: int = 0) -> FidelityResult:
    """Score ``cells`` (a list, or what :func:`choose_cells` reads: a number, a file or a folder) with the recipe's
    proxy and with ``against``; write ``scores.json``, ``fidelity.json`` and ``fidelity.png`` into ``out_dir``
    (default ``RUN/fidelity/<against>``). The recipe's cache is built first if needed; the scores are saved as each
    cell finishes, under the folder's lock, so an interrupted study continues where it stopped."""
    check_against(against)
    cells = choose_cells(cells, config.search.cell_space, seed) if isinstance(cells, str) else list(cells)
    stages.feature_cache(config, progress, "densecell fidelity")
    out = make_dirs(Path(out_dir) if out_dir else config.run_dir / "fidelity" / slug(against))
    reference = proxy_scorer(FeatureCache.load(config.cache_dir, default_device()), config.proxy)
    other = scorer(config, against, out, progress)
    path = out / "scores.json"
    with RunLock(out, "densecell fidelity"):
        scores = json.loads(path.read_text()) if path.exists() else {}
        for i, cell in enumerate(cells):
            if cell.digest() not in scores:
                scores[cell.digest()] = {"cell": cell.to_records(), "proxy": reference(cell, i),
                                         "against": other(cell, i)}
                write_text(path, json.dumps(scores, indent=1))
            report(progress, "fidelity", i + 1, len(cells))
        return _summarise(against, cells, scores, out)


def _summarise(against: str, cells: list[Cell], scores: dict, out: Path) -> FidelityResult:
    pairs = [(scores[c.digest()]["proxy"], scores[c.digest()]["against"]) for c in cells]
    rho, top5 = spearman(pairs), top_overlap(pairs)
    plot = scatter(pairs, "proxy mIoU", f"{against} mIoU", out / "fidelity.png", f"proxy against {against}")
    summary = {"against": against, "cells": len(cells), "spearman_rho": None if math.isnan(rho) else rho,
               "top5_overlap": top5, "pairs": pairs}
    write_text(out / "fidelity.json", json.dumps(summary, indent=1))
    logger.info("%d cells: Spearman rho = %s between the proxy and %s, top-5 overlap %d/5", len(cells),
                describe_rho(rho), against, top5)
    return FidelityResult(against, cells, pairs, rho, top5, {"scores": out / "scores.json", "plot": plot,
                                                             "summary": out / "fidelity.json"})
