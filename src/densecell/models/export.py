"""ONNX export of a segmentation model, checked against onnxruntime.

The exported graph has a fixed input size: with ``pooling="tf"`` the pyramid-pooling window is a function of the
feature size (as in TF DeepLab, which also builds one graph per crop size), so it is baked in at export time. The
model's input normalisation travels in the file's metadata (``mean``, ``std``: images scaled to [0, 1], then
``(x - mean) / std``), with its classes and architecture, so that whoever runs the file preprocesses as training did.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import InputError
from ..core.extras import missing_extra

try:
    import onnx
    import onnxruntime
except ImportError as exc:  # the export extra
    raise missing_extra(exc, "export") from None
from ..core.files import atomic_path

__all__ = ["export_model", "export_module", "export_onnx", "Exported", "onnx_max_error", "onnx_metadata",
           "read_metadata", "TOLERANCE"]

TOLERANCE = 1e-3
"""The largest difference between onnxruntime's logits and PyTorch's that an export accepts."""


def onnx_metadata(model: nn.Module, classes: Sequence[str] = ()) -> dict[str, str]:
    """What a user of the ONNX file needs besides the graph: the normalisation, the classes, the architecture."""
    config: dict[str, Any] = getattr(model, "config", {})
    metadata = {"mean": json.dumps(config.get("mean")), "std": json.dumps(config.get("std")),
                "input": "RGB scaled to [0, 1], then (x - mean) / std, NCHW",
                "model_config": json.dumps({k: v for k, v in config.items() if k not in ("mean", "std")})}
    if classes:
        metadata["classes"] = json.dumps(list(classes))
    return metadata


def export_module(module: nn.Module, path: str | Path, example: torch.Tensor, input_name: str = "input",
                  output_name: str = "output", metadata: dict[str, str] | None = None) -> Path:
    """Write ``module`` (in eval mode) to ``path`` as one ONNX file of fixed input shape (``example``'s), with
    ``metadata``: the one exporter, for models, heads and the operations of a device profile."""
    path = Path(path)
    with atomic_path(path) as temporary:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every pass on stdout
            torch.onnx.export(module.eval(), (example,), temporary, dynamo=True, input_names=[input_name],
                              output_names=[output_name], external_data=False)
        if metadata:
            graph = onnx.load(str(temporary))
            onnx.helper.set_model_props(graph, metadata)
            onnx.save(graph, str(temporary))
    return path


def export_onnx(model: nn.Module, path: str | Path, image_size: Sequence[int] = (513, 513),
                classes: Sequence[str] = ()) -> Path:
    """Write ``model`` (in eval mode) to ``path`` with input ``images`` [1, 3, H, W], output ``logits`` and the
    metadata of :func:`onnx_metadata`."""
    return export_module(model, path, torch.randn(1, 3, *image_size), "images", "logits",
                         onnx_metadata(model, classes))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file, JSON values decoded."""
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {key: (value if key == "input" else json.loads(value)) for key, value in props.items()}


def onnx_max_error(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's logits on ``images``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.inference_mode():
        torch_logits = model.eval()(images).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())


@dataclass(frozen=True)
class Exported:
    """An exported file, the normalisation in its metadata, and onnxruntime's largest difference from PyTorch (None
    when not checked)."""

    path: Path
    bytes: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    error: float | None


def export_model(model: nn.Module, path: str | Path, image_size: Sequence[int] = (513, 513),
                 classes: Sequence[str] = (), check: bool = True) -> Exported:
    """Export ``model`` (a trained run's, :func:`densecell.training.checkpoint.load_run`, or a new one) to ONNX with
    its ``classes`` in the metadata; with ``check``, compare onnxruntime with PyTorch on a random image and refuse a
    difference above :data:`TOLERANCE`."""
    size = (int(image_size[0]), int(image_size[1]))
    path = export_onnx(model.eval(), path, size, classes)
    error = onnx_max_error(model, path, torch.randn(1, 3, *size)) if check else None
    if error is not None and error > TOLERANCE:
        raise InputError(f"{path}: onnxruntime differs from PyTorch by {error:.2e} (> {TOLERANCE:g})")
    mean, std = model.normalization
    return Exported(path, path.stat().st_size, size, mean, std, error)
