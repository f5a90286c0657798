"""SegmentationModel = timm backbone + context head (DPC or ASPP) + optional DeepLabv3+ decoder + classifier.

A new backbone is a timm name, not a file: any timm model that supports ``features_only=True`` and
``output_stride`` works; the head reads the last feature map and the decoder the stride-4 one. The model's
config is the keyword arguments of :func:`build_model`, kept on ``model.config`` so that a checkpoint can carry it and
be rebuilt from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from safetensors.torch import load_file, save_model
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from timm.models import get_pretrained_cfg
from torch import nn

from .config import ModelConfig
from .data.transforms import Normalization
from .errors import CheckpointError, ConfigError, ModelError
from .files import write_text
from .heads import ConvBNReLU, SeparableConv
from .hubcard import MODEL_CARD, PAPER_URL, model_card_facts
from .registry import HEADS
from .resize import resize_bilinear

__all__ = [
    "backbone_normalization", "build_model", "create_backbone", "Decoder", "from_pretrained", "KNOWN_BACKBONES",
    "load_state", "Pretrained", "TRAINING", "resolve_normalization", "resolve_weights", "SegmentationModel",
    "timm_name", "WEIGHT_SUFFIXES"
]

Pretrained = bool | str | Path | None
"""Backbone weights: True (timm's default tag), a timm tag (``xception71.tf_in1k``), a local file, or None."""

#: Backbones the paper and the issue tracker name; any other timm model with ``features_only`` support works too.
KNOWN_BACKBONES = ("mobilenetv2_100", "xception71", "resnet50", "resnet101")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
TRAINING = "training.json"
"""Beside a saved model's config: what it was trained with."""


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


HUB_TAGS = ["semantic-segmentation", "deeplab", "dense-prediction-cell", "neural-architecture-search"]


class SegmentationModel(nn.Module, PyTorchModelHubMixin, library_name="densecell", pipeline_tag="image-segmentation",
                        tags=HUB_TAGS, paper_url=PAPER_URL, model_card_template=MODEL_CARD):
    """Backbone -> head -> (decoder) -> 1x1 classifier -> bilinear upsampling to the input size.

    Built from a :class:`~densecell.config.ModelConfig` and/or its fields (:func:`build_model`); ``config`` is the
    fields without ``pretrained`` and with the normalisation resolved, so that ``build_model(**model.config)``
    builds the same architecture. ``mean`` and ``std`` are the input normalisation the backbone expects: images are
    scaled to [0, 1], then normalised with them, in training, evaluation, prediction, the feature cache and the
    exported model.

    Shared as the Hugging Face ecosystem shares models (``huggingface_hub.PyTorchModelHubMixin``):
    ``save_pretrained(folder)`` writes ``config.json`` (``config``), ``model.safetensors``, the cell drawn and a model
    card; ``SegmentationModel.from_pretrained(folder or "user/repo")`` (or :func:`densecell.from_pretrained`) builds it
    from ``config.json`` without downloading ImageNet weights and loads its own; ``push_to_hub("user/repo")``."""

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

    # --- the Hugging Face Hub ----------------------------------------------------------------------------------------

    provenance: dict[str, Any] | None = None
    """What the model was trained with (the recipe, the iterations, the backbone's starting weights), when it came
    from a run: saved as ``training.json`` beside it."""

    def _save_pretrained(self, save_directory: Path) -> None:
        """``model.safetensors``, ``config.json`` (the model's config: its constructor's arguments), ``training.json``
        (:attr:`provenance`, if known) and, for a DPC, ``cell.json`` and ``cell.png`` (the cell in TF DeepLab JSON,
        and drawn)."""
        save_model(self, str(save_directory / SAFETENSORS_SINGLE_FILE))
        write_text(save_directory / CONFIG_NAME, json.dumps(self.config, indent=2, sort_keys=True))
        if self.provenance:
            write_text(save_directory / TRAINING, json.dumps(self.provenance, indent=2))
        if self.config["head"] == "dpc":
            write_text(save_directory / "cell.json", self.head.cell.to_json())
            from .figures import draw_cell  # here: matplotlib and scipy take a second to import, and only saving draws

            draw_cell(self.head.cell, save_directory / "cell.png", "the Dense Prediction Cell")

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", **config: Any) -> SegmentationModel:
        """Build the model from its ``config.json`` (without the backbone's ImageNet weights: the file has them
        all) and load ``model.safetensors``, every tensor checked (a one-line error names the ones that differ)."""
        model = cls(**{key: value for key, value in config.items() if key in ModelConfig.model_fields})
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, SAFETENSORS_SINGLE_FILE)
        else:
            weights = hf_hub_download(model_id, SAFETENSORS_SINGLE_FILE, revision=revision, cache_dir=cache_dir,
                                      force_download=force_download, token=token, local_files_only=local_files_only)
        if not os.path.isfile(weights):
            raise ModelError(f"{model_id}: no {SAFETENSORS_SINGLE_FILE} (a folder written by save_pretrained has one)")
        load_state(model, load_file(weights, device=map_location), model_id)
        return model.eval()

    def generate_model_card(self, *args: Any, **facts: Any) -> ModelCard:
        """The model card (Markdown with the Hub's YAML metadata): what the model is, how to load it, its cell and
        classes, and what ``facts`` tell of its training (the command line's ``densecell save`` and ``push`` give
        the recipe, the costs and the val mIoU)."""
        return super().generate_model_card(**(model_card_facts(self.config) | facts))


def load_state(model: nn.Module, state: dict[str, torch.Tensor], origin: str | Path) -> None:
    """``load_state_dict`` with a one-line error that names the mismatching tensors."""
    own = model.state_dict()
    problems = {
        "shape mismatch": [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                           if k in state and state[k].shape != v.shape],
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
    }
    parts = [f"{kind}: {', '.join(names[:3])}" + (" ..." if len(names) > 3 else "")
             for kind, names in problems.items() if names]
    if parts:
        raise CheckpointError(f"{origin}: does not fit this model ({'; '.join(parts)})")
    model.load_state_dict(state)


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
