import pytest
import torch
from torch import nn

from densecell.cell.heads import ASPP, DensePredictionCell, PyramidPooling, SeparableConv, tf_pool_window
from densecell.cell.space import BACKBONE, Branch, Cell, Operation, load_cell
from densecell.core.errors import ModelError

# One cell with every operation family, wired as a chain with a skip, so that each op reads both F and Y.
MIXED = Cell((
    Branch(-1, Operation.separable(1, 6)),
    Branch(0, Operation.pooling(2, 4)),
    Branch(-1, Operation.conv1x1()),
    Branch(1, Operation.pooling(1, 1)),
    Branch(2, Operation.separable(21, 3)),
))


@pytest.mark.parametrize("pooling", ["tf", "grid"])
@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(9, 13), (10, 12), (1, 1)])
def test_dpc_output_shape(pooling, output_stride, size):
    head = DensePredictionCell(MIXED, in_channels=12, filters=8, concat_channels=10, output_stride=output_stride,
                               pooling=pooling).eval()
    out = head(torch.randn(2, 12, *size))
    assert out.shape == (2, 10, *size)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_aspp_output_shape_and_rates(output_stride):
    head = ASPP(in_channels=12, filters=8, output_stride=output_stride).eval()
    assert head(torch.randn(2, 12, 7, 11)).shape == (2, 8, 7, 11)
    rates = [m.rate for m in head.branches if isinstance(m, SeparableConv)]
    scale = 16 // output_stride
    assert rates == [(6 * scale, 6 * scale), (12 * scale, 12 * scale), (18 * scale, 18 * scale)]
    assert not head.dropout_before_projection


@pytest.mark.parametrize("output_stride,scale", [(16, 1), (8, 2)])
def test_separable_rates_follow_the_cell_and_output_stride(output_stride, scale):
    head = DensePredictionCell("cityscapes-top1", in_channels=4, filters=4, output_stride=output_stride)
    depthwise = [m.rate for m in head.branches]
    assert depthwise == [(r[0] * scale, r[1] * scale) for r in [(1, 6), (18, 15), (6, 3), (1, 1), (6, 21)]]
    first = head.branches[0].conv_dw
    assert first.groups == 4 and first.dilation == (1 * scale, 6 * scale) and first.padding == (scale, 6 * scale)


def test_every_op_is_conv_bn_relu_and_separable_is_depthwise_then_pointwise():
    sep = SeparableConv(6, 8, (3, 9)).eval()
    dw, dw_bn, pw, pw_bn = sep.conv_dw, sep.bn_dw, sep.conv_pw, sep.bn_pw
    assert dw.groups == 6 and dw.kernel_size == (3, 3) and dw.dilation == (3, 9) and dw.bias is None
    assert pw.kernel_size == (1, 1) and pw.out_channels == 8 and pw.bias is None
    assert isinstance(dw_bn, nn.BatchNorm2d) and isinstance(pw_bn, nn.BatchNorm2d)
    x = torch.randn(2, 6, 11, 13)
    expected = torch.relu(pw_bn(pw(torch.relu(dw_bn(dw(x))))))
    assert torch.equal(sep(x), expected)
    # the same weights at another rate (what the one-shot supernet does) equal a module built at that rate
    other = SeparableConv(6, 8, (6, 1)).eval()
    other.load_state_dict(sep.state_dict())
    assert torch.allclose(sep(x, Operation.separable(6, 1)), other(x))


def test_state_dict_keys_say_what_they_hold():
    keys = set(DensePredictionCell(MIXED, in_channels=6, filters=4).state_dict())
    assert {"branches.0.conv_dw.weight", "branches.0.bn_dw.running_mean", "branches.0.conv_pw.weight",
            "branches.0.bn_pw.weight", "branches.1.conv.weight", "branches.2.bn.bias",
            "project.conv.weight", "project.bn.running_var"} <= keys


def test_gradients_reach_every_branch():
    head = DensePredictionCell(MIXED, in_channels=6, filters=4, concat_channels=5).train()
    features = torch.randn(3, 6, 9, 11, requires_grad=True)
    head(features).square().mean().backward()
    for i, branch in enumerate(head.branches):
        grads = [p.grad for p in branch.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), f"branch {i} got no gradient"
    assert features.grad.abs().sum() > 0


@pytest.mark.parametrize("spec", ["cityscapes-top1", MIXED])
def test_each_branch_reads_exactly_the_tensor_the_cell_names(spec):
    head = DensePredictionCell(spec, in_channels=6, filters=4).eval()
    seen_in, seen_out = {}, {}
    for i, branch in enumerate(head.branches):
        branch.register_forward_pre_hook(lambda m, args, i=i: seen_in.__setitem__(i, args[0]))
        branch.register_forward_hook(lambda m, args, out, i=i: seen_out.__setitem__(i, out))
    features = torch.randn(1, 6, 9, 9)
    head(features)
    for i, branch in enumerate(load_cell(spec, space=None)):
        expected = features if branch.input == BACKBONE else seen_out[branch.input]
        assert seen_in[i] is expected, f"branch {i} should read input {branch.input}"


def test_concatenation_holds_every_branch_output():
    head = DensePredictionCell("cityscapes-top1", in_channels=6, filters=4, concat_channels=3, dropout=0.0).eval()
    assert head.project.conv.in_channels == 5 * 4
    features = torch.randn(1, 6, 5, 5)
    merged = torch.cat(head.branch_outputs(features), 1)
    assert torch.allclose(head(features), head.project(merged))


def test_tf_pooling_window_matches_released_code():
    # paper-notes: 769 crop, OS 16 -> 49x49 feature; grid 2 -> kernel 25 -> a 25x25 sliding-window map
    assert tf_pool_window(49, 16, 2, crop=769) == 25
    assert tf_pool_window(49, 16, 2) == 25
    assert tf_pool_window(49, 16, 1) == 49
    assert tf_pool_window(65, 16, 8, crop=1025) == 9
    pool = PyramidPooling(3, 2, grid=(2, 8), pooling="tf", crop_size=(769, 769)).eval()
    shapes = []
    pool.conv.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
    assert pool(torch.randn(1, 3, 49, 49)).shape == (1, 2, 49, 49)
    assert shapes == [(49 - 25 + 1, 49 - 7 + 1)]


def test_grid_pooling_pools_into_the_grid():
    pool = PyramidPooling(3, 2, grid=(2, 4), pooling="grid").eval()
    shapes = []
    pool.conv.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
    pool(torch.randn(1, 3, 17, 31))
    assert shapes == [(2, 4)]


def test_both_pooling_modes_agree_on_global_pooling():
    torch.manual_seed(0)
    tf_pool = PyramidPooling(3, 2, grid=(1, 1), pooling="tf").eval()
    grid_pool = PyramidPooling(3, 2, grid=(1, 1), pooling="grid").eval()
    grid_pool.load_state_dict(tf_pool.state_dict())
    x = torch.randn(2, 3, 9, 14)
    assert torch.allclose(tf_pool(x), grid_pool(x), atol=1e-6)


def test_tf_pooling_with_a_crop_larger_than_the_input_says_so():
    pool = PyramidPooling(3, 2, grid=(1, 1), pooling="tf", crop_size=(769, 769)).eval()
    with pytest.raises(ModelError, match="crop_size"):
        pool(torch.randn(1, 3, 17, 17))


def test_bad_pooling_mode_and_output_stride():
    with pytest.raises(ValueError, match="pooling"):
        DensePredictionCell(MIXED, in_channels=3, pooling="max")
    with pytest.raises(ValueError, match="output_stride"):
        DensePredictionCell("cityscapes-top1", in_channels=3, output_stride=4)


@pytest.mark.parametrize("kernel", [(1, 1), (3, 5), (17, 33), (32, 64)])
def test_sliding_average_is_avg_pool(kernel):
    from densecell.cell.heads import sliding_average

    x = torch.randn(2, 3, 32, 64, requires_grad=True)
    expected = torch.nn.functional.avg_pool2d(x, kernel, stride=1)
    got = sliding_average(x, kernel)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
    (grad,) = torch.autograd.grad(got.sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    assert torch.allclose(grad, expected_grad, atol=1e-5)


def test_grid_average_matrices_are_adaptive_pooling():
    from densecell.cell.heads import _bin_matrix

    x = torch.randn(2, 3, 17, 31)
    for grid in [(1, 1), (2, 4), (8, 8), (3, 5)]:
        rows, cols = _bin_matrix(grid[0], 17), _bin_matrix(grid[1], 31)
        assert torch.allclose(rows @ x @ cols.T, torch.nn.functional.adaptive_avg_pool2d(x, grid), atol=1e-6)


def test_a_new_operation_family_is_its_definition_and_its_module(monkeypatch):
    """The door for a new family: one entry in space.FAMILIES and one in registry.OPERATIONS. Here a dense 5x5
    convolution (TF's conv with kernel 5) becomes part of the space, its JSON, the head, the supernet and the cost."""
    from densecell.cell.heads import ConvBNReLU
    from densecell.cell.space import FAMILIES, OpFamily, SearchSpace
    from densecell.core.registry import OPERATIONS
    from densecell.models.cost import CellCoster
    from densecell.search.supernet import Supernet

    assert set(OPERATIONS) == set(FAMILIES)  # every family of the space has its module
    monkeypatch.setitem(FAMILIES, "conv5x5", OpFamily("conv5x5", "conv", 5, None, None, "conv5x5", "c5"))
    monkeypatch.setitem(OPERATIONS, "conv5x5", lambda op, cin, filters, bn_momentum=0.1, **_: ConvBNReLU(
        cin, filters, 5, bn_momentum=bn_momentum))
    space = SearchSpace(num_branches=2, rates=(1,), grids=(1,))
    assert [op.short() for op in space.operations()] == ["c1", "s1x1", "p1x1", "c5"]
    cell = Cell.from_json('[{"kernel": 5, "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 0}]', space)
    assert cell[0].op == Operation("conv5x5") and Cell.from_json(cell.to_json(), space) == cell
    head = DensePredictionCell(cell, 4, filters=8, concat_channels=8).eval()
    x = torch.randn(1, 4, 9, 9)
    assert head(x).shape == (1, 8, 9, 9) and head.branches[0].conv.kernel_size == (5, 5)
    supernet = Supernet(space, 4, 3, filters=8).eval()
    assert torch.allclose(supernet(x, cell), supernet.extract(cell).eval()(x), atol=1e-6)
    assert CellCoster(4, 8, (129, 129))(cell).params == 4 * 8 * 25 + 8 * 8
