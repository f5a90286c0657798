"""The proxy task (paper Sec. 3.2): backbone features cached once, candidate cells trained on them alone.

The cache runs a (frozen) backbone once over the training set (``views`` fixed augmented crops per image, each a pure
function of the image index, the view and the seed) and over the validation set (images padded to one size, as
DeepLab's evaluation does). Features are stored in half precision with their labels in ``.npy`` shards, written
atomically, so that a crashed caching job resumes at the first missing shard and produces identical files.

Training a candidate touches no backbone: the head (the cell + a 1x1 classifier) reads batches straight from the
cached arrays, which :class:`FeatureCache` memory-maps (processes on one machine share the pages) or moves to the GPU
once. Its score is the single-scale val mIoU, as in the paper's search.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from .cell import DensePredictionCell
from .data import IGNORE_INDEX, SegmentationDataset
from .evaluate import ConfusionMatrix
from .space import Cell
from .train import TrainingError, autocast_for, param_groups, poly_lambda

CACHE_VERSION = 1


class CacheError(ValueError):
    """A feature cache that is missing, incomplete or built with other settings; the message names the folder."""


def pad_to(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a normalised image with 0 (the mean pixel) and its label with ignore, bottom and right."""
    pad_h, pad_w = size[0] - label.shape[0], size[1] - label.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise CacheError(f"an image of {label.shape[0]}x{label.shape[1]} is larger than the cache's val size "
                         f"{size[0]}x{size[1]}")
    return F.pad(image, (0, pad_w, 0, pad_h)), F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)


def _atomic_save(array: np.ndarray, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.save(handle, array)
    partial.replace(path)


@torch.inference_mode()
def build_cache(
    backbone: nn.Module,
    train_set: SegmentationDataset,
    val_set: SegmentationDataset,
    out_dir: str | Path,
    *,
    output_stride: int,
    crop_size: tuple[int, int],
    val_size: tuple[int, int] | None = None,
    views: int = 1,
    seed: int = 0,
    shard_size: int = 64,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> Path:
    """Cache the last backbone feature map of ``views`` fixed crops of every training image and of every val image.

    ``train_set`` must carry a train transform (it is called with fixed seeds) and ``val_set`` an eval transform.
    Re-running with the same arguments resumes; different arguments on an existing folder are an error.
    """
    out_dir = Path(out_dir)
    if val_size is None:
        val_size = tuple(val_set.load(0)[1].shape)  # type: ignore[assignment]
    spec = {"version": CACHE_VERSION, "output_stride": output_stride, "crop_size": list(crop_size),
            "val_size": list(val_size), "views": views, "seed": seed, "shard_size": shard_size,
            "classes": list(train_set.classes), "train_images": len(train_set), "val_images": len(val_set),
            "source": source or {}}
    spec_path = out_dir / "spec.json"
    if spec_path.exists() and json.loads(spec_path.read_text()) != spec:
        raise CacheError(f"{out_dir}: holds a cache built with other settings; remove it or choose another folder")
    if (out_dir / "complete").exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=1))
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    splits = {
        "train": (train_set, [(index, view) for index in range(len(train_set)) for view in range(views)]),
        "val": (val_set, [(index, 0) for index in range(len(val_set))]),
    }
    with Progress(disable=not progress, transient=False) as bar:
        for split, (dataset, items) in splits.items():
            folder = out_dir / split
            folder.mkdir(exist_ok=True)
            shards = [items[start:start + shard_size] for start in range(0, len(items), shard_size)]
            task = bar.add_task(f"cache {split}", total=len(items))
            for number, shard in enumerate(shards):
                features_path = folder / f"shard-{number:05d}.features.npy"
                labels_path = folder / f"shard-{number:05d}.labels.npy"
                if features_path.exists() and labels_path.exists():  # done before a crash
                    bar.advance(task, len(shard))
                    continue
                features, labels = [], []
                for start in range(0, len(shard), batch_size):
                    images, batch_labels = [], []
                    for index, view in shard[start:start + batch_size]:
                        if split == "train":
                            image, label = dataset[(index, (seed << 32) + index * views + view)]
                        else:
                            image, label = pad_to(*dataset[index], val_size)
                        images.append(image)
                        batch_labels.append(label.to(torch.uint8))
                    feature = backbone(torch.stack(images).to(device))[-1]
                    features.append(feature.half().cpu().numpy())
                    labels.append(torch.stack(batch_labels).numpy())
                    bar.advance(task, len(images))
                _atomic_save(np.concatenate(labels), labels_path)
                _atomic_save(np.concatenate(features), features_path)
    for split in splits:
        for kind in ("features", "labels"):
            _consolidate(sorted((out_dir / split).glob(f"shard-*.{kind}.npy")), out_dir / f"{split}.{kind}.npy")
    (out_dir / "complete").write_text("ok")
    return out_dir


def _consolidate(shards: list[Path], target: Path) -> None:
    """Join shards into one ``.npy`` (memory-mappable as a whole), then drop them; safe to repeat after a crash."""
    if target.exists():
        return
    heads = [np.load(path, mmap_mode="r") for path in shards]
    partial = target.with_name(target.name + ".partial")
    joined = np.lib.format.open_memmap(partial, mode="w+", dtype=heads[0].dtype,
                                       shape=(sum(len(h) for h in heads), *heads[0].shape[1:]))
    offset = 0
    for head in heads:
        joined[offset:offset + len(head)] = head
        offset += len(head)
    joined.flush()
    del joined, heads
    partial.replace(target)
    for path in shards:
        path.unlink()


@dataclass
class FeatureCache:
    """Cached features and labels of both splits, memory-mapped (CPU) or resident on a device."""

    train_features: torch.Tensor
    train_labels: torch.Tensor
    val_features: torch.Tensor
    val_labels: torch.Tensor
    classes: tuple[str, ...]
    output_stride: int
    spec: dict[str, Any]

    @property
    def channels(self) -> int:
        return self.train_features.shape[1]

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.train_features.shape[-2:])  # type: ignore[return-value]

    def train_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of the training items ``index``."""
        return self.train_features[index], self.train_labels[index]

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> FeatureCache:
        """Memory-map the arrays (on the CPU every process that maps them shares the pages) or copy them to
        ``device`` once."""
        folder = Path(folder)
        if not (folder / "complete").exists():
            raise CacheError(f"{folder}: no complete feature cache here (run `densecell cache` first)")
        spec = json.loads((folder / "spec.json").read_text())
        device = torch.device(device)

        def read(name: str) -> torch.Tensor:
            array = np.load(folder / f"{name}.npy", mmap_mode="r")
            with warnings.catch_warnings():  # read-only map: torch warns that it cannot write to it; we never do
                warnings.simplefilter("ignore", UserWarning)
                tensor = torch.from_numpy(array)
            return tensor if device.type == "cpu" else tensor.to(device)

        return cls(read("train.features"), read("train.labels"), read("val.features"), read("val.labels"),
                   tuple(spec["classes"]), spec["output_stride"], spec)


class FrozenBackboneFeatures(FeatureCache):
    """The cache's training items with features computed afresh by the frozen backbone at every step: the reference
    that the cached proxy must match (same items, same augmentation, no fp16 storage), and the slower way it
    replaces."""

    def __init__(self, cache: FeatureCache, backbone: nn.Module, train_set: SegmentationDataset,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(cache.train_features, cache.train_labels, cache.val_features, cache.val_labels,
                         cache.classes, cache.output_stride, cache.spec)
        self.backbone = backbone.to(device).eval()
        self.train_set = train_set
        self.device = torch.device(device)

    def images(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training items' crops, read and augmented from the dataset as the cache saw them, with labels."""
        views, seed = self.spec["views"], self.spec["seed"]
        images, labels = [], []
        for item in index.tolist():
            image_index, view = divmod(item, views)
            image, label = self.train_set[(image_index, (seed << 32) + image_index * views + view)]
            images.append(image)
            labels.append(label.to(torch.uint8))
        return torch.stack(images), torch.stack(labels)

    @torch.inference_mode()
    def train_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.images(index)
        features = self.backbone(images.to(self.device))[-1]
        return features.clone(), labels


@dataclass(frozen=True)
class ProxySettings:
    """Head-only training on cached features. Defaults are the paper's proxy: 30K iterations, batch 8, poly LR
    from 0.01; 256 filters.

    ``upsample_logits`` is TF DeepLab's flag of that name: True computes the loss on logits upsampled to the label
    size (the paper's default); False on labels subsampled (nearest) to the logits' size, about twice as fast on a CPU
    (benchmarks/proxy_throughput.py) but a different loss, whose effect on the ranking is not measured. ``optimizer="adam"`` is for short budgets (the CPU demo's
    hundred steps), in which SGD leaves the deeper cells under-trained and so favours shallow ones."""

    iterations: int = 30_000
    batch_size: int = 8
    lr: float = 0.01
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 4e-5
    filters: int = 256
    eval_every: int = 0
    amp: str = "auto"
    channels_last: bool = True
    upsample_logits: bool = True
    optimizer: str = "sgd"


@dataclass
class ProxyResult:
    miou: float
    iterations: int
    seconds: float
    stopped_early: bool = False


def build_proxy_head(cell: Cell | str, channels: int, num_classes: int, output_stride: int, filters: int) -> nn.Module:
    """The candidate: the cell on the backbone feature and a 1x1 classifier (logits at feature resolution)."""
    return nn.Sequential(
        DensePredictionCell(cell, channels, filters=filters, concat_channels=filters, output_stride=output_stride),
        nn.Conv2d(filters, num_classes, 1),
    )


def _as_input(features: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = features.to(device, non_blocking=True).float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _loss_pair(logits: torch.Tensor, labels: torch.Tensor, upsample_logits: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels at one resolution: the labels' (bilinear logits) or the logits' (nearest labels)."""
    if upsample_logits:
        return F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True), labels
    return logits, F.interpolate(labels[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()


@torch.inference_mode()
def proxy_miou(head: nn.Module, cache: FeatureCache, settings: ProxySettings, device: torch.device,
               chunk: int = 16) -> float:
    """Single-scale val mIoU of a head on the cached val features (logits upsampled to the label size)."""
    head.eval()
    matrix = ConfusionMatrix(len(cache.classes))
    for start in range(0, len(cache.val_features), chunk):
        x = _as_input(cache.val_features[start:start + chunk], device, settings.channels_last)
        labels = cache.val_labels[start:start + chunk].to(device).long()
        with autocast_for(settings.amp, device):
            logits = head(x)
        logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=True)
        matrix.update(logits.argmax(1), labels)
    return matrix.miou()


def proxy_optimizer(module: nn.Module, settings: ProxySettings) -> torch.optim.Optimizer:
    groups = param_groups(module, settings.weight_decay)
    if settings.optimizer == "adam":
        return torch.optim.Adam(groups, lr=settings.lr)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)
    raise ValueError(f"proxy optimizer must be 'sgd' or 'adam', got {settings.optimizer!r}")


def proxy_step(module: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor,
               settings: ProxySettings, lr: float, device: torch.device) -> float:
    """One training step of ``module`` (a candidate head on features, or anything that maps inputs to logits) with
    the proxy's precision, memory format and loss; returns the loss. The benchmarks time exactly this."""
    module.train()
    x = _as_input(inputs, device, settings.channels_last)
    labels = labels.to(device, non_blocking=True).long()
    with autocast_for(settings.amp, device):
        logits = module(x)
    loss = F.cross_entropy(*_loss_pair(logits.float(), labels, settings.upsample_logits), ignore_index=IGNORE_INDEX)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return loss.item()


def train_candidate(
    cell: Cell | str,
    cache: FeatureCache,
    settings: ProxySettings = ProxySettings(),
    seed: int = 0,
    device: str | torch.device = "cpu",
    report: Callable[[int, float], bool] | None = None,
) -> ProxyResult:
    """Train one candidate head on the cached training features and score it on the cached val features.

    ``report(iteration, miou)`` is called every ``eval_every`` iterations; returning True stops the candidate early
    (e.g. Optuna's median rule). A non-finite loss raises :class:`~densecell.train.TrainingError`.
    """
    device = torch.device(device)
    start = time.perf_counter()
    torch.manual_seed(seed)
    head = build_proxy_head(cell, cache.channels, len(cache.classes), cache.output_stride, settings.filters)
    head = head.to(device, memory_format=torch.channels_last if settings.channels_last else torch.contiguous_format)
    optimizer = proxy_optimizer(head, settings)
    schedule = poly_lambda(settings.iterations, settings.power)
    generator = torch.Generator().manual_seed(seed)
    count = len(cache.train_features)
    for iteration in range(1, settings.iterations + 1):
        index = torch.randint(count, (settings.batch_size,), generator=generator)
        loss = proxy_step(head, optimizer, *cache.train_batch(index), settings, settings.lr * schedule(iteration),
                          device)
        if not math.isfinite(loss):
            raise TrainingError(f"proxy loss is {loss} at iteration {iteration}")
        if report and settings.eval_every and iteration % settings.eval_every == 0 and iteration < settings.iterations:
            miou = proxy_miou(head, cache, settings, device)
            if report(iteration, miou):
                return ProxyResult(miou, iteration,
                                   time.perf_counter() - start, stopped_early=True)
    return ProxyResult(proxy_miou(head, cache, settings, device), settings.iterations, time.perf_counter() - start)
