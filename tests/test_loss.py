"""The proxy's losses: the fused upsampled cross-entropy equals upsampling + cross-entropy, value and gradient."""

import pytest
import torch
import torch.nn.functional as F

from densecell.core.resize import bilinear_matrix, resize_bilinear, resize_by_matrices
from densecell.training.loss import IGNORE_INDEX, cross_entropy, subsample_labels, upsampled_cross_entropy


def reference(logits, labels):
    upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True)
    return F.cross_entropy(upsampled, labels.long(), ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("shape,size,chunk", [
    ((2, 5, 4, 4), (49, 49), 1 << 22),      # one chunk
    ((3, 19, 7, 5), (97, 65), 5 * 19 * 65),  # many chunks of a few rows
    ((1, 3, 1, 6), (17, 81), 1),            # one row per chunk, a one-row feature map
])
def test_fused_loss_and_gradient_equal_the_reference(shape, size, chunk):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=generator, requires_grad=True)
    labels = torch.randint(0, shape[1], (shape[0], *size), generator=generator)
    labels[:, :3] = IGNORE_INDEX
    labels[0, -1, :5] = IGNORE_INDEX
    expected = reference(logits, labels)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    fused = upsampled_cross_entropy(logits, labels.to(torch.uint8), chunk_elements=chunk)
    (grad,) = torch.autograd.grad(fused * 3.0, logits)  # the incoming gradient scales it
    assert fused.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(grad, 3.0 * expected_grad, rtol=1e-5, atol=1e-9)


def test_the_paper_shape():
    """8 x 19 logits of 49x49 against 769x769 labels: the proxy's loss at the paper's shape (never stores 8x19x769x769
    floats at once)."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 19, 49, 49, generator=generator, requires_grad=True)
    labels = torch.randint(0, 19, (8, 769, 769), generator=generator)
    expected = reference(logits, labels)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    fused = upsampled_cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(fused, logits)
    assert fused.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-10)


def test_all_ignored_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    labels = torch.full((1, 9, 9), IGNORE_INDEX)
    loss = upsampled_cross_entropy(logits, labels)
    loss.backward()
    assert loss.item() == 0 and not logits.grad.abs().sum()


def test_matrix_resize_equals_pytorchs():
    x = torch.randn(2, 3, 7, 11)
    for size in [(7, 11), (13, 31), (1, 4), (49, 97)]:
        assert torch.allclose(resize_by_matrices(x, size), F.interpolate(x, size=size, mode="bilinear",
                                                                           align_corners=True), atol=1e-5)
    matrix = bilinear_matrix(769, 49)
    assert matrix.shape == (769, 49) and torch.allclose(matrix.sum(1), torch.ones(769))
    assert ((matrix > 0).sum(1) <= 2).all()  # two non-zeros per row
    assert resize_bilinear(x, (7, 11)) is x


def test_cross_entropy_deterministic_form_equals_pytorchs():
    """The one-hot form used on GPUs in deterministic mode computes the same loss (checked here on the CPU)."""
    from densecell.training import loss as losses

    logits = torch.randn(2, 4, 5, 6, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, 0] = IGNORE_INDEX
    valid = labels != IGNORE_INDEX
    target = F.one_hot(torch.where(valid, labels, 0), 4).movedim(-1, 1).float()
    one_hot = -((F.log_softmax(logits, 1) * target).sum(1) * valid).sum() / valid.sum()
    assert torch.allclose(one_hot, cross_entropy(logits, labels))
    assert losses.IGNORE_INDEX == 255


def test_subsampled_labels_pick_the_feature_centres():
    labels = torch.arange(769).view(1, 769, 1).expand(1, 769, 769)
    rows = subsample_labels(labels, (49, 49))[0, :, 0]
    assert rows.tolist() == list(range(0, 769, 16))
