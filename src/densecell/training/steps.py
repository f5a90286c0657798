"""One proxy training step of a candidate head, two ways.

- :class:`EagerStep`: ``torch.optim`` and a loss per step, the loss read back each step (a non-finite one stops the
  candidate at once). The plain path, and the CPU's.
- :class:`GraphStep`: the whole step as tensor operations with no host synchronisation: the batch indices are drawn
  and the features gathered on the device, the forward, the loss, the gradients (``torch.autograd.grad``), the
  optimizer update (SGD with momentum or Adam, written with ``torch._foreach`` ops) and the poly learning rate (a
  function of a step counter held in a device tensor) all run on the device. On a GPU the step is captured once as a
  CUDA graph and replayed, so a step costs its kernels and nothing else; elsewhere it runs as it is (the same code,
  minus the capture), which is how the tests check it against :class:`EagerStep`.

fp16 (``amp: fp16``) scales the loss dynamically in both: the eager step with ``torch.amp.GradScaler``
(:func:`~densecell.training.optim.loss_scaler`, as every eager trainer), the graph step with the same kernels and
constants on a scale kept on the device (``torch._amp_update_scale_``); a step whose gradients overflow leaves the
weights and the optimizer state as they were.

Each candidate draws its batches and its dropout masks from its own generator, seeded by the candidate's seed, so
that K candidates trained side by side (:func:`densecell.search.proxy.train_candidates`) train exactly as each would
alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..cell.heads import CellDropout
from ..config import ProxySettings
from ..core.errors import TrainingError
from .loss import cross_entropy, subsample_labels, upsampled_cross_entropy
from .optim import (
    LOSS_SCALE,
    SCALE_GROWTH_INTERVAL,
    autocast_for,
    backward_and_step,
    decayed_parameters,
    loss_scaler,
    make_optimizer,
    poly_lambda,
)
from .precision import Precision

__all__ = ["candidate_generator", "EagerStep", "GraphStep", "proxy_loss", "seed_dropout", "WARMUP_STEPS"]

WARMUP_STEPS = 3
"""Steps run before a capture (cuDNN picks its kernels, the allocator settles); their effect is undone."""


def proxy_loss(logits: torch.Tensor, labels: torch.Tensor, upsample_logits: bool) -> torch.Tensor:
    """The proxy's loss: on logits upsampled to the labels (the paper's, TF ``upsample_logits``) or on labels
    subsampled to the logits."""
    if upsample_logits:
        return upsampled_cross_entropy(logits.float(), labels)
    return cross_entropy(logits.float(), subsample_labels(labels, tuple(logits.shape[-2:])))


def seed_dropout(head: nn.Module, generator: torch.Generator | None) -> None:
    """Make the head's cell dropout draw from ``generator`` (its candidate's own)."""
    for module in head.modules():
        if isinstance(module, CellDropout):
            module.generator = generator


def candidate_generator(seed: int, device: torch.device) -> torch.Generator:
    """A candidate's own random stream on ``device``."""
    return torch.Generator(device=device).manual_seed(seed)


class EagerStep:
    """``torch.optim`` on the head, one batch per call of :meth:`run`; the batch comes from ``sample(generator)``
    (a CPU generator seeded with ``seed``), the dropout masks from the candidate's generator on ``device``."""

    def __init__(self, head: nn.Module, sample, settings: ProxySettings, precision: Precision,
                 device: torch.device, seed: int) -> None:
        self.head, self.sample, self.settings, self.precision, self.device = head, sample, settings, precision, device
        self.optimizer = make_optimizer(head, settings.optimizer, settings.lr, settings.momentum,
                                        settings.weight_decay)
        self.scaler = loss_scaler(precision.amp, device)
        self.schedule = poly_lambda(settings.iterations, settings.power)
        self.generator = torch.Generator().manual_seed(seed)
        seed_dropout(head, self.generator if device.type == "cpu" else candidate_generator(seed, device))
        self.iteration = 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.iteration += 1
            features, labels = self.sample(self.generator)
            loss = self.step(features, labels, self.settings.lr * self.schedule(self.iteration))
            if not math.isfinite(loss):
                raise TrainingError(f"proxy loss is {loss} at iteration {self.iteration}")

    def step(self, features: torch.Tensor, labels: torch.Tensor, lr: float) -> float:
        """One step on one batch at learning rate ``lr``; returns the loss."""
        self.head.train()
        x = features.to(self.device, non_blocking=True).float().contiguous(memory_format=self.precision.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        with autocast_for(self.precision.amp, self.device):
            logits = self.head(x)
        loss = proxy_loss(logits, labels, self.settings.upsample_logits)
        value = loss.item()
        if math.isfinite(value):
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            backward_and_step(loss, self.optimizer, self.scaler)
        return value


class GraphStep:
    """The whole step on the device, captured as a CUDA graph on a GPU (see the module's docstring).

    ``features`` and ``labels`` are the training arrays, resident on ``device``; each step draws ``batch_size`` item
    indices from them, and the dropout masks, with ``generator`` (the candidate's own, on ``device``; None: the
    device's default generator). A capture that fails leaves the head as it was and raises."""

    def __init__(self, head: nn.Module, features: torch.Tensor, labels: torch.Tensor, settings: ProxySettings,
                 precision: Precision, device: torch.device, generator: torch.Generator | None = None,
                 capture: bool | None = None) -> None:
        self.head, self.features, self.labels = head, features, labels
        self.settings, self.precision, self.device, self.generator = settings, precision, device, generator
        seed_dropout(head, generator)
        self.params = [p for p in head.parameters() if p.requires_grad]
        decayed = set(decayed_parameters(head))
        self.decayed = [i for i, (name, p) in enumerate(n for n in head.named_parameters() if n[1].requires_grad)
                        if name in decayed]
        self.state = [torch.zeros_like(p) for p in self.params]
        self.state2 = [torch.zeros_like(p) for p in self.params] if settings.optimizer == "adam" else []
        self.step_count = torch.zeros((), device=device)
        self.adam_steps = torch.zeros((), device=device)
        self.scale = torch.full((), LOSS_SCALE if precision.amp == "fp16" else 1.0, device=device)
        self.growth = torch.zeros((), dtype=torch.int32, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.iteration = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        if capture if capture is not None else device.type == "cuda":
            self._capture()

    # --- one step, as tensor operations ----------------------------------------------------------------------------

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        count = self.features.shape[0]
        index = torch.randint(count, (self.settings.batch_size,), device=self.device, generator=self.generator)
        features = self.features.index_select(0, index).float()
        return features.contiguous(memory_format=self.precision.memory_format), self.labels.index_select(0, index)

    def _lr(self) -> torch.Tensor:
        """Poly LR of the step about to be taken (1-based, as :class:`EagerStep`), from the device counter."""
        progress = torch.clamp(1.0 - (self.step_count + 1) / self.settings.iterations, min=0.0)
        return self.settings.lr * progress ** self.settings.power

    def _eager(self) -> None:
        self.head.train()
        features, labels = self._batch()
        with autocast_for(self.precision.amp, self.device, cache_enabled=False):
            logits = self.head(features)
        loss = proxy_loss(logits, labels, self.settings.upsample_logits)
        grads = list(torch.autograd.grad(loss * self.scale, self.params))
        with torch.no_grad():
            keep = self._unscale(grads)
            if self.settings.weight_decay and self.decayed:
                torch._foreach_add_([grads[i] for i in self.decayed], [self.params[i] for i in self.decayed],
                                    alpha=self.settings.weight_decay)
            (self._adam if self.settings.optimizer == "adam" else self._sgd)(grads, self._lr() * keep, keep)
            self.nonfinite |= ~torch.isfinite(loss)
            self.step_count += 1

    def _unscale(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """Divide the gradients by the loss scale; 1.0 where the step may go on, 0.0 where fp16 overflowed (the
        overflowing gradients are zeroed and the scale is halved)."""
        if self.precision.amp != "fp16":
            return torch.ones((), device=self.device)
        found = torch.zeros(1, device=self.device)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.reciprocal(self.scale))
        for grad in grads:
            torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0)
        torch._amp_update_scale_(self.scale, self.growth, found, 2.0, 0.5, SCALE_GROWTH_INTERVAL)
        return 1.0 - found[0]

    def _sgd(self, grads: list[torch.Tensor], lr: torch.Tensor, keep: torch.Tensor) -> None:
        """``buf = m * buf + g; p -= lr * buf`` (torch.optim.SGD), written so that ``keep = 0`` changes nothing."""
        step = torch._foreach_mul(self.state, self.settings.momentum - 1.0)
        torch._foreach_add_(step, grads)
        torch._foreach_mul_(step, keep)
        torch._foreach_add_(self.state, step)
        torch._foreach_add_(self.params, torch._foreach_mul(self.state, -lr))

    def _adam(self, grads: list[torch.Tensor], lr: torch.Tensor, keep: torch.Tensor) -> None:
        """torch.optim.Adam (betas 0.9, 0.999, eps 1e-8), written so that ``keep = 0`` changes nothing."""
        self.adam_steps += keep
        for moment, target, rate in ((self.state, grads, 0.1), (self.state2, torch._foreach_mul(grads, grads),
                                                                0.001)):
            change = torch._foreach_sub(target, moment)  # moment.lerp_(target, rate), or nothing when keep = 0
            torch._foreach_mul_(change, rate * keep)
            torch._foreach_add_(moment, change)
        steps = torch.clamp(self.adam_steps, min=1.0)
        correction1 = 1.0 - torch.pow(0.9, steps)
        correction2 = torch.sqrt(1.0 - torch.pow(0.999, steps))
        denominator = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(self.state2), correction2), 1e-8)
        update = torch._foreach_div(self.state, denominator)
        torch._foreach_mul_(update, -lr / correction1)
        torch._foreach_add_(self.params, update)

    # --- capture and replay ----------------------------------------------------------------------------------------

    def _snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tensors = [*self.params, *self.head.buffers(), *self.state, *self.state2, self.step_count, self.adam_steps,
                   self.scale, self.growth, self.nonfinite]
        return [(t, t.detach().clone()) for t in tensors]

    def _capture(self) -> None:
        """Warm up on a side stream, capture one step, then undo the warm-up's changes (in place, so that the
        graph's tensors stay where they are), also when the capture fails."""
        saved = self._snapshot()
        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_STEPS):
                    self._eager()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            if self.generator is not None:
                graph.register_generator_state(self.generator)
            with torch.cuda.graph(graph):
                self._eager()
            self.graph = graph
        finally:
            with torch.no_grad():
                for tensor, value in saved:
                    tensor.copy_(value)

    def run(self, steps: int) -> None:
        """Take ``steps`` steps (no host synchronisation); :meth:`check` tells whether the loss stayed finite."""
        for _ in range(steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._eager()
        self.iteration += steps

    def check(self) -> None:
        """Raise :class:`~densecell.core.errors.TrainingError` if a loss was not finite since the start (this reads one
        flag back from the device)."""
        if bool(self.nonfinite):
            raise TrainingError(f"proxy loss became non-finite by iteration {self.iteration}")
