"""ONNX export of a segmentation model, checked against onnxruntime.

The exported graph has a fixed input size: with ``pooling="tf"`` the pyramid-pooling window is a function of the
feature size (as in TF DeepLab, which also builds one graph per crop size), so it is baked in at export time.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | Path, image_size: Sequence[int] = (513, 513)) -> Path:
    """Write ``model`` (in eval mode) to ``path`` with input ``images`` [1, 3, H, W] and output ``logits``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 3, *image_size)
    partial = path.with_name(path.name + ".partial")
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every pass on stdout
        torch.onnx.export(model.eval(), (example,), partial, dynamo=True, input_names=["images"],
                          output_names=["logits"], external_data=False)
    partial.replace(path)  # never leave a half-written file under the final name
    return path


def onnx_max_error(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's logits on ``images``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.inference_mode():
        torch_logits = model.eval()(images).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())
