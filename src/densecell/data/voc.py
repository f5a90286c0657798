"""PASCAL VOC 2012 and its SBD augmentation (the 10,582-image ``train_aug`` split).

::

    VOC_ROOT/JPEGImages/<id>.jpg
    VOC_ROOT/SegmentationClass/<id>.png            palette PNGs: 0..20, 255 = ignore (object borders)
    VOC_ROOT/ImageSets/Segmentation/{train,val,trainval}.txt
    SBD_ROOT/cls/<id>.mat                           MATLAB struct GTcls.Segmentation (0..20)
    SBD_ROOT/{train,val}.txt

``train_aug`` = (VOC train + SBD train + SBD val) - VOC val; a VOC label is used where one exists, the SBD one
otherwise (the usual ``SegmentationClassAug`` recipe).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from pydantic import BaseModel, ConfigDict, Field

from .base import DataError, Sample, SegmentationDataset, Transform, read_id_list, read_png_label, require_file

__all__ = ["PascalVOC", "read_sbd_label", "read_voc_or_sbd_label", "VOC_CLASSES", "voc_palette", "voc_samples",
           "VOCOptions"]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The VOC colour map: the bits of the class index spread over the high bits of R, G and B."""
    colours = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return colours


def read_sbd_label(path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/*.mat`` file as uint8 HxW."""
    try:
        mat = scipy.io.loadmat(str(path), struct_as_record=True)
        return np.asarray(mat["GTcls"]["Segmentation"][0, 0], dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (ValueError, KeyError, IndexError, TypeError, OSError, scipy.io.matlab.MatReadError) as exc:
        raise DataError(f"{path}: not an SBD cls .mat file with GTcls.Segmentation ({exc})") from None


def read_voc_or_sbd_label(path: Path) -> np.ndarray:
    return read_sbd_label(path) if path.suffix == ".mat" else read_png_label(path)


def voc_samples(root: Path, split: str, sbd_root: Path | None = None) -> list[Sample]:
    images = root / "JPEGImages"
    labels = root / "SegmentationClass"
    if split != "train_aug":
        ids = read_id_list(root / "ImageSets" / "Segmentation" / f"{split}.txt")
        return [Sample(require_file(images / f"{i}.jpg", "image", root), require_file(labels / f"{i}.png", "label",
                                                                                   images / f"{i}.jpg"))
                for i in ids]
    if sbd_root is None:
        raise DataError(f"{root}: the train_aug split needs the SBD folder (sbd_root)")
    val = set(read_id_list(root / "ImageSets" / "Segmentation" / "val.txt"))
    ids = read_id_list(root / "ImageSets" / "Segmentation" / "train.txt")
    ids += read_id_list(sbd_root / "train.txt") + read_id_list(sbd_root / "val.txt")
    samples = []
    for i in dict.fromkeys(ids):  # ordered, without duplicates
        if i in val:
            continue
        label = labels / f"{i}.png"
        if not label.is_file():
            label = require_file(sbd_root / "cls" / f"{i}.mat", "label (neither VOC png nor SBD mat)",
                                 images / f"{i}.jpg")
        samples.append(Sample(require_file(images / f"{i}.jpg", "image", root), label))
    return samples


class VOCOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sbd_root: Path | None = Field(None, description="The SBD folder (benchmark_RELEASE/dataset), for train_aug.")


class PascalVOC(SegmentationDataset):
    """VOC 2012 segmentation: ``train``, ``val``, ``trainval``, or ``train_aug`` with ``sbd_root``."""

    Options = VOCOptions

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 sbd_root: str | Path | None = None) -> None:
        samples = voc_samples(Path(root), split, Path(sbd_root) if sbd_root else None)
        super().__init__(samples, VOC_CLASSES, voc_palette(len(VOC_CLASSES)), transform,
                         read_label=read_voc_or_sbd_label, name=f"PASCAL VOC {split}")
