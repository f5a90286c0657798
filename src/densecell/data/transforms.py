"""DeepLab's training augmentation and evaluation preprocessing, driven by a per-item ``random.Random``.

Both normalise with the backbone's mean and std after scaling pixels to [0, 1]. The normalisation is a required
argument everywhere: it comes from the model (:func:`densecell.models.backbones.resolve_normalization`), because a
default would silently pair, say, xception71's [-1, 1] weights with ImageNet's statistics. Training: random scale in
[0.5, 2.0] (step 0.25, as DeepLab's ``scale_factor_step_size``), padding up to the crop (image with the mean pixel,
i.e. 0 after normalisation; label with ignore), random crop, horizontal flip. Evaluation: normalisation only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core.pixels import IGNORE_INDEX, Normalization, normalize

__all__ = ["EvalTransform", "Normalization", "normalize", "TrainTransform"]

@dataclass(frozen=True)
class EvalTransform:
    normalization: Normalization

    def __call__(self, image: torch.Tensor, label: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
        return normalize(image, self.normalization), label


@dataclass(frozen=True)
class TrainTransform:
    crop_size: tuple[int, int] = (513, 513)
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_step: float = 0.25
    flip: bool = True
    normalization: Normalization = field(kw_only=True)

    def __call__(self, image: torch.Tensor, label: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
        image = normalize(image, self.normalization)
        steps = int(round((self.max_scale - self.min_scale) / self.scale_step)) if self.scale_step else 0
        scale = self.min_scale + self.scale_step * rng.randint(0, steps) if steps else \
            rng.uniform(self.min_scale, self.max_scale)
        height, width = label.shape
        size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=True)[0]
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
        pad_h, pad_w = max(self.crop_size[0] - size[0], 0), max(self.crop_size[1] - size[1], 0)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
            label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        top = rng.randint(0, label.shape[0] - self.crop_size[0])
        left = rng.randint(0, label.shape[1] - self.crop_size[1])
        image = image[:, top : top + self.crop_size[0], left : left + self.crop_size[1]]
        label = label[top : top + self.crop_size[0], left : left + self.crop_size[1]]
        if self.flip and rng.random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image.contiguous(), label.contiguous()
