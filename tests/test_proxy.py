"""The proxy task: candidates trained on the cached features, seeded, scored, stopped early, K at once."""

import pytest
import torch

from densecell.cell.space import Branch, Cell, Operation, SearchSpace
from densecell.config import ProxySettings
from densecell.core.errors import ConfigError, TrainingError
from densecell.data import Cityscapes, TrainTransform
from densecell.models.backbones import resolve_normalization
from densecell.search import proxy
from densecell.search.cache import FeatureCache, FrozenBackboneFeatures
from densecell.search.proxy import train_candidate, train_candidates
from densecell.training.loss import subsample_labels

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's

ONLY_1X1 = Cell(tuple(Branch(i - 1, Operation.conv1x1()) for i in range(5)))
FAST = ProxySettings(iterations=30, batch_size=4, lr=0.05, filters=16)


def test_train_candidate_is_seeded_and_scores_in_range(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    a = train_candidate("cityscapes-top1", cache, FAST, seed=1)
    b = train_candidate("cityscapes-top1", cache, FAST, seed=1)
    assert a.miou == b.miou and a.iterations == 30
    assert 0.0 <= a.miou <= 1.0


def test_adam_and_loss_on_subsampled_labels(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    settings = ProxySettings(iterations=20, batch_size=4, lr=0.01, filters=16, optimizer="adam", upsample_logits=False)
    a = train_candidate("cityscapes-top1", cache, settings, seed=1)
    assert a.miou == train_candidate("cityscapes-top1", cache, settings, seed=1).miou
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
    noise. (How much faster the cache is lives in benchmarks/proxy_throughput.py, not in a timed test.)"""
    folder, backbone = feature_cache
    cache = FeatureCache.load(folder)
    train = Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    fresh = FrozenBackboneFeatures(cache, backbone, train)
    settings = ProxySettings(iterations=40, batch_size=4, lr=0.05, filters=16)
    cached = train_candidate("cityscapes-top1", cache, settings, seed=3)
    computed = train_candidate("cityscapes-top1", fresh, settings, seed=3)
    assert abs(cached.miou - computed.miou) < 0.02, (cached.miou, computed.miou)


@pytest.mark.parametrize("engine", ["eager", "graph"])
def test_k_candidates_at_once_train_as_each_would_alone(feature_cache, engine):
    """Each candidate draws its batches and its dropout masks from its own generator: K at once (on a GPU, K CUDA
    graphs on K streams, interleaved) gives the weights of one at a time, whatever else draws random numbers."""
    cache = FeatureCache.load(feature_cache[0])
    settings = ProxySettings(iterations=8, batch_size=4, lr=0.05, filters=8, eval_every=4, engine=engine)
    cells = ["cityscapes-top1", ONLY_1X1, SearchSpace().sample(3)]
    together = train_candidates(cells, cache, settings, seeds=[5, 6, 7])
    torch.manual_seed(123)  # the global generator does not matter
    alone = [train_candidate(cell, cache, settings, seed=seed) for cell, seed in zip(cells, [5, 6, 7])]
    for a, b in zip(together, alone):
        assert a.scores == b.scores and a.engine == b.engine == engine
        weights = b.head.state_dict()
        assert all(torch.equal(value, weights[name]) for name, value in a.head.state_dict().items())
    assert not torch.equal(together[0].head[1].weight, together[1].head[1].weight)


def test_a_graph_that_cannot_be_captured_falls_back_to_the_eager_step(feature_cache, monkeypatch):
    """A capture that fails (an operation that cannot be captured, a driver that refuses) must not end a search:
    the worker trains with the eager step, says why once, and the trial records the engine it used."""
    calls = []

    class Refusing(proxy.GraphStep):
        def __init__(self, *args, **kwargs):
            calls.append(1)
            raise RuntimeError("operation not permitted when stream is capturing")

    said = []
    monkeypatch.setattr(proxy, "GraphStep", Refusing)
    monkeypatch.setattr(proxy, "_capture_failure", None)
    monkeypatch.setattr(proxy.logger, "warning", lambda message, *args: said.append(message % args))
    cache = FeatureCache.load(feature_cache[0])
    settings = ProxySettings(iterations=4, batch_size=4, lr=0.05, filters=8, engine="graph")
    results = [train_candidate(cell, cache, settings, seed=1) for cell in ("cityscapes-top1", ONLY_1X1)]
    assert [r.engine for r in results] == ["eager", "eager"]
    assert calls == [1]  # after one failure the worker does not try again
    assert len(said) == 1 and "cannot be captured" in said[0] and "operation not permitted" in said[0]
    eager = train_candidate("cityscapes-top1", cache, settings.model_copy(update={"engine": "eager"}), seed=1)
    assert results[0].miou == eager.miou  # the fallback is the eager step itself
