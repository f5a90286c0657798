"""How two rankings agree (Spearman's rho, the top-k overlap) and how a study's scores are summed up."""

import math

import pytest
from scipy.stats import spearmanr

from densecell.core.ranking import describe_rho, rank_name, score_summary, spearman, summarise_scores, top_overlap


def test_spearman_is_scipys_and_undefined_where_it_has_no_meaning():
    pairs = [(0.1, 3.0), (0.4, 1.0), (0.3, 2.0), (0.9, 5.0), (0.5, 4.0)]
    assert spearman(pairs) == pytest.approx(spearmanr(*zip(*pairs)).statistic)
    assert spearman([(1, 1), (2, 3), (3, 2)]) == pytest.approx(0.5)
    assert math.isnan(spearman(pairs[:2]))  # fewer than three cells
    assert math.isnan(spearman([(1, 7), (2, 7), (3, 7)]))  # one side scores them all the same
    assert describe_rho(spearman(pairs[:2])).startswith("undefined") and describe_rho(0.51234) == "0.512"


def test_top_overlap_counts_the_shared_best():
    pairs = [(5, 1), (4, 5), (3, 4), (2, 3), (1, 2), (0, 0)]
    assert top_overlap(pairs, k=2) == 1  # best by x: items 0, 1; by y: items 1, 2
    assert top_overlap(pairs, k=3) == 2  # by x: 0, 1, 2; by y: 1, 2, 3
    assert top_overlap(pairs, k=6) == 6


def test_the_summary_of_a_studys_scores():
    assert score_summary([0.3, 0.9, 0.5, 0.7]) == {"best": 0.9, "median": 0.7, "worst": 0.3}
    assert summarise_scores([0.5]) == "best 0.500, median 0.500, worst 0.500"
    assert rank_name(3, 17) == "rank-03-trial-17"
