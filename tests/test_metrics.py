"""The metrics: the confusion matrix's IoU against torchmetrics, absent classes, and the one val-mIoU loop."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from densecell.training.metrics import ConfusionMatrix, predicted_classes, val_miou


def test_miou_matches_torchmetrics_on_random_data():
    generator = torch.Generator().manual_seed(0)
    matrix = ConfusionMatrix(6)
    metric = MulticlassJaccardIndex(num_classes=6, average=None, ignore_index=255)
    for _ in range(5):
        target = torch.randint(0, 6, (2, 17, 23), generator=generator)
        target[torch.rand(target.shape, generator=generator) < 0.1] = 255
        prediction = torch.where(torch.rand(target.shape, generator=generator) < 0.6, target.clamp(max=5),
                                 torch.randint(0, 6, target.shape, generator=generator))
        matrix.update(prediction, target)
        metric.update(prediction, target)
    expected = metric.compute().double()
    assert torch.allclose(matrix.iou(), expected, atol=1e-6)
    assert matrix.miou() == pytest.approx(float(expected.mean()), abs=1e-6)


def test_absent_classes_are_left_out_of_the_mean():
    matrix = ConfusionMatrix(4)
    matrix.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 255]))
    iou = matrix.iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(0.5)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert matrix.miou() == pytest.approx(0.5)
    assert matrix.pixel_accuracy() == pytest.approx(2 / 3)


def test_the_val_loop_upsamples_logits_to_the_labels_and_chunks_alike():
    """Logits at feature resolution are upsampled to the labels' size; the chunk size changes nothing."""
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(5, 3, 4, 4, generator=generator)
    labels = torch.randint(0, 3, (5, 13, 13), generator=generator)
    labels[:, :2] = 255
    scores = [val_miou(lambda x: x * 2, features, labels, 3, chunk) for chunk in (1, 2, 5)]
    assert scores[0] == scores[1] == scores[2]
    matrix = ConfusionMatrix(3)
    upsampled = torch.nn.functional.interpolate(features, size=(13, 13), mode="bilinear", align_corners=True)
    matrix.update(predicted_classes(upsampled), labels)
    assert scores[0] == pytest.approx(matrix.miou())
