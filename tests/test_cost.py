import pytest
import torch
from torch import nn

from densecell.cell.heads import ASPP, DensePredictionCell
from densecell.models.cost import (
    conv_params,
    count_madds,
    feature_size,
    model_cost,
    paper_table,
)
from densecell.models.model import build_model


def test_feature_size_follows_tf_scale_dimension():
    assert feature_size((1025, 2049), 16) == (65, 129)
    assert feature_size((769, 769), 16) == (49, 49)
    assert feature_size((513, 513), 8) == (65, 65)


def test_count_madds_of_a_convolution_is_the_textbook_count():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    assert count_madds(conv, torch.randn(2, 8, 5, 7)) == 2 * 5 * 7 * 16 * 8 * 9
    depthwise = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False)
    assert count_madds(depthwise, torch.randn(1, 8, 5, 7)) == 5 * 7 * 8 * 9


def test_count_madds_keeps_the_training_mode():
    head = DensePredictionCell("cityscapes-top1", in_channels=4, filters=4).train()
    count_madds(head, torch.randn(1, 4, 5, 5))
    assert head.training


@pytest.fixture(scope="module")
def table():
    return {(row["backbone"], row["head"]): row for row in paper_table()}


@pytest.mark.parametrize("backbone", ["mobilenetv2_100", "xception71"])
def test_paper_dpc_cost_reproduced_within_2_percent(table, backbone):
    row = table[(backbone, "dpc")]
    assert row["params_ratio"] == pytest.approx(1, abs=0.02)
    assert row["madds_ratio"] == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("backbone", ["mobilenetv2_100", "xception71"])
def test_paper_aspp_madds_reproduced_but_not_its_params(table, backbone):
    row = table[(backbone, "aspp")]
    assert row["madds_ratio"] == pytest.approx(1, abs=0.02)
    assert row["params_ratio"] > 1.6  # the documented discrepancy


@pytest.mark.parametrize("channels,paper_params", [(320, 0.25e6), (2048, 1.59e6)])
def test_paper_aspp_params_equal_one_atrous_branch_plus_1x1_and_pooling(channels, paper_params):
    """The README's explanation of the ASPP params row: the paper's figure is exactly the 1x1 branch, the image
    pooling branch and ONE of the three separable branches."""
    aspp = ASPP(channels)
    one_conv, first_atrous, pooling = aspp.branches[0], aspp.branches[1], aspp.branches[4]
    partial = sum(conv_params(m) for m in (one_conv, first_atrous, pooling))
    assert partial == pytest.approx(paper_params, rel=0.01)


def test_whole_xception_dpc_model_matches_the_model_zoo():
    """Model zoo: xception71_dpc_cityscapes_trainfine, 502.07B MAdds at 1025x2049 (decoder, OS 16)."""
    with torch.device("meta"):
        model = build_model(backbone="xception71", head="dpc", output_stride=16, decoder=True)
        cost = model_cost(model, (1025, 2049))
    assert cost.madds == pytest.approx(502.07e9, rel=0.005)


def test_the_cell_coster_counts_as_the_context_module_cost():
    from densecell.cell.space import SearchSpace
    from densecell.models.cost import CellCoster, context_module_cost

    coster = CellCoster(24, 64, (129, 129), 16)
    space = SearchSpace()
    for seed in range(8):
        cell = space.sample(seed)
        with torch.device("meta"):
            expected = context_module_cost(DensePredictionCell(cell, 24, filters=64), (129, 129), 16)
        assert coster(cell) == expected
