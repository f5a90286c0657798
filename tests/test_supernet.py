"""The one-shot supernet: a cell's path is the DensePredictionCell with the inherited weights; training resumes
exactly after a SIGKILL; the screen scores cells into the study and queues the best for the proxy."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from optuna.trial import TrialState

from densecell.cell.space import SearchSpace, load_cell
from densecell.config import ProxySettings, SupernetConfig, load_search_config
from densecell.search import record
from densecell.search.cache import FeatureCache
from densecell.search.supernet import Supernet, build_supernet, resume, score_cell, step_cell, train_supernet
from densecell.training.optim import LOSS_SCALE
from densecell.training.precision import Precision
from helpers import Held, recipe

MIXED = load_cell('[{"kernel": 3, "rate": [21, 3], "op": "conv", "input": -1}, '
                  '{"grid_size": [2, 4], "op": "pyramid_pooling", "input": 0}, '
                  '{"kernel": 1, "op": "conv", "input": 1}, '
                  '{"grid_size": [8, 1], "op": "pyramid_pooling", "input": -1}, '
                  '{"kernel": 3, "rate": [1, 1], "op": "conv", "input": 3}]')


def randomised(module, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + (0.5 if "var" in name else -0.5))
    return module


@pytest.mark.parametrize("output_stride", [16, 8])
def test_a_path_is_the_cell_with_the_inherited_weights(output_stride):
    space = SearchSpace()
    supernet = randomised(Supernet(space, 12, 5, filters=8, output_stride=output_stride), 0).eval()
    features = torch.randn(2, 12, 17, 21)
    for cell in [MIXED, load_cell("cityscapes-top1"), *(space.sample(seed) for seed in range(6))]:
        head = supernet.extract(cell).eval()
        assert torch.allclose(supernet(features, cell), head(features), atol=1e-5), str(cell)
    assert sum(p.numel() for p in supernet.parameters()) < 5 * 3 * 2 * 12 * 12 * 12  # shared, not one per cell


def test_every_branch_shares_its_weights_over_rates_and_grids():
    supernet = Supernet(SearchSpace(), 12, 5, filters=8)
    seps = [m for m in supernet.modules() if type(m).__name__ == "SeparableConv"]
    pools = [m for m in supernet.modules() if type(m).__name__ == "PyramidPooling"]
    assert len(seps) == len(pools) == 1 + 2 * 4  # branch 0 reads F only; the others F or Y
    assert step_cell(SearchSpace(), 3, 10) == step_cell(SearchSpace(), 3, 10) != step_cell(SearchSpace(), 3, 11)


def small(feature_cache_folder, steps=12):
    return FeatureCache.load(feature_cache_folder), ProxySettings(batch_size=4, lr=0.01, filters=8,
                                                                  optimizer="adam"), SupernetConfig(
        steps=steps, checkpoint_every=3, bn_batches=1, bn_batch_size=8)


def test_scores_are_in_range_and_repeatable(feature_cache, tmp_path):
    cache, proxy, settings = small(feature_cache[0])
    supernet = train_supernet(cache, SearchSpace(), proxy, settings, tmp_path, seed=1)
    scores = [score_cell(supernet, cell, cache, settings) for cell in (MIXED, MIXED, load_cell("cityscapes-top1"))]
    assert scores[0] == scores[1]
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    score_cell(supernet, MIXED, cache, settings)
    assert all(torch.equal(state[k], v) for k, v in supernet.state_dict().items())  # scoring leaves the weights


def test_the_supernet_scales_its_loss_in_fp16_and_checkpoints_the_scale(feature_cache, tmp_path):
    """The supernet computes in the study's precision; in fp16 its loss is scaled (it once ran fp16 unscaled, and
    the proxy's gradients at the logits are below fp16's smallest normal number), and the scale is part of the
    state a resumed training restores."""
    cache, proxy, settings = small(feature_cache[0], steps=3)
    run = build_supernet(cache, SearchSpace(), proxy, 0, torch.device("cpu"), Precision("fp16"))
    assert run.scaler.is_enabled() and run.precision.amp == "fp16"
    assert not build_supernet(cache, SearchSpace(), proxy, 0, torch.device("cpu")).scaler.is_enabled()
    train_supernet(cache, SearchSpace(), proxy, settings, tmp_path, precision=Precision("fp16"))
    saved = torch.load(tmp_path / "supernet.pt", weights_only=True)
    assert saved["step"] == 3 and 0 < saved["scaler"]["scale"] <= LOSS_SCALE  # it backs off from 2^16 as it must
    again = build_supernet(cache, SearchSpace(), proxy, 0, torch.device("cpu"), Precision("fp16"))
    resume(again, tmp_path / "supernet.pt")
    assert again.scaler.get_scale() == saved["scaler"]["scale"] and again.step == 3


@pytest.mark.slow
def test_a_killed_supernet_training_resumes_to_the_same_weights(synthetic_root, tmp_path):
    overrides = [f"data.root={synthetic_root}", f"output_dir={tmp_path}", "warmup=null", "allow_random_backbone=true",
                 "cache.views=1", "proxy.batch_size=4", "proxy.filters=8", "supernet.steps=40",
                 "supernet.checkpoint_every=4", "search.mode=oneshot", "search.oneshot_cells=3", "search.trials=2"]
    straight = load_search_config(recipe("search-synthetic.yaml"), overrides + ["name=straight"])
    from densecell.search.stages import feature_cache, supernet

    feature_cache(straight)
    reference = supernet(straight)[0].state_dict()
    args = ["supernet", "--config", recipe("search-synthetic.yaml"), *sum((["--set", o] for o in overrides +
                                                                          ["name=killed"]), [])]
    held = Held(tmp_path / "held", "supernet", 2)  # just after the checkpoint of step 8
    process = subprocess.Popen([sys.executable, "-m", "densecell", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,  # on the CPU, as the reference
                               env=os.environ | {"PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""} | held.env)
    checkpoint = tmp_path / "killed" / "supernet" / "supernet.pt"
    held.wait(process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert torch.load(checkpoint, weights_only=True)["step"] == 8
    killed = load_search_config(recipe("search-synthetic.yaml"), overrides + ["name=killed"])
    resumed = supernet(killed)[0].state_dict()
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key


@pytest.mark.slow
def test_the_screen_scores_cells_into_the_study_and_the_best_go_to_the_proxy(synthetic_root, tmp_path):
    from densecell.search import completed_trials, load_study
    from densecell.search.pipeline import run_pipeline
    from densecell.search.stages import feature_cache

    base = load_search_config(recipe("search-synthetic.yaml"), [
        f"data.root={synthetic_root}", f"output_dir={tmp_path}", "warmup=null", "allow_random_backbone=true",
        "cache.views=1"])
    feature_cache(base)
    config = load_search_config(recipe("search-synthetic-oneshot.yaml"), [
        f"data.root={synthetic_root}", f"output_dir={tmp_path}", f"cache.dir={base.cache_dir}",
        "proxy.iterations=8", "proxy.batch_size=4", "supernet.steps=10", "search.oneshot_cells=12", "search.trials=3",
        "search.workers=1"])
    outputs = run_pipeline(config)
    study, _ = load_study(config.name, config.storage_url)
    oneshot = record.records(study, (TrialState.COMPLETE,), stage="oneshot")
    proxy = completed_trials(study)
    assert len(oneshot) == 12 and len(proxy) == 3  # the screen's trials do not count against the proxy's budget
    best = sorted({t.cell: t.oneshot_miou for t in oneshot}.items(), key=lambda kv: kv[1], reverse=True)[:3]
    assert {t.cell for t in proxy} == {cell for cell, _ in best}
    assert all(t.oneshot_miou is not None and t.stage == "proxy" for t in proxy)
    summary = (outputs["report"].parent / "summary.json").read_text()
    assert '"oneshot_cells": 12' in summary and "one-shot %" in outputs["report"].read_text()
    run_pipeline(config)  # again: nothing is screened or queued twice
    assert len(record.records(study, stage="oneshot")) == 12 and len(completed_trials(study)) == 3


def test_the_one_shot_stage_refuses_a_recipe_of_another_mode_before_any_work(tmp_path):
    """``densecell supernet`` on a proxy-mode recipe would write one-shot trials into a proxy study: refused, first."""
    from densecell.core.errors import ConfigError
    from densecell.search.stages import screen

    config = load_search_config(recipe("search-synthetic.yaml"), [f"output_dir={tmp_path}", "data.root=/no/data"])
    with pytest.raises(ConfigError, match="search.mode=oneshot"):
        screen(config)
    assert not any(tmp_path.iterdir())


def test_a_supernet_hands_out_the_proxys_own_head_with_its_dropout_and_pooling():
    from densecell.search.proxy import build_proxy_head

    net = Supernet(SearchSpace(), 16, 3, filters=8, dropout=0.3, pooling="grid")
    cell = load_cell("cityscapes-top1")
    head, proxy = net.extract(cell), build_proxy_head(cell, 16, 3, 16, 8, dropout=0.3, pooling="grid")
    def settings(module):
        return [(type(m).__name__, getattr(m, "pooling", None), getattr(m, "p", None)) for m in module.modules()]

    assert settings(head) == settings(proxy)
    assert ("CellDropout", None, 0.3) in settings(head) or ("Dropout", None, 0.3) in settings(head)
