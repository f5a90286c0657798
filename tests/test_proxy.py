import json

import numpy as np
import pytest
import torch

from densecell.cache import FeatureCache, FrozenBackboneFeatures, build_cache
from densecell.config import ProxySettings
from densecell.data import Cityscapes, EvalTransform, TrainTransform
from densecell.errors import CacheError, ConfigError, TrainingError
from densecell.loss import subsample_labels
from densecell.proxy import train_candidate
from densecell.space import Branch, Cell, Operation
from densecell.model import resolve_normalization  # noqa: E402

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's

ONLY_1X1 = Cell(tuple(Branch(i - 1, Operation.conv1x1()) for i in range(5)))
FAST = ProxySettings(iterations=30, batch_size=4, lr=0.05, filters=16)


def test_cache_layout_and_contents(feature_cache, synthetic_root):
    folder, backbone = feature_cache
    cache = FeatureCache.load(folder)
    assert cache.train_features.shape == (16 * 2, 320, 4, 4) and cache.train_features.dtype == torch.float16
    assert cache.train_labels.shape == (32, 64, 64) and cache.val_labels.shape == (4, 64, 128)
    assert cache.val_features.shape == (4, 320, 4, 8)
    assert not list((folder / "train").glob("shard-*"))  # consolidated into one memory-mappable file per array
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["views"] == 2 and spec["classes"][0] == "road"
    # item 5 is image 2, view 1: the same crop the training transform makes with that seed, through the backbone
    data = Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    image, label = data[(2, 2 * 2 + 1)]
    with torch.inference_mode():
        expected = backbone.eval()(image[None])[-1][0]
    assert torch.equal(cache.train_labels[5].long(), label)
    assert torch.allclose(cache.train_features[5].float(), expected, atol=2e-2, rtol=1e-2)


def test_cache_is_deterministic_and_refuses_other_settings(feature_cache, synthetic_root, tmp_path):
    folder, backbone = feature_cache
    train = Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    val = Cityscapes(synthetic_root, "val", EvalTransform(NORMALIZATION))
    again = build_cache(backbone, train, val, tmp_path / "again", output_stride=16, crop_size=(64, 64), views=2,
                        shard_size=5)
    for name in ("train.features.npy", "train.labels.npy", "val.features.npy", "val.labels.npy"):
        assert np.array_equal(np.load(folder / name), np.load(again / name)), name
    with pytest.raises(CacheError, match="other settings"):
        build_cache(backbone, train, val, again, output_stride=16, crop_size=(64, 64), views=1)
    with pytest.raises(CacheError, match="no complete feature cache"):
        FeatureCache.load(tmp_path / "nothing")


def test_cache_resumes_after_a_crash(feature_cache, synthetic_root, tmp_path):
    """A crash between shards leaves finished shards on disk; the rerun keeps them and ends with the same files."""
    folder, backbone = feature_cache
    train = Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    val = Cityscapes(synthetic_root, "val", EvalTransform(NORMALIZATION))
    calls = {"n": 0}

    class Crashing(torch.nn.Module):
        def forward(self, x):
            calls["n"] += 1
            if calls["n"] == 4:
                raise RuntimeError("simulated crash")
            return backbone(x)

    target = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_cache(Crashing(), train, val, target, output_stride=16, crop_size=(64, 64), views=2, shard_size=12,
                    batch_size=4)
    assert len(list((target / "train").glob("shard-*.features.npy"))) == 1
    calls["n"] = -1000
    build_cache(Crashing(), train, val, target, output_stride=16, crop_size=(64, 64), views=2, shard_size=12,
                batch_size=4)
    assert calls["n"] == -1000 + (32 - 12) // 4 + 1  # only the missing shards' batches (and the val batch) ran
    assert np.array_equal(np.load(folder / "train.features.npy"), np.load(target / "train.features.npy"))


def test_train_candidate_is_seeded_and_scores_in_range(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    a = train_candidate("cityscapes-top1", cache, FAST, seed=1)
    b = train_candidate("cityscapes-top1", cache, FAST, seed=1)
    assert a.miou == b.miou and 0 <= a.miou <= 1 and a.iterations == 30


def test_adam_and_loss_on_subsampled_labels(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    settings = ProxySettings(iterations=20, batch_size=4, lr=0.01, filters=16, optimizer="adam", upsample_logits=False)
    a = train_candidate("cityscapes-top1", cache, settings, seed=1)
    assert a.miou == train_candidate("cityscapes-top1", cache, settings, seed=1).miou and 0 <= a.miou <= 1
    rows = torch.arange(65).view(1, 65, 1).expand(2, 65, 65)  # each label is its row number
    labels = subsample_labels(rows, (5, 5))
    assert labels.shape == (2, 5, 5) and labels[0, :, 0].tolist() == [0, 16, 32, 48, 64]  # TF: the centres
    with pytest.raises(ConfigError, match="optimizer"):
        ProxySettings(iterations=1, filters=8, optimizer="lamb")


def test_early_stop_callback(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    seen = []
    result = train_candidate(ONLY_1X1, cache, ProxySettings(iterations=30, batch_size=4, filters=16, eval_every=10),
                             report=lambda it, miou: seen.append(it) or True)
    assert seen == [10] and result.stopped_early and result.iterations == 10


def test_non_finite_proxy_loss(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    with pytest.raises(TrainingError, match="proxy loss is"):
        train_candidate("cityscapes-top1", cache, ProxySettings(iterations=30, batch_size=4, filters=16, lr=1e12))


def test_cached_proxy_matches_frozen_backbone_training(feature_cache, synthetic_root):
    """Same items, same seeds: the only difference is fp16 storage of the features, so the scores agree within
    noise. (How much faster the cache is lives in benchmarks/proxy_speed.py, not in a timed test.)"""
    folder, backbone = feature_cache
    cache = FeatureCache.load(folder)
    fresh = FrozenBackboneFeatures(cache, backbone, Cityscapes(synthetic_root, "train",
                                                                TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION)))
    settings = ProxySettings(iterations=40, batch_size=4, lr=0.05, filters=16)
    cached = train_candidate("cityscapes-top1", cache, settings, seed=3)
    computed = train_candidate("cityscapes-top1", fresh, settings, seed=3)
    assert abs(cached.miou - computed.miou) < 0.02, (cached.miou, computed.miou)
