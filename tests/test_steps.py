"""The proxy's two step engines: the graph step (as on a GPU, minus the capture) trains to the same weights as the
plain torch.optim step."""

import pytest
import torch

from densecell.config import ProxySettings
from densecell.search.cache import FeatureCache
from densecell.search.proxy import build_proxy_head, train_candidate
from densecell.training.precision import Precision
from densecell.training.steps import EagerStep, GraphStep

CELL = '[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 0}, ' \
       '{"grid_size": [2, 1], "op": "pyramid_pooling", "input": -1}]'


def data(count=6, channels=5, size=5, crop=65, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(count, channels, size, size, generator=generator).half()
    labels = torch.randint(0, classes, (count, crop, crop), generator=generator).to(torch.uint8)
    labels[:, :4] = 255
    return features, labels


def head(seed=0, channels=5, classes=4):
    torch.manual_seed(seed)
    return build_proxy_head(CELL, channels, classes, 16, 8)


def run_eager(settings, steps, precision=Precision()):
    features, labels = data()
    module = head()
    engine = EagerStep(module, lambda g: (features[i := torch.randint(6, (settings.batch_size,), generator=g)],
                                          labels[i]), settings, precision, torch.device("cpu"), seed=3)
    torch.manual_seed(7)
    engine.run(steps)
    return module


def run_graph(settings, steps, precision=Precision()):
    features, labels = data()
    module = head()
    engine = GraphStep(module, features, labels, settings, precision, torch.device("cpu"),
                       torch.Generator().manual_seed(3))
    torch.manual_seed(7)
    engine.run(steps)
    engine.check()
    return module, engine


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("upsample_logits", [True, False])
def test_graph_step_trains_to_the_same_weights_as_the_plain_step(optimizer, upsample_logits):
    settings = ProxySettings(iterations=12, batch_size=3, lr=0.05 if optimizer == "sgd" else 0.01, filters=8,
                             optimizer=optimizer, upsample_logits=upsample_logits, weight_decay=1e-2)
    plain = run_eager(settings, 12).state_dict()
    graph, engine = run_graph(settings, 12)
    assert int(engine.step_count) == 12
    for name, value in graph.state_dict().items():
        assert torch.allclose(value.float(), plain[name].float(), rtol=1e-4, atol=1e-5), name
    changed = head().state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in plain.items())  # the weights did move


def test_a_non_finite_loss_is_reported():
    settings = ProxySettings(iterations=5, batch_size=3, lr=1e20, filters=8)
    _, engine = run_graph(settings, 0)
    engine.run(5)
    with pytest.raises(Exception, match="non-finite"):
        engine.check()


def test_an_fp16_overflow_skips_the_step_and_halves_the_scale():
    settings = ProxySettings(iterations=3, batch_size=3, lr=0.05, filters=8)
    module, engine = run_graph(settings, 0, Precision("fp16"))
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" not in k and "batches" not in k}
    engine.scale.fill_(1e30)  # the fp16 gradients overflow
    engine.run(1)
    after = module.state_dict()
    assert all(torch.equal(value, after[name]) for name, value in before.items())
    assert all(not state.abs().sum() for state in engine.state)  # the momentum did not move either
    assert engine.scale.item() == pytest.approx(5e29)
    engine.scale.fill_(1024.0)
    engine.run(2)  # a scale that fits: the steps go on
    assert any(not torch.equal(v, after[k]) for k, v in before.items())
    engine.check()


def test_train_candidate_runs_either_engine(feature_cache):
    cache = FeatureCache.load(feature_cache[0])
    settings = ProxySettings(iterations=6, batch_size=4, lr=0.05, filters=16, eval_every=3)
    eager = train_candidate("cityscapes-top1", cache, settings.model_copy(update={"engine": "eager"}), seed=2)
    graph = train_candidate("cityscapes-top1", cache, settings.model_copy(update={"engine": "graph"}), seed=2)
    assert [it for it, _ in eager.scores] == [it for it, _ in graph.scores] == [3, 6]
    assert eager.miou == pytest.approx(graph.miou, abs=0.05)


def test_the_eager_step_scales_fp16_losses_and_skips_an_overflow():
    """Like the graph step, the eager step keeps a dynamic loss scale in fp16 (GradScaler)."""
    settings = ProxySettings(iterations=4, batch_size=3, lr=0.05, filters=8)
    features, labels = data()
    module = head()
    engine = EagerStep(module, lambda g: (features[i := torch.randint(6, (3,), generator=g)], labels[i]), settings,
                       Precision("fp16"), torch.device("cpu"), seed=3)
    assert engine.scaler.is_enabled()
    engine.run(1)
    engine.scaler.update(new_scale=1e30)  # the fp16 gradients overflow
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" not in k and "batches" not in k}
    engine.run(1)
    assert all(torch.equal(value, module.state_dict()[name]) for name, value in before.items())
    assert engine.scaler.get_scale() == pytest.approx(5e29)
    engine.scaler.update(new_scale=1024.0)
    engine.run(2)
    assert any(not torch.equal(v, module.state_dict()[k]) for k, v in before.items())
