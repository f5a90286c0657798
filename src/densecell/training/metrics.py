"""Segmentation metrics: the confusion matrix and its mIoU, the argmax, and the one validation loop that scores a
head on cached val features (shared by the proxy task and the one-shot supernet; :mod:`densecell.training.evaluate` adds
multi-scale and sliding-window inference on images).

mIoU is the mean over classes of TP / (TP + FP + FN), accumulated over the whole split (not averaged per image), with
ignore pixels left out; classes absent from both prediction and ground truth are left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.errors import DataError
from ..core.pixels import IGNORE_INDEX
from ..core.resize import resize_bilinear

__all__ = ["ConfusionMatrix", "predicted_classes", "val_miou"]


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(1)``, on a channels-last copy: a reduction over contiguous memory, about twice as fast on a
    CPU for DeepLab's few classes and many pixels."""
    return logits.contiguous(memory_format=torch.channels_last).argmax(1)


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class ``t`` predicted as ``p``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != IGNORE_INDEX
        target, prediction = target[keep].long().cpu(), prediction[keep].long().cpu()
        if target.numel() and int(target.max()) >= self.num_classes:
            raise DataError(f"labels hold class {int(target.max())} but there are {self.num_classes} classes")
        flat = target * self.num_classes + prediction
        self.matrix += torch.bincount(flat, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)

    def iou(self) -> torch.Tensor:
        """Per-class IoU, NaN where a class is in neither the prediction nor the ground truth."""
        tp = self.matrix.diag().double()
        union = self.matrix.sum(0).double() + self.matrix.sum(1).double() - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))

    def miou(self) -> float:
        return float(torch.nanmean(self.iou()))

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(self.matrix.diag().sum() / total) if total else math.nan


@torch.inference_mode()
def val_miou(logits: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, labels: torch.Tensor,
             num_classes: int, chunk: int) -> float:
    """Single-scale mIoU of a head on cached val features, ``chunk`` items at a time: ``logits(features)`` (at
    feature resolution, on the head's device) are upsampled to the labels' size, as the paper's search scores."""
    matrix = ConfusionMatrix(num_classes)
    for start in range(0, len(features), chunk):
        out = logits(features[start:start + chunk]).float()
        target = labels[start:start + chunk].to(out.device)
        matrix.update(predicted_classes(resize_bilinear(out, target.shape[-2:])), target)
    return matrix.miou()
