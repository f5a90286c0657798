"""Cheap scores of a cell, for ranking cells without training each on the proxy: the baselines that zero-cost papers
find hard to beat (multiply-adds, parameters, the count of each operation family), zero-cost scores computed on the
cached features at initialisation (gradient norm, SNIP, SynFlow, NASWOT; a few batches each). Each is a
:class:`Ranker`: ``score(cell)``, higher meaning "ranked better", usable by ``densecell fidelity --against NAME``
(:data:`densecell.core.registry.RANKERS`), and recorded in the DPC ground-truth table (``benchmarks/search_table.py``).

The zero-cost scores follow their papers on our proxy head (the cell and a 1x1 classifier on the cached features):

- ``gradnorm``: the sum over weights of the gradient's L2 norm of the cross-entropy on a batch (Abdelfattah et al.
  2021);
- ``snip``: the sum over weights of ``|w * dL/dw|`` (Lee et al. 2019, as a network score);
- ``synflow``: weights replaced by their absolute values, an all-ones input, ``R = sum(output)``, the sum of
  ``|w * dR/dw|``, in float64 and given as its logarithm (Tanaka et al. 2020);
- ``naswot``: the log-determinant of the kernel of the binary activation codes of a batch (Mellor et al. 2021),
  taken at the batch norms' outputs (where the ReLUs decide).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..cell.space import Cell
from ..core.registry import RANKERS
from ..models.cost import CellCoster
from ..training.loss import cross_entropy, subsample_labels
from .cache import FeatureCache
from .proxy import build_proxy_head

__all__ = ["cost_ranker", "count_ranker", "Ranker", "ranker", "ZERO_COST", "ZERO_COST_BATCHES", "ZeroCost",
           "zero_cost_ranker"]

ZERO_COST_BATCHES = 2
"""Cached training batches a zero-cost score averages over."""
ZERO_COST = ("gradnorm", "snip", "synflow", "naswot")
"""The zero-cost scores, by name."""


@dataclass(frozen=True)
class Ranker:
    """A cheap score of cells: ``score(cell)``, higher meaning ranked better."""

    name: str
    score: Callable[[Cell], float]


def cost_ranker(name: str, cache: FeatureCache, filters: int, seed: int = 0,
                device: str | torch.device = "cpu") -> Ranker:
    """``madds`` or ``params`` of the context module at the cache's crop (fewer ranked first, so negated)."""
    coster = CellCoster(cache.channels, filters, cache.image_size, cache.output_stride)
    return Ranker(name, lambda cell: -float(getattr(coster(cell), name)))


def count_ranker(name: str, cache: FeatureCache, filters: int, seed: int = 0,
                 device: str | torch.device = "cpu") -> Ranker:
    """``count:FAMILY``: how many branches are of that family."""
    kind = name.removeprefix("count:")
    return Ranker(name, lambda cell: float(sum(b.op.kind == kind for b in cell)))


def zero_cost_ranker(name: str, cache: FeatureCache, filters: int, seed: int = 0,
                     device: str | torch.device = "cpu") -> Ranker:
    """A zero-cost score (:data:`ZERO_COST`) of the cell's head at initialisation."""
    return Ranker(name, getattr(ZeroCost(cache, filters, seed=seed, device=device), name))


class ZeroCost:
    """The zero-cost scores of cells on a cache's training features, each cell's head initialised from ``seed``
    and scored on the same :data:`ZERO_COST_BATCHES` batches."""

    def __init__(self, cache: FeatureCache, filters: int, batch_size: int = 8, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        self.cache, self.filters, self.seed, self.device = cache, filters, seed, torch.device(device)
        generator = torch.Generator().manual_seed(seed)
        items = torch.randperm(len(cache.train_features), generator=generator)[:ZERO_COST_BATCHES * batch_size]
        self.batches = [cache.train_batch(chunk.sort().values) for chunk in items.split(batch_size)]

    def head(self, cell: Cell, train: bool = True) -> nn.Module:
        """The cell's head at initialisation (from ``seed``), its BatchNorm on batch statistics when ``train``, its
        dropout off: a score is a function of the cell alone."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            head = build_proxy_head(cell, self.cache.channels, len(self.cache.classes), self.cache.output_stride,
                                    self.filters)
        head.train(train)
        for module in head.modules():
            if isinstance(module, nn.Dropout):
                module.eval()
        return head.to(self.device)

    def _loss(self, head: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = head(features.to(self.device).float())
        return cross_entropy(logits, subsample_labels(labels.to(self.device), tuple(logits.shape[-2:])))

    def _gradients(self, cell: Cell) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        head = self.head(cell)
        params = [p for p in head.parameters() if p.dim() > 1]  # the weights of convolutions
        grads = [torch.zeros_like(p) for p in params]
        for features, labels in self.batches:
            for total, grad in zip(grads, torch.autograd.grad(self._loss(head, features, labels), params)):
                total += grad / len(self.batches)
        return params, grads

    def gradnorm(self, cell: Cell) -> float:
        return self.scores(cell, ("gradnorm",))["gradnorm"]

    def snip(self, cell: Cell) -> float:
        return self.scores(cell, ("snip",))["snip"]

    def scores(self, cell: Cell, names: tuple[str, ...] = ZERO_COST) -> dict[str, float]:
        """The zero-cost scores ``names`` of a cell (the gradients computed once for gradnorm and SNIP)."""
        found: dict[str, float] = {}
        if {"gradnorm", "snip"} & set(names):
            params, grads = self._gradients(cell)
            found["gradnorm"] = float(sum(grad.norm() for grad in grads))
            found["snip"] = float(sum((p.detach() * g).abs().sum() for p, g in zip(params, grads)))
        if "synflow" in names:
            found["synflow"] = self.synflow(cell)
        if "naswot" in names:
            found["naswot"] = self.naswot(cell)
        return {name: found[name] for name in names}

    def synflow(self, cell: Cell) -> float:
        head = self.head(cell, train=False).double()
        with torch.no_grad():
            for p in head.parameters():
                p.abs_()
        shape = (1, *self.cache.train_features.shape[1:])
        params = [p for p in head.parameters() if p.dim() > 1]
        grads = torch.autograd.grad(head(torch.ones(shape, dtype=torch.float64, device=self.device)).sum(), params)
        total = float(sum((p.detach() * g).abs().sum() for p, g in zip(params, grads)))
        return math.log(total) if total > 0 else -math.inf

    @torch.no_grad()
    def naswot(self, cell: Cell) -> float:
        head = self.head(cell)
        codes: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _, __, out: codes.append((out > 0).flatten(1).double()))
                 for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
        try:
            features, _ = self.batches[0]
            head(features.to(self.device).float())
        finally:
            for hook in hooks:
                hook.remove()
        code = torch.cat(codes, dim=1)
        kernel = code @ code.T + (1 - code) @ (1 - code).T
        return float(np.linalg.slogdet(kernel.cpu().numpy())[1])


def ranker(name: str, cache: FeatureCache, filters: int, seed: int = 0,
           device: str | torch.device = "cpu") -> Ranker:
    """The ranker called ``name`` (:data:`densecell.core.registry.RANKERS`) on ``cache`` with ``filters`` filters."""
    return RANKERS[RANKERS.check(name)](name, cache, filters, seed, device)
