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

from .ranking import describe_rho, spearman, top_overlap
from .space import BACKBONE, Cell, branch_label

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
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=150, format=path.suffix.lstrip(".") or "png", bbox_inches="tight",
                    pad_inches=0.1)
    return path


def _title(ax: Axes, text: str, width: int = 52) -> None:
    """A title wrapped to the figure's width, so that none is cut off."""
    ax.set_title("\n".join(textwrap.wrap(text, width)) if text else "", fontsize=10)


def draw_cell(cell: Cell, path: Path, title: str = "") -> Path:
    """The cell as a DAG: F on the left, each branch placed one column right of its input, all into the concat."""
    depth = {BACKBONE: 0}
    for i, branch in enumerate(cell):
        depth[i] = depth[branch.input] + 1
    columns: dict[int, list[int]] = {}
    for i in range(len(cell)):
        columns.setdefault(depth[i], []).append(i)
    position = {BACKBONE: (0.0, 0.0)}
    for column, members in columns.items():
        for row, i in enumerate(members):
            position[i] = (float(column), row - (len(members) - 1) / 2)
    out_x = max(depth.values()) + 1.0
    fig, ax = figure((2.6 * (out_x + 1), 1.4 + 1.3 * max(len(m) for m in columns.values())))
    for i, branch in enumerate(cell):
        (x0, y0), (x1, y1) = position[branch.input], position[i]
        ax.annotate("", xy=(x1 - 0.22, y1), xytext=(x0 + 0.22, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})
        ax.annotate("", xy=(out_x - 0.3, 0), xytext=(x1 + 0.22, y1),
                    arrowprops={"arrowstyle": "->", "color": "0.75", "linestyle": "dotted"})
        ax.text(x1, y1, f"{branch_label(i)}\n{branch.op}", ha="center", va="center", fontsize=11,
                bbox={"boxstyle": "round", "facecolor": "#dde8f5", "edgecolor": "#4a6fa5"})
    ax.text(0, 0, "F", ha="center", va="center", fontsize=13, bbox={"boxstyle": "circle", "facecolor": "#f5e6cc"})
    ax.text(out_x, 0, "concat\n1x1", ha="center", va="center", fontsize=11,
            bbox={"boxstyle": "round", "facecolor": "#e5f5dd"})
    ax.set_xlim(-0.6, out_x + 0.6)
    ys = [y for _, y in position.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    _title(ax, title, 80)
    return save_figure(fig, path)


def histogram(scores: list[float], baseline: float | None, path: Path) -> Path:
    """The proxy scores of a search's cells (paper Fig. 4a), with the lone 1x1 head's score marked."""
    fig, ax = figure((6, 3.6))
    ax.hist([s * 100 for s in scores], bins=min(30, max(5, len(scores) // 3)), color="#4a6fa5")
    if baseline is not None:
        ax.axvline(baseline * 100, color="#c0392b", linestyle="--", label="lone 1x1 conv (no context)")
        ax.legend(fontsize=9)
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
