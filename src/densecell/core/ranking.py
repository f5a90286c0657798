"""How two rankings of the same cells agree: Spearman's rho (the paper's Fig. 3 measure) and the top-k overlap."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy.stats import spearmanr

__all__ = ["describe_rho", "rank_name", "score_summary", "spearman", "summarise_scores", "top_overlap"]


def spearman(pairs: Sequence[tuple[float, float]]) -> float:
    """Spearman's rank correlation of (x, y) pairs; NaN with fewer than three pairs or a constant side."""
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return math.nan
    return float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)


def top_overlap(pairs: Sequence[tuple[float, float]], k: int = 5) -> int:
    """How many of the k best items by x are among the k best by y (higher is better on both)."""
    order_x = sorted(range(len(pairs)), key=lambda i: pairs[i][0], reverse=True)[:k]
    order_y = sorted(range(len(pairs)), key=lambda i: pairs[i][1], reverse=True)[:k]
    return len(set(order_x) & set(order_y))


def describe_rho(rho: float, places: int = 3) -> str:
    """rho to ``places`` places, or why there is none (too few cells, or one side scores them all the same)."""
    return "undefined (too few cells, or one side scores them all the same)" if math.isnan(rho) else \
        f"{rho:.{places}f}"


def score_summary(values: Sequence[float]) -> dict[str, float]:
    """The best, median (the upper one of an even count) and worst of a study's scores."""
    ordered = sorted(values)
    return {"best": ordered[-1], "median": ordered[len(ordered) // 2], "worst": ordered[0]}


def summarise_scores(values: Sequence[float]) -> str:
    """:func:`score_summary` in words: ``best 0.712, median 0.634, worst 0.543``."""
    return ", ".join(f"{name} {value:.3f}" for name, value in score_summary(values).items())


def rank_name(rank: int, trial: int) -> str:
    """How a ranked cell's files are named: ``rank-01-trial-17``."""
    return f"rank-{rank:02d}-trial-{trial}"
