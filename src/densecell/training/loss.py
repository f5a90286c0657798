"""Pixel-wise cross-entropy with DeepLab's ignore label, and the proxy's two losses (TF's ``upsample_logits``).

- :func:`cross_entropy`: mean over the pixels that are not ignored (255), as ``F.cross_entropy``; on a GPU in
  deterministic mode through a one-hot form, whose kernels are deterministic (``nll_loss2d`` adds with atomics).
- :func:`upsampled_cross_entropy`: the loss on logits upsampled (bilinear, align_corners) to the label size, the
  paper's proxy loss, computed without ever storing the upsampled logits: rows of the label are taken a chunk at a
  time, the logits of the chunk are two small matrix products away (:mod:`densecell.core.resize`), and the gradient with
  respect to the low-resolution logits is accumulated in the same pass. Same value and gradient as upsampling with
  ``F.interpolate`` and calling :func:`cross_entropy` (tested), with no ``upsample_bilinear2d_backward`` and a peak
  memory of one chunk.
- :func:`subsample_labels`: the other side of TF's flag: labels resized (nearest, align_corners) to the logits.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..core.pixels import IGNORE_INDEX
from ..core.resize import bilinear_matrix

__all__ = ["CHUNK_ELEMENTS", "cross_entropy", "IGNORE_INDEX", "subsample_labels", "upsampled_cross_entropy"]

"""The label value that the loss and the metrics ignore (DeepLab's convention)."""

CHUNK_ELEMENTS = 1 << 22
"""Upsampled logits held at once by :func:`upsampled_cross_entropy` (16 MiB in fp32): small enough to stay in a GPU's
L2 cache, large enough that the matrix products are efficient."""


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of [N, C, H, W] logits against [N, H, W] labels over the pixels that are not ignored."""
    labels = labels.long()
    if not (logits.is_cuda and torch.are_deterministic_algorithms_enabled()):
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    valid = labels != IGNORE_INDEX
    target = F.one_hot(torch.where(valid, labels, 0), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    picked = (F.log_softmax(logits, 1) * target).sum(1)
    return -(picked * valid).sum() / valid.sum()


def subsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Labels [N, H, W] at ``size`` by nearest neighbour with aligned corners, as TF's
    ``resize_nearest_neighbor(align_corners=True)``: with DeepLab's crops (16k + 1) it picks the pixel under each
    feature's centre."""
    rows = _nearest_indices(size[0], labels.shape[-2], labels.device)
    cols = _nearest_indices(size[1], labels.shape[-1], labels.device)
    return labels.index_select(-2, rows).index_select(-1, cols)


@lru_cache(maxsize=64)
def _nearest_indices(out_size: int, in_size: int, device: torch.device) -> torch.Tensor:
    """Kept per device, as :func:`~densecell.core.resize.bilinear_matrix`, for CUDA graph capture."""
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    return torch.round(torch.arange(out_size, dtype=torch.float64) * scale).long().clamp(max=in_size - 1).to(device)


class _UpsampledCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and its gradient together (one pass over the upsampled logits); backward scales the
    stored gradient."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor,  # type: ignore[override]
                chunk_rows: int) -> torch.Tensor:
        logits = logits.float()
        height, width = labels.shape[-2:]
        a_h = bilinear_matrix(height, logits.shape[-2], logits.device)
        a_w = bilinear_matrix(width, logits.shape[-1], logits.device)
        wide = torch.matmul(logits, a_w.transpose(0, 1))  # [N, C, h, W]: every column, the rows not yet
        grad_wide = torch.zeros_like(wide)
        total = logits.new_zeros(())
        for top in range(0, height, chunk_rows):
            rows = a_h[top:top + chunk_rows]
            chunk_total, chunk_grad = _chunk_loss(torch.matmul(rows, wide), labels[:, top:top + chunk_rows])
            total += chunk_total
            grad_wide += torch.matmul(rows.transpose(0, 1), chunk_grad)
        count = (labels != IGNORE_INDEX).sum().clamp(min=1)
        ctx.save_for_backward(torch.matmul(grad_wide, a_w) / count)
        return total / count

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (grad_logits,) = ctx.saved_tensors
        return grad_logits * grad_output, None, None


def _chunk_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of one chunk of upsampled logits [N, C, R, W] and its gradient (softmax - one-hot, zero
    on ignored pixels)."""
    valid = labels != IGNORE_INDEX
    target = torch.where(valid, labels.long(), 0)[:, None]
    log_probs = torch.log_softmax(logits, 1)
    total = -(log_probs.gather(1, target)[:, 0] * valid).sum()
    grad = log_probs.exp_()
    grad.scatter_add_(1, target, torch.full_like(target, -1, dtype=grad.dtype))
    return total, grad * valid[:, None]


def upsampled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """:func:`cross_entropy` of ``logits`` upsampled bilinearly (align_corners) to the labels' size, without storing
    the upsampled logits. ``logits`` [N, C, h, w], ``labels`` [N, H, W] (any integer dtype)."""
    batch, classes = logits.shape[:2]
    chunk_rows = max(1, chunk_elements // max(1, batch * classes * labels.shape[-1]))
    return _UpsampledCrossEntropy.apply(logits, labels, chunk_rows)
