"""The common dataset: pairs of (image file, label file), a label decoder, checks that name the file at fault.

Every dataset of :mod:`densecell.data` is a :class:`SegmentationDataset` built from a list of :class:`Sample` s.
Items are addressed by ``index`` or by ``(index, seed)``: the seed drives that item's augmentation, so that the
batches of an iteration are a pure function of (run seed, iteration), whichever DataLoader worker loads them. That
is what makes training resume exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, ValidationError
from torch.utils.data import Dataset

from ..core.errors import DataError, one_line
from ..core.pixels import IGNORE_INDEX

__all__ = [
    "NoOptions",
    "identity_lut", "IMAGE_SUFFIXES", "item_seed", "LabelReader", "list_images", "opened", "read_id_list",
    "read_image", "read_png_label", "require_file", "Sample", "SegmentationDataset", "Transform"
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def item_seed(seed: int, index: int, views: int = 1, view: int = 0) -> int:
    """The augmentation seed of view ``view`` of image ``index`` in a run seeded ``seed``: the feature cache and its
    references compute each crop from it."""
    return (seed << 32) + index * views + view


@dataclass(frozen=True)
class Sample:
    """One image and its label file (``None`` for unlabelled images, e.g. the Cityscapes test split)."""

    image: Path
    label: Path | None


Transform = Callable[[torch.Tensor, torch.Tensor, random.Random], tuple[torch.Tensor, torch.Tensor]]
LabelReader = Callable[[Path], np.ndarray]


@contextmanager
def opened(path: Path, what: str = "image") -> Iterator[Image.Image]:
    """``PIL.Image.open``, with missing, corrupt, truncated and non-image files as one
    :class:`~densecell.core.errors.DataError` that names the file."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found") from None
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or unreadable {what} ({one_line(exc)})") from None


EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr")
"""Modes PIL converts to 8-bit RGB without loss of range (palette images through their palette)."""
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Single-channel integer modes: a 16-bit PNG opens as one of them (``I`` in older Pillow releases)."""


def read_image(path: Path) -> np.ndarray:
    """An RGB image as uint8 HxWx3, decoded by its mode: 8-bit modes through PIL, 16-bit grayscale scaled to 8
    bits (65535 -> 255: the same picture saved at 8 bits gives the same pixels; PIL's own conversion would
    saturate it); other modes (floating point, 32-bit values) are refused with the mode named. Corrupt, truncated
    and non-image files raise :class:`~densecell.core.errors.DataError`."""
    with opened(path) as image:
        image.load()
        if image.mode in EIGHT_BIT_MODES:
            return np.array(image.convert("RGB"))
        gray = _sixteen_bit(image, path, "image")
        return np.repeat(np.rint(gray / 257.0).astype(np.uint8)[..., None], 3, axis=2)


def _sixteen_bit(image: Image.Image, path: Path, what: str) -> np.ndarray:
    """The values of a single-channel 16-bit image, or a one-line error naming an unsupported mode."""
    values = np.array(image) if image.mode in SIXTEEN_BIT_MODES else None
    if values is None or values.min(initial=0) < 0 or values.max(initial=0) > 65535:
        raise DataError(f"{path}: {what} mode {image.mode} is not supported (8-bit RGB, RGBA, grayscale or "
                        f"palette, or 16-bit grayscale)")
    return values.astype(np.int64)


def read_png_label(path: Path) -> np.ndarray:
    """A single-channel label PNG (grayscale or palette indices; 16-bit grayscale whose values are all below 256)
    as uint8 HxW."""
    with opened(path, "label") as image:
        image.load()
        if image.mode in ("L", "P"):
            return np.array(image)
        if image.mode in SIXTEEN_BIT_MODES:
            values = _sixteen_bit(image, path, "label")
            if values.max(initial=0) <= 255:
                return values.astype(np.uint8)
            raise DataError(f"{path}: 16-bit label holds the value {int(values.max())}; labels are class indices "
                            f"0..255")
        raise DataError(f"{path}: label must be a single-channel (L or P mode) PNG, got mode {image.mode}")


def identity_lut(num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A label lookup table that keeps 0..num_classes-1, maps ``ignore_index`` to 255 and marks the rest invalid."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[ignore_index] = IGNORE_INDEX
    return lut


class NoOptions(BaseModel):
    """A dataset that takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentationDataset(Dataset):
    """Images and labels read from files; ``lut`` maps stored label values to train ids (-1 = not allowed).

    A dataset's own options (a recipe's ``data.options``) are the fields of its :attr:`Options`, a pydantic model
    that checks them: :meth:`check_options`."""

    Options: type[BaseModel] = NoOptions

    @classmethod
    def check_options(cls, options: dict[str, Any], name: str) -> dict[str, Any]:
        """``options`` as the class's keyword arguments, or a one-line error naming the option at fault."""
        try:
            return cls.Options(**options).model_dump(exclude_none=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            reason = "unknown option" if first["type"] == "extra_forbidden" else first["msg"]
            known = ", ".join(cls.Options.model_fields) or "none"
            raise DataError(f"data.options.{field}: {reason} for dataset {name} (its options: {known})") from None

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        palette: Sequence[tuple[int, int, int]],
        transform: Transform | None = None,
        lut: np.ndarray | None = None,
        read_label: LabelReader = read_png_label,
        name: str = "dataset",
    ) -> None:
        if not samples:
            raise DataError(f"{name}: the split is empty (no images found)")
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.palette = tuple(palette)
        self.transform = transform
        self.lut = identity_lut(len(self.classes)) if lut is None else lut
        self.read_label = read_label
        self.name = name

    @classmethod
    def submission_ids(cls) -> np.ndarray | None:
        """A train id -> id table for prediction files a benchmark server accepts (Cityscapes' labelIds), or None
        for a dataset without one."""
        return None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw image (HxWx3 uint8) and its train-id label (HxW uint8, 255 = ignore), checked."""
        sample = self.samples[index]
        image = read_image(sample.image)
        if sample.label is None:
            return image, np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        stored = self.read_label(sample.label)
        if stored.shape != image.shape[:2]:
            raise DataError(
                f"{sample.label}: label is {stored.shape[1]}x{stored.shape[0]} but its image {sample.image.name} is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        label = self.lut[stored]
        if (label < 0).any():
            bad = sorted(set(np.unique(stored[label < 0]).tolist()))
            raise DataError(
                f"{sample.label}: label values {bad[:8]} are neither classes of {self.name} nor ignore "
                f"({IGNORE_INDEX})"
            )
        return image, label.astype(np.uint8)

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of an image, from its file's header (the pixels are not decoded)."""
        with opened(self.samples[index].image) as image:
            width, height = image.size
        return height, width

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, key)
        image, label = self.load(index)
        image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        label_t = torch.from_numpy(np.ascontiguousarray(label)).long()
        if self.transform is not None:
            image_t, label_t = self.transform(image_t, label_t, random.Random(seed))
        return image_t, label_t


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files under ``folder`` matching ``pattern`` (sorted); a missing folder is a
    :class:`~densecell.core.errors.DataError`."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p for p in folder.rglob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)


def read_id_list(path: Path) -> list[str]:
    """Image ids of a split file, one per line (the first token of each non-empty line)."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def require_file(path: Path, what: str, owner: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{owner}: no {what} (expected {path})")
    return path
