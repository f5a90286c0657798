"""The figures of densecell: a cell drawn as a graph, branch importance (paper Fig. 5b), score histograms (paper Fig.
4a), rank-correlation scatter plots and Pareto fronts. Each is a matplotlib figure of its own (the object API, no
pyplot), written atomically as a PNG, so that the caller's backend and open figures are left alone.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError
from .extras import missing_extra
from .files import atomic_path

try:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
except ImportError as exc:  # the report extra
    raise missing_extra(exc, "report") from None
import math

from ..cell.space import BACKBONE, Cell, branch_label
from .ranking import describe_rho, spearman, top_overlap

__all__ = ["draw_cell", "figure", "histogram", "importance_plot", "save_figure", "scatter"]


def figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure of its own (matplotlib's object API: no pyplot, so the caller's backend and figures are left
    alone)."""
    fig = Figure(figsize=size)
    return fig, fig.subplots()


FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def check_figure_path(path: str | Path) -> Path:
    """A file a figure can be written to (a known image suffix, not a folder), checked before the work that draws
    it."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder; a figure is a file, e.g. {path / 'importance.png'}")
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise InputError(f"{path}: a figure's file name ends in {', '.join(FIGURE_SUFFIXES)}")
    return path


def save_figure(fig: Figure, path: Path) -> Path:
    """Written atomically, as SVG (text stays text, sharp at any zoom) or PNG (150 dpi) by ``path``'s suffix, with
    everything inside the canvas (no title or label cut off)."""
    from matplotlib import rc_context

    fig.tight_layout()
    with atomic_path(path) as temporary, rc_context({"svg.fonttype": "none"}):
        fig.savefig(temporary, dpi=150, format=path.suffix.lstrip(".") or "png", bbox_inches="tight",
                    pad_inches=0.1)
    return path


def _title(ax: Axes, text: str, width: int = 52) -> None:
    """A title wrapped to the figure's width, so that none is cut off."""
    ax.set_title("\n".join(textwrap.wrap(text, width)) if text else "", fontsize=10)


CELL_FONT = 14
"""Points (SVG pixels) of the text in a cell drawing, which is shown at about its natural size."""


def draw_cell(cell: Cell, path: Path, title: str = "", reference: Cell | None = None) -> Path:
    """The cell as a DAG, one row per branch: F on the left spanning the rows, each branch one column right of its
    input, and every branch straight right into the concatenation (which spans the rows too), so that no edge
    crosses a box. With a ``reference`` (the best cell), the branches that differ from it are drawn in orange."""
    from matplotlib.patches import FancyBboxPatch

    depth = {BACKBONE: 0}
    for i, branch in enumerate(cell):
        depth[i] = depth[branch.input] + 1
    rows, out_x = len(cell), max(depth.values()) + 1.0
    width, height = 0.78, 0.62  # a branch's box, in column and row units
    fig, ax = figure((1.75 * (out_x + 1) + 0.4, 0.72 * rows + 0.9))
    centre = {BACKBONE: (0.0, None)}
    for i in range(rows):
        centre[i] = (float(depth[i]), -float(i))
    top, bottom = 0.0 + height / 2, -(rows - 1) - height / 2

    def box(x: float, y0: float, y1: float, w: float, face: str, edge: str) -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y0), w, y1 - y0, boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor=face, edgecolor=edge, linewidth=1.2))

    def arrow(start: tuple[float, float], end: tuple[float, float], colour: str, style: str = "-") -> None:
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": colour, "linestyle": style,
                                                          "shrinkA": 0, "shrinkB": 0, "lw": 1.2})

    box(0.0, bottom, top, 0.34, "#f5e6cc", "#b7950b")
    ax.text(0.0, (top + bottom) / 2, "F", ha="center", va="center", fontsize=CELL_FONT + 2)
    box(out_x, bottom, top, 0.5, "#e5f5dd", "#4a8f3c")
    ax.text(out_x, (top + bottom) / 2, "concat\n+ 1x1", ha="center", va="center", fontsize=CELL_FONT)
    differs = False
    for i, branch in enumerate(cell):
        x, y = centre[i]
        changed = reference is not None and (i >= len(reference) or reference[i] != branch)
        differs |= changed
        box(x, y - height / 2, y + height / 2, width, "#fde2c8" if changed else "#dde8f5",
            "#d35400" if changed else "#4a6fa5")
        ax.text(x, y, f"{branch_label(i)}  {branch.op.short()}", ha="center", va="center", fontsize=CELL_FONT)
        source = (0.17, y) if branch.input == BACKBONE else (centre[branch.input][0] + width / 2,
                                                              centre[branch.input][1])
        arrow(source, (x - width / 2, y), "0.25")
        arrow((x + width / 2, y), (out_x - 0.25, y), "0.6", "--")
    ax.set_xlim(-0.3, out_x + 0.35)
    ax.set_ylim(bottom - 0.15, top + 0.15)
    ax.axis("off")
    note = " (orange: differs from the best cell)" if differs else ""
    if title or note:
        ax.set_title(title + note, fontsize=CELL_FONT, loc="left")
    return save_figure(fig, path)


def histogram(scores: list[float], baseline: float | None, path: Path) -> Path:
    """The proxy scores of a search's cells (paper Fig. 4a), with the lone 1x1 head's score marked."""
    fig, ax = figure((6, 3.6))
    ax.hist([s * 100 for s in scores], bins=min(30, max(5, len(scores) // 3)), color="#4a6fa5")
    if baseline is not None:
        ax.axvline(baseline * 100, color="#c0392b", linestyle="--", label="lone 1x1 conv (no context)")
        ax.margins(y=0.25)  # room above the tallest bar for the legend
        ax.legend(fontsize=9, loc="upper left", framealpha=0.9)
    ax.set_xlabel("proxy val mIoU (%)")
    ax.set_ylabel("cells")
    _title(ax, f"{len(scores)} cells on the proxy task (cf. paper Fig. 4a)")
    return save_figure(fig, path)


def scatter(pairs: Sequence[tuple[float, float]], x_label: str, y_label: str, path: Path, title: str = "") -> Path:
    """A rank-correlation plot: one point per cell, Spearman's rho and the top-5 overlap in the title."""
    fig, ax = figure((5.2, 4.0))
    ax.scatter([x * 100 for x, _ in pairs], [y * 100 for _, y in pairs], s=18, color="#4a6fa5")
    ax.set_xlabel(f"{x_label} (%)")
    ax.set_ylabel(f"{y_label} (%)")
    rho = spearman(pairs)
    summary = f"{len(pairs)} cells: too few, or one side constant, for a rank correlation" if math.isnan(rho) else \
        f"{len(pairs)} cells, Spearman rho = {describe_rho(rho, 2)}, top-5 overlap {top_overlap(pairs)}/5"
    _title(ax, f"{title}: {summary}" if title else summary)
    return save_figure(fig, path)


def importance_plot(cell: Cell, values: Sequence[float], path: Path, title: str = "") -> Path:
    """Paper Fig. 5b: each branch's share of the L1 norm of the projection weights (which read the branches)."""
    total = sum(values) or 1.0
    fig, ax = figure((1.3 * len(values) + 1.5, 3.6))
    labels = [f"{branch_label(i)}\n{b.op.short()}" for i, b in enumerate(cell)]
    bars = ax.bar(range(len(values)), [100 * v / total for v in values], color="#4a6fa5")
    ax.bar_label(bars, fmt="%.0f%%", fontsize=9)
    ax.set_xticks(range(len(values)), labels, fontsize=9)
    ax.set_ylabel("share of the projection's L1 norm (%)")
    ax.margins(y=0.15)
    _title(ax, f"branch importance (cf. paper Fig. 5b) {title}".strip())
    return save_figure(fig, path)
