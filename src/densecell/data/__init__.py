"""Datasets in their real on-disk layouts, DeepLab transforms, and a synthetic multi-scale dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import IGNORE_INDEX, DataError, Sample, SegmentationDataset, Transform
from .cityscapes import Cityscapes
from .folder import FolderDataset
from .person_part import PersonPart
from .transforms import EvalTransform, TrainTransform
from .voc import PascalVOC

DATASETS: dict[str, type[SegmentationDataset]] = {
    "cityscapes": Cityscapes,
    "voc": PascalVOC,
    "person_part": PersonPart,
    "folder": FolderDataset,
}


def build_dataset(name: str, root: str | Path, split: str, transform: Transform | None = None,
                  **options: Any) -> SegmentationDataset:
    """A dataset by name (``cityscapes``, ``voc``, ``person_part``, ``folder``) from its root folder."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} (one of {', '.join(DATASETS)})")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found")
    return DATASETS[name](root, split, transform, **options)


__all__ = [
    "DATASETS", "IGNORE_INDEX", "Cityscapes", "DataError", "EvalTransform", "FolderDataset", "PascalVOC",
    "PersonPart", "Sample", "SegmentationDataset", "TrainTransform", "build_dataset",
]
