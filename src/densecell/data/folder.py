"""The user's own data: a folder of images, a folder of masks with the same stems, and a small YAML of classes.

::

    ROOT/classes.yaml        classes: [background, crack, ...]   ignore_index: 255   (optional)
                             palette: [[0, 0, 0], [255, 0, 0], ...]                 (optional)
    ROOT/<split>/images/<name>.{jpg,png,...}
    ROOT/<split>/masks/<name>.png       single-channel PNG, values 0..len(classes)-1 or ignore_index
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import one_line
from .base import IGNORE_INDEX, DataError, Sample, SegmentationDataset, Transform, identity_lut, list_images
from .voc import voc_palette

__all__ = ["folder_samples", "FolderDataset", "read_classes"]


def read_classes(path: Path) -> tuple[list[str], int, list[tuple[int, int, int]]]:
    if not path.is_file():
        raise DataError(f"{path}: classes file not found (a YAML with 'classes: [name, ...]')")
    try:
        meta = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({one_line(exc)})") from None
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{path}: field 'classes' must be a non-empty list of names")
    ignore = meta.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not len(classes) <= ignore <= 255:
        raise DataError(f"{path}: field 'ignore_index' must be an integer in {len(classes)}..255, got {ignore!r}")
    palette = meta.get("palette") or voc_palette(len(classes))
    if len(palette) != len(classes):
        raise DataError(f"{path}: field 'palette' has {len(palette)} colours for {len(classes)} classes")
    return classes, ignore, [tuple(c) for c in palette]


def folder_samples(root: Path, split: str) -> list[Sample]:
    images = list_images(root / split / "images")
    masks = root / split / "masks"
    samples = []
    for image in images:
        mask = masks / image.relative_to(root / split / "images").with_suffix(".png")
        if not mask.is_file():
            raise DataError(f"{image}: no mask (expected {mask})")
        samples.append(Sample(image, mask))
    return samples


class FolderDataset(SegmentationDataset):
    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        root = Path(root)
        classes, ignore, palette = read_classes(root / "classes.yaml")
        super().__init__(folder_samples(root, split), classes, palette, transform,
                         lut=identity_lut(len(classes), ignore),
                         name=f"{root.name} {split}")
