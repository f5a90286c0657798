"""How densecell holds an image and its labels as tensors, shared by the data that writes them, the model that
reads them and the loss and metrics that score them: the normalisation a backbone's weights expect, and the label of
pixels no class owns."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["IGNORE_INDEX", "Normalization", "normalize"]

IGNORE_INDEX = 255
"""The label of pixels that no class owns (Cityscapes' void, VOC's borders): no loss, no score."""

Normalization = tuple[Sequence[float], Sequence[float]]
"""(mean, std) per RGB channel, of pixels scaled to [0, 1]."""


def normalize(image: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """uint8 CxHxW -> float: ``(x / 255 - mean) / std``."""
    mean = torch.tensor(normalization[0], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(normalization[1], dtype=torch.float32).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std
