"""How densecell draws: each figure is a matplotlib figure of its own (the object API, no pyplot), written
atomically, so that the caller's backend and open figures are left alone; and the plots of scores that know nothing
of cells: score histograms (paper Fig. 4a) and rank-correlation scatter plots. Cells are drawn by
:mod:`densecell.cell.drawing`.
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

__all__ = ["check_figure_path", "figure", "histogram", "save_figure", "scatter", "set_wrapped_title"]


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


def set_wrapped_title(ax: Axes, text: str, width: int = 52) -> None:
    """A title wrapped to the figure's width, so that none is cut off."""
    ax.set_title("\n".join(textwrap.wrap(text, width)) if text else "", fontsize=10)


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
    set_wrapped_title(ax, f"{len(scores)} cells on the proxy task (cf. paper Fig. 4a)")
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
    set_wrapped_title(ax, f"{title}: {summary}" if title else summary)
    return save_figure(fig, path)
