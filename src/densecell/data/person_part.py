"""PASCAL-Person-Part (Chen et al. 2014 part annotations of VOC 2010 person images), 7 classes.

The layout supported (the one most human-parsing code bases distribute)::

    ROOT/JPEGImages/<id>.jpg
    ROOT/SegmentationPart/<id>.png     single-channel PNGs: 0 background, 1 head, 2 torso, 3 upper arms,
                                       4 lower arms, 5 upper legs, 6 lower legs; 255 = ignore
    ROOT/list/{train,val}_id.txt       one image id per line (1,716 train / 1,817 val)
"""

from __future__ import annotations

from pathlib import Path

from .base import Sample, SegmentationDataset, Transform, read_id_list, require_file
from .voc import voc_palette

__all__ = ["PERSON_PART_CLASSES", "person_part_samples", "PersonPart"]

PERSON_PART_CLASSES = ("background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs")


def person_part_samples(root: Path, split: str) -> list[Sample]:
    ids = read_id_list(root / "list" / f"{split}_id.txt")
    samples = []
    for i in ids:
        image = require_file(root / "JPEGImages" / f"{i}.jpg", "image", root / "list" / f"{split}_id.txt")
        samples.append(Sample(image, require_file(root / "SegmentationPart" / f"{i}.png", "label", image)))
    return samples


class PersonPart(SegmentationDataset):
    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        super().__init__(person_part_samples(Path(root), split), PERSON_PART_CLASSES,
                         voc_palette(len(PERSON_PART_CLASSES)), transform, name=f"PASCAL-Person-Part {split}")
