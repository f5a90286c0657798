"""timm backbones: the weights a name or tag loads (the Hugging Face hub and its cache, or a local file), what a
``pretrained`` setting resolves to wherever it is used again, and the input normalisation timm declares for those
weights. A new backbone is a timm name, not a file: any timm model with ``features_only`` and ``output_stride``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from timm.models import get_pretrained_cfg
from torch import nn

from ..core.errors import ModelError
from ..core.pixels import Normalization
from .hub import is_repo_id

__all__ = ["backbone_normalization", "check_backbone", "create_backbone", "KNOWN_BACKBONES", "Pretrained",
           "resolve_normalization",
           "resolve_weights", "timm_name", "WEIGHT_SUFFIXES"]

Pretrained = bool | str | Path | None
"""Backbone weights: True (timm's default tag), a timm tag (``xception71.tf_in1k``), a local file, or None."""

#: Backbones the paper and the issue tracker name; any other timm model with ``features_only`` support works too.
KNOWN_BACKBONES = ("mobilenetv2_100", "xception71", "resnet50", "resnet101")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def _is_weights_file(pretrained: str | Path) -> bool:
    """Whether ``pretrained`` names a local weights file rather than a timm tag, by :mod:`densecell.models.hub`'s
    rule: an existing path is a file, never a Hub id; an ``owner/name`` that is not one is refused here, since
    backbone weights from the Hub come through timm's tags."""
    text = str(pretrained)
    if isinstance(pretrained, Path) or Path(text).expanduser().exists() or text.lower().endswith(WEIGHT_SUFFIXES):
        return True
    if is_repo_id(text):
        raise ModelError(f"pretrained {text!r}: no such file, and a Hugging Face Hub id is not backbone weights here "
                         f"(a timm tag such as xception71.tf_in1k, which timm fetches from the Hub, or a local file)")
    return "/" in text or "\\" in text


def _pretrained_cfg(name: str) -> Any:
    """timm's pretrained config of a model name (with or without a tag), None for a model timm has none for."""
    try:
        return get_pretrained_cfg(name)
    except RuntimeError:
        raise ModelError(f"backbone {name!r} is not a timm model or tag (known here: "
                         f"{', '.join(KNOWN_BACKBONES)})") from None


def check_backbone(name: str) -> str:
    """``name`` if timm has such a model (with or without a weights tag), else a one-line error: checked before any
    work that needs it starts (a warm-up, a cache, a training)."""
    import timm

    if not timm.is_model(name.split(".")[0]):
        raise ModelError(f"backbone {name!r} is not a timm model (known here: {', '.join(KNOWN_BACKBONES)}; "
                         f"timm.list_models() has the rest)")
    return name


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
