"""The proxy task's feature cache (paper Sec. 3.2): the backbone runs once over the data, its features are kept.

The cache holds the last backbone feature map of ``views`` fixed augmented crops of every training image (each crop a
pure function of the image index, the view and the seed, :func:`~densecell.data.base.item_seed`) and of every validation
image (padded to one size, the largest val image's unless ``val_size`` says, as TF pads to its eval crop). Features
are stored in half precision with their labels in ``.npy`` shards, each written atomically, so that a crashed caching
job resumes at the first missing shard and ends with identical files; the shards are then joined into one
memory-mappable array per split and kind.

Layout: ``spec.json`` (the settings, checked on every rerun, with the :class:`CacheSource`),
``{train,val}.{features,labels}.npy``, ``complete``; beside them, measurements kept per cache (``autotune.json``,
``baselines.json``) through :func:`remembered`. Opening a cache checks every array once (:func:`check_cache`), so a
damaged file is named before any work starts.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from ..core.errors import CacheDamaged, CacheError, CacheMissing, one_line
from ..core.files import atomic_path, make_dirs, save_array, write_text
from ..core.hold import hold
from ..core.progress import Progress, report
from ..data import IGNORE_INDEX, SegmentationDataset, item_seed

__all__ = [
    "build_cache", "cache_source", "cache_spec", "CACHE_VERSION", "CacheSource", "CacheSpec", "check_cache",
    "FeatureCache", "FrozenBackboneFeatures", "KINDS", "largest_size", "pad_to", "remembered", "SPLITS"
]

logger = logging.getLogger(__name__)
CACHE_VERSION = 1
SPLITS = ("train", "val")
KINDS = ("features", "labels")


class CacheSource(BaseModel):
    """What the cached features were computed with: the backbone, the weights it loaded (as
    :func:`~densecell.models.backbones.resolve_weights` writes them: a timm tag, a file, or None for random weights)
    and the input normalisation. Re-ranking starts from these weights, so they are stored resolved, never as
    ``true``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    backbone: str
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolved(cls, values: Any) -> Any:
        """Caches written before 0.3 stored ``pretrained: true`` as the text "True": resolve it to timm's tag."""
        if isinstance(values, dict) and isinstance(values.get("weights"), str) and "backbone" in values:
            flag = values["weights"].strip().lower()
            if flag in ("true", "false", "none"):
                from ..models.backbones import (
                    resolve_weights,  # only for these old caches: timm takes seconds to import
                )

                values = values | {"weights": resolve_weights(values["backbone"], flag == "true")}
        return values


class CacheSpec(BaseModel):
    """``spec.json``: the settings a cache was built with (a rerun with other settings on its folder is refused), the
    item counts and sizes its arrays must have, and the :class:`CacheSource`."""

    model_config = ConfigDict(frozen=True)

    version: int = CACHE_VERSION
    output_stride: int
    crop_size: tuple[int, int]
    val_size: tuple[int, int]
    views: int
    seed: int
    shard_size: int
    classes: tuple[str, ...]
    train_images: int
    val_images: int
    source: CacheSource | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_source(cls, values: Any) -> Any:
        """Caches written before their source was recorded have ``source: {}``."""
        return values | {"source": None} if isinstance(values, dict) and values.get("source") == {} else values

    def count(self, split: str) -> int:
        """The items of a split: ``views`` crops of each training image, each val image once."""
        return self.train_images * self.views if split == "train" else self.val_images

    def size(self, split: str) -> tuple[int, int]:
        """The label size of a split's items: the crop, or the padded val size."""
        return self.crop_size if split == "train" else self.val_size


def pad_to(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a normalised image with 0 (the mean pixel) and its label with ignore, bottom and right."""
    pad_h, pad_w = size[0] - label.shape[0], size[1] - label.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise CacheError(f"an image of {label.shape[0]}x{label.shape[1]} is larger than the cache's val size "
                         f"{size[0]}x{size[1]}")
    return F.pad(image, (0, pad_w, 0, pad_h)), F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)


@dataclass(frozen=True)
class _Job:
    """What one cache build reads and how."""

    backbone: nn.Module
    datasets: dict[str, SegmentationDataset]
    spec: CacheSpec
    device: torch.device
    batch_size: int

    def items(self, split: str) -> list[tuple[int, int]]:
        views = self.spec.views if split == "train" else 1
        return [(index, view) for index in range(len(self.datasets[split])) for view in range(views)]

    def load(self, split: str, index: int, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        dataset = self.datasets[split]
        if split == "train":
            return dataset[(index, item_seed(self.spec.seed, index, self.spec.views, view))]
        return pad_to(*dataset[index], self.spec.val_size)

    def features(self, split: str, shard: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Backbone features (fp16) and labels (uint8) of one shard's items, a batch at a time."""
        features, labels = [], []
        for start in range(0, len(shard), self.batch_size):
            pairs = [self.load(split, index, view) for index, view in shard[start:start + self.batch_size]]
            images = torch.stack([image for image, _ in pairs]).to(self.device)
            features.append(self.backbone(images)[-1].half().cpu().numpy())
            labels.append(torch.stack([label.to(torch.uint8) for _, label in pairs]).numpy())
        return np.concatenate(features), np.concatenate(labels)


def cache_spec(train_set: SegmentationDataset, val_set: SegmentationDataset, *, output_stride: int,
               crop_size: tuple[int, int], val_size: tuple[int, int] | None, views: int, seed: int, shard_size: int,
               source: CacheSource | None) -> CacheSpec:
    """The spec of a cache of these datasets with these settings."""
    return CacheSpec(output_stride=output_stride, crop_size=crop_size, val_size=val_size or largest_size(val_set),
                     views=views, seed=seed, shard_size=shard_size, classes=train_set.classes,
                     train_images=len(train_set), val_images=len(val_set), source=source)


def _check_spec(out_dir: Path, spec: CacheSpec) -> None:
    path = out_dir / "spec.json"
    if path.exists() and _read_spec(out_dir) != spec:
        raise CacheError(f"{out_dir}: holds a cache built with other settings; remove it or choose another folder")
    make_dirs(out_dir)
    write_text(path, spec.model_dump_json(indent=1))


def _read_spec(folder: Path) -> CacheSpec:
    path = folder / "spec.json"
    try:
        return CacheSpec.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise CacheDamaged(folder, path, f"unreadable: {one_line(exc, 120)}") from None


def largest_size(dataset: SegmentationDataset) -> tuple[int, int]:
    """The largest height and width among a dataset's images (read from their headers): the size every val image is
    padded to by default, as TF pads to its eval crop. VOC's and Person-Part's images vary in size."""
    sizes = [dataset.image_size(index) for index in range(len(dataset))]
    size = (max(h for h, _ in sizes), max(w for _, w in sizes))
    if len(set(sizes)) == 1:
        logger.info("val features cached at %dx%d, the size of every val image", *size)
    else:
        logger.info("%d val images of %d sizes: their features are cached padded to %dx%d, the largest height and "
                    "width (cache.val_size sets another size)", len(sizes), len(set(sizes)), *size)
    return size


def _write_split(job: _Job, out_dir: Path, split: str, progress: Progress | None) -> None:
    """The shards of one split; the ones a crashed run finished are kept."""
    folder = make_dirs(out_dir / split)
    items = job.items(split)
    size = job.spec.shard_size
    done = 0
    for number, start in enumerate(range(0, len(items), size)):
        shard = items[start:start + size]
        paths = {kind: folder / f"shard-{number:05d}.{kind}.npy" for kind in KINDS}
        if not all(_whole(path) for path in paths.values()):
            features, labels = job.features(split, shard)
            save_array(labels, paths["labels"])
            save_array(features, paths["features"])
            hold("shard")
        done += len(shard)
        report(progress, f"cache {split}", done, len(items))


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
    progress: Progress | None = None,
    source: CacheSource | None = None,
) -> Path:
    """Cache the last backbone feature map of ``views`` fixed crops of every training image and of every val image.

    ``train_set`` must carry a train transform (it is called with fixed seeds) and ``val_set`` an eval transform.
    Re-running with the same arguments resumes; different arguments on an existing folder are an error."""
    out_dir = Path(out_dir)
    spec = cache_spec(train_set, val_set, output_stride=output_stride, crop_size=crop_size, val_size=val_size,
                      views=views, seed=seed, shard_size=shard_size, source=source)
    _check_spec(out_dir, spec)
    if (out_dir / "complete").exists():
        check_cache(out_dir)
        return out_dir
    device = torch.device(device)
    logger.info("caching the features of %d training crops and %d val images in %s", len(train_set) * views,
                len(val_set), out_dir)
    job = _Job(backbone.to(device).eval(), {"train": train_set, "val": val_set}, spec, device, batch_size)
    for split in SPLITS:
        _write_split(job, out_dir, split, progress)
    for split in SPLITS:
        for kind in KINDS:
            _consolidate(sorted((out_dir / split).glob(f"shard-*.{kind}.npy")), out_dir / f"{split}.{kind}.npy")
    write_text(out_dir / "complete", "ok")
    return out_dir


def _array_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape, dtype and data offset that a ``.npy`` file's header declares."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
        return tuple(shape), dtype, handle.tell()


def _array_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole ``.npy`` file (missing, an unreadable header, fewer bytes than its header
    declares), or None."""
    if not path.is_file():
        return "missing"
    try:
        shape, dtype, offset = _array_header(path)
    except (OSError, ValueError, EOFError) as exc:
        return f"unreadable header: {one_line(exc)}"
    expected, actual = offset + int(np.prod(shape)) * dtype.itemsize, os.path.getsize(path)
    return None if actual == expected else f"{actual:,} bytes where its header declares {expected:,}"


def _whole(path: Path) -> bool:
    """A shard that a crash or a disk fault left unreadable is made again, with a warning."""
    problem = _array_problem(path)
    if problem not in (None, "missing"):
        logger.warning("%s: damaged cache shard (%s): computing it again", path, problem)
    return problem is None


def check_cache(folder: str | Path) -> CacheSpec:
    """The spec of the complete cache in ``folder``, after checking it whole, in one place: a readable spec, and
    four arrays whose headers read, whose sizes are what the headers declare, and whose item counts and crop sizes
    are the spec's. Raises :class:`~densecell.core.errors.CacheMissing` or
    :class:`~densecell.core.errors.CacheDamaged`, which names the file."""
    folder = Path(folder)
    if not (folder / "complete").exists():
        raise CacheMissing(folder)
    spec = _read_spec(folder)
    for split in SPLITS:
        for kind, dtype in zip(KINDS, (np.float16, np.uint8)):
            path = folder / f"{split}.{kind}.npy"
            if (problem := _array_problem(path)) is not None:
                raise CacheDamaged(folder, path, problem)
            shape, found, _ = _array_header(path)
            wanted = (spec.count(split),) + (spec.size(split) if kind == "labels" else shape[1:])
            if found != dtype or shape != wanted:
                raise CacheDamaged(folder, path, f"{found} {list(shape)} where the spec says {np.dtype(dtype)} "
                                                 f"{list(wanted)}")
    return spec


def cache_source(folder: str | Path) -> CacheSource | None:
    """What the complete cache in ``folder`` was computed with (:class:`CacheSource`), without loading its arrays."""
    return check_cache(folder).source


def remembered(folder: Path | None, file: str, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``key`` for a cache: kept in the JSON object ``folder/file`` and computed under a file
    lock, so that every worker sharing the cache gets the same value (the proxy's measured precision, the lone 1x1
    baseline). A damaged file is computed anew; a folder that cannot be written (another user's cache) only
    computes."""
    if folder is None:
        return compute()
    path = folder / file
    try:
        lock = filelock.FileLock(folder / f".{file}.lock")
        lock.acquire()
    except OSError as exc:
        logger.warning("%s: cannot lock it (%s): computing without keeping the result", path, exc)
        return compute()
    try:
        try:
            stored = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as exc:
            logger.warning("%s: unreadable (%s): computing its values again", path, one_line(exc))
            stored = {}
        if key not in stored:
            stored[key] = compute()
            write_text(path, json.dumps(stored, indent=1))
        return stored[key]
    finally:
        lock.release()


def _consolidate(shards: list[Path], target: Path) -> None:
    """Join shards into one ``.npy`` (memory-mappable as a whole), then drop them; safe to repeat after a crash."""
    if target.exists():
        return
    heads = [np.load(path, mmap_mode="r") for path in shards]
    with atomic_path(target) as temporary:
        joined = np.lib.format.open_memmap(temporary, mode="w+", dtype=heads[0].dtype,
                                           shape=(sum(len(h) for h in heads), *heads[0].shape[1:]))
        offset = 0
        for head in heads:
            joined[offset:offset + len(head)] = head
            offset += len(head)
        joined.flush()
        del joined, heads
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
    spec: CacheSpec
    folder: Path | None = None

    @property
    def channels(self) -> int:
        return self.train_features.shape[1]

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.train_features.shape[-2:])  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        """The crop whose features these are (DeepLab: ``feature = (crop - 1) // stride + 1``)."""
        return tuple((s - 1) * self.output_stride + 1 for s in self.feature_size)  # type: ignore[return-value]

    def train_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of the training items ``index``."""
        return self.train_features[index], self.train_labels[index]

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> FeatureCache:
        """Memory-map the arrays (on the CPU every process that maps them shares the pages) or copy them to
        ``device`` once."""
        folder = Path(folder)
        spec = check_cache(folder)
        device = torch.device(device)

        def read(name: str) -> torch.Tensor:
            array = np.load(folder / f"{name}.npy", mmap_mode="r")
            with warnings.catch_warnings():  # read-only map: torch warns that it cannot write to it; we never do
                warnings.simplefilter("ignore", UserWarning)
                tensor = torch.from_numpy(array)
            return tensor if device.type == "cpu" else tensor.to(device)

        return cls(read("train.features"), read("train.labels"), read("val.features"), read("val.labels"),
                   spec.classes, spec.output_stride, spec, folder)


class FrozenBackboneFeatures(FeatureCache):
    """The cache's training items with features computed afresh by the frozen backbone at every step: the reference
    that the cached proxy must match (same items, same augmentation, no fp16 storage), and the slower way it
    replaces."""

    def __init__(self, cache: FeatureCache, backbone: nn.Module, train_set: SegmentationDataset,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(cache.train_features, cache.train_labels, cache.val_features, cache.val_labels,
                         cache.classes, cache.output_stride, cache.spec, cache.folder)
        self.backbone = backbone.to(device).eval()
        self.train_set = train_set
        self.device = torch.device(device)

    def images(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training items' crops, read and augmented from the dataset as the cache saw them, with labels."""
        views, seed = self.spec.views, self.spec.seed
        images, labels = [], []
        for item in index.tolist():
            image_index, view = divmod(item, views)
            image, label = self.train_set[(image_index, item_seed(seed, image_index, views, view))]
            images.append(image)
            labels.append(label.to(torch.uint8))
        return torch.stack(images), torch.stack(labels)

    @torch.inference_mode()
    def train_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.images(index)
        features = self.backbone(images.to(self.device))[-1]
        return features.clone(), labels
