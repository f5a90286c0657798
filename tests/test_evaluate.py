import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from densecell.config import load_config
from densecell.data import Cityscapes, EvalTransform
from densecell.models.backbones import resolve_normalization
from densecell.training.evaluate import evaluate, predict_probabilities, sliding_window_logits
from densecell.training.train import train
from helpers import tiny_overrides

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's


class Pointwise(nn.Module):
    """A per-pixel model: flip-equivariant and unaffected by where a window starts."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x)


def test_flip_and_sliding_window_are_exact_for_a_pointwise_model():
    torch.manual_seed(0)
    model = Pointwise().eval()
    image = torch.randn(1, 3, 37, 53)
    plain = predict_probabilities(model, image)
    assert torch.allclose(plain.sum(1), torch.ones(1, 37, 53))
    assert torch.allclose(predict_probabilities(model, image, flip=True), plain, atol=1e-6)
    assert torch.allclose(predict_probabilities(model, image, window=(16, 20)), plain, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(sliding_window_logits(model, image, (16, 20)), model(image), atol=1e-6)


def test_multi_scale_output_is_at_image_size():
    model = Pointwise().eval()
    probabilities = predict_probabilities(model, torch.randn(1, 3, 21, 30), scales=(0.75, 1.0, 1.25), flip=True)
    assert probabilities.shape == (1, 4, 21, 30)
    assert torch.allclose(probabilities.sum(1), torch.ones(1, 21, 30), atol=1e-5)


def test_evaluate_counts_a_constant_model(synthetic_root):
    class Constant(nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 19, *x.shape[-2:])
            logits[:, 0] = 1
            return logits

    data = Cityscapes(synthetic_root, "val", EvalTransform(NORMALIZATION))
    result = evaluate(Constant(), data)
    labels = np.concatenate([data.load(i)[1].ravel() for i in range(len(data))])
    labels = labels[labels != 255]
    road = (labels == 0).mean()
    present = len(np.unique(labels))
    assert result.iou[0] == pytest.approx(road)
    assert result.miou == pytest.approx(road / present)
    assert result.to_dict()["per_class_iou"]["road"] == pytest.approx(road)


@pytest.fixture(scope="module")
def checkpoint(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    train(load_config(None, tiny_overrides(synthetic_root, out, "tiny", iterations=2, **{"data.val_split": "null"})))
    return out / "tiny" / "checkpoint.pt"


def test_eval_command_writes_per_class_json(densecell, checkpoint, synthetic_root, tmp_path):
    target = tmp_path / "eval.json"
    code, out, _ = densecell("eval", "--checkpoint", checkpoint, "--data-root", synthetic_root,
                       "--scales", "0.75,1", "--flip", "--output-stride", "8", "--output", target)
    assert code == 0 and "mIoU" in out
    result = json.loads(target.read_text())
    assert set(result["per_class_iou"]) >= {"road", "sidewalk", "bicycle"}
    assert result["settings"] == {"scales": [0.75, 1.0], "flip": True, "window": None, "pad_to": None}
    present = [iou for iou in result["per_class_iou"].values() if iou is not None]
    assert result["miou"] == pytest.approx(sum(present) / len(present))  # the mean over the classes present


def test_predict_command_writes_train_ids_label_ids_and_overlays(densecell, checkpoint, synthetic_root,
                                                                 tmp_path):
    images = sorted((synthetic_root / "leftImg8bit" / "val").rglob("*.png"))[:2]
    code, out, _ = densecell("predict", *images, "--checkpoint", checkpoint, "--output", tmp_path)
    assert code == 0
    stem = images[0].name.removesuffix("_leftImg8bit.png")
    train_ids = np.array(Image.open(tmp_path / f"{stem}_trainIds.png"))
    label_ids = np.array(Image.open(tmp_path / f"{stem}_labelIds.png"))
    overlay = Image.open(tmp_path / f"{stem}_overlay.png")
    assert train_ids.shape == label_ids.shape == (64, 128) and overlay.mode == "RGB"
    assert train_ids.max() < 19
    from densecell.data.cityscapes import train_id_to_label_id
    assert np.array_equal(label_ids, train_id_to_label_id()[train_ids])


@pytest.mark.parametrize("args,message", [
    (["eval", "--checkpoint", "missing.pt"], "missing.pt: checkpoint not found"),
    (["eval", "--checkpoint", "CKPT", "--scales", "1,a"], "comma-separated list of scales"),
    (["predict", "nope.png", "--checkpoint", "CKPT"], "nope.png: image file not found"),
])
def test_eval_and_predict_errors(densecell, checkpoint, args, message):
    args = [str(checkpoint) if a == "CKPT" else a for a in args]
    code, _, err = densecell(*args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_multi_scale_sizes_and_padding_follow_tf():
    from densecell.training.evaluate import scaled_size

    assert scaled_size(1025, 2049, 0.75) == (769, 1537) and scaled_size(1025, 2049, 1.25) == (1281, 2561)
    seen = []

    class Recorder(Pointwise):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    model = Recorder().eval()
    image = torch.randn(1, 3, 20, 30)
    padded = predict_probabilities(model, image, scales=(1.0, 0.5), pad_to=(33, 41))
    assert seen == [(33, 41), (17, 21)]  # the padded image, then (33 - 1) * 0.5 + 1 by (41 - 1) * 0.5 + 1
    assert padded.shape == (1, 4, 20, 30)  # the padding is cut off again
    plain = predict_probabilities(model, image)
    assert torch.allclose(predict_probabilities(model, image, pad_to=(33, 41)), plain, atol=1e-6)  # pointwise


def test_eval_pads_to_the_tf_eval_crop(densecell, checkpoint, synthetic_root, tmp_path):
    target = tmp_path / "padded.json"
    code, out, err = densecell("eval", "--checkpoint", checkpoint, "--data-root", synthetic_root, "--pad-to",
                               "65x129", "--output", target)
    assert code == 0, err
    assert json.loads(target.read_text())["settings"]["pad_to"] == [65, 129]
    code, _, err = densecell("eval", "--checkpoint", checkpoint, "--data-root", synthetic_root, "--pad-to", "33x33")
    assert code == 2 and "larger than the padded size 33x33" in err and err.count("\n") == 1


def test_eval_and_predict_normalise_as_the_checkpoint_says(checkpoint, synthetic_root):
    """The normalisation a run was trained with travels in its checkpoint and is what eval and predict apply."""
    import timm
    from timm.data import resolve_data_config

    from densecell.data import eval_dataset
    from densecell.training.checkpoint import load_run

    run = load_run(checkpoint)
    expected = resolve_data_config({}, model=timm.create_model("mobilenetv2_100"))
    assert run.model.normalization == (tuple(expected["mean"]), tuple(expected["std"]))
    dataset = eval_dataset(run.config.data, "val", run.model.normalization, synthetic_root)
    assert dataset.transform.normalization == run.model.normalization
