"""The spaces a search samples from, behind one interface, so that every sampler runs on the DPC cell space and on a
public ground-truth table alike (and a benchmark measures the sampler that ships).

A point of a space is the tuple of its Optuna parameters' values, in the order of :meth:`SamplerSpace.distributions`.
What a sampler needs of a space: a uniform draw, the neighbours and a random mutation of a point, an encoding of points
for a predictor, membership, and :meth:`SamplerSpace.project`: the nearest member that no trial has taken yet, which is
how every sampler's proposal becomes something that can be trained.

- :class:`DPCSpace`: the recursive Dense Prediction Cell space (:class:`densecell.cell.space.SearchSpace`): every cell
  can be trained, so a proposal is only moved when it was taken already (to an untaken neighbour).
- :class:`TableSpace`: the categorical space of a table (:mod:`densecell.search.tables`): its rows, the whole space
  (``complete``) or a sample of it. A proposal that is not an untaken row becomes the untaken row with the fewest
  differing positions. A table of DPC cells uses the DPC space's own encoding, neighbours and mutation, with its
  draws restricted to the table's rows.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from ..cell.space import Branch, Cell, SearchSpace
from ..core.aliases import renamed_names, warn_renamed
from .tables import Table, load_table

__all__ = ["DPCSpace", "Point", "SamplerSpace", "TableSpace"]

Point = tuple[Any, ...]
"""A point of a space: its parameters' values, in the order of the space's distributions."""


class SamplerSpace(ABC):
    """What a sampler needs of the space it searches, whatever its points are: DPC cells (:class:`DPCSpace`, which
    wraps the cell space's shape, :class:`densecell.cell.space.SearchSpace`) or a table's rows (:class:`TableSpace`).
    """

    draw_attempts = 200
    """Uniform draws tried for an untaken point before the nearest untaken point to one is taken instead."""

    @abstractmethod
    def distributions(self) -> dict[str, CategoricalDistribution]:
        """The Optuna parameters of a point, in point order."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Point:
        """A uniform draw."""

    @abstractmethod
    def mutate(self, point: Point, rng: random.Random) -> Point:
        """A random neighbour (one position changed); it may fall outside a table that is a sample."""

    @abstractmethod
    def neighbours(self, point: Point) -> list[Point]:
        """The members nearest to ``point`` (one position away where there are such), in a fixed order."""

    @abstractmethod
    def encode(self, points: Sequence[Point]) -> np.ndarray:
        """Points as rows of numbers, for a predictor."""

    @abstractmethod
    def __contains__(self, point: object) -> bool:
        """Whether ``point`` can be trained."""

    def costs(self, points: Sequence[Point]) -> np.ndarray:
        """What costs nothing to measure of each point, one column per measurement, for a predictor (none here)."""
        return np.zeros((len(points), 0))

    @abstractmethod
    def nearest(self, point: Point, taken: Collection[Point], rng: random.Random) -> Point | None:
        """The untaken member nearest to ``point`` (ties broken by ``rng``), None when every member is taken."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.distributions())

    def params(self, point: Point) -> dict[str, Any]:
        return dict(zip(self.names, point))

    def point(self, params: Mapping[str, Any]) -> Point | None:
        """The point of a trial's parameters, None for a trial that has not suggested them all."""
        try:
            return tuple(params[name] for name in self.names)
        except KeyError:
            return None

    def suggest(self, trial: optuna.Trial) -> Point:
        """Suggest every parameter of ``trial`` (in point order) and return its point."""
        return tuple(trial.suggest_categorical(name, dist.choices) for name, dist in self.distributions().items())

    def draw(self, rng: random.Random, taken: Collection[Point]) -> Point:
        """A uniform draw among the untaken points (uniform draws until one is untaken; after
        :attr:`draw_attempts`, the nearest untaken point to the last draw)."""
        for _ in range(self.draw_attempts):
            point = self.sample(rng)
            if point not in taken and point in self:
                return point
        return self.project(point, taken, rng)

    def project(self, point: Point, taken: Collection[Point], rng: random.Random) -> Point:
        """``point`` if it can be trained and no trial has taken it, else the nearest untaken member; ``point``
        itself once every member is taken (a space smaller than the budget)."""
        if point in self and point not in taken:
            return point
        return self.nearest(point, taken, rng) or point


# --- the DPC cell space --------------------------------------------------------------------------------------------

def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """Deprecated: ``DPCSpace(space).distributions()``."""
    warn_renamed("densecell.search.distributions(space)", "DPCSpace(space).distributions()")
    return DPCSpace(space).distributions()


def cell_params(cell: Cell) -> dict[str, Any]:
    """Deprecated: ``DPCSpace(space).params_of(cell)``."""
    warn_renamed("densecell.search.cell_params(cell)", "DPCSpace().params_of(cell)")
    return DPCSpace(SearchSpace(len(cell))).params_of(cell)


def cell_from_params(params: Mapping[str, Any], space: SearchSpace) -> Cell:
    """Deprecated: ``DPCSpace(space).cell_of(params)``."""
    warn_renamed("densecell.search.cell_from_params(params, space)", "DPCSpace(space).cell_of(params)")
    return DPCSpace(space).cell_of(params)


def suggest_cell(trial: optuna.Trial, space: SearchSpace) -> Cell:
    """Deprecated: ``DPCSpace(space).suggest_cell(trial)``."""
    warn_renamed("densecell.search.suggest_cell(trial, space)", "DPCSpace(space).suggest_cell(trial)")
    return DPCSpace(space).suggest_cell(trial)


class DPCSpace(SamplerSpace):
    """The Dense Prediction Cell space: a point is a cell's ``b{i}_input, b{i}_op`` values."""

    def __init__(self, cells: SearchSpace | None = None, cost: Callable[[Cell], float] | None = None,
                 budget: float = math.inf) -> None:
        self.cells = cells or SearchSpace()
        self.cost, self.budget = cost, budget
        """A budget on the cells that can be trained (a latency budget: ``cost`` is the predicted latency): the
        cells over it are not members."""
        self._under: dict[Point, bool] = {}
        self._dists = {name: CategoricalDistribution(choices) for name, choices in self.cells.parameters().items()}
        self._ops = {op.choice: op for op in self.cells.operations()}
        self._coster: Any = None

    def costs(self, points: Sequence[Point]) -> np.ndarray:
        """The log parameters and log multiply-adds of each cell's context module (counted, never run), on the
        paper's proxy feature (MobileNet-v2's 320 channels, 256 filters, a 513x513 crop at output stride 16): a
        search ranks cells by them, so the exact feature shape matters little."""
        if self._coster is None:
            from ..models.cost import CellCoster  # torch's meta device; only a predictor that uses costs needs it

            self._coster = CellCoster(320, 256, (513, 513), 16)
        counted = [self._coster(self.cell(point)) for point in points]
        return np.log1p(np.array([[c.params, c.madds] for c in counted], dtype=float)).reshape(len(points), 2)

    def distributions(self) -> dict[str, CategoricalDistribution]:
        return dict(self._dists)

    def cell(self, point: Point) -> Cell:
        """The cell of a point (``b0_input, b0_op, b1_input, ...``)."""
        return Cell(tuple(Branch(int(point[2 * i]), self._ops[point[2 * i + 1]])
                          for i in range(self.cells.num_branches)))

    def of(self, cell: Cell) -> Point:
        """The point of a cell: the inverse of :meth:`cell`."""
        return tuple(value for branch in cell for value in (branch.input, branch.op.choice))

    def params_of(self, cell: Cell) -> dict[str, Any]:
        """A cell as a trial's parameters: the inverse of :meth:`cell_of`."""
        return self.params(self.of(cell))

    def cell_of(self, params: Mapping[str, Any]) -> Cell:
        """The cell of a trial's parameters (``b{i}_input``, ``b{i}_op``)."""
        point = self.point(params)
        if point is None:
            raise KeyError(f"the parameters {sorted(params)} are not a whole cell of {self.names}")
        return self.cell(point)

    def suggest_cell(self, trial: optuna.Trial) -> Cell:
        """Suggest a cell's parameters on ``trial`` (a uniform choice of each is a uniform cell: the space is a
        product) and return the cell."""
        return self.cell(self.suggest(trial))

    def sample(self, rng: random.Random) -> Point:
        return self.of(self.cells.sample(rng))

    def mutate(self, point: Point, rng: random.Random) -> Point:
        return self.of(self.cells.mutate(self.cell(point), rng))

    def neighbours(self, point: Point) -> list[Point]:
        return [self.of(cell) for cell in self.cells.neighbours(self.cell(point))]

    def encode(self, points: Sequence[Point]) -> np.ndarray:
        return np.array([self.cells.features(self.cell(point)) for point in points], dtype=float).reshape(
            len(points), -1)

    def is_cell(self, point: object) -> bool:
        """Whether ``point`` is a cell of the space's shape (whatever its constraint says)."""
        if not isinstance(point, tuple) or len(point) != len(self._dists):
            return False
        return all(value in dist.choices for value, dist in zip(point, self._dists.values()))

    def __contains__(self, point: object) -> bool:
        if not self.is_cell(point):
            return False
        if self.cost is None:
            return True
        if point not in self._under:  # a sampler asks about the same cells again and again
            self._under[point] = self.cost(self.cell(point)) <= self.budget  # type: ignore[arg-type]
        return self._under[point]  # type: ignore[index]

    def nearest(self, point: Point, taken: Collection[Point], rng: random.Random) -> Point | None:
        """An untaken member among the neighbours (the space has about 400 per cell); under a budget, else the
        neighbours of the cheapest neighbour, and so on down (a cell far over it is a few cheaper branches away);
        else an untaken uniform draw that is a member."""
        for _ in range(2 * self.cells.num_branches if self.cost is not None else 1):
            if not self.is_cell(point):
                break
            moves = self.neighbours(point)
            rng.shuffle(moves)
            found = next((move for move in moves if move not in taken and move in self), None)
            if found is not None:
                return found
            if self.cost is not None:
                point = min(moves, key=lambda move: self.cost(self.cell(move)))  # type: ignore[misc]
        for _ in range(self.draw_attempts):
            drawn = self.sample(rng)
            if drawn not in taken and drawn in self:
                return drawn
        return None


# --- a table's categorical space -----------------------------------------------------------------------------------

class TableSpace(SamplerSpace):
    """The space of a table's rows. A DPC table (:attr:`Table.dpc`) encodes, mutates and finds neighbours as the
    DPC space does; any other table encodes a position whose choices are ordered numbers (channels, depths:
    :attr:`~densecell.search.tables.TableParam.numeric`) as its value scaled to [0, 1], any other position
    (operation codes 0 .. k-1, names) one-hot, and mutates one position to another of its choices."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._dists = {p.name: CategoricalDistribution(list(p.choices)) for p in table.params}
        self._rows = {row: i for i, row in enumerate(table.points)}
        self._choice_index = [{value: j for j, value in enumerate(p.choices)} for p in table.params]
        self._codes = np.array([self._code(row) for row in table.points], dtype=np.int32)
        self.base = DPCSpace(table.dpc) if table.dpc is not None else None
        self._encoded = self._encode_raw(table.points)
        self._costs = self._ranks(table)
        self._taken_of: Collection[Point] | None = None
        self._taken_size = 0
        self._taken_cache = np.zeros(0, dtype=np.int64)

    @classmethod
    def from_file(cls, path: str | Path) -> TableSpace:
        """The space of the table in ``path`` (:func:`~densecell.search.tables.load_table`)."""
        return cls(load_table(path))

    def distributions(self) -> dict[str, CategoricalDistribution]:
        return dict(self._dists)

    def row(self, point: Point) -> int:
        """The table row of a member."""
        return self._rows[point]

    def _code(self, point: Point) -> list[int]:
        return [index.get(value, -1) for index, value in zip(self._choice_index, point)]

    def _taken_rows(self, taken: Collection[Point]) -> np.ndarray:
        """The rows of the taken points (remembered for the last collection asked about: a proposal projects
        hundreds of candidates against one history)."""
        if self._taken_of is not taken or self._taken_size != len(taken):
            self._taken_of, self._taken_size = taken, len(taken)  # (held, so that its id is never another's)
            self._taken_cache = np.array([self._rows[p] for p in taken if p in self._rows], dtype=np.int64)
        return self._taken_cache

    def sample(self, rng: random.Random) -> Point:
        return self.table.points[rng.randrange(len(self.table.points))]

    def mutate(self, point: Point, rng: random.Random) -> Point:
        if self.base is not None:
            return self.base.mutate(point, rng)
        position = rng.randrange(len(point))
        choices = [value for value in self.table.params[position].choices if value != point[position]]
        if not choices:
            return point
        return point[:position] + (rng.choice(choices),) + point[position + 1:]

    def neighbours(self, point: Point) -> list[Point]:
        """The rows one move away (a DPC move, or one position changed); where there are none (a sparse sample),
        the rows at the smallest number of differing positions."""
        if self.base is not None:
            moves = self.base.neighbours(point)
        else:
            moves = [point[:i] + (value,) + point[i + 1:] for i, p in enumerate(self.table.params)
                     for value in p.choices if value != point[i]]
        found = [move for move in moves if move in self._rows]
        if found:
            return found
        distance = (self._codes != np.array(self._code(point))).sum(1)
        distance[distance == 0] = np.iinfo(np.int32).max
        return [self.table.points[i] for i in np.flatnonzero(distance == distance.min())]

    def _encode_raw(self, points: Sequence[Point]) -> np.ndarray:
        if self.base is not None:
            return self.base.encode(points)
        columns = []
        codes = np.array([self._code(point) for point in points], dtype=np.int32).reshape(len(points), -1)
        for position, param in enumerate(self.table.params):
            if param.numeric:
                low, high = min(param.choices), max(param.choices)
                values = np.array([float(point[position]) for point in points]).reshape(-1, 1)
                columns.append((values - low) / ((high - low) or 1.0))
            else:
                columns.append((codes[:, position:position + 1] == np.arange(len(param.choices))).astype(float))
        return np.hstack(columns) if columns else np.zeros((len(points), 0))

    def encode(self, points: Sequence[Point]) -> np.ndarray:
        rows = [self._rows.get(point) for point in points]
        if all(row is not None for row in rows):
            return self._encoded[rows]
        return self._encode_raw(points)

    def __contains__(self, point: object) -> bool:
        return point in self._rows

    @staticmethod
    def _ranks(table: Table) -> np.ndarray:
        """Each free column of the table as ranks in (0, 1] (scipy, imported here: a second in every worker)."""
        from scipy.stats import rankdata

        free = table.free_columns()
        if not free:
            return np.zeros((len(table), 0))
        return np.column_stack([rankdata(table.extras[key]) / len(table) for key in free])

    def costs(self, points: Sequence[Point]) -> np.ndarray:
        """The table's free columns (:meth:`~densecell.search.tables.Table.free_columns`) as ranks in [0, 1]:
        robust to their units and to sentinel values (a zero-cost score of -1e8 where it failed); a point outside
        the table sits at the middle."""
        middle = np.full(self._costs.shape[1], 0.5)
        return np.array([self._costs[self._rows[p]] if p in self._rows else middle for p in points]).reshape(
            len(points), -1)

    def nearest(self, point: Point, taken: Collection[Point], rng: random.Random) -> Point | None:
        distance = (self._codes != np.array(self._code(point))).sum(1).astype(float)
        distance[self._taken_rows(taken)] = np.inf
        best = np.flatnonzero(distance == distance.min())
        if not np.isfinite(distance.min()):
            return None
        return self.table.points[int(best[rng.randrange(len(best))])]


__getattr__ = renamed_names(__name__, {"Space": "SamplerSpace"}, globals())
