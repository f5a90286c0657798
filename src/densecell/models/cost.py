"""Parameters, multiply-adds and CPU latency of a head or a whole model.

Multiply-adds come from torch's own ``FlopCounterMode`` (FLOPs / 2), run on the ``meta`` device so that counting an
Xception-71 at 1025x2049 costs no computation. Only convolutions and matrix products count (pooling, BN, resizing
do not), which is also the convention of the DeepLab model zoo: our Xception-71 + DPC + decoder at 1025x2049, OS 16,
counts 501.8B against the zoo's 502.07B.

The paper's Table 1 reports the "multi-scale context module" alone. The convention that reproduces its DPC figures
(0.36M / 3.00B with MobileNet-v2, 0.81M / 6.84B with Xception) is: **the branches only** (the concat projection
excluded), **convolution weights only** (BatchNorm excluded), at the Cityscapes evaluation size **1025x2049**, output
stride 16 (a 65x129 feature map). See the README for the rows it cannot reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..cell.heads import ASPP, DensePredictionCell, build_operation, feature_size
from ..cell.space import Branch, Cell

__all__ = [
    "all_params", "branch_costs", "build_head", "cell_costs", "CellCoster", "CellCosts", "CITYSCAPES_EVAL_SIZE",
    "context_module_cost", "conv_params", "Cost", "count_madds", "head_cost", "measure_latency",
    "model_cost", "model_costs", "paper_table", "PAPER_TABLE1"
]

#: The Cityscapes evaluation size at which the paper and the model zoo count multiply-adds.
CITYSCAPES_EVAL_SIZE = (1025, 2049)


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-adds (and optionally seconds) of one module at one input size."""

    params: int
    madds: int
    latency_s: float | None = None

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.madds + other.madds)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"params": self.params, "madds": self.madds}
        if self.latency_s is not None:
            row["latency_s"] = self.latency_s
        return row


def count_madds(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of one inference-mode forward of ``module``, by torch's flop counter."""
    training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(training)
    return counter.get_total_flops() // 2


def conv_params(module: nn.Module) -> int:
    """Weights of the convolutions in ``module`` (BatchNorm affine parameters and biases excluded)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def all_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def branch_costs(head: DensePredictionCell, feature_shape: Sequence[int]) -> list[Cost]:
    """Paper-convention cost of each branch of a DPC/ASPP (on the meta device) for a backbone feature shape."""
    batch, _, height, width = feature_shape
    device = next(head.parameters()).device
    features = torch.empty(*feature_shape, device=device)
    hidden = torch.empty(batch, head.filters, height, width, device=device)
    return [
        Cost(conv_params(branch), count_madds(branch, features if source < 0 else hidden))
        for source, branch in zip(head.inputs, head.branches)
    ]


def context_module_cost(head: DensePredictionCell, image_size: Sequence[int] = CITYSCAPES_EVAL_SIZE,
                        output_stride: int = 16) -> Cost:
    """The paper's Table 1 convention: the branches only, convolution weights only."""
    shape = (1, head.in_channels, *feature_size(image_size, output_stride))
    return sum(branch_costs(head, shape), Cost(0, 0))


def head_cost(head: nn.Module, in_channels: int, image_size: Sequence[int] = CITYSCAPES_EVAL_SIZE,
              output_stride: int = 16) -> Cost:
    """Everything in the head (branches, projection, BatchNorm) at the feature size of ``image_size``."""
    device = next(head.parameters()).device
    features = torch.empty(1, in_channels, *feature_size(image_size, output_stride), device=device)
    return Cost(all_params(head), count_madds(head, features))


def model_cost(model: nn.Module, image_size: Sequence[int] = CITYSCAPES_EVAL_SIZE) -> Cost:
    """All parameters and the multiply-adds of one forward pass of a whole model on one image."""
    device = next(model.parameters()).device
    return Cost(all_params(model), count_madds(model, torch.empty(1, 3, *image_size, device=device)))


def measure_latency(module: nn.Module, inputs: torch.Tensor, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of ``module(inputs)`` in eager PyTorch on the inputs' device, timed as
    :func:`densecell.models.latency.time_torch` times (CUDA events on a GPU), ``repeats`` calls after ``warmup``."""
    from .latency import TimingPolicy, time_torch

    policy = TimingPolicy(warmup=warmup, min_repeats=repeats, max_repeats=repeats, round_size=repeats)
    return time_torch(module, inputs.to(next(module.parameters()).device), policy).median_ms / 1000


# --- the paper's Table 1 ------------------------------------------------------------------------------------------

#: Paper Table 1 (Cityscapes val, OS 16): context-module params and MAdds; backbone feature channels F.
PAPER_TABLE1: tuple[dict[str, Any], ...] = (
    {"backbone": "mobilenetv2_100", "channels": 320, "head": "aspp", "paper_params": 0.25e6, "paper_madds": 2.82e9,
     "paper_miou": 73.97},
    {"backbone": "mobilenetv2_100", "channels": 320, "head": "dpc", "paper_params": 0.36e6, "paper_madds": 3.00e9,
     "paper_miou": 75.98},
    {"backbone": "xception71", "channels": 2048, "head": "aspp", "paper_params": 1.59e6, "paper_madds": 18.12e9,
     "paper_miou": 80.25},
    {"backbone": "xception71", "channels": 2048, "head": "dpc", "paper_params": 0.81e6, "paper_madds": 6.84e9,
     "paper_miou": 80.85},
)


def build_head(head: str, in_channels: int, output_stride: int = 16, cell: str = "cityscapes-top1") -> nn.Module:
    """A DPC (from ``cell``) or an ASPP on a backbone feature of ``in_channels``, with the paper's settings."""
    if head == "aspp":
        return ASPP(in_channels, output_stride=output_stride)
    return DensePredictionCell(cell, in_channels, output_stride=output_stride)


def paper_table(image_size: Sequence[int] = CITYSCAPES_EVAL_SIZE, latency: bool = False) -> list[dict[str, Any]]:
    """Reproduce Table 1's cost columns; each row has our count, the paper's and their ratio.

    With ``latency=True`` each head is also timed on the CPU on a real 65x129 feature map (seconds, median of 3).
    """
    rows = []
    for paper in PAPER_TABLE1:
        with torch.device("meta"):
            module = build_head(paper["head"], paper["channels"])
            cost = context_module_cost(module, image_size)
        row = {
            "backbone": paper["backbone"], "head": paper["head"],
            "params": cost.params, "madds": cost.madds,
            "paper_params": int(paper["paper_params"]), "paper_madds": int(paper["paper_madds"]),
            "params_ratio": cost.params / paper["paper_params"], "madds_ratio": cost.madds / paper["paper_madds"],
        }
        if latency:
            real = build_head(paper["head"], paper["channels"])
            features = torch.randn(1, paper["channels"], *feature_size(image_size, 16))
            row["latency_s"] = measure_latency(real, features, repeats=3)
        rows.append(row)
    return rows


class CellCoster:
    """The paper-convention cost of cells on one feature shape, each branch counted once per operation and input
    width and then remembered: a search that costs thousands of cells counts at most 2 x 81 branches."""

    def __init__(self, in_channels: int, filters: int, image_size: Sequence[int], output_stride: int = 16) -> None:
        self.in_channels, self.filters, self.output_stride = in_channels, filters, output_stride
        self.image_size = tuple(image_size)
        self._known: dict[tuple[Any, bool], Cost] = {}

    def __call__(self, cell: Cell) -> Cost:
        return sum((self._branch(branch) for branch in cell), Cost(0, 0))

    def _branch(self, branch: Branch) -> Cost:
        key = (branch.op, branch.input < 0)
        if key not in self._known:
            width = self.in_channels if branch.input < 0 else self.filters
            shape = (1, width, *feature_size(self.image_size, self.output_stride))
            with torch.device("meta"):
                module = build_operation(branch.op, width, self.filters, output_stride=self.output_stride)
                self._known[key] = Cost(conv_params(module), count_madds(module, torch.empty(*shape)))
        return self._known[key]


# --- the costs the command line shows -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CellCosts:
    """A cell on a backbone's feature at one image size: each branch's cost (paper convention), the context module
    (the branches: Table 1's columns) and the whole head (projection and BatchNorm included)."""

    cell: Cell
    backbone: str
    channels: int
    image_size: tuple[int, int]
    output_stride: int
    branches: tuple[tuple[Branch, Cost], ...]
    context: Cost
    head: Cost

    def to_dict(self) -> dict[str, Any]:
        rows = [{"branch": i, "input": b.input, "op": str(b.op), **c.to_dict()} for i, (b, c) in
                enumerate(self.branches)]
        return {"cell": self.cell.to_records(), "branches": rows, "head_params": self.head.params,
                "head_madds": self.head.madds}


def cell_costs(cell: Cell, backbone: str = "xception71", image_size: Sequence[int] = CITYSCAPES_EVAL_SIZE,
               output_stride: int = 16) -> CellCosts:
    """The costs of ``cell`` on the last feature of ``backbone`` (counted on the meta device)."""
    from .backbones import create_backbone  # here: timm and torchvision take seconds to import; cells need neither

    size = (int(image_size[0]), int(image_size[1]))
    with torch.device("meta"):
        channels = create_backbone(backbone, output_stride).feature_info.channels()[-1]
        head = DensePredictionCell(cell, channels, output_stride=output_stride)
        per_branch = branch_costs(head, (1, channels, *feature_size(size, output_stride)))
        whole = head_cost(head, channels, size, output_stride)
    return CellCosts(cell, backbone, channels, size, output_stride, tuple(zip(cell, per_branch)),
                     sum(per_branch, Cost(0, 0)), whole)


def model_costs(image_size: Sequence[int] = CITYSCAPES_EVAL_SIZE, latency: bool = False,
                **model: Any) -> dict[str, Cost]:
    """The context module, the head and the whole model of ``build_model(**model)`` at ``image_size``; with
    ``latency`` the whole model is also timed on the CPU."""
    from .model import build_model

    size = (int(image_size[0]), int(image_size[1]))
    stride = model.get("output_stride", 16)
    with torch.device("meta"):
        built = build_model(**model)
        costs = {"context module (paper convention)": context_module_cost(built.head, size, stride),
                 "head": head_cost(built.head, built.head.in_channels, size, stride),
                 "whole model": model_cost(built, size)}
    if latency:
        seconds = measure_latency(build_model(**model), torch.randn(1, 3, *size), repeats=3)
        costs["whole model"] = Cost(costs["whole model"].params, costs["whole model"].madds, seconds)
    return costs
