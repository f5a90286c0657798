"""Ground-truth tables: architectures of a categorical space with a measured score each, in one plain format, for
measuring search strategies on ground truths (public NAS benchmarks, densecell's own DPC table).

A table is a gzipped (or plain) JSON object::

    {"name": ..., "source": ..., "licence": ..., "task": ..., "metric": ..., "complete": false,
     "space": {"params": [{"name": "edge0", "choices": [0, 1, 2, 3]}, ...]},
     "rows": [{"x": [0, 3, 1, ...], "score": 94.1, "flops": 1.2}, ...]}

``rows[i].x`` holds one value per parameter, in ``space.params`` order; ``score`` is higher-better; other keys of a
row are extra measurements (cheap features, or ``rungs``: ``{"step": score}`` at intermediate steps, for pruners).
``complete: true`` says the rows are the whole space. An architecture listed twice is one row with the mean of its
scores. densecell's own DPC tables add ``space.dpc`` (the
:class:`~densecell.cell.space.SearchSpace` fields), so that the DPC space's encoding and mutation are used on them.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cell.space import SearchSpace
from ..core.errors import DensecellError, TableError, one_line

__all__ = ["load_table", "Lookup", "NOISE_FLOOR_RHO", "Table", "TableParam"]

NOISE_FLOOR_RHO = 0.80
"""The proxy's own noise floor: the Spearman rank correlation of densecell's DPC table's 50 cells trained twice
with other seeds (``repeats`` of ``benchmarks/data/dpc-synthetic-proxy.json.gz``). A table without repeated
trainings is given the scatter at which two trainings of all its rows rank-correlate this much."""


@dataclass(frozen=True)
class TableParam:
    name: str
    choices: tuple[Any, ...]

    @property
    def numeric(self) -> bool:
        """Whether the choices are ordered numbers (channels, depths), which a predictor sees as values: numbers
        that are not exactly the codes 0 .. k-1 (operation codes, which it sees as categories)."""
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.choices):
            return False
        return sorted(self.choices) != list(range(len(self.choices)))


@dataclass
class Table:
    """A table's space, rows and scores; ``extras`` holds each further numeric column found in every row."""

    name: str
    params: tuple[TableParam, ...]
    points: list[tuple[Any, ...]]
    scores: np.ndarray
    complete: bool
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    rungs: list[dict[int, float]] | None = None
    dpc: SearchSpace | None = None

    def __len__(self) -> int:
        return len(self.points)

    @property
    def best(self) -> float:
        return float(self.scores.max())

    def top_score(self, fraction: float) -> float:
        """The score a row needs to be in the table's best ``fraction`` (at least one row)."""
        count = max(1, round(len(self.scores) * fraction))
        return float(np.sort(self.scores)[-count])

    def subset(self, rows: Sequence[int], name: str) -> Table:
        """The table of ``rows`` only (a restricted search: the rows under a latency budget), named ``name``."""
        keep = list(rows)
        return dataclasses.replace(
            self, name=name, points=[self.points[i] for i in keep], scores=self.scores[keep], complete=False,
            extras={key: values[keep] for key, values in self.extras.items()},
            rungs=[self.rungs[i] for i in keep] if self.rungs is not None else None)

    def free_columns(self) -> list[str]:
        """The extra columns a search may read for nothing: every one, except those the table prices in
        ``feature_cost_in_proxy_steps`` (a zero-cost score or a supernet's, which cost some training)."""
        priced = self.meta.get("feature_cost_in_proxy_steps") or {}
        return [key for key in self.extras if not priced.get(key)]

    def random_reach(self, target: float) -> int:
        """n*: the fewest uniform draws without replacement whose median best reaches ``target`` (random search's
        own hitting point of it, exactly: :meth:`random_median_best` does not fall as draws are added)."""
        low, high = 1, len(self)
        if self.random_median_best(high) < target:
            raise ValueError(f"{target} is above the table's best {self.best}")
        while low < high:
            middle = (low + high) // 2
            if self.random_median_best(middle) >= target:
                high = middle
            else:
                low = middle + 1
        return low

    def noise_sigma(self) -> float:
        """The standard deviation of one training's scatter around a row's score: from the table's repeated
        trainings (``repeats``: pairs of scores of one cell; the variance of a pair's difference is twice it), else
        the level at which two noisy copies of every row's score rank-correlate :data:`NOISE_FLOOR_RHO`."""
        pairs = np.asarray(self.meta.get("repeats") or [], dtype=float)
        if pairs.ndim == 2 and pairs.shape[1] == 2 and len(pairs) >= 3:
            return float(np.std(pairs[:, 0] - pairs[:, 1], ddof=1) / math.sqrt(2))
        return self._matched_sigma(NOISE_FLOOR_RHO)

    def _matched_sigma(self, rho: float) -> float:
        """The scatter at which two noisy copies of the scores have Spearman ``rho`` (bisection; the same draws of
        standard noise at every level, so the curve it searches is smooth)."""
        from scipy.stats import spearmanr

        draws = np.random.default_rng([0xDC, len(self)]).standard_normal((2, len(self)))
        spread = float(np.std(self.scores)) or 1.0
        low, high = 0.0, 10 * spread
        for _ in range(40):
            sigma = (low + high) / 2
            found = spearmanr(self.scores + sigma * draws[0], self.scores + sigma * draws[1]).statistic
            low, high = (sigma, high) if found > rho else (low, sigma)
        return (low + high) / 2

    def random_median_best(self, cells: int) -> float:
        """The median of the best score of ``cells`` uniform draws without replacement, exactly: the highest score
        that such a draw reaches with probability at least a half (P(best >= k-th best score) is
        1 - C(N-k, R) / C(N, R))."""
        ordered = np.sort(self.scores)[::-1]
        count = len(ordered)
        draws = min(cells, count)
        log_miss = 0.0  # log C(N-k, R) / C(N, R), updated as k grows
        for k in range(1, count + 1):
            if count - k < draws:
                return float(ordered[k - 1])
            log_miss += math.log((count - k + 1 - draws) / (count - k + 1))
            if 1 - math.exp(log_miss) >= 0.5:
                return float(ordered[k - 1])
        return float(ordered[-1])


def _fail(path: Path, message: str) -> TableError:
    return TableError(f"{path}: {message}")


def load_table(path: str | Path) -> Table:
    """Read a table (``.json.gz`` or ``.json``), checking every row against the space; one-line errors."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise _fail(path, "no such table file") from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"not a (gzipped) JSON table: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise _fail(path, "expected a JSON object with 'space' and 'rows'")
    space = data.get("space")
    params = _params(path, space)
    points, scores, rows = _rows(path, data.get("rows"), params)
    dpc = None
    if space.get("dpc") is not None:
        try:
            dpc = SearchSpace(**space["dpc"])
        except (TypeError, DensecellError) as exc:
            raise _fail(path, f"field 'space.dpc': {one_line(exc)}") from None
        _check_dpc(path, params, dpc)
    extras = {}
    for key in rows[0]:
        values = [row.get(key) for row in rows]
        if key not in ("x", "score", "rungs") and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in values):
            extras[key] = np.array(values, dtype=float)
    rungs = None
    if all(isinstance(row.get("rungs"), dict) and row["rungs"] for row in rows):
        try:
            rungs = [{int(step): float(value) for step, value in row["rungs"].items()} for row in rows]
        except (TypeError, ValueError):
            raise _fail(path, "field 'rows[].rungs' must map steps to scores") from None
    meta = {key: value for key, value in data.items() if key not in ("space", "rows")}
    return Table(name=str(data.get("name") or path.name.split(".")[0]), params=params, points=points,
                 scores=np.array(scores), complete=bool(data.get("complete", False)), path=path, meta=meta,
                 extras=extras, rungs=rungs, dpc=dpc)


def _params(path: Path, space: Any) -> tuple[TableParam, ...]:
    """The table's parameters, checked."""
    if not isinstance(space, dict) or not isinstance(space.get("params"), list) or not space["params"]:
        raise _fail(path, "field 'space.params' must be a non-empty list of {name, choices}")
    params = []
    for i, param in enumerate(space["params"]):
        if not (isinstance(param, dict) and isinstance(param.get("name"), str) and
                isinstance(param.get("choices"), list) and param["choices"]):
            raise _fail(path, f"field 'space.params[{i}]' must be {{'name': str, 'choices': [non-empty list]}}")
        try:
            choices = tuple(param["choices"])
            hash(choices)
        except TypeError:
            raise _fail(path, f"field 'space.params[{i}].choices' must hold numbers, strings or null") from None
        params.append(TableParam(param["name"], choices))
    if len({p.name for p in params}) != len(params):
        raise _fail(path, "field 'space.params': two parameters share a name")
    return tuple(params)


def _check_dpc(path: Path, params: tuple[TableParam, ...], dpc: SearchSpace) -> None:
    """A DPC table's parameters are its DPC space's, in order, their choices within the space's (so every row is a
    cell of the space, which the DPC space's encoding and mutation rely on)."""
    expected = dpc.parameters()
    if [p.name for p in params] != list(expected):
        raise _fail(path, f"field 'space.params': a DPC table of {dpc.num_branches} branches has the parameters "
                          f"{', '.join(expected)}, in that order; found {', '.join(p.name for p in params)}")
    for i, param in enumerate(params):
        outside = [value for value in param.choices if value not in expected[param.name]]
        if outside:
            raise _fail(path, f"field 'space.params[{i}].choices': {param.name} = {outside[0]!r} is outside the "
                              f"DPC space of 'space.dpc'")


def _rows(path: Path, rows: Any, params: tuple[TableParam, ...]) -> tuple[list[tuple[Any, ...]], list[float],
                                                                          list[dict[str, Any]]]:
    """Each distinct architecture once (the mean score of one listed twice), checked against the parameters, with
    the row it was first listed in."""
    if not isinstance(rows, list) or not rows:
        raise _fail(path, "field 'rows' must be a non-empty list")
    points: list[tuple[Any, ...]] = []
    keep: list[int] = []
    seen: dict[tuple[Any, ...], list[float]] = {}
    allowed = [set(p.choices) for p in params]
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("x"), list) or len(row["x"]) != len(params):
            raise _fail(path, f"field 'rows[{i}].x' must be a list of {len(params)} values (one per parameter)")
        point = tuple(row["x"])
        for value, param, choices in zip(point, params, allowed):
            if value not in choices:
                raise _fail(path, f"field 'rows[{i}].x': {param.name} = {value!r} is not one of its choices")
        score = row.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise _fail(path, f"field 'rows[{i}].score' must be a finite number, got {score!r}")
        if point in seen:  # the same architecture measured again: its scores are averaged
            seen[point].append(float(score))
            continue
        seen[point] = [float(score)]
        points.append(point)
        keep.append(i)
    return points, [sum(seen[p]) / len(seen[p]) for p in points], [rows[i] for i in keep]


@dataclass(frozen=True)
class Lookup:
    """Training a table's cell, as a search on a table does it: its score read from the table with a proxy's
    scatter (normal, standard deviation ``noise``; :meth:`Table.noise_sigma` is the measured level), taking a
    lognormal time (median ``seconds``, log-spread ``spread``: cells of one space train for different times, so
    workers finish out of order). The harness simulates the time; a worker on a table sleeps it."""

    table: Table
    noise: float = 0.0
    seconds: float = 1.0
    spread: float = 0.3

    def score(self, row: int, rng: np.random.Generator) -> float:
        """One training's score of ``row``."""
        true = float(self.table.scores[row])
        return true + float(rng.normal(0.0, self.noise)) if self.noise > 0 else true

    def duration(self, rng: np.random.Generator) -> float:
        return float(self.seconds * math.exp(rng.normal(0.0, self.spread))) if self.spread > 0 else self.seconds
