"""The user's own data: a folder of images, a folder of masks with the same stems, and a small YAML of classes.

::

    ROOT/classes.yaml        classes: [background, crack, ...]   ignore_index: 255   (optional)
                             palette: [[0, 0, 0], [255, 0, 0], ...]                 (optional)
    ROOT/<split>/images/<name>.{jpg,png,...}
    ROOT/<split>/masks/<name>.png       single-channel PNG, values 0..len(classes)-1 or ignore_index
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import one_line
from .base import IGNORE_INDEX, DataError, Sample, SegmentationDataset, Transform, identity_lut, list_images
from .voc import voc_palette

__all__ = ["ClassesFile", "folder_samples", "FolderDataset", "read_classes"]


Byte = Annotated[int, Field(ge=0, le=255, strict=True)]


class ClassesFile(BaseModel):
    """``classes.yaml``: the class names, the label value that is ignored, and a colour per class."""

    model_config = ConfigDict(extra="forbid")

    classes: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    ignore_index: Annotated[int, Field(strict=True)] = IGNORE_INDEX
    palette: list[tuple[Byte, Byte, Byte]] | None = None

    @model_validator(mode="after")
    def _check(self) -> ClassesFile:
        if not len(self.classes) <= self.ignore_index <= 255:
            raise ValueError(f"field 'ignore_index' must be an integer in {len(self.classes)}..255, got "
                             f"{self.ignore_index}")
        if self.palette is not None and len(self.palette) != len(self.classes):
            raise ValueError(f"field 'palette' has {len(self.palette)} colours for {len(self.classes)} classes")
        return self


def read_classes(path: Path) -> tuple[list[str], int, list[tuple[int, int, int]]]:
    """The classes, the ignored label value and the palette (VOC's colours where none is given) of a folder
    dataset, checked: one colour of 3 integers in 0..255 per class; one line naming the file and the field."""
    if not path.is_file():
        raise DataError(f"{path}: classes file not found (a YAML with 'classes: [name, ...]')")
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid YAML ({one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a mapping with 'classes: [name, ...]'")
    try:
        found = ClassesFile(**meta)
    except ValidationError as exc:
        raise DataError(f"{path}: {_classes_error(exc, meta)}") from None
    palette = found.palette or voc_palette(len(found.classes))
    return found.classes, found.ignore_index, [tuple(c) for c in palette]


def _classes_error(error: ValidationError, meta: dict) -> str:
    """The first fault of a classes file as one phrase that names the field and the value."""
    first = error.errors()[0]
    loc = first["loc"]
    if first["type"] == "extra_forbidden":
        return f"field {loc[0]!r}: unknown key (known: classes, ignore_index, palette)"
    if loc and loc[0] == "classes":
        return f"field 'classes' must be a non-empty list of names, got {meta.get('classes')!r}"
    if loc and loc[0] == "palette" and len(loc) > 1 and isinstance(meta.get("palette"), list):
        return f"field 'palette[{loc[1]}]': each colour is 3 integers in 0..255, got {meta['palette'][loc[1]]!r}"
    where = ".".join(str(part) for part in loc)
    reason = first["msg"].removeprefix("Value error, ")
    return f"field {where!r}: {reason} (got {first['input']!r})" if where else reason


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
