"""Datasets in their real on-disk layouts, DeepLab transforms, and a synthetic multi-scale dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..core.registry import DATASETS
from .base import IGNORE_INDEX, DataError, Sample, SegmentationDataset, Transform, item_seed
from .cityscapes import Cityscapes
from .folder import FolderDataset
from .person_part import PersonPart
from .transforms import EvalTransform, Normalization, TrainTransform
from .voc import PascalVOC


def build_dataset(name: str, root: str | Path, split: str, transform: Transform | None = None,
                  **options: Any) -> SegmentationDataset:
    """A dataset by name (:data:`densecell.core.registry.DATASETS`: ``cityscapes``, ``voc``, ``person_part``,
    ``folder``) from its root folder."""
    DATASETS.check(name, DataError)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found")
    kind = DATASETS[name]
    return kind(root, split, transform, **kind.check_options(options, name))


def check_data(data: DataConfig, splits: tuple[str | None, ...] = ()) -> None:
    """What a command needs of the data section, checked before any work starts: the dataset's name and its own
    options, the root folder, and (``splits``) that those splits can be opened (their files listed, a folder
    dataset's classes.yaml read)."""
    DATASETS.check(data.dataset, DataError)
    kind = DATASETS[data.dataset]
    options = kind.check_options(data.options, data.dataset)
    root = data.require_root()
    if not Path(root).is_dir():
        raise DataError(f"{root}: data root not found")
    for split in filter(None, splits):
        kind(root, split, None, **options)


def eval_dataset(data: DataConfig, split: str, normalization: Normalization,
                 root: str | Path | None = None) -> SegmentationDataset:
    """A split of the config's dataset, without augmentation (``root`` overrides the config's), normalised as the
    model expects (``model.normalization``)."""
    return build_dataset(data.dataset, root or data.require_root(), split, EvalTransform(normalization),
                         **data.options)


def build_datasets(data: DataConfig, normalization: Normalization) -> tuple[SegmentationDataset,
                                                                           SegmentationDataset | None]:
    """The training split with DeepLab's augmentation and the val split (if any) without, both normalised as the
    model expects (:func:`densecell.models.backbones.resolve_normalization`)."""
    transform = TrainTransform(data.crop_size, data.min_scale, data.max_scale, data.scale_step,
                               normalization=normalization)
    train_set = build_dataset(data.dataset, data.require_root(), data.train_split, transform,
                              **data.options)
    val_set = eval_dataset(data, data.val_split, normalization) if data.val_split else None
    return train_set, val_set


__all__ = [
    "DATASETS", "IGNORE_INDEX", "Cityscapes", "DataError", "EvalTransform", "FolderDataset",
    "Normalization", "PascalVOC", "PersonPart", "Sample", "SegmentationDataset", "TrainTransform", "build_dataset",
    "build_datasets", "check_data", "eval_dataset", "item_seed",
]
