"""SegmentationModel = timm backbone + context head (DPC or ASPP) + optional DeepLabv3+ decoder + classifier.

A new backbone is a timm name, not a file: any timm model that supports ``features_only=True`` and
``output_stride`` works; the head reads the last feature map and the decoder the stride-4 one. The model's
config is the keyword arguments of :func:`build_model`, kept on ``model.config`` so that a checkpoint can carry it and
be rebuilt from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .cell import ASPP, DensePredictionCell, PoolingMode, SeparableConv, conv_bn_relu, rate_multiplier
from .space import Cell

HeadName = Literal["dpc", "aspp"]

#: Backbones the paper and the issue tracker name; any other timm model with ``features_only`` support works too.
KNOWN_BACKBONES = ("mobilenetv2_100", "xception71", "resnet50", "resnet101")


class Decoder(nn.Module):
    """DeepLabv3+ decoder: stride-4 features reduced to 48 channels, concatenated with the upsampled head output,
    refined by two separable 3x3 convolutions."""

    def __init__(self, head_channels: int, low_level_channels: int, low_level_reduced: int = 48,
                 filters: int = 256, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(low_level_channels, low_level_reduced, 1, bn_momentum=bn_momentum)
        self.refine = nn.Sequential(
            SeparableConv(head_channels + low_level_reduced, filters, bn_momentum=bn_momentum),
            SeparableConv(filters, filters, bn_momentum=bn_momentum),
        )
        self.out_channels = filters

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.refine(torch.cat([high, self.reduce(low)], dim=1))


class SegmentationModel(nn.Module):
    """Backbone -> head -> (decoder) -> 1x1 classifier -> bilinear upsampling to the input size."""

    def __init__(self, backbone: nn.Module, head: nn.Module, classifier: nn.Module, decoder: Decoder | None,
                 low_level_index: int, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.decoder = decoder
        self.classifier = classifier
        self.low_level_index = low_level_index
        self.config = dict(config or {})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        x = self.head(features[-1])
        if self.decoder is not None:
            x = self.decoder(x, features[self.low_level_index])
        logits = self.classifier(x)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=True)


def create_backbone(name: str, output_stride: int = 16, pretrained: str | Path | None = None,
                    feature_stages: int | None = None) -> nn.Module:
    """A timm feature extractor; ``pretrained`` is a local checkpoint file (nothing can be downloaded).

    ``feature_stages`` keeps only the first stages (timm's ``out_indices``): a shallower backbone whose last feature
    map is finer and sees a smaller window, so that the context has to come from the head."""
    if pretrained is True:
        raise ValueError(
            "pretrained=True would download weights, which densecell never does; save the timm checkpoint "
            "locally and pass its path"
        )
    kwargs: dict[str, Any] = {"features_only": True, "output_stride": output_stride}
    if feature_stages is not None:
        if feature_stages < 1:
            raise ValueError(f"feature_stages must be positive, got {feature_stages}")
        kwargs["out_indices"] = tuple(range(feature_stages))
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained checkpoint {path} does not exist (densecell cannot download weights: pass a local "
                f"file saved from timm, e.g. torch.save(timm.create_model('{name}').state_dict(), PATH))"
            )
        kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ValueError(f"backbone {name!r} is not a timm model (known here: {', '.join(KNOWN_BACKBONES)})") \
                from None
        raise


def build_model(
    backbone: str = "mobilenetv2_100",
    head: HeadName = "dpc",
    cell: Cell | str | Path = "cityscapes-top1",
    num_classes: int = 19,
    output_stride: int = 16,
    decoder: bool = True,
    pretrained: str | Path | None = None,
    pooling: PoolingMode = "tf",
    crop_size: tuple[int, int] | None = None,
    filters: int = 256,
    dropout: float = 0.1,
    bn_momentum: float = 0.1,
    feature_stages: int | None = None,
) -> SegmentationModel:
    """Build a DeepLab-style model; defaults are the paper's (256 filters, OS 16, dropout keep 0.9).

    ``cell`` is used by the DPC head only (a preset name, a JSON path, JSON text or a Cell). ``bn_momentum`` is
    PyTorch's convention; TF DeepLab's decay 0.9997 is ``bn_momentum=0.0003`` and suits only very long runs.
    """
    if head not in ("dpc", "aspp"):
        raise ValueError(f"head must be 'dpc' or 'aspp', got {head!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    rate_multiplier(output_stride)  # checks it is 8 or 16 before timm is asked
    config = {
        "backbone": backbone, "head": head, "cell": cell.to_json() if isinstance(cell, Cell) else str(cell),
        "num_classes": num_classes, "output_stride": output_stride, "decoder": decoder, "pooling": pooling,
        "crop_size": crop_size, "filters": filters, "dropout": dropout, "bn_momentum": bn_momentum,
        "feature_stages": feature_stages,
    }
    features = create_backbone(backbone, output_stride, pretrained, feature_stages)
    channels = features.feature_info.channels()
    reductions = features.feature_info.reduction()
    if head == "dpc":
        context: nn.Module = DensePredictionCell(
            cell, channels[-1], filters=filters, concat_channels=filters, dropout=dropout,
            output_stride=output_stride, pooling=pooling, crop_size=crop_size, bn_momentum=bn_momentum,
        )
    else:
        context = ASPP(channels[-1], filters=filters, dropout=dropout, output_stride=output_stride,
                       bn_momentum=bn_momentum)
    low_level_index = reductions.index(4) if 4 in reductions else 0
    fuse = Decoder(filters, channels[low_level_index], filters=filters, bn_momentum=bn_momentum) if decoder else None
    classifier = nn.Conv2d(filters, num_classes, 1)
    return SegmentationModel(features, context, classifier, fuse, low_level_index, config)
