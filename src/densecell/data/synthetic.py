"""A small synthetic dataset, written in the Cityscapes layout, whose classes need multi-scale context.

Every object is painted with the *same* texture, and the object's class is given by its size and its aspect ratio
alone. A small square, a large square, a tall bar and a wide bar look the same through a small window, so a 1x1 head
cannot tell them apart. A head with context at the right scale can, and rates that differ per axis (r_h x r_w) help
with the bars. The background has its own texture. Labels are Cityscapes labelIds, so the real Cityscapes loader,
label table and metrics run on it unchanged:

======================  ===========  =======================  ========
synthetic class         labelId      Cityscapes name (train)  trainId
======================  ===========  =======================  ========
background              7            road                     0
small square (6-10 px)  8            sidewalk                 1
large square (26-40)    11           building                 2
tall bar                12           wall                     3
wide bar                13           fence                    4
image border (2 px)     0            unlabeled                ignore
======================  ===========  =======================  ========
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import DataError

__all__ = ["CITY", "draw_image", "LABEL_IDS", "SYNTHETIC_CLASSES", "write_synthetic_cityscapes"]

SYNTHETIC_CLASSES = ("background", "small square", "large square", "tall bar", "wide bar")
LABEL_IDS = (7, 8, 11, 12, 13)
CITY = "synthcity"


def _object_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One shared texture for every object: a fine diagonal checker in two colours, with a little noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    checker = ((yy + xx) // 2 % 2).astype(np.float32)
    dark, light = np.array([200.0, 60.0, 40.0]), np.array([240.0, 200.0, 60.0])
    base = dark * checker[..., None] + light * (1 - checker[..., None])
    return base + rng.normal(0, 12, (height, width, 3))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth, low-contrast blue-grey noise (upsampled coarse noise)."""
    coarse = rng.normal(0, 1, (height // 8 + 2, width // 8 + 2, 3))
    smooth = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    return np.array([90.0, 110.0, 140.0]) + 25 * smooth


def draw_image(rng: np.random.Generator, height: int, width: int, objects: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (HxWx3 uint8) and its labelId map (HxW uint8)."""
    image = _background(rng, height, width)
    label = np.full((height, width), LABEL_IDS[0], dtype=np.uint8)
    texture = _object_texture(rng, height, width)
    for _ in range(objects):
        kind = int(rng.integers(1, len(LABEL_IDS)))
        if kind == 1:
            h = w = int(rng.integers(6, 11))
        elif kind == 2:
            h = w = int(rng.integers(26, 41))
        elif kind == 3:
            h, w = int(rng.integers(30, 49)), int(rng.integers(6, 10))
        else:
            h, w = int(rng.integers(6, 10)), int(rng.integers(30, 49))
        h, w = min(h, height - 4), min(w, width - 4)
        top = int(rng.integers(2, height - h - 1))
        left = int(rng.integers(2, width - w - 1))
        image[top : top + h, left : left + w] = texture[top : top + h, left : left + w]
        label[top : top + h, left : left + w] = LABEL_IDS[kind]
    label[:2, :] = label[-2:, :] = label[:, :2] = label[:, -2:] = 0
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_synthetic_cityscapes(
    root: str | Path,
    train: int = 48,
    val: int = 16,
    size: tuple[int, int] = (128, 256),
    objects: int = 6,
    seed: int = 0,
) -> Path:
    """Write ``train`` + ``val`` images of ``size`` (H, W) under ``root`` in the Cityscapes layout; returns root.

    Deterministic in ``seed``; existing files are overwritten."""
    for name, value in (("train", train), ("val", val), ("objects", objects)):
        if value < 0:
            raise DataError(f"synthetic data: {name} = {value}; a count, at least 0")
    if min(size) < 1:
        raise DataError(f"synthetic data: size {size}; a height and width of at least 1")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        images = root / "leftImg8bit" / split / CITY
        labels = root / "gtFine" / split / CITY
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, label = draw_image(rng, size[0], size[1], objects)
            stem = f"{CITY}_{index:06d}_000019"
            Image.fromarray(image).save(images / f"{stem}_leftImg8bit.png")
            Image.fromarray(label).save(labels / f"{stem}_gtFine_labelIds.png")
    return root
