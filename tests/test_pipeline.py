"""The one command on the synthetic data: cache, search with 2 workers, re-rank, report; then again (resumes)."""

import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from densecell.cell.space import Cell
from densecell.config import load_search_config
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.search import completed_trials, record, stages
from densecell.search.cache import FeatureCache
from densecell.search.pipeline import run_pipeline
from densecell.search.proxy import train_candidate
from densecell.training.optim import default_device
from helpers import recipe


@pytest.mark.slow
def test_search_pipeline_end_to_end_and_resumed(tmp_path, monkeypatch):
    root = write_synthetic_cityscapes(tmp_path / "data", train=16, val=6, seed=2)
    config = load_search_config(recipe("search-synthetic.yaml"), [
        f"data.root={root}", f"output_dir={tmp_path / 'runs'}", "warmup.iterations=20", "data.batch_size=4",
        "cache.views=1",
        "search.trials=6", "proxy.iterations=40", "rerank.top=2", "rerank.optim.iterations=10"])
    outputs = run_pipeline(config)
    for key in ("report", "html", "best_cell", "progress", "histogram", "pareto", "cell 1"):
        assert outputs[key].is_file(), key
    assert "correlation" not in outputs  # two re-ranked cells: a sentence, not a plot
    best = Cell.from_json(outputs["best_cell"])
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    complete = completed_trials(study)
    assert len(complete) == 6
    summary = json.loads((outputs["report"].parent / "summary.json").read_text())
    assert summary["reranked"] == 2 and summary["best_by"] == "re-trained mIoU"
    assert best == next(t for t in complete if t.number == summary["best_trial"]).cell
    # the synthetic classes need context: the search's best cell beats its worst and a lone 1x1 convolution
    scores = summary["proxy_miou"]
    assert scores["best"] > scores["worst"] + 0.02 and scores["best"] > scores["baseline_1x1"] + 0.02, scores
    assert_shareable(outputs["html"])
    assert summary["search"]["sampler"] == "predictor" and summary["search"]["startup"] == 5
    assert summary["search"]["workers"] >= 1 and summary["search"]["compute_s"] > 0
    assert set(summary["retrained_iterations"]) == {str(n) for n in record.full_scores(study)}
    shown = outputs["html"].read_text()
    for words in ("What it found.", "How.", "How far to trust it.", "best_cell.json", "re-trained end to end",
                  "too few for a rank correlation", "The search over time"):
        assert words in shown, words

    # proxy scores are reproducible: the best trial's cell, re-trained with its own seed on the workers' device and,
    # like them, one thread, gets its recorded score (to the bit on a CPU; cuDNN's kernels may differ a little)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.search.threads)
    try:
        device = default_device()
        cache = FeatureCache.load(config.cache_dir, device)
        again = train_candidate(complete[0].cell, cache, config.proxy, seed=complete[0].number, device=device)
    finally:
        torch.set_num_threads(threads)
    assert again.miou == pytest.approx(complete[0].values[0], abs=1e-6 if device.type == "cpu" else 0.02)

    # again: every stage is found done, and no search worker starts on the finished study
    monkeypatch.setattr(stages, "start_workers", lambda *_: pytest.fail("a search worker started on a finished study"))
    checkpoints = sorted((config.run_dir / "rerank").glob("*/checkpoint.pt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    cache_stamp = (config.cache_dir / "train.features.npy").stat().st_mtime_ns
    run_pipeline(config)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert (config.cache_dir / "train.features.npy").stat().st_mtime_ns == cache_stamp
    trials = optuna.load_study(study_name=config.name, storage=config.storage_url).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6


def assert_shareable(page):
    """The report as a page to share: every file it names is there, and no undefined figure reaches the reader."""
    import html as html_module
    import re

    text = page.read_text()
    for target in re.findall(r'(?:src|href)="([^"#]+)"', text):
        assert (page.parent / html_module.unescape(target)).is_file(), target
    shown = re.sub(r"<[^>]+>", " ", text)  # what the reader sees, without the markup
    assert not re.search(r"\b(None|nan|NaN|null)\b", shown), re.findall(r".{40}\b(?:None|nan|null)\b.{40}", shown)
    assert "<style>" in text and text.count("<img") >= 4
