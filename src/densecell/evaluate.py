"""Evaluation: confusion-matrix mIoU, multi-scale + flip inference, sliding windows, prediction files.

mIoU is the mean over classes of TP / (TP + FP + FN), accumulated over the whole split (not averaged per image), with
ignore pixels left out; classes absent from both prediction and ground truth are left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.progress import track
from torch import nn

from .data import IGNORE_INDEX, SegmentationDataset
from .data.base import read_image
from .data.transforms import normalize

PAPER_EVAL_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class ``t`` predicted as ``p``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != IGNORE_INDEX
        target, prediction = target[keep].long().cpu(), prediction[keep].long().cpu()
        if target.numel() and int(target.max()) >= self.num_classes:
            raise ValueError(f"target holds class {int(target.max())} but there are {self.num_classes} classes")
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


@dataclass
class EvalResult:
    classes: tuple[str, ...]
    iou: list[float]
    miou: float
    pixel_accuracy: float
    images: int
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "images": self.images,
            "per_class_iou": {name: (None if math.isnan(v) else v) for name, v in zip(self.classes, self.iou)},
            "settings": self.settings,
        }


def sliding_window_logits(model: nn.Module, image: torch.Tensor, window: Sequence[int],
                          overlap: float = 1 / 3) -> torch.Tensor:
    """Logits of an image larger than ``window`` from overlapping window crops (padded with 0 = the mean pixel),
    averaged where they overlap."""
    _, _, height, width = image.shape
    win_h, win_w = min(window[0], height), min(window[1], width)
    stride_h, stride_w = max(1, int(win_h * (1 - overlap))), max(1, int(win_w * (1 - overlap)))
    tops = list(range(0, max(height - win_h, 0) + 1, stride_h))
    lefts = list(range(0, max(width - win_w, 0) + 1, stride_w))
    if tops[-1] + win_h < height:
        tops.append(height - win_h)
    if lefts[-1] + win_w < width:
        lefts.append(width - win_w)
    total = None
    counts = torch.zeros(1, 1, height, width, device=image.device)
    for top in tops:
        for left in lefts:
            crop = image[:, :, top : top + win_h, left : left + win_w]
            logits = model(crop)
            if total is None:
                total = torch.zeros(1, logits.shape[1], height, width, device=image.device)
            total[:, :, top : top + win_h, left : left + win_w] += logits
            counts[:, :, top : top + win_h, left : left + win_w] += 1
    return total / counts


@torch.inference_mode()
def predict_probabilities(model: nn.Module, image: torch.Tensor, scales: Sequence[float] = (1.0,),
                          flip: bool = False, window: Sequence[int] | None = None) -> torch.Tensor:
    """Class probabilities [1, C, H, W] of one normalised image [1, 3, H, W], averaged over scales and flips."""
    height, width = image.shape[-2:]
    total = None
    for scale in scales:
        size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
        scaled = image if scale == 1 else F.interpolate(image, size=size, mode="bilinear", align_corners=True)
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            too_big = window is not None and (x.shape[-2] > window[0] or x.shape[-1] > window[1])
            logits = sliding_window_logits(model, x, window) if too_big else model(x)
            logits = logits.flip(-1) if flipped else logits
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True)
            probabilities = logits.float().softmax(1)
            total = probabilities if total is None else total + probabilities
    return total / (len(scales) * (2 if flip else 1))


def evaluate(model: nn.Module, dataset: SegmentationDataset, device: torch.device | str = "cpu",
             scales: Sequence[float] = (1.0,), flip: bool = False, window: Sequence[int] | None = None,
             progress: bool = True) -> EvalResult:
    """mIoU of ``model`` on ``dataset`` (which must not augment), one image at a time, at full resolution."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(dataset.num_classes)
    try:
        for index in track(range(len(dataset)), description="eval", disable=not progress, transient=True):
            image, label = dataset[index]
            probabilities = predict_probabilities(model, image[None].to(device), scales, flip, window)
            matrix.update(probabilities.argmax(1)[0], label)
    finally:
        model.train(was_training)
    iou = matrix.iou().tolist()
    settings = {"scales": list(scales), "flip": flip, "window": list(window) if window else None}
    return EvalResult(dataset.classes, iou, matrix.miou(), matrix.pixel_accuracy(), len(dataset), settings)


def colorize(train_ids: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """An RGB image of train ids (ignore in black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[train_ids]


def predict_files(model: nn.Module, images: Sequence[Path], output: Path, palette: Sequence[Sequence[int]],
                  label_ids: np.ndarray | None = None, scales: Sequence[float] = (1.0,), flip: bool = False,
                  window: Sequence[int] | None = None, device: torch.device | str = "cpu",
                  progress: bool = True) -> list[Path]:
    """For each image write ``<stem>_trainIds.png``, ``<stem>_overlay.png`` (50% colour over the image) and,
    with a ``label_ids`` table (Cityscapes), ``<stem>_labelIds.png`` for the benchmark server."""
    output.mkdir(parents=True, exist_ok=True)
    model.eval()
    written = []
    for path in track(images, description="predict", disable=not progress, transient=True):
        pixels = read_image(path)
        image = normalize(torch.from_numpy(pixels).permute(2, 0, 1))[None].to(device)
        train_ids = predict_probabilities(model, image, scales, flip, window).argmax(1)[0].cpu().numpy()
        train_ids = train_ids.astype(np.uint8)
        stem = path.stem.removesuffix("_leftImg8bit")
        targets = {f"{stem}_trainIds.png": train_ids,
                   f"{stem}_overlay.png": (pixels * 0.5 + colorize(train_ids, palette) * 0.5).astype(np.uint8)}
        if label_ids is not None:
            targets[f"{stem}_labelIds.png"] = label_ids[train_ids]
        for name, array in targets.items():
            Image.fromarray(array).save(output / name)
            written.append(output / name)
    return written
