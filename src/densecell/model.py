"""SegmentationModel = timm backbone + context head (DPC or ASPP) + optional DeepLabv3+ decoder + classifier.

A new backbone is a timm name, not a file: any timm model that supports ``features_only=True`` and
``output_stride`` works; the head reads the last feature map and the decoder the stride-4 one. The model's
config is the keyword arguments of :func:`build_model`, kept on ``model.config`` so that a checkpoint can carry it and
be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from timm.models import get_pretrained_cfg
from torch import nn

from .config import ModelConfig
from .data.transforms import Normalization
from .errors import ConfigError, ModelError
from .heads import ConvBNReLU, SeparableConv
from .registry import HEADS
from .resize import resize_bilinear

__all__ = [
    "backbone_normalization", "build_model", "create_backbone", "Decoder", "KNOWN_BACKBONES", "Pretrained",
    "resolve_normalization", "resolve_weights", "SegmentationModel", "timm_name", "WEIGHT_SUFFIXES"
]

Pretrained = bool | str | Path | None
"""Backbone weights: True (timm's default tag), a timm tag (``xception71.tf_in1k``), a local file, or None."""

#: Backbones the paper and the issue tracker name; any other timm model with ``features_only`` support works too.
KNOWN_BACKBONES = ("mobilenetv2_100", "xception71", "resnet50", "resnet101")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


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


class SegmentationModel(nn.Module):
    """Backbone -> head -> (decoder) -> 1x1 classifier -> bilinear upsampling to the input size.

    ``mean`` and ``std`` (in ``config``) are the input normalisation the backbone expects: images are scaled to [0, 1],
    then normalised with them, in training, evaluation, prediction, the feature cache and the exported model."""

    def __init__(self, backbone: nn.Module, head: nn.Module, classifier: nn.Module, decoder: Decoder | None,
                 low_level_index: int, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.decoder = decoder
        self.classifier = classifier
        self.low_level_index = low_level_index
        self.config = dict(config or {})

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.config["mean"]), tuple(self.config["std"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        x = self.head(features[-1])
        if self.decoder is not None:
            x = self.decoder(x, features[self.low_level_index])
        return resize_bilinear(self.classifier(x), images.shape[-2:])


def _is_weights_file(pretrained: str | Path) -> bool:
    text = str(pretrained)
    return isinstance(pretrained, Path) or text.lower().endswith(WEIGHT_SUFFIXES) or "/" in text or "\\" in text


def _pretrained_cfg(name: str) -> Any:
    """timm's pretrained config of a model name (with or without a tag), None for a model timm has none for."""
    try:
        return get_pretrained_cfg(name)
    except RuntimeError:
        raise ModelError(f"backbone {name!r} is not a timm model or tag (known here: "
                         f"{', '.join(KNOWN_BACKBONES)})") from None


def timm_name(backbone: str, pretrained: Pretrained = None) -> str:
    """The timm model name with the weights' tag: ``xception71`` + ``tf_in1k`` (or ``xception71.tf_in1k``); with
    ``pretrained=True``, timm's default tag (``xception71.tf_in1k``)."""
    base = backbone.split(".")[0]
    if pretrained is True:
        cfg = _pretrained_cfg(backbone)
        return f"{base}.{cfg.tag}" if cfg is not None and cfg.tag else backbone
    if not isinstance(pretrained, str) or _is_weights_file(pretrained):
        return backbone
    architecture, _, tag = pretrained.rpartition(".")
    if not architecture:
        return backbone if tag == base else f"{base}.{tag}"
    if architecture != base:
        raise ModelError(f"pretrained {pretrained!r} is for {architecture}, but the backbone is {backbone}")
    return pretrained


def resolve_weights(backbone: str, pretrained: Pretrained) -> str | None:
    """What ``pretrained`` loads, written so that it means the same wherever it is used again (a re-ranking run, a
    checkpoint, another machine's recipe): None for random weights, the absolute path of a weights file, or the timm
    name with its tag (``true`` for mobilenetv2_100 is ``mobilenetv2_100.ra_in1k``)."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is not True and _is_weights_file(pretrained):
        return str(Path(pretrained).expanduser().resolve())
    return timm_name(backbone, pretrained)


def backbone_normalization(backbone: str, pretrained: Pretrained = None) -> Normalization:
    """Input mean and std as timm declares them for these weights (``resolve_data_config``): ImageNet's for most,
    0.5 and 0.5 for TF-ported ones such as ``xception71.tf_in1k``, whose inputs are ``2x/255 - 1`` as in TF DeepLab."""
    cfg = _pretrained_cfg(timm_name(backbone, pretrained))
    if cfg is None:  # a model timm has no weights for: its defaults
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    data = resolve_data_config({}, pretrained_cfg=cfg.to_dict())
    return tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])


def resolve_normalization(backbone: str, pretrained: Pretrained = None, mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None) -> Normalization:
    """The one resolver of a model's input normalisation: ``mean`` and ``std`` where given, else what timm declares
    for the backbone's weights (:func:`backbone_normalization`). Training, the feature cache, evaluation and
    prediction all call it (or read its result from a checkpoint), so no path can pair a backbone's weights with
    another's statistics."""
    if mean is not None and std is not None:
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    default_mean, default_std = backbone_normalization(backbone, pretrained)
    return tuple(mean or default_mean), tuple(std or default_std)


def _weights_kwargs(name: str, pretrained: Pretrained) -> dict[str, Any]:
    if not pretrained:
        return {}
    if pretrained is True or not _is_weights_file(pretrained):
        return {"pretrained": True}
    path = Path(pretrained)
    if not path.is_file():
        raise ModelError(f"pretrained weights {path}: no such file (save them from timm, e.g. "
                         f"torch.save(timm.create_model('{name}', pretrained=True).state_dict(), PATH))")
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}


def create_backbone(name: str, output_stride: int = 16, pretrained: Pretrained = None,
                    feature_stages: int | None = None) -> nn.Module:
    """A timm feature extractor with its weights loaded the way timm loads them: ``pretrained=True`` or a tag through
    the Hugging Face hub and its cache (``HF_HOME``, ``HF_HUB_OFFLINE`` apply), a path from that file.

    ``feature_stages`` keeps only the first stages (timm's ``out_indices``): a shallower backbone whose last feature
    map is finer and sees a smaller window, so that the context has to come from the head."""
    kwargs: dict[str, Any] = {"features_only": True, "output_stride": output_stride}
    if feature_stages is not None:
        if feature_stages < 1:
            raise ModelError(f"feature_stages must be positive, got {feature_stages}")
        kwargs["out_indices"] = tuple(range(feature_stages))
    full_name = timm_name(name, pretrained)
    kwargs |= _weights_kwargs(full_name, pretrained)
    try:
        return timm.create_model(full_name, **kwargs)
    except (RuntimeError, ValueError) as exc:
        if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
            raise ModelError(f"backbone {full_name!r} is not a timm model or tag (known here: "
                             f"{', '.join(KNOWN_BACKBONES)})") from None
        raise
    except OSError as exc:  # huggingface_hub: offline with nothing cached, or the hub cannot be reached
        if "pretrained_cfg_overlay" in kwargs:
            raise
        raise ModelError(f"cannot load the pretrained weights of {full_name}: they are not in the Hugging Face cache "
                         f"and the hub cannot be reached ({type(exc).__name__}); download them once with a network, "
                         f"or pass a local file (pretrained: /path/to/{full_name}.safetensors)") from None


def build_model(config: ModelConfig | None = None, /, **fields: Any) -> SegmentationModel:
    """Build a DeepLab-style model from a :class:`~densecell.config.ModelConfig` and/or its fields as keywords
    (which win): ``backbone``, ``pretrained``, ``output_stride``, ``feature_stages`` for the timm backbone; ``head``
    (:data:`~densecell.registry.HEADS`: ``dpc`` or ``aspp``), ``cell`` (DPC only: a preset name, a JSON path, JSON text
    or a Cell), ``filters``, ``dropout``, ``pooling``, ``crop_size``, ``bn_momentum`` for the head; ``decoder``;
    ``num_classes``; ``mean`` and ``std``. Defaults are the paper's (256 filters, OS 16, dropout keep 0.9).

    ``bn_momentum`` is PyTorch's convention; TF DeepLab's decay 0.9997 is ``bn_momentum=0.0003`` and suits only very
    long runs. ``pretrained`` loads backbone weights (see :func:`create_backbone`); ``mean`` and ``std`` default to
    what timm declares for those weights (:func:`resolve_normalization`). ``model.config`` is the fields without
    ``pretrained`` (the weights are in the model) and with the normalisation resolved: ``build_model(**model.config)``
    builds the same architecture."""
    try:
        args = ModelConfig(**((config.model_dump() if config else {}) | fields))
    except ConfigError as exc:
        raise ModelError(str(exc).removeprefix("ModelConfig: ")) from None
    mean, std = resolve_normalization(args.backbone, args.pretrained, args.mean, args.std)
    features = create_backbone(args.backbone, args.output_stride, args.pretrained, args.feature_stages)
    channels = features.feature_info.channels()
    reductions = features.feature_info.reduction()
    context = HEADS[args.head](args.cell, channels[-1], filters=args.filters, dropout=args.dropout,
                               output_stride=args.output_stride, pooling=args.pooling, crop_size=args.crop_size,
                               bn_momentum=args.bn_momentum)
    low_level_index = reductions.index(4) if 4 in reductions else 0
    decoder = Decoder(args.filters, channels[low_level_index], filters=args.filters,
                      bn_momentum=args.bn_momentum) if args.decoder else None
    classifier = nn.Conv2d(args.filters, args.num_classes, 1)
    config_dict = args.model_dump(mode="json", exclude={"pretrained"}) | {"mean": list(mean), "std": list(std)}
    return SegmentationModel(features, context, classifier, decoder, low_level_index, config_dict)
