"""The heads as modules: DensePredictionCell and ASPP with the released TensorFlow DeepLab semantics.

Every operation is convolution + BatchNorm + ReLU with ``filters`` outputs (TF's slim arg_scope). A 3x3 operation is a
*split* separable convolution: depthwise atrous 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (TF's
``split_separable_conv2d``). Submodules are named (``conv_dw``, ``bn_dw``, ``conv_pw``, ``bn_pw``, ``conv``, ``bn``,
``project``) so that a state-dict key says what it holds: ``head.branches.1.conv_dw.weight``. The branch outputs are
concatenated, then dropout and a 1x1 projection (DPC), or a 1x1 projection and then dropout (ASPP, as in DeepLabv3+).

Pyramid pooling comes in two flavours, because the paper's text and the released code differ:

- ``pooling="tf"`` (the released code, used for the published numbers): average pooling with stride 1, VALID
  padding and a window of ``(crop - 1) // (output_stride * grid) + 1`` pixels, i.e. a *sliding* window about
  ``1/grid`` of the feature map wide, then 1x1 conv and a bilinear resize (align_corners) back to the feature size.
  With ``crop_size=None`` the window follows the actual input (what TF does when it builds the graph for each crop
  or evaluation size); with a ``crop_size`` it is fixed, exactly as TF's ``_get_pyramid_pooling_arguments``.
- ``pooling="grid"`` (the paper's text): adaptive average pooling into exactly ``g_h x g_w`` cells, any input size.

Grid 1x1 is global average pooling in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ModelError
from ..core.registry import OPERATIONS
from ..core.resize import resize_bilinear
from .space import BACKBONE, Cell, Operation, aspp_cell, load_cell

__all__ = [
    "ASPP", "BN_EPS", "build_operation", "CellDropout", "conv1x1_module", "ConvBNReLU", "DensePredictionCell",
    "feature_size", "grid_average", "pooling_module", "PoolingMode", "PyramidPooling", "rate_multiplier",
    "separable_module", "SeparableConv", "sliding_average", "tf_pool_window"
]

PoolingMode = Literal["tf", "grid"]

#: TensorFlow's batch-norm epsilon in DeepLab (``decay`` 0.9997 is exposed as ``bn_momentum``).
BN_EPS = 1e-5


def _same_padding(kernel_size: int, dilation: tuple[int, int]) -> tuple[int, int]:
    return dilation[0] * (kernel_size - 1) // 2, dilation[1] * (kernel_size - 1) // 2


class ConvBNReLU(nn.Module):
    """slim's conv2d under DeepLab's scope: convolution (no bias, 'SAME' padding, stride 1) + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum)

    def forward(self, x: torch.Tensor, op: Operation | None = None) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class SeparableConv(nn.Module):
    """TF's ``split_separable_conv2d``: depthwise atrous 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU.

    ``forward(x, op)`` applies the same weights at ``op``'s rate (times ``multiplier``, TF's ``conv_rate_multiplier``):
    the one-shot supernet shares them over rates."""

    def __init__(self, in_channels: int, out_channels: int, rate: tuple[int, int] = (1, 1),
                 bn_momentum: float = 0.1, multiplier: int = 1) -> None:
        super().__init__()
        self.rate, self.multiplier = tuple(rate), multiplier
        self.conv_dw = nn.Conv2d(in_channels, in_channels, 3, padding=_same_padding(3, self.rate),
                                 dilation=self.rate, groups=in_channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(in_channels, eps=BN_EPS, momentum=bn_momentum)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum)

    def forward(self, x: torch.Tensor, op: Operation | None = None) -> torch.Tensor:
        rate = None if op is None else (op.rate[0] * self.multiplier, op.rate[1] * self.multiplier)
        if rate is None or rate == self.rate:
            x = self.conv_dw(x)
        else:
            x = F.conv2d(x, self.conv_dw.weight, None, 1, _same_padding(3, rate), rate, self.conv_dw.groups)
        return F.relu(self.bn_pw(self.conv_pw(F.relu(self.bn_dw(x)))))


def tf_pool_window(size: int, output_stride: int, grid: int, crop: int | None = None) -> int:
    """TF's pooled kernel ``scale_dimension(crop, 1 / (output_stride * grid))``; without a crop it is derived from
    the feature size, since TF's crop satisfies ``feature = (crop - 1) // output_stride + 1``."""
    if crop is not None:
        return int((crop - 1) / (output_stride * grid) + 1)
    return int((size - 1) / grid + 1)


def sliding_average(x: torch.Tensor, kernel: Sequence[int]) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel, stride=1)`` (VALID) by running sums, in float32: its cost does not grow with the
    window, which in TF's pyramid pooling is up to the whole feature map (a 17x33 window costs avg_pool2d 100x more
    than a 2x2 one)."""
    kh, kw = int(kernel[0]), int(kernel[1])
    rows = F.pad(x.float().cumsum(-2), (0, 0, 1, 0))
    rows = rows[..., kh:, :] - rows[..., :-kh, :]
    cols = F.pad(rows.cumsum(-1), (1, 0))
    return ((cols[..., kw:] - cols[..., :-kw]) / (kh * kw)).to(x.dtype)


def grid_average(x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, grid)``; on a GPU in deterministic mode as a product with averaging matrices,
    whose backward is deterministic (the kernel's adds with atomics)."""
    if not (x.is_cuda and torch.are_deterministic_algorithms_enabled()):
        return F.adaptive_avg_pool2d(x, tuple(grid))
    rows = _bin_matrix(int(grid[0]), x.shape[-2]).to(x.device, x.dtype)
    cols = _bin_matrix(int(grid[1]), x.shape[-1]).to(x.device, x.dtype)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def _bin_matrix(bins: int, size: int) -> torch.Tensor:
    """[bins, size]: row i averages PyTorch's adaptive bin i, ``floor(i * size / bins)`` to ``ceil((i + 1) * ...)``."""
    matrix = torch.zeros(bins, size)
    for i in range(bins):
        start, end = (i * size) // bins, -((-(i + 1) * size) // bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class PyramidPooling(ConvBNReLU):
    """Average spatial pyramid pooling with grid ``g_h x g_w``, a 1x1 conv + BN + ReLU, and a bilinear resize back.

    ``forward(x, op)`` pools at ``op``'s grid with the same 1x1 conv (as the one-shot supernet does)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: tuple[int, int] = (1, 1),
        pooling: PoolingMode = "tf",
        output_stride: int = 16,
        crop_size: tuple[int, int] | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__(in_channels, out_channels, 1, bn_momentum)
        if pooling not in ("tf", "grid"):
            raise ModelError(f"pooling must be 'tf' or 'grid', got {pooling!r}")
        self.grid = tuple(grid)
        self.pooling = pooling
        self.output_stride = output_stride
        self.crop_size = crop_size

    def forward(self, x: torch.Tensor, op: Operation | None = None) -> torch.Tensor:
        grid = self.grid if op is None else op.grid
        size = x.shape[-2:]
        if self.pooling == "grid":
            pooled = grid_average(x, grid)
        else:
            crops = self.crop_size or (None, None)
            kernel = [tf_pool_window(int(size[axis]), self.output_stride, grid[axis], crops[axis]) for axis in (0, 1)]
            if kernel[0] > size[0] or kernel[1] > size[1]:
                raise ModelError(
                    f"pyramid pooling window {kernel} (from crop_size {self.crop_size}) exceeds the feature map "
                    f"{tuple(size)}; build the cell with crop_size=None to follow the input size"
                )
            pooled = sliding_average(x, kernel)
        return resize_bilinear(super().forward(pooled), size)


class CellDropout(nn.Dropout):
    """``nn.Dropout`` that draws from its own ``generator`` when it is given one. The proxy gives each candidate its
    own (:mod:`densecell.training.steps`), so that candidates trained side by side draw what each would draw alone;
    without one it is ``nn.Dropout``, on the global generator."""

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None:
            return super().forward(x)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)


def conv1x1_module(op: Operation, in_channels: int, filters: int, bn_momentum: float = 0.1, **_: Any) -> nn.Module:
    """A 1x1 convolution, BatchNorm and ReLU."""
    return ConvBNReLU(in_channels, filters, 1, bn_momentum=bn_momentum)


def separable_module(op: Operation, in_channels: int, filters: int, output_stride: int = 16,
                     bn_momentum: float = 0.1, **_: Any) -> nn.Module:
    """A 3x3 atrous separable convolution, its rate given at output stride 16."""
    multiplier = rate_multiplier(output_stride)
    return SeparableConv(in_channels, filters, (op.rate[0] * multiplier, op.rate[1] * multiplier), bn_momentum,
                         multiplier)


def pooling_module(op: Operation, in_channels: int, filters: int, output_stride: int = 16,
                   pooling: PoolingMode = "tf", crop_size: tuple[int, int] | None = None,
                   bn_momentum: float = 0.1) -> nn.Module:
    """Average spatial pyramid pooling with the operation's grid."""
    return PyramidPooling(in_channels, filters, op.grid, pooling, output_stride, crop_size, bn_momentum)


def build_operation(
    op: Operation,
    in_channels: int,
    filters: int,
    *,
    output_stride: int = 16,
    pooling: PoolingMode = "tf",
    crop_size: tuple[int, int] | None = None,
    bn_momentum: float = 0.1,
) -> nn.Module:
    """The module of one operation (:data:`densecell.core.registry.OPERATIONS`, by its family); separable rates are
    given at output stride 16 and scaled by ``16 // OS``."""
    return OPERATIONS[op.kind](op, in_channels, filters, output_stride=output_stride, pooling=pooling,
                                      crop_size=crop_size, bn_momentum=bn_momentum)


def feature_size(image_size: Sequence[int], output_stride: int) -> tuple[int, int]:
    """DeepLab's feature size for an image: ``(size - 1) // output_stride + 1`` per axis (TF ``scale_dimension``)."""
    return tuple((int(s) - 1) // output_stride + 1 for s in image_size)  # type: ignore[return-value]


def rate_multiplier(output_stride: int) -> int:
    """TF's ``conv_rate_multiplier``: rates are searched at OS 16 and doubled at OS 8."""
    if output_stride not in (8, 16):
        raise ModelError(f"output_stride must be 8 or 16, got {output_stride}")
    return 16 // output_stride


class DensePredictionCell(nn.Module):
    """A DPC built from a :class:`~densecell.cell.space.Cell` (or a preset name, JSON path or JSON text).

    ``branch_outputs`` runs the branches alone: that part is the paper's "multi-scale context module" whose cost
    Table 1 reports; ``forward`` adds the concatenation, dropout and 1x1 projection.
    """

    dropout_before_projection = True

    def __init__(
        self,
        cell: Cell | str | Path = "cityscapes-top1",
        in_channels: int = 2048,
        filters: int = 256,
        concat_channels: int = 256,
        dropout: float = 0.1,
        output_stride: int = 16,
        pooling: PoolingMode = "tf",
        crop_size: tuple[int, int] | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.cell = load_cell(cell)
        self.in_channels = in_channels
        self.filters = filters
        self.out_channels = concat_channels
        self.inputs = tuple(branch.input for branch in self.cell)
        self.branches = nn.ModuleList(
            build_operation(
                branch.op,
                in_channels if branch.input == BACKBONE else filters,
                filters,
                output_stride=output_stride,
                pooling=pooling,
                crop_size=crop_size,
                bn_momentum=bn_momentum,
            )
            for branch in self.cell
        )
        self.dropout = CellDropout(dropout)
        self.project = ConvBNReLU(filters * len(self.cell), concat_channels, 1, bn_momentum=bn_momentum)

    @classmethod
    def from_settings(cls, cell: Cell | str | Path, in_channels: int, *, filters: int = 256, dropout: float = 0.1,
                      output_stride: int = 16, pooling: PoolingMode = "tf", crop_size: tuple[int, int] | None = None,
                      bn_momentum: float = 0.1) -> DensePredictionCell:
        """The head of a model (:data:`densecell.core.registry.HEADS`): the cell with ``filters`` concat channels."""
        return cls(cell, in_channels, filters=filters, concat_channels=filters, dropout=dropout,
                   output_stride=output_stride, pooling=pooling, crop_size=crop_size, bn_momentum=bn_momentum)

    def branch_outputs(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Y_1 .. Y_B, each branch reading F or an earlier Y as the cell says."""
        outputs: list[torch.Tensor] = []
        for source, branch in zip(self.inputs, self.branches):
            outputs.append(branch(features if source == BACKBONE else outputs[source]))
        return outputs

    def branch_importance(self) -> list[float]:
        """Paper Fig. 5b (after [39]): the L1 norm of the projection's weights that read each branch's channels."""
        weight = self.project.conv.weight.detach().abs()
        return [float(chunk.sum()) for chunk in weight.split(self.filters, dim=1)]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        merged = torch.cat(self.branch_outputs(features), dim=1)
        if self.dropout_before_projection:
            return self.project(self.dropout(merged))
        return self.dropout(self.project(merged))


class ASPP(DensePredictionCell):
    """DeepLabv3/v3+ atrous spatial pyramid pooling: 1x1 conv, separable 3x3 convs at ``rates`` (given at OS 16,
    doubled at OS 8), image-level pooling, all on ``F``; then projection and dropout. It is a fixed cell of the
    space."""

    dropout_before_projection = False

    def __init__(
        self,
        in_channels: int = 2048,
        filters: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
        output_stride: int = 16,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__(
            aspp_cell(rates),
            in_channels,
            filters=filters,
            concat_channels=filters,
            dropout=dropout,
            output_stride=output_stride,
            pooling="grid",
            bn_momentum=bn_momentum,
        )

    @classmethod
    def from_settings(cls, cell: Cell | str | Path, in_channels: int, *, filters: int = 256, dropout: float = 0.1,
                      output_stride: int = 16, bn_momentum: float = 0.1, **_: Any) -> ASPP:
        """The head of a model (:data:`densecell.core.registry.HEADS`); ASPP is a fixed cell: ``cell``, the pooling mode
        and the crop are not its to choose."""
        return cls(in_channels, filters=filters, dropout=dropout, output_stride=output_stride,
                   bn_momentum=bn_momentum)
