"""Cheap rankers of cells: the structural baselines, the zero-cost scores at initialisation, the surrogate."""

import math

import pytest

from densecell.cell.space import SearchSpace, load_cell
from densecell.core.registry import RANKERS
from densecell.models.cost import CellCoster
from densecell.search.cache import FeatureCache
from densecell.search.rankers import ZERO_COST, ZeroCost, ranker

CELLS = [load_cell("cityscapes-top1"), *(SearchSpace().sample(seed) for seed in range(3))]


@pytest.mark.parametrize("name", list(RANKERS))
def test_every_ranker_scores_every_cell_repeatably(feature_cache, name):
    cache = FeatureCache.load(feature_cache[0])
    first = [ranker(name, cache, 8).score(cell) for cell in CELLS]
    again = [ranker(name, cache, 8).score(cell) for cell in CELLS]
    assert first == again and all(math.isfinite(value) for value in first)


def test_the_structural_rankers_are_costs_and_counts(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    coster = CellCoster(cache.channels, 8, cache.image_size, cache.output_stride)
    assert ranker("madds", cache, 8).score(CELLS[0]) == -coster(CELLS[0]).madds  # fewer is ranked first
    assert ranker("count:sep3x3", cache, 8).score(CELLS[0]) == 5  # the published cell is five separable convs


def test_the_zero_cost_scores_use_the_gradients_and_activations_of_the_head(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    zero = ZeroCost(cache, 8)
    scores = zero.scores(CELLS[0])
    assert set(scores) == set(ZERO_COST) and scores["snip"] > 0 and scores["gradnorm"] > 0
    assert scores == {name: getattr(zero, name)(CELLS[0]) for name in ZERO_COST}
