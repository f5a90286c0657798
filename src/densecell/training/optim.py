"""What every trainer shares, one step at a time: the device, DeepLab's optimizer groups and poly schedule, the
autocast choice, BatchNorm freezing, random states and one training step.

The full training loop (:mod:`densecell.training.train`) and the proxy task (:mod:`densecell.search.proxy`) are
siblings that both build on this module; neither imports the other.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from ..config import Amp, OptimizerName
from ..core.errors import InputError
from .loss import cross_entropy

__all__ = [
    "Amp", "autocast_dtype", "autocast_for", "backward_and_step", "check_device", "decayed_parameters",
    "default_device",
    "freeze_batchnorm", "is_depthwise", "LOSS_SCALE", "loss_scaler", "make_optimizer", "OptimizerName", "param_groups",
    "poly_lambda", "rng_state", "SCALE_GROWTH_INTERVAL", "set_rng_state", "set_train_mode", "train_step",
    "use_deterministic"
]



def default_device() -> torch.device:
    """The first GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(name: str | torch.device | None) -> torch.device:
    """The device ``name`` names (None: :func:`default_device`), or a one-line error when it is not a device or
    not on this machine (checked before a worker or a training starts)."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"device {str(name)!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise InputError(f"device {str(name)!r}: no CUDA GPU on this machine (use cpu)")
        if device.index is not None and device.index >= count:
            raise InputError(f"device {str(name)!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        raise InputError(f"device {str(name)!r}: expected cpu, cuda or cuda:N")
    return device


def autocast_dtype(amp: Amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: 'auto' is bf16 on GPUs that have it and fp32 (None) on CPUs."""
    if amp == "off" or (amp == "auto" and not (device.type == "cuda" and torch.cuda.is_bf16_supported())):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast_for(amp: Amp, device: torch.device, cache_enabled: bool = True) -> Any:
    """The autocast context of :func:`autocast_dtype` (a no-op in fp32). A step captured as a CUDA graph needs
    ``cache_enabled=False`` (autocast's cache of cast weights does not survive the capture)."""
    dtype = autocast_dtype(amp, device)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype, cache_enabled=cache_enabled)


LOSS_SCALE = 2.0 ** 16
"""Dynamic loss scaling in fp16 (``torch.amp.GradScaler``'s defaults, which
:class:`~densecell.training.steps.GraphStep`'s device-side scale uses too): start at 2^16, halve on an overflow (the
step is skipped), double after ``SCALE_GROWTH_INTERVAL`` steps without one."""
SCALE_GROWTH_INTERVAL = 2000


def loss_scaler(amp: Amp, device: torch.device, growth_interval: int = SCALE_GROWTH_INTERVAL) -> torch.amp.GradScaler:
    """The loss scaler of a step computed in ``amp`` on ``device``: dynamic scaling where that is fp16 (the
    proxy's gradients at the logits, about 1e-6, are below fp16's smallest normal number and would round to
    zero unscaled), a no-op scaler otherwise."""
    enabled = autocast_dtype(amp, device) == torch.float16
    return torch.amp.GradScaler(device.type, init_scale=LOSS_SCALE, growth_interval=growth_interval,
                                enabled=enabled)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """The one update of every eager trainer: zero the gradients, back-propagate the (scaled) loss, step unless
    the fp16 gradients overflowed, and update the scale."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def poly_lambda(iterations: int, power: float) -> Callable[[int], float]:
    """DeepLab's poly schedule as a multiplier of the base LR: ``(1 - step / iterations) ** power``."""
    return lambda step: max(0.0, 1.0 - step / iterations) ** power


def is_depthwise(module: nn.Module) -> bool:
    """A depthwise convolution: one filter per input channel."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def decayed_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters that get weight decay, as TF DeepLab's slim regulariser: the kernels of convolutions
    and fully connected layers, but not depthwise kernels (``split_separable_conv2d``, MobileNet-v2 and Xception all
    build their depthwise convolutions with ``depthwise_regularizer=None``), BatchNorm or biases."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not is_depthwise(module) and module.weight.requires_grad:
            names.append(f"{prefix}.weight" if prefix else "weight")
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: :func:`decayed_parameters` with ``weight_decay``, every other trainable one without."""
    decayed = set(decayed_parameters(model))
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for name, p in named if name in decayed], "weight_decay": weight_decay},
            {"params": [p for name, p in named if name not in decayed], "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, name: OptimizerName, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum (DeepLab's) or Adam, on :func:`param_groups`."""
    groups = param_groups(model, weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BN statistics and affine parameters fixed (DeepLab's ``fine_tune_batch_norm=False``)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        freeze_batchnorm(model)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               amp: Amp = "auto", scaler: torch.amp.GradScaler | None = None) -> float:
    """One step of pixel-wise cross-entropy (ignore 255); returns the loss. A non-finite loss skips the update, so
    the weights stay as they were and the caller decides what to do. In fp16 the loss is scaled by ``scaler``
    (default: a fresh :func:`loss_scaler`; a trainer keeps one for the whole run)."""
    scaler = scaler if scaler is not None else loss_scaler(amp, images.device)
    with autocast_for(amp, images.device):
        logits = model(images)
    loss = cross_entropy(logits.float(), labels)
    value = loss.item()
    if math.isfinite(value):
        backward_and_step(loss, optimizer, scaler)
    return value


def use_deterministic(enabled: bool) -> None:
    """Deterministic kernels (and cuDNN's benchmark off), so that a resumed GPU run ends with the same weights.

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first call; it is set here when missing. The resizes and the
    loss switch to their matrix forms (:mod:`densecell.core.resize`, :mod:`densecell.training.loss`), whose backward
    passes are deterministic; a kernel without a deterministic version warns rather than stops the run."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = enabled


def rng_state() -> dict[str, Any]:
    """Every random state a training step reads: torch's CPU and CUDA generators and Python's."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
