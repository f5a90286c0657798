"""The Dense Prediction Cell search space (paper Sec. 3.1) as plain, hashable data.

A cell is ``B`` branches; branch ``i`` reads the backbone feature ``F`` (input ``-1``) or the output of an earlier
branch, and applies one of the operations: a 1x1 convolution, a 3x3 atrous separable convolution with rate
``r_h x r_w``, or average spatial pyramid pooling with grid ``g_h x g_w``. The cell's output is the concatenation of
all branch outputs. A :class:`Cell` is a value: it is built, compared, hashed, sampled and written to the TensorFlow
DeepLab JSON format without ever touching a tensor; :mod:`densecell.cell.heads` turns it into a module.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.errors import CellError, ConfigError, one_line

__all__ = [
    "aspp_cell", "BACKBONE", "Branch", "branch_label", "Cell", "conv1x1_cell", "FAMILIES", "load_cell", "Operation",
    "OpFamily", "PAPER_GRIDS", "PAPER_NUM_BRANCHES", "PAPER_RATES", "preset_text", "PRESETS", "SearchSpace"
]

#: The paper's atrous rates per axis, {1, 3, 6, 9, ..., 21}, and pyramid-pooling grid sizes per axis.
PAPER_RATES: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
PAPER_GRIDS: tuple[int, ...] = (1, 2, 4, 8)
PAPER_NUM_BRANCHES = 5

BACKBONE = -1
"""The input index that names the backbone feature map ``F``."""


def branch_label(index: int) -> str:
    """The paper's name of a tensor: ``F`` for the backbone feature (index -1), ``Y1`` ... ``YB`` for the branches."""
    return "F" if index == BACKBONE else f"Y{index + 1}"


@dataclass(frozen=True)
class OpFamily:
    """One family of the operator space, written once: how its operations are named, written in TF DeepLab's JSON
    and drawn from a :class:`SearchSpace`. Its module lives in :data:`densecell.core.registry.OPERATIONS` under the
    same name; those two entries are all a new family needs."""

    name: str
    """Its name, and the prefix of its operations' Optuna choices (``sep3x3_6x21``)."""
    json_op: str
    """TF's ``op`` field: ``conv`` or ``pyramid_pooling``."""
    kernel: int | None
    """TF's ``kernel`` field (1 or 3), None for a family that has none."""
    pair: str | None
    """The TF field that holds the operation's two parameters (``rate``, ``grid_size``), None for none."""
    axis: str | None
    """The :class:`SearchSpace` field whose values each of the two parameters takes (``rates``, ``grids``)."""
    text: str
    """How ``str(operation)`` begins: ``sep3x3 rate `` (then ``6x21``)."""
    short: str
    """The one- or two-letter form: ``s`` (``s6x21``)."""

    @property
    def tf_name(self) -> str:
        """The name a TF branch of this family goes by in messages: ``conv1x1``, ``conv3x3``, ``pyramid_pooling``."""
        return f"{self.json_op}{self.kernel}x{self.kernel}" if self.kernel else self.json_op

    @property
    def fields(self) -> set[str]:
        """The keys of a TF branch of this family."""
        return {"op", "input"} | ({"kernel"} if self.kernel else set()) | ({self.pair} if self.pair else set())


FAMILIES: dict[str, OpFamily] = {family.name: family for family in (
    OpFamily("conv1x1", "conv", 1, None, None, "conv1x1", "c1"),
    OpFamily("sep3x3", "conv", 3, "rate", "rates", "sep3x3 rate ", "s"),
    OpFamily("pool", "pyramid_pooling", None, "grid_size", "grids", "pool grid ", "p"),
)}
"""The paper's three families (1x1 convolution, 3x3 atrous separable convolution, average spatial pyramid
pooling), in the order the space lists its operations."""


@dataclass(frozen=True, order=True)
class Operation:
    """One operation of the space: a family and, for families that have them, its two parameters (the rate of a
    separable convolution, the grid of pyramid pooling): ``Operation.separable(6, 21)``."""

    kind: str
    param: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAMILIES:
            raise CellError(f"operation {self.kind!r}: not a family of the space ({', '.join(FAMILIES)})")
        family = FAMILIES[self.kind]
        if (self.param is not None) != (family.pair is not None):
            raise CellError(f"operation {self.kind}: " + (f"needs its {family.pair}" if family.pair else
                                                          "takes no parameters"))
        if self.param is not None:
            if len(self.param) != 2 or any(not _is_int(v) or v < 1 for v in self.param):
                raise CellError(f"operation {self.kind}: {family.pair} must be two positive integers, got "
                                f"{self.param!r}")
            object.__setattr__(self, "param", tuple(self.param))

    @property
    def family(self) -> OpFamily:
        return FAMILIES[self.kind]

    @property
    def rate(self) -> tuple[int, int] | None:
        """A separable convolution's atrous rate (at output stride 16)."""
        return self.param if self.family.pair == "rate" else None

    @property
    def grid(self) -> tuple[int, int] | None:
        """Pyramid pooling's grid."""
        return self.param if self.family.pair == "grid_size" else None

    @classmethod
    def conv1x1(cls) -> Operation:
        return cls("conv1x1")

    @classmethod
    def separable(cls, rate_h: int, rate_w: int) -> Operation:
        return cls("sep3x3", (rate_h, rate_w))

    @classmethod
    def pooling(cls, grid_h: int, grid_w: int) -> Operation:
        return cls("pool", (grid_h, grid_w))

    def label(self, prefix: str) -> str:
        """``prefix`` followed by the parameters, if any: ``label("s")`` is ``s6x21``."""
        return prefix if self.param is None else f"{prefix}{self.param[0]}x{self.param[1]}"

    @property
    def choice(self) -> str:
        """The operation as an Optuna choice: ``conv1x1``, ``sep3x3_6x21``, ``pool_2x4``."""
        return self.label(self.kind if self.param is None else f"{self.kind}_")

    def __str__(self) -> str:
        return self.label(self.family.text)

    def short(self) -> str:
        """``c1``, ``s6x21`` or ``p2x4``: the operation in a few characters."""
        return self.label(self.family.short)


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
        """The cell as the list of dicts of the TF format (key order as in the released JSON: kernel, the
        parameters, op, input)."""
        records: list[dict[str, Any]] = []
        for branch in self.branches:
            family, record = branch.op.family, {}
            if family.kernel:
                record["kernel"] = family.kernel
            if family.pair:
                record[family.pair] = list(branch.op.param)
            records.append(record | {"op": family.json_op, "input": branch.input})
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


def _int_pair(i: int, key: str, value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise CellError(f"branch {i}: field '{key}' must be a list of two integers, got {json.dumps(value)}")
    if any(v < 1 for v in value):
        raise CellError(f"branch {i}: field '{key}' must be positive, got {json.dumps(value)}")
    return value[0], value[1]


def _alternatives(values: list[str]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _family_of(i: int, record: dict[str, Any]) -> OpFamily:
    """The family a TF branch record is of, from its ``op`` and (for convolutions) its ``kernel``."""
    ops = sorted({family.json_op for family in FAMILIES.values()})
    if record["op"] not in ops:
        raise CellError(f"branch {i}: field 'op' must be {_alternatives([repr(o) for o in ops])}, got "
                        f"{json.dumps(record['op'])}")
    families = [family for family in FAMILIES.values() if family.json_op == record["op"]]
    kernels = [family.kernel for family in families if family.kernel]
    if not kernels:
        return families[0]
    if "kernel" not in record:
        raise CellError(f"branch {i}: missing field 'kernel'")
    kernel = record["kernel"]
    for family in families:
        if not isinstance(kernel, bool) and kernel in (family.kernel, [family.kernel] * 2):
            return family
    forms = [str(k) for k in kernels] + [f"[{k}, {k}]" for k in kernels]
    raise CellError(f"branch {i}: field 'kernel' must be {_alternatives(forms)}, got {json.dumps(kernel)}")


def _parse_branch(i: int, record: Any) -> Branch:
    if not isinstance(record, dict):
        raise CellError(f"branch {i}: expected an object, got {_json_type(record)}")
    if "op" not in record:
        raise CellError(f"branch {i}: missing field 'op'")
    family = _family_of(i, record)
    missing = sorted(family.fields - record.keys())
    if missing:
        raise CellError(f"branch {i}: missing field '{missing[0]}'")
    extra = sorted(record.keys() - family.fields)
    if extra:
        raise CellError(f"branch {i}: unexpected field '{extra[0]}' for a {family.tf_name} branch")
    source = record["input"]
    if not _is_int(source):
        raise CellError(f"branch {i}: field 'input' must be an integer, got {json.dumps(source)}")
    param = _int_pair(i, family.pair, record[family.pair]) if family.pair else None
    return Branch(source, Operation(family.name, param))


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
        raise CellError(f"{name}: cannot read ({exc.__class__.__name__}: {one_line(exc)})") from None


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

    def parameters(self) -> dict[str, list[Any]]:
        """The space as categorical parameters: ``b{i}_input`` and ``b{i}_op`` (an operation's ``choice`` name) for
        each branch, with their choices; a uniform choice of each is a uniform cell (the space is a product)."""
        names = [op.choice for op in self.operations()]
        found: dict[str, list[Any]] = {}
        for i in range(self.num_branches):
            found[f"b{i}_input"] = list(range(-1, i))
            found[f"b{i}_op"] = names
        return found

    def operations(self) -> list[Operation]:
        """All operations, in a fixed order: family by family (:data:`FAMILIES`: 1x1 conv, separable convs with
        row-major rates, pooling grids)."""
        return list(self._operations)

    @cached_property
    def _operations(self) -> tuple[Operation, ...]:
        """Built once per space: a search proposes, mutates and encodes cells by the thousand."""
        ops: list[Operation] = []
        for family in FAMILIES.values():
            values = getattr(self, family.axis) if family.axis else ()
            ops += [Operation(family.name, (a, b)) for a in values for b in values] if family.pair else \
                [Operation(family.name)]
        return tuple(ops)

    def size(self) -> int:
        """The exact number of cells: the product over branches of (inputs x operations), ``B! * |OP|**B``."""
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

    def neighbours(self, cell: Cell) -> list[Cell]:
        """Every cell one branch away from ``cell`` (another input or another operation), in a fixed order: the
        moves of :meth:`mutate`, all of them, for a local search."""
        self.validate(cell)
        found = []
        for index, branch in enumerate(cell):
            moves = [Branch(j, branch.op) for j in range(-1, index) if j != branch.input]
            moves += [Branch(branch.input, op) for op in self.operations() if op != branch.op]
            found += [Cell(cell.branches[:index] + (move,) + cell.branches[index + 1 :]) for move in moves]
        return found

    def features(self, cell: Cell) -> list[float]:
        """A cell as numbers, for a predictor: per branch its input (one-hot over -1 .. B-2), its family (one-hot)
        and its two parameters (the rate or grid, 0 for none); then the count of each family."""
        row: list[float] = []
        for branch in cell:
            row += [float(branch.input == source) for source in range(-1, self.num_branches - 1)]
            row += [float(branch.op.kind == kind) for kind in FAMILIES]
            row += list(map(float, branch.op.param or (0, 0)))
        return row + [float(sum(b.op.kind == kind for b in cell)) for kind in FAMILIES]

    def validate(self, cell: Cell) -> None:
        """Raise :class:`~densecell.core.errors.CellError` naming the first branch and field that fall outside this
        space."""
        if len(cell) != self.num_branches:
            raise CellError(f"cell: it has {len(cell)} branches; this search space has exactly {self.num_branches}")
        for i, branch in enumerate(cell):
            family = branch.op.family
            if family.axis and not set(branch.op.param) <= set(getattr(self, family.axis)):
                raise CellError(f"branch {i}: field '{family.pair}' {list(branch.op.param)} is outside the space's "
                                f"{family.axis} {getattr(self, family.axis)}")

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


def load_cell(spec: Cell | str | Path, space: SearchSpace | None = None) -> Cell:
    """Resolve a preset name, a JSON file path or JSON text to a :class:`Cell`: any valid TF DeepLab cell (what a
    model is built from, costed, exported or drawn); checked against ``space`` only when one is given (a search
    space decides what a search proposes, not what a model may hold)."""
    if isinstance(spec, Cell):
        if space is not None:
            space.validate(spec)
        return spec
    if isinstance(spec, str) and spec in PRESETS:
        return Cell.from_json(preset_text(spec), space)
    return Cell.from_json(spec, space)
