"""The one-shot supernet (beyond the paper): every cell of the space as a path through shared weights, trained once on
the cached features, then used to score thousands of cells in the time the proxy trains a few.

Structure, for B branches:

- branch i holds, for each input width it can read (``F``, the backbone's channels, and, from the second branch on,
  ``Y``, the branches' filters), one 1x1 convolution, one separable 3x3 convolution whose weights serve all 64 rate
  pairs (the rate is only its dilation) and one pooling 1x1 convolution that serves all 16 grids;
- the projection of the concatenation and the classifier are shared by every cell.

A cell's path picks in each branch its input and its operation, so ``supernet(features, cell)`` computes what a
:class:`~densecell.cell.heads.DensePredictionCell` built for that cell computes with the weights it inherits
(:meth:`Supernet.extract`).

Training is single-path uniform sampling (SPOS, Guo et al. 2020): one uniformly random cell per step, with the proxy's
optimizer, schedule and loss. The cell and the batch of step i are functions of (seed, i), and the checkpoint holds
the weights, the optimizer and the random states, so a killed run resumes to the same weights.

Scoring a cell: its BatchNorm statistics are re-estimated on a few cached training batches (shared weights have no
statistics of their own for a given path), then its single-scale mIoU is measured on the cached val features, as the
proxy measures.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..cell.heads import ConvBNReLU, PoolingMode, build_operation
from ..cell.space import BACKBONE, FAMILIES, Branch, Cell, Operation, SearchSpace
from ..config import ProxySettings, SupernetConfig
from ..core.errors import CheckpointError, TrainingError, one_line
from ..core.files import save_torch
from ..core.hold import hold
from ..core.progress import Progress, report
from ..models.hub import load_state
from ..training.metrics import val_miou
from ..training.optim import (
    autocast_for,
    backward_and_step,
    loss_scaler,
    make_optimizer,
    poly_lambda,
    rng_state,
    set_rng_state,
)
from ..training.precision import Precision
from ..training.steps import proxy_loss
from .cache import FeatureCache
from .proxy import build_proxy_head, resolve_precision

__all__ = [
    "build_supernet", "resume", "score_cell", "step_cell", "SuperBranch", "Supernet", "SupernetRun", "train_supernet"
]

logger = logging.getLogger(__name__)


class SuperBranch(nn.Module):
    """Every operation branch ``index`` can apply: one module per operation family and input width (``F``, and
    ``Y`` from the second branch on), named by the family (``sep3x3.F``); ``forward(x, branch)`` runs one."""

    def __init__(self, index: int, in_channels: int, filters: int, output_stride: int, pooling: PoolingMode) -> None:
        super().__init__()
        widths = {"F": in_channels} | ({"Y": filters} if index > 0 else {})
        for family in FAMILIES.values():
            some = Operation(family.name, (1, 1) if family.pair else None)  # the weights serve every parameter
            self.add_module(family.name, nn.ModuleDict({key: build_operation(
                some, width, filters, output_stride=output_stride, pooling=pooling) for key, width in widths.items()}))

    def module_for(self, branch: Branch) -> nn.Module:
        """The shared module that computes ``branch`` (its weights are the branch's inherited weights)."""
        return getattr(self, branch.op.kind)["F" if branch.input == BACKBONE else "Y"]

    def forward(self, x: torch.Tensor, branch: Branch) -> torch.Tensor:
        return self.module_for(branch)(x, branch.op)


class Supernet(nn.Module):
    """The weight-sharing supernet over a search space, with the proxy's head around it (projection, classifier)."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int, filters: int = 256,
                 dropout: float = 0.1, output_stride: int = 16, pooling: PoolingMode = "tf") -> None:
        super().__init__()
        self.space, self.in_channels, self.filters = space, in_channels, filters
        self.output_stride, self.pooling, self.dropout_p = output_stride, pooling, dropout
        self.branches = nn.ModuleList(SuperBranch(i, in_channels, filters, output_stride, pooling)
                                      for i in range(space.num_branches))
        self.dropout = nn.Dropout(dropout)
        self.project = ConvBNReLU(filters * space.num_branches, filters)
        self.classifier = nn.Conv2d(filters, num_classes, 1)
        self.precision = Precision()
        """The autocast mode and layout the supernet computes in (set with the proxy's by :func:`build_supernet`)."""

    def inputs(self, features: torch.Tensor) -> torch.Tensor:
        """Cached (fp16) features on the supernet's device, in float and its layout."""
        device = self.classifier.weight.device
        return features.to(device).float().contiguous(memory_format=self.precision.memory_format)

    def forward(self, features: torch.Tensor, cell: Cell) -> torch.Tensor:
        """The cell's path. The projection of the concatenation is computed as the sum of each branch's share of
        the 1x1 convolution (the same function, without copying the branches into one tensor), and the dropout on
        the concatenation as a dropout of each branch (the same distribution)."""
        outputs: list[torch.Tensor] = []
        for branch, module in zip(cell, self.branches):
            outputs.append(module(features if branch.input == BACKBONE else outputs[branch.input], branch))
        shares = self.project.conv.weight.split(self.filters, dim=1)
        merged = sum(F.conv2d(self.dropout(y), weight) for y, weight in zip(outputs, shares))
        return self.classifier(F.relu(self.project.bn(merged)))

    def extract(self, cell: Cell) -> nn.Module:
        """The proxy head of ``cell`` (a DensePredictionCell and the classifier) with the supernet's weights."""
        head = build_proxy_head(cell, self.in_channels, self.classifier.out_channels, self.output_stride,
                                self.filters, dropout=self.dropout_p, pooling=self.pooling)
        state = {f"1.{key}": value for key, value in self.classifier.state_dict().items()}
        state |= {f"0.project.{key}": value for key, value in self.project.state_dict().items()}
        for i, branch in enumerate(cell):
            shared = self.branches[i].module_for(branch).state_dict()
            state |= {f"0.branches.{i}.{key}": value for key, value in shared.items()}
        head.load_state_dict(state)
        return head.to(next(self.parameters()).device)


def step_cell(space: SearchSpace, seed: int, step: int, sampling: str = "uniform") -> Cell:
    """The cell trained at ``step``, a function of (seed, step) only: uniform over the space, or ``family-first``
    (each branch's operation family uniform, then its rate or grid uniform within it)."""
    rng = random.Random(seed * 1_000_003 + step)
    if sampling == "uniform":
        return space.sample(rng)
    families: dict[str, list[Operation]] = {}
    for op in space.operations():
        families.setdefault(op.kind, []).append(op)
    kinds = list(families)
    return Cell(tuple(Branch(rng.randrange(i + 1) - 1, rng.choice(families[rng.choice(kinds)]))
                      for i in range(space.num_branches)))


def bn_sample(cache: FeatureCache, settings: SupernetConfig, seed: int = 0) -> torch.Tensor:
    """The cached training items that re-estimate a cell's BatchNorm: a seeded random sample of the whole cache (its
    first items are the first images of a sorted file list: on Cityscapes, one city)."""
    count = min(settings.bn_batches * settings.bn_batch_size, len(cache.train_features))
    return torch.randperm(len(cache.train_features), generator=torch.Generator().manual_seed(seed))[:count]


@dataclass
class SupernetRun:
    """A supernet being trained: the module, its optimizer, the step reached, the batch generator, and the
    precision and layout it computes in (the proxy's, :func:`~densecell.search.proxy.resolve_precision`)."""

    supernet: Supernet
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    precision: Precision
    scaler: torch.amp.GradScaler
    step: int = 0


def _checkpoint(run: SupernetRun) -> dict:
    return {"model": run.supernet.state_dict(), "optimizer": run.optimizer.state_dict(), "step": run.step,
            "rng": rng_state(), "generator": run.generator.get_state(), "scaler": run.scaler.state_dict()}


def resume(run: SupernetRun, path: Path) -> None:
    """Load a supernet checkpoint into ``run``: weights, optimizer, loss scale, step and random states."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable supernet checkpoint ({one_line(exc, 200)})") \
            from None
    load_state(run.supernet, state["model"], path)
    run.optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    run.generator.set_state(state["generator"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.step = int(state["step"])


def build_supernet(cache: FeatureCache, space: SearchSpace, proxy: ProxySettings, seed: int,
                   device: torch.device, precision: Precision | None = None) -> SupernetRun:
    """A fresh supernet run, computing in ``precision`` (the study's choice; default: the proxy's,
    :func:`~densecell.search.proxy.resolve_precision`) with its loss scaled where that is fp16."""
    precision = precision or resolve_precision(proxy, cache, device)
    torch.manual_seed(seed)
    supernet = Supernet(space, cache.channels, len(cache.classes), proxy.filters, output_stride=cache.output_stride)
    supernet = supernet.to(device, memory_format=precision.memory_format)
    supernet.precision = precision
    optimizer = make_optimizer(supernet, proxy.optimizer, proxy.lr, proxy.momentum, proxy.weight_decay)
    return SupernetRun(supernet, optimizer, torch.Generator().manual_seed(seed), precision,
                       loss_scaler(precision.amp, device))


def train_supernet(cache: FeatureCache, space: SearchSpace, proxy: ProxySettings, settings: SupernetConfig,
                   folder: str | Path, seed: int = 0, device: str | torch.device = "cpu",
                   progress: Progress | None = None, precision: Precision | None = None) -> Supernet:
    """Train (or resume, or load) the supernet in ``folder/supernet.pt`` for ``settings.steps`` steps."""
    device = torch.device(device)
    path = Path(folder) / "supernet.pt"
    run = build_supernet(cache, space, proxy, seed, device, precision)
    if path.exists():
        resume(run, path)
    schedule = poly_lambda(settings.steps, proxy.power)
    count = len(cache.train_features)
    while run.step < settings.steps:
        run.step += 1
        cell = step_cell(space, seed, run.step, settings.sampling)
        features, labels = cache.train_batch(torch.randint(count, (proxy.batch_size,), generator=run.generator))
        run.supernet.train()
        with autocast_for(run.precision.amp, device):
            logits = run.supernet(run.supernet.inputs(features), cell)
        loss = proxy_loss(logits, labels.to(device), proxy.upsample_logits)
        if not torch.isfinite(loss):
            raise TrainingError(f"supernet loss is {loss.item()} at step {run.step}")
        for group in run.optimizer.param_groups:
            group["lr"] = proxy.lr * schedule(run.step)
        backward_and_step(loss, run.optimizer, run.scaler)
        report(progress, "supernet", run.step, settings.steps, f"loss {loss.item():.3f}")
        if run.step % settings.checkpoint_every == 0 or run.step == settings.steps:
            save_torch(_checkpoint(run), path)
            hold("supernet")
    return run.supernet


@torch.no_grad()
def score_cell(supernet: Supernet, cell: Cell, cache: FeatureCache, settings: SupernetConfig,
               device: str | torch.device = "cpu") -> float:
    """The one-shot score of ``cell``: BatchNorm statistics re-estimated for its path on ``settings.bn_batches``
    batches of a fixed random sample of the cache (:func:`bn_sample`), then single-scale val mIoU on the cached val
    features."""
    device = torch.device(device)
    norms = [m for m in supernet.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average over the re-estimation batches
    precision = supernet.precision
    supernet.train()
    supernet.dropout.eval()
    batch = settings.bn_batch_size

    def logits(features: torch.Tensor) -> torch.Tensor:
        with autocast_for(precision.amp, device):
            return supernet(supernet.inputs(features), cell)

    sample = bn_sample(cache, settings).sort().values  # sorted: a memory-mapped cache reads ahead
    for start in range(0, len(sample), batch):
        logits(cache.train_batch(sample[start:start + batch])[0])
    supernet.eval()
    miou = val_miou(logits, cache.val_features, cache.val_labels, len(cache.classes), batch)
    for module, (momentum, mean, var, tracked) in zip(norms, saved):
        module.momentum = momentum
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
        module.num_batches_tracked.copy_(tracked)
    return miou
