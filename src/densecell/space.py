"""The Dense Prediction Cell search space (paper Sec. 3.1) as plain, hashable data.

A cell is ``B`` branches; branch ``i`` reads the backbone feature ``F`` (input ``-1``) or the output of an earlier
branch, and applies one of the operations: a 1x1 convolution, a 3x3 atrous separable convolution with rate
``r_h x r_w``, or average spatial pyramid pooling with grid ``g_h x g_w``. The cell's output is the concatenation of
all branch outputs. A :class:`Cell` is a value: it is built, compared, hashed, sampled and written to the TensorFlow
DeepLab JSON format without ever touching a tensor; :mod:`densecell.cell` turns it into a module.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import CellError, ConfigError

#: The paper's atrous rates per axis, {1, 3, 6, 9, ..., 21}, and pyramid-pooling grid sizes per axis.
PAPER_RATES: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
PAPER_GRIDS: tuple[int, ...] = (1, 2, 4, 8)
PAPER_NUM_BRANCHES = 5

BACKBONE = -1
"""The input index that names the backbone feature map ``F``."""


def branch_label(index: int) -> str:
    """The paper's name of a tensor: ``F`` for the backbone feature (index -1), ``Y1`` ... ``YB`` for the branches."""
    return "F" if index == BACKBONE else f"Y{index + 1}"


class OpKind(str, Enum):
    """The three operation families of the paper's operator space."""

    CONV1X1 = "conv1x1"
    SEPARABLE = "sep3x3"
    PYRAMID_POOLING = "pool"


@dataclass(frozen=True, order=True)
class Operation:
    """One operation of the space: ``Operation.conv1x1()``, ``Operation.separable(rh, rw)`` or
    ``Operation.pooling(gh, gw)``. ``rate`` is set only for separable convolutions and ``grid`` only for pooling."""

    kind: OpKind
    rate: tuple[int, int] | None = None
    grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OpKind(self.kind))
        wants_rate = self.kind is OpKind.SEPARABLE
        wants_grid = self.kind is OpKind.PYRAMID_POOLING
        if (self.rate is not None) != wants_rate or (self.grid is not None) != wants_grid:
            raise CellError(f"operation {self.kind.value}: rate is for sep3x3 only and grid for pool only")
        for name, pair in (("rate", self.rate), ("grid", self.grid)):
            if pair is not None and (len(pair) != 2 or any(not _is_int(v) or v < 1 for v in pair)):
                raise CellError(f"operation {self.kind.value}: {name} must be two positive integers, got {pair!r}")

    @classmethod
    def conv1x1(cls) -> Operation:
        return cls(OpKind.CONV1X1)

    @classmethod
    def separable(cls, rate_h: int, rate_w: int) -> Operation:
        return cls(OpKind.SEPARABLE, rate=(rate_h, rate_w))

    @classmethod
    def pooling(cls, grid_h: int, grid_w: int) -> Operation:
        return cls(OpKind.PYRAMID_POOLING, grid=(grid_h, grid_w))

    def label(self, conv: str, separable: str, pooling: str) -> str:
        """The operation as ``conv``, or a prefix and its rate or grid (``label("c1", "s", "p")`` is ``s6x21``)."""
        if self.rate is not None:
            return f"{separable}{self.rate[0]}x{self.rate[1]}"
        if self.grid is not None:
            return f"{pooling}{self.grid[0]}x{self.grid[1]}"
        return conv

    def __str__(self) -> str:
        return self.label("conv1x1", "sep3x3 rate ", "pool grid ")

    def short(self) -> str:
        """``c1``, ``s6x21`` or ``p2x4``: the operation in a few characters."""
        return self.label("c1", "s", "p")


@dataclass(frozen=True, order=True)
class Branch:
    """One branch ``(X_i, OP_i)``: ``input`` is -1 for the backbone feature or the index of an earlier branch."""

    input: int
    op: Operation

    def __str__(self) -> str:
        return f"{branch_label(self.input)} -> {self.op}"


@dataclass(frozen=True)
class Cell:
    """A Dense Prediction Cell: an immutable tuple of branches whose wiring is checked on construction."""

    branches: tuple[Branch, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))
        if not self.branches:
            raise CellError("cell: it has no branches")
        for i, branch in enumerate(self.branches):
            if not isinstance(branch, Branch):
                raise CellError(f"branch {i}: expected a Branch, got {type(branch).__name__}")
            if not _is_int(branch.input) or not BACKBONE <= branch.input < i:
                allowed = f"-1 (the backbone) or an earlier branch 0..{i - 1}" if i else "only -1 (the backbone)"
                raise CellError(f"branch {i}: field 'input' is {branch.input!r}; it must be {allowed}")

    def __len__(self) -> int:
        return len(self.branches)

    def __iter__(self) -> Iterator[Branch]:
        return iter(self.branches)

    def __getitem__(self, index: int) -> Branch:
        return self.branches[index]

    def __str__(self) -> str:
        return "; ".join(f"{branch_label(i)} = {b}" for i, b in enumerate(self.branches))

    def short(self) -> str:
        """The cell on one short line, each branch as input>operation: ``F>s1x6 Y1>s18x15 Y2>s6x3 ...``."""
        return " ".join(f"{branch_label(b.input)}>{b.op.short()}" for b in self.branches)

    def digest(self) -> str:
        """Eight hex digits that name the cell (a hash of its TF JSON)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:8]

    # --- TensorFlow DeepLab JSON -------------------------------------------------------------------------------

    def to_records(self) -> list[dict[str, Any]]:
        """The cell as the list of dicts of the TF format (key order as in the released JSON)."""
        records: list[dict[str, Any]] = []
        for branch in self.branches:
            op = branch.op
            if op.kind is OpKind.CONV1X1:
                records.append({"kernel": 1, "op": "conv", "input": branch.input})
            elif op.kind is OpKind.SEPARABLE:
                records.append({"kernel": 3, "rate": list(op.rate), "op": "conv", "input": branch.input})
            else:
                records.append({"grid_size": list(op.grid), "op": "pyramid_pooling", "input": branch.input})
        return records

    def to_json(self) -> str:
        """Serialise in the TF DeepLab format; the released top-1 file round-trips byte for byte."""
        return json.dumps(self.to_records())

    @classmethod
    def from_records(cls, records: Any, space: SearchSpace | None = None) -> Cell:
        """Parse the TF list-of-dicts form; check membership of ``space`` when one is given."""
        if not isinstance(records, list):
            raise CellError(f"cell: expected a JSON list of branches, got {_json_type(records)}")
        cell = cls(tuple(_parse_branch(i, record) for i, record in enumerate(records)))
        if space is not None:
            space.validate(cell)
        return cell

    @classmethod
    def from_json(cls, source: str | Path, space: SearchSpace | None = None) -> Cell:
        """Read a cell from JSON text or a JSON file path (TF DeepLab format)."""
        text, origin = _read_source(source)
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CellError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        try:
            return cls.from_records(records, space)
        except CellError as exc:
            raise CellError(f"{origin}: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number"


_KEYS = {
    "conv1x1": {"op", "input", "kernel"},
    "conv3x3": {"op", "input", "kernel", "rate"},
    "pyramid_pooling": {"op", "input", "grid_size"},
}


def _int_pair(i: int, key: str, value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise CellError(f"branch {i}: field '{key}' must be a list of two integers, got {json.dumps(value)}")
    if any(v < 1 for v in value):
        raise CellError(f"branch {i}: field '{key}' must be positive, got {json.dumps(value)}")
    return value[0], value[1]


def _parse_branch(i: int, record: Any) -> Branch:
    if not isinstance(record, dict):
        raise CellError(f"branch {i}: expected an object, got {_json_type(record)}")
    if "op" not in record:
        raise CellError(f"branch {i}: missing field 'op'")
    op_name = record["op"]
    if op_name == "conv":
        kernel = record.get("kernel")
        if kernel in (1, [1, 1]) and not isinstance(kernel, bool):
            shape = "conv1x1"
        elif kernel in (3, [3, 3]) and not isinstance(kernel, bool):
            shape = "conv3x3"
        elif "kernel" not in record:
            raise CellError(f"branch {i}: missing field 'kernel'")
        else:
            raise CellError(f"branch {i}: field 'kernel' must be 1, 3, [1, 1] or [3, 3], got {json.dumps(kernel)}")
    elif op_name == "pyramid_pooling":
        shape = "pyramid_pooling"
    else:
        raise CellError(f"branch {i}: field 'op' must be 'conv' or 'pyramid_pooling', got {json.dumps(op_name)}")
    expected = _KEYS[shape]
    missing = sorted(expected - record.keys())
    if missing:
        raise CellError(f"branch {i}: missing field '{missing[0]}'")
    extra = sorted(record.keys() - expected)
    if extra:
        raise CellError(f"branch {i}: unexpected field '{extra[0]}' for a {shape} branch")
    source = record["input"]
    if not _is_int(source):
        raise CellError(f"branch {i}: field 'input' must be an integer, got {json.dumps(source)}")
    if shape == "conv1x1":
        op = Operation.conv1x1()
    elif shape == "conv3x3":
        op = Operation.separable(*_int_pair(i, "rate", record["rate"]))
    else:
        op = Operation.pooling(*_int_pair(i, "grid_size", record["grid_size"]))
    return Branch(source, op)


def _read_source(source: str | Path) -> tuple[str, str]:
    """Return (text, name for messages); a string that is not JSON-looking is taken as a path."""
    if isinstance(source, str) and source.lstrip()[:1] in ("[", "{"):
        return source, "cell JSON"
    path = Path(source)
    name = str(path) if str(path).isprintable() else repr(str(path))  # messages stay on one line
    try:
        return path.read_text(encoding="utf-8"), name
    except FileNotFoundError:
        raise CellError(f"{name}: no such cell file or preset (presets: {', '.join(PRESETS)})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise CellError(f"{name}: cannot read ({exc.__class__.__name__}: {' '.join(str(exc).split())})") from None


@dataclass(frozen=True)
class SearchSpace:
    """The recursive DPC space: ``num_branches`` branches, each one input out of ``i`` and one of
    ``1 + len(rates)**2 + len(grids)**2`` operations (81 with the paper's settings)."""

    num_branches: int = PAPER_NUM_BRANCHES
    rates: tuple[int, ...] = PAPER_RATES
    grids: tuple[int, ...] = PAPER_GRIDS

    def __post_init__(self) -> None:
        if not _is_int(self.num_branches) or self.num_branches < 1:
            raise ConfigError(f"num_branches must be a positive integer, got {self.num_branches!r}")
        for name in ("rates", "grids"):
            values = tuple(getattr(self, name))
            if not values or any(not _is_int(v) or v < 1 for v in values) or len(set(values)) != len(values):
                raise ConfigError(f"{name} must be distinct positive integers, got {values!r}")
            object.__setattr__(self, name, values)

    def operations(self) -> list[Operation]:
        """All operations, in a fixed order: 1x1 conv, separable convs (row-major rates), pooling grids."""
        ops = [Operation.conv1x1()]
        ops += [Operation.separable(rh, rw) for rh in self.rates for rw in self.rates]
        ops += [Operation.pooling(gh, gw) for gh in self.grids for gw in self.grids]
        return ops

    def size(self) -> int:
        """The exact number of cells: prod over branches of (inputs x operations) = B! * |OP|^B."""
        return math.factorial(self.num_branches) * len(self.operations()) ** self.num_branches

    def sample(self, rng: random.Random | int | None = None) -> Cell:
        """A cell drawn uniformly: each branch's input and operation independently uniform (the space is a product)."""
        rng = _as_rng(rng)
        ops = self.operations()
        return Cell(tuple(Branch(rng.randrange(i + 1) - 1, rng.choice(ops)) for i in range(self.num_branches)))

    def mutate(self, cell: Cell, rng: random.Random | int | None = None) -> Cell:
        """A neighbour of ``cell`` in the space: one branch gets a different operation or a different input."""
        self.validate(cell)
        rng = _as_rng(rng)
        index = rng.randrange(len(cell))
        branch = cell[index]
        change_input = index > 0 and rng.random() < 0.5
        if change_input:
            choices = [j for j in range(-1, index) if j != branch.input]
            branch = Branch(rng.choice(choices), branch.op)
        else:
            branch = Branch(branch.input, rng.choice([op for op in self.operations() if op != branch.op]))
        return Cell(cell.branches[:index] + (branch,) + cell.branches[index + 1 :])

    def validate(self, cell: Cell) -> None:
        """Raise :class:`CellError` naming the first branch and field that fall outside this space."""
        if len(cell) != self.num_branches:
            raise CellError(f"cell: it has {len(cell)} branches; this search space has exactly {self.num_branches}")
        for i, branch in enumerate(cell):
            op = branch.op
            if op.rate is not None and not set(op.rate) <= set(self.rates):
                raise CellError(f"branch {i}: field 'rate' {list(op.rate)} is outside the space's rates {self.rates}")
            if op.grid is not None and not set(op.grid) <= set(self.grids):
                raise CellError(
                    f"branch {i}: field 'grid_size' {list(op.grid)} is outside the space's grids {self.grids}"
                )

    def contains(self, cell: Cell) -> bool:
        try:
            self.validate(cell)
        except CellError:
            return False
        return True

    def __contains__(self, cell: object) -> bool:
        return isinstance(cell, Cell) and self.contains(cell)


def _as_rng(rng: random.Random | int | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


# --- presets ---------------------------------------------------------------------------------------------------

PRESETS: dict[str, str] = {
    "cityscapes-top1": "dense_prediction_cell_branch5_top1_cityscapes.json",
}
"""Cells shipped with the package, by name. ``cityscapes-top1`` is the cell Google released (paper Fig. 5a)."""


def preset_text(name: str) -> str:
    """The raw JSON text of a preset, exactly as shipped."""
    return resources.files("densecell").joinpath("presets", PRESETS[name]).read_text(encoding="utf-8")


def aspp_cell(rates: Sequence[int] = (6, 12, 18)) -> Cell:
    """DeepLabv3's ASPP written as a cell: a 1x1 conv, one separable conv per rate and image pooling, all on ``F``."""
    ops = [Operation.conv1x1(), *(Operation.separable(r, r) for r in rates), Operation.pooling(1, 1)]
    return Cell(tuple(Branch(BACKBONE, op) for op in ops))


def conv1x1_cell() -> Cell:
    """The head without context, one 1x1 convolution on ``F``: the baseline a searched cell has to beat."""
    return Cell((Branch(BACKBONE, Operation.conv1x1()),))


def load_cell(spec: Cell | str | Path, space: SearchSpace | None = SearchSpace()) -> Cell:
    """Resolve a preset name, a JSON file path or JSON text to a :class:`Cell` (checked against ``space``)."""
    if isinstance(spec, Cell):
        if space is not None:
            space.validate(spec)
        return spec
    if isinstance(spec, str) and spec in PRESETS:
        return Cell.from_json(preset_text(spec), space)
    return Cell.from_json(spec, space)
