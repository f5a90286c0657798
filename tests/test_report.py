"""The report's pieces that are plain functions: the Pareto front of mIoU against cost."""

from densecell.search.report import pareto_front


def test_the_pareto_front_keeps_the_cells_nothing_beats_on_both_axes_sorted_by_cost():
    points = [(0.70, 10.0), (0.72, 20.0), (0.65, 5.0), (0.71, 25.0), (0.60, 8.0), (0.72, 20.0)]
    # (0.71, 25) is beaten by (0.72, 20); (0.60, 8) by (0.65, 5); the two equal (0.72, 20) points both stay
    assert pareto_front(points) == [2, 0, 1, 5]
    assert pareto_front([(0.5, 1.0)]) == [0] and pareto_front([]) == []
