"""A cell drawn as a graph (one row per branch, the backbone feature and the concatenation spanning them) and the
importance of its branches (paper Fig. 5b)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.figures import figure, save_figure, set_wrapped_title
from .space import BACKBONE, Cell, branch_label

__all__ = ["CELL_FONT", "draw_cell", "importance_plot"]

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
    set_wrapped_title(ax, f"branch importance (cf. paper Fig. 5b) {title}".strip())
    return save_figure(fig, path)
