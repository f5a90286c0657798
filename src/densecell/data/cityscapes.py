"""Cityscapes in its official layout, with the 19 train ids of ``cityscapesscripts``' label table (kept here as
data: ``cityscapes_labels.json``, checked against ``cityscapesscripts`` by the tests).

::

    ROOT/leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    ROOT/gtCoarse/{train,val,train_extra}/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png   (optional)

A split may join several with ``+``; ``trainval`` is ``train+val``. ``train_extra`` (the 19,998 extra images) has only
coarse labels, so it always reads ``gtCoarse``: ``trainval+train_extra`` is the fine train and val images with the
coarse extra ones, the data of the paper's Cityscapes test model (the model zoo's "trainval_fine and coarse").
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .base import IGNORE_INDEX, DataError, Sample, SegmentationDataset, Transform, list_images

__all__ = [
    "ALIASES", "Cityscapes", "CityscapesOptions", "cityscapes_labels", "cityscapes_samples", "COARSE_ONLY", "Label",
    "label_id_to_train_id", "split_parts", "SPLITS", "train_classes", "train_id_to_label_id"
]

SPLITS = ("train", "val", "test", "train_extra")
ALIASES = {"trainval": ("train", "val")}
COARSE_ONLY = ("train_extra",)


class Label(NamedTuple):
    """One row of the Cityscapes label table: the name, the label id in the ``*_labelIds.png`` files, the train id
    (255: not evaluated) and the colour of the official palette."""

    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


@cache
def cityscapes_labels() -> tuple[Label, ...]:
    """``cityscapesscripts.helpers.labels.labels`` (its 35 rows), as data in the package: the core reads Cityscapes
    without cityscapesscripts and what it brings (matplotlib, requests, pyquaternion ...)."""
    rows = json.loads(resources.files(__package__).joinpath("cityscapes_labels.json").read_text(encoding="utf-8"))
    return tuple(Label(row["name"], row["id"], row["trainId"], tuple(row["color"])) for row in rows)


@cache
def train_classes() -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Names and colours of the 19 evaluated classes, in train-id order."""
    evaluated = sorted((label for label in cityscapes_labels() if 0 <= label.train_id < IGNORE_INDEX),
                       key=lambda label: label.train_id)
    return tuple(label.name for label in evaluated), tuple(tuple(label.color) for label in evaluated)


@cache
def label_id_to_train_id() -> np.ndarray:
    """labelId -> trainId lookup (255 = ignore, -1 = not a Cityscapes labelId)."""
    lut = np.full(256, -1, dtype=np.int16)
    for label in cityscapes_labels():
        if 0 <= label.id < 256:
            lut[label.id] = label.train_id if 0 <= label.train_id < IGNORE_INDEX else IGNORE_INDEX
    return lut


@cache
def train_id_to_label_id() -> np.ndarray:
    """trainId -> labelId, for writing predictions the benchmark server accepts (ignore -> 0, 'unlabeled')."""
    lut = np.zeros(256, dtype=np.uint8)
    for label in cityscapes_labels():
        if 0 <= label.train_id < IGNORE_INDEX and label.id >= 0:
            lut[label.train_id] = label.id
    return lut


def split_parts(root: Path, split: str) -> list[str]:
    """``trainval+train_extra`` -> ``["train", "val", "train_extra"]``."""
    parts = [part for name in split.split("+") for part in ALIASES.get(name.strip(), (name.strip(),))]
    unknown = [part for part in parts if part not in SPLITS]
    if unknown:
        raise DataError(f"{root}: unknown Cityscapes split {unknown[0]!r} (one of {', '.join(SPLITS)}, trainval; "
                        f"joined with +)")
    return parts


def cityscapes_samples(root: Path, split: str, annotation: str = "gtFine") -> list[Sample]:
    """The samples of a split (or of several joined with ``+``)."""
    return [sample for part in split_parts(root, split)
            for sample in _split_samples(root, part, "gtCoarse" if part in COARSE_ONLY else annotation)]


def _split_samples(root: Path, split: str, annotation: str) -> list[Sample]:
    """Pairs of ``*_leftImg8bit.png`` and ``*_{annotation}_labelIds.png``; test images need no label."""
    images = list_images(root / "leftImg8bit" / split, "*_leftImg8bit.png")
    samples = []
    for image in images:
        city = image.parent.name
        stem = image.name.removesuffix("_leftImg8bit.png")
        label = root / annotation / split / city / f"{stem}_{annotation}_labelIds.png"
        if not label.is_file():
            if split == "test":
                label = None
            else:
                raise DataError(f"{image}: no label (expected {label})")
        samples.append(Sample(image, label))
    return samples


class CityscapesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    annotation: Literal["gtFine", "gtCoarse"] = Field("gtFine", description="Which annotations: fine or coarse.")


class Cityscapes(SegmentationDataset):
    """Cityscapes fine (or coarse, with ``annotation="gtCoarse"``) annotations mapped to the 19 train ids."""

    Options = CityscapesOptions

    @classmethod
    def submission_ids(cls) -> np.ndarray:
        """labelIds for the benchmark server (:func:`train_id_to_label_id`)."""
        return train_id_to_label_id()

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 annotation: str = "gtFine") -> None:
        classes, palette = train_classes()
        super().__init__(cityscapes_samples(Path(root), split, annotation), classes, palette, transform,
                         lut=label_id_to_train_id(), name=f"Cityscapes {split}")
