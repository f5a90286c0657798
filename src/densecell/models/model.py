"""SegmentationModel = timm backbone + context head (DPC or ASPP) + optional DeepLabv3+ decoder + classifier.

The backbone is any timm model with ``features_only`` and ``output_stride`` (:mod:`densecell.models.backbones`); the
head reads the last feature map and the decoder the stride-4 one. The model's config is the keyword arguments of
:func:`build_model`, kept on ``model.config`` so that a checkpoint or a saved folder can carry it and be rebuilt from
it (:mod:`densecell.models.hub`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cell.heads import ConvBNReLU, SeparableConv
from ..config import ModelConfig
from ..core.errors import ConfigError, ModelError
from ..core.registry import HEADS
from ..core.resize import resize_bilinear
from .backbones import create_backbone, resolve_normalization
from .hub import HubMixin

__all__ = ["build_model", "Decoder", "from_pretrained", "SegmentationModel"]


class Decoder(nn.Module):
    """DeepLabv3+ decoder: stride-4 features reduced to 48 channels, concatenated with the upsampled head output,
    refined by two separable 3x3 convolutions."""

    def __init__(self, head_channels: int, low_level_channels: int, low_level_reduced: int = 48,
                 filters: int = 256, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(low_level_channels, low_level_reduced, 1, bn_momentum=bn_momentum)
        self.refine = nn.Sequential(
            SeparableConv(head_channels + low_level_reduced, filters, bn_momentum=bn_momentum),
            SeparableConv(filters, filters, bn_momentum=bn_momentum),
        )
        self.out_channels = filters

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = resize_bilinear(high, low.shape[-2:])
        return self.refine(torch.cat([high, self.reduce(low)], dim=1))


class SegmentationModel(nn.Module, HubMixin):
    """Backbone -> head -> (decoder) -> 1x1 classifier -> bilinear upsampling to the input size.

    Built from a :class:`~densecell.config.settings.ModelConfig` and/or its fields (:func:`build_model`); ``config`` is
    the fields without ``pretrained`` and with the normalisation resolved, so that ``build_model(**model.config)``
    builds the same architecture. ``mean`` and ``std`` are the input normalisation the backbone expects: images are
    scaled to [0, 1], then normalised with them, in training, evaluation, prediction, the feature cache and the
    exported model.

    Shared the Hugging Face way (:class:`densecell.models.hub.HubMixin`): ``save_pretrained(folder)``,
    ``SegmentationModel.from_pretrained(folder or "user/repo")`` (or :func:`densecell.models.model.from_pretrained`),
    ``push_to_hub("user/repo")``."""

    def __init__(self, settings: ModelConfig | None = None, /, **fields: Any) -> None:
        super().__init__()
        try:
            args = ModelConfig(**((settings.model_dump() if settings else {}) | fields))
        except ConfigError as exc:
            raise ModelError(str(exc).removeprefix("ModelConfig: ")) from None
        mean, std = resolve_normalization(args.backbone, args.pretrained, args.mean, args.std)
        self.backbone = create_backbone(args.backbone, args.output_stride, args.pretrained, args.feature_stages)
        channels = self.backbone.feature_info.channels()
        reductions = self.backbone.feature_info.reduction()
        self.head = HEADS[args.head](args.cell, channels[-1], filters=args.filters, dropout=args.dropout,
                                     output_stride=args.output_stride, pooling=args.pooling,
                                     crop_size=args.crop_size, bn_momentum=args.bn_momentum)
        self.low_level_index = reductions.index(4) if 4 in reductions else 0
        self.decoder = Decoder(args.filters, channels[self.low_level_index], filters=args.filters,
                               bn_momentum=args.bn_momentum) if args.decoder else None
        self.classifier = nn.Conv2d(args.filters, args.num_classes, 1)
        self.config = args.model_dump(mode="json", exclude={"pretrained"}) | {"mean": list(mean), "std": list(std)}
        if args.head == "dpc":  # the cell itself, not the name or path it was given by: the config travels
            self.config["cell"] = self.head.cell.to_json()

    @property
    def output_stride(self) -> int:
        return int(self.config["output_stride"])

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.config["mean"]), tuple(self.config["std"])

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names (``class_0`` ... when the model was built without them)."""
        names = self.config.get("classes")
        return tuple(names) if names else tuple(f"class_{i}" for i in range(self.config["num_classes"]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        x = self.head(features[-1])
        if self.decoder is not None:
            x = self.decoder(x, features[self.low_level_index])
        return resize_bilinear(self.classifier(x), images.shape[-2:])


def build_model(config: ModelConfig | None = None, /, **fields: Any) -> SegmentationModel:
    """Build a DeepLab-style model from a :class:`~densecell.config.settings.ModelConfig` and/or its fields as keywords
    (which win): ``backbone``, ``pretrained``, ``output_stride``, ``feature_stages`` for the timm backbone; ``head``
    (:data:`~densecell.core.registry.HEADS`: ``dpc`` or ``aspp``), ``cell`` (DPC only: a preset name, a JSON path, JSON
    text or a Cell), ``filters``, ``dropout``, ``pooling``, ``crop_size``, ``bn_momentum`` for the head; ``decoder``;
    ``num_classes`` (and ``classes``, their names); ``mean`` and ``std``. Defaults are the paper's (256 filters, OS
    16, dropout keep 0.9).

    ``bn_momentum`` is PyTorch's convention; TF DeepLab's decay 0.9997 is ``bn_momentum=0.0003`` and suits only very
    long runs. ``pretrained`` loads backbone weights (see :func:`create_backbone`); ``mean`` and ``std`` default to
    what timm declares for those weights (:func:`resolve_normalization`)."""
    return SegmentationModel(config, **fields)


def from_pretrained(source: str | Path, **overrides: Any) -> SegmentationModel:
    """A model saved by ``save_pretrained`` (or ``densecell save``): a folder, or a Hugging Face Hub repo id
    (``user/repo``, through the hub's cache; ``HF_HOME`` and ``HF_HUB_OFFLINE`` apply). ``overrides`` change the
    architecture's evaluation settings, e.g. ``output_stride=8``."""
    return SegmentationModel.from_pretrained(source, **overrides)
