"""The paper's search as a recipe: its values are the paper's, and it runs on a Cityscapes-layout fixture with the
pretrained weights coming from a Hugging Face cache (offline), as a user's would."""

import json
import os
import subprocess
import sys

import optuna
import pytest
import timm
import torch
from optuna.trial import TrialState

from densecell.config import load_search_config
from densecell.training.checkpoint import load_run
from helpers import recipe, write_hf_cache

RECIPE = recipe("search-cityscapes-mobilenetv2.yaml")


def test_the_recipe_is_the_papers_proxy():
    config = load_search_config(RECIPE)
    assert config.backbone.backbone == "mobilenetv2_100" and config.backbone.output_stride == 16
    assert config.backbone.pretrained == "mobilenetv2_100.ra_in1k" and config.warmup is None
    assert config.data.dataset == "cityscapes" and config.data.crop_size == (769, 769)
    proxy = config.proxy
    assert (proxy.iterations, proxy.batch_size, proxy.lr, proxy.power, proxy.filters) == (30_000, 8, 0.01, 0.9, 256)
    assert proxy.upsample_logits and proxy.optimizer == "sgd"
    # the paper's budget, with the sampler the measurements recommend (the paper's Vizier search is `vizier`)
    assert config.search.sampler == load_search_config(recipe("search-synthetic.yaml")).search.sampler == "predictor"
    assert config.search.trials == 28_000
    assert config.rerank.top == 50
    rerank = config.rerank_data()
    assert rerank.batch_size == 16 and rerank.crop_size == (769, 769) and rerank.root == config.data.root
    assert config.rerank.optim.lr == 0.01 and config.rerank.optim.iterations == 90_000


@pytest.mark.slow
def test_the_papers_search_runs_on_a_cityscapes_layout(synthetic_root, tmp_path):
    """With ``backbone.pretrained: true`` (timm's default weights, which the README documents there): the cache
    records the tag it loaded, and re-ranking starts from it (it once became the tag 'mobilenetv2_100.True')."""
    torch.manual_seed(0)
    write_hf_cache(tmp_path / "hf", "timm/mobilenetv2_100.ra_in1k", timm.create_model("mobilenetv2_100").state_dict())
    small = {"data.crop_size": "[65,65]", "data.batch_size": 2, "data.workers": 0, "proxy.iterations": 20,
             "proxy.batch_size": 2, "proxy.filters": 16, "search.trials": 2, "search.threads": 2, "rerank.top": 1,
             "rerank.data.batch_size": 2, "rerank.data.crop_size": "[65,65]", "rerank.optim.iterations": 2,
             "output_dir": tmp_path / "runs", "backbone.pretrained": "true"}
    args = sum((["--set", f"{key}={value}"] for key, value in small.items()), [])
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "densecell", "search", "--config", RECIPE, "--data-root",
                           str(synthetic_root), *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "search-cityscapes-mobilenetv2"
    source = json.loads((run / "cache" / "spec.json").read_text())["source"]
    assert source["weights"] == "mobilenetv2_100.ra_in1k" and source["mean"] == [0.485, 0.456, 0.406]
    study = optuna.load_study(study_name="search-cityscapes-mobilenetv2", storage=f"sqlite:///{run / 'study.db'}")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["reranked"] == 1
    reranked = load_run(next((run / "rerank").glob("trial-*/checkpoint.pt")))
    assert reranked.backbone_weights == "mobilenetv2_100.ra_in1k"
