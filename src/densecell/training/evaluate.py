"""Evaluation of a trained model on images: multi-scale + flip inference as TF DeepLab evaluates, sliding windows,
the split's mIoU (:mod:`densecell.training.metrics`), and prediction files."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..core.errors import CheckpointError, DataError, InputError
from ..core.files import atomic_path, make_dirs, write_text
from ..core.lock import RunLock, run_folder_of
from ..core.progress import Progress, report
from ..core.registry import DATASETS
from ..core.resize import resize_bilinear
from ..data import Normalization, SegmentationDataset, eval_dataset
from ..data.base import read_image
from ..data.transforms import normalize
from .checkpoint import load_run
from .metrics import ConfusionMatrix, predicted_classes
from .optim import default_device

__all__ = [
    "colorize", "EvalResult", "evaluate", "evaluate_checkpoint", "pad_image", "PAPER_EVAL_SCALES",
    "predict_checkpoint", "predict_files", "predict_probabilities", "scaled_size", "sliding_window_logits"
]

PAPER_EVAL_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


@dataclass
class EvalResult:
    classes: tuple[str, ...]
    iou: list[float]
    miou: float
    pixel_accuracy: float
    images: int
    settings: dict = field(default_factory=dict)
    dataset: str = ""

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


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """TF DeepLab's ``scale_dimension``: ``int((size - 1) * scale + 1)`` per axis (a 1025x2049 image at 0.75 is
    769x1537)."""
    return max(1, int((height - 1) * scale + 1)), max(1, int((width - 1) * scale + 1))


def pad_image(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Pad a normalised [1, 3, H, W] image at the bottom and right to ``size`` with 0 (the mean pixel), as TF's
    evaluation pads to its eval crop."""
    pad_h, pad_w = int(size[0]) - image.shape[-2], int(size[1]) - image.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise DataError(f"an image of {image.shape[-2]}x{image.shape[-1]} is larger than the padded size "
                        f"{size[0]}x{size[1]}")
    return F.pad(image, (0, pad_w, 0, pad_h))


def _logits(model: nn.Module, x: torch.Tensor, window: Sequence[int] | None) -> torch.Tensor:
    too_big = window is not None and (x.shape[-2] > window[0] or x.shape[-1] > window[1])
    return sliding_window_logits(model, x, window) if too_big else model(x)


def check_inference(scales: Sequence[float], window: Sequence[int] | None, output_stride: int = 8) -> None:
    """The test-time settings, checked before any image is read (and before the model is loaded, with the smallest
    output stride, 8): finite positive scales, and a sliding window of at least one output stride a side (a smaller
    one yields no feature at all, and thousands of windows)."""
    for scale in scales:
        if not (math.isfinite(scale) and scale > 0):
            raise InputError(f"scale {scale}: the test scales must be finite and positive, e.g. 0.75,1,1.25")
    if window is not None and min(window) < output_stride:
        raise InputError(f"window {window[0]}x{window[1]}: at least the model's output stride ({output_stride}) a "
                         f"side; a window is usually the training crop, e.g. 513x513")


@torch.inference_mode()
def predict_probabilities(model: nn.Module, image: torch.Tensor, scales: Sequence[float] = (1.0,),
                          flip: bool = False, window: Sequence[int] | None = None,
                          pad_to: Sequence[int] | None = None) -> torch.Tensor:
    """Class probabilities [1, C, H, W] of one normalised image [1, 3, H, W], averaged over scales and flips.

    As TF DeepLab evaluates: the image is first padded to ``pad_to`` (its eval crop, e.g. 1025x2049) if given, each
    scale resizes the padded image to :func:`scaled_size`, the softmax of each pass is resized back and averaged, and
    the padding is cut off at the end."""
    height, width = image.shape[-2:]
    if pad_to is not None:
        image = pad_image(image, pad_to)
    padded = tuple(image.shape[-2:])
    total = None
    for scale in scales:
        scaled = image if scale == 1 else resize_bilinear(image, scaled_size(*padded, scale))
        for flipped in (False, True) if flip else (False,):
            logits = _logits(model, scaled.flip(-1) if flipped else scaled, window)
            logits = resize_bilinear(logits.flip(-1) if flipped else logits, padded)
            probabilities = logits.float().softmax(1)
            total = probabilities if total is None else total + probabilities
    return (total / (len(scales) * (2 if flip else 1)))[..., :height, :width]


def evaluate(model: nn.Module, dataset: SegmentationDataset, device: torch.device | str = "cpu",
             scales: Sequence[float] = (1.0,), flip: bool = False, window: Sequence[int] | None = None,
             progress: Progress | None = None, pad_to: Sequence[int] | None = None) -> EvalResult:
    """mIoU of ``model`` on ``dataset`` (which must not augment), one image at a time, at full resolution."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(dataset.num_classes)
    try:
        for index in range(len(dataset)):
            image, label = dataset[index]
            probabilities = predict_probabilities(model, image[None].to(device), scales, flip, window, pad_to)
            matrix.update(predicted_classes(probabilities)[0], label)
            report(progress, "eval", index + 1, len(dataset))
    finally:
        model.train(was_training)
    iou = matrix.iou().tolist()
    settings = {"scales": list(scales), "flip": flip, "window": list(window) if window else None,
                "pad_to": list(pad_to) if pad_to else None}
    return EvalResult(dataset.classes, iou, matrix.miou(), matrix.pixel_accuracy(), len(dataset), settings,
                      dataset.name)


def evaluate_checkpoint(checkpoint: str | Path, split: str = "val", data_root: str | Path | None = None,
                        scales: Sequence[float] = (1.0,), flip: bool = False, window: Sequence[int] | None = None,
                        pad_to: Sequence[int] | None = None, output_stride: int | None = None,
                        output: str | Path | None = None, progress: Progress | None = None) -> EvalResult:
    """Evaluate a trained model on a split of the dataset it was trained on (``data_root`` replaces its root),
    optionally at another output stride; with ``output``, the per-class table is written there as JSON (under the
    lock of the run folder it lies in, if any)."""
    check_inference(scales, window)
    run = load_run(checkpoint, **({"output_stride": output_stride} if output_stride else {}))
    check_inference(scales, window, run.model.output_stride)
    if run.config is None:
        raise CheckpointError(f"{checkpoint}: holds no training recipe, so its dataset is unknown")
    dataset = eval_dataset(run.config.data, split, run.model.normalization, data_root)
    device = default_device()
    result = evaluate(run.model.to(device), dataset, device, scales, flip, window, progress, pad_to)
    if output is not None:
        folder = run_folder_of(output)
        with RunLock(folder or Path(output).parent, "densecell eval --output", enabled=folder is not None):
            write_text(output, json.dumps(result.to_dict(), indent=2))
    return result


def predict_checkpoint(checkpoint: str | Path, images: Sequence[Path], output: str | Path,
                       scales: Sequence[float] = (1.0,), flip: bool = False, window: Sequence[int] | None = None,
                       pad_to: Sequence[int] | None = None, progress: Progress | None = None) -> list[Path]:
    """:func:`predict_files` with a trained model: its normalisation, its palette, and the ids its dataset's
    benchmark server accepts (Cityscapes' labelIds)."""
    check_inference(scales, window)
    run = load_run(checkpoint)
    check_inference(scales, window, run.model.output_stride)
    device = default_device()
    ids = DATASETS[run.dataset].submission_ids() if run.dataset else None
    return predict_files(run.model.to(device), images, Path(output), run.palette, run.model.normalization, ids,
                         scales, flip, window, device, progress, pad_to)


def colorize(train_ids: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """An RGB image of train ids (ignore in black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[train_ids]


def predict_files(model: nn.Module, images: Sequence[Path], output: Path, palette: Sequence[Sequence[int]],
                  normalization: Normalization, label_ids: np.ndarray | None = None, scales: Sequence[float] = (1.0,),
                  flip: bool = False, window: Sequence[int] | None = None, device: torch.device | str = "cpu",
                  progress: Progress | None = None, pad_to: Sequence[int] | None = None) -> list[Path]:
    """Normalise each image as the model expects (``model.normalization``), and write ``<stem>_trainIds.png``,
    ``<stem>_overlay.png`` (50% colour over the image) and, with a ``label_ids`` table (Cityscapes),
    ``<stem>_labelIds.png`` for the benchmark server."""
    make_dirs(output)
    model.eval()
    written = []
    for done, path in enumerate(images, 1):
        pixels = read_image(path)
        image = normalize(torch.from_numpy(pixels).permute(2, 0, 1), normalization)[None].to(device)
        probabilities = predict_probabilities(model, image, scales, flip, window, pad_to)
        train_ids = predicted_classes(probabilities)[0].cpu().numpy()
        train_ids = train_ids.astype(np.uint8)
        stem = path.stem.removesuffix("_leftImg8bit")
        targets = {f"{stem}_trainIds.png": train_ids,
                   f"{stem}_overlay.png": (pixels * 0.5 + colorize(train_ids, palette) * 0.5).astype(np.uint8)}
        if label_ids is not None:
            targets[f"{stem}_labelIds.png"] = label_ids[train_ids]
        for name, array in targets.items():
            with atomic_path(output / name) as temporary:
                Image.fromarray(array).save(temporary, format="PNG")
            written.append(output / name)
        report(progress, "predict", done, len(images))
    return written
