"""Bilinear resizing with ``align_corners=True`` (TF DeepLab's ``resize_bilinear(..., align_corners=True)``) and
its matrix form.

Such a resize is a fixed linear map on each axis, ``Y = A_h X A_w^T``, where ``A`` has two non-zeros per row. The
matrix form is used where the kernel is not good enough: its backward pass is two matrix products, deterministic on a
GPU (``upsample_bilinear2d_backward`` adds with atomics), and the proxy's loss uses it to upsample logits chunk by
chunk without ever storing them whole (:mod:`densecell.training.loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["bilinear_matrix", "resize_bilinear", "resize_by_matrices"]


@lru_cache(maxsize=64)
def _matrix(out_size: int, in_size: int) -> torch.Tensor:
    """The [out, in] interpolation matrix, in float64 on the CPU (cached; moved and cast by the caller)."""
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    if in_size == 1 or out_size == 1:
        matrix[:, 0] = 1.0
        return matrix
    position = torch.arange(out_size, dtype=torch.float64) * ((in_size - 1) / (out_size - 1))
    low = position.floor().long().clamp(max=in_size - 2)
    weight = position - low
    rows = torch.arange(out_size)
    matrix[rows, low] = 1.0 - weight
    matrix[rows, low + 1] += weight
    return matrix


def bilinear_matrix(out_size: int, in_size: int, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``A`` of one axis: ``resize(x)[..., i] = sum_j A[i, j] x[..., j]`` (align_corners=True). Kept per device and
    dtype, so that a step captured as a CUDA graph finds it there (a copy from the host cannot be captured)."""
    return _on_device(int(out_size), int(in_size), torch.device(device), dtype)


@lru_cache(maxsize=64)
def _on_device(out_size: int, in_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _matrix(out_size, in_size).to(device=device, dtype=dtype)


def resize_by_matrices(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``A_h x A_w^T`` on the last two axes of ``x``: the same values as :func:`resize_bilinear`, by matrix products."""
    a_h = bilinear_matrix(size[0], x.shape[-2], x.device, x.dtype)
    a_w = bilinear_matrix(size[1], x.shape[-1], x.device, x.dtype)
    return torch.matmul(torch.matmul(a_h, x), a_w.transpose(0, 1))


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize the last two axes of an [N, C, H, W] tensor to ``size`` (align_corners=True).

    PyTorch's kernel, except on a GPU in deterministic mode (:func:`torch.use_deterministic_algorithms`), where its
    backward pass is not deterministic and the matrix form is used instead."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if x.is_cuda and torch.are_deterministic_algorithms_enabled():
        return resize_by_matrices(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
