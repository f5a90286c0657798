"""The one command for a user's own data: warm up a backbone, cache its features, search, re-rank, report.

Every stage leaves its result on disk and is skipped or resumed when the command runs again: the warm-up and the
re-ranking runs are resumable training runs, the cache resumes at its first missing shard, and the search is an
Optuna study that any number of workers can join.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from .checkpoint import load_checkpoint, load_model
from .config import SearchConfig, TrainConfig
from .data import build_dataset
from .model import build_model
from .proxy import FeatureCache, ProxySettings, build_cache, train_candidate
from .search import (BASELINE_KEY, SearchSettings, completed_trials, counts, create_study, record_baseline,
                     record_full_score, redact, top_cells)
from .space import conv1x1_cell
from .train import build_datasets, train

STORAGE_ENV = "DENSECELL_STORAGE"
"""Workers started by this command get the storage URL from the environment, so that no password shows in ``ps``."""


def warmup_config(config: SearchConfig) -> TrainConfig:
    return TrainConfig(name="backbone", seed=config.seed, output_dir=config.run_dir, data=config.data,
                       model=config.backbone, optim=config.warmup, checkpoint_every=50, log_every=10)


def proxy_backbone(config: SearchConfig, progress: bool = True) -> tuple[nn.Module, Path | None]:
    """The backbone whose features the proxy caches: warmed up on the data first when the recipe asks."""
    if config.warmup is None:
        torch.manual_seed(config.seed)  # without weights the backbone is random: the same one on every rerun
        classes = build_dataset(config.data.dataset, config.data.root, config.data.train_split,
                                **config.data.dataset_options()).num_classes
        return build_model(**config.backbone.build_kwargs(), num_classes=classes).backbone, None
    run = warmup_config(config)
    checkpoint = run.run_dir / "checkpoint.pt"
    if not (checkpoint.exists() and load_checkpoint(checkpoint)["iteration"] >= run.optim.iterations):
        train(run, resume=True, progress=progress)
    model, _ = load_model(checkpoint)
    weights = config.run_dir / "backbone.pth"
    torch.save(model.backbone.state_dict(), weights)
    return model.backbone, weights


def cache_dir(config: SearchConfig) -> Path:
    return config.run_dir / "cache"


def build_feature_cache(config: SearchConfig, progress: bool = True) -> Path:
    backbone, weights = proxy_backbone(config, progress)
    data = config.data
    train_set, val_set = build_datasets(data.model_copy(update={"val_split": data.val_split or "val"}))
    source = {"backbone": config.backbone.backbone, "weights": str(weights or config.backbone.pretrained)}
    return build_cache(backbone, train_set, val_set, cache_dir(config), output_stride=config.backbone.output_stride,
                       crop_size=data.crop_size, val_size=config.proxy.val_size, views=config.proxy.views,
                       shard_size=config.proxy.shard_size,
                       seed=config.seed, device="cuda" if torch.cuda.is_available() else "cpu", progress=progress,
                       source=source)


CACHE_ONLY = {"views", "shard_size", "val_size"}
"""Proxy config fields that shape the feature cache; every other one (but ``prune``) is a ProxySettings field."""


def search_settings(config: SearchConfig) -> SearchSettings:
    proxy = config.proxy
    section = config.search
    return SearchSettings(
        cache_dir=str(cache_dir(config).resolve()), trials=section.trials, sampler=section.sampler,
        objectives=section.objectives, seed=config.seed, prune=proxy.prune, threads=section.threads,
        proxy=ProxySettings(**proxy.model_dump(exclude=CACHE_ONLY | {"prune"})),
        num_branches=section.num_branches, rates=section.rates, grids=section.grids,
    )


def run_search(config: SearchConfig, progress: bool = True) -> optuna.Study:
    """Create the study and run ``search.workers`` worker processes on it until it has its trials."""
    study = create_study(config.name, config.storage_url, search_settings(config))
    env = os.environ | {STORAGE_ENV: config.storage_url}
    workers = [
        subprocess.Popen([sys.executable, "-m", "densecell", "search", "worker", "--study", config.name,
                          "--seed", str(index)], env=env)
        for index in range(config.search.workers)
    ]
    bar = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), disable=not progress)
    task = bar.add_task("search", total=config.search.trials, info="")
    with bar:
        try:
            while any(worker.poll() is None for worker in workers):
                now = counts(study)
                bar.update(task, completed=now.complete, info=f"{now.running} running, {now.failed} failed")
                time.sleep(1)
        except KeyboardInterrupt:  # the workers stop too; their finished trials are in the study
            for worker in workers:
                worker.send_signal(signal.SIGINT)
            for worker in workers:
                worker.wait()
            raise
        now = counts(study)
        bar.update(task, completed=now.complete)
    failed = [w.returncode for w in workers if w.returncode]
    if failed and now.complete < config.search.trials:
        raise RuntimeError(f"search workers exited with codes {failed} before the study had its "
                           f"{config.search.trials} trials; see `densecell search status --config ...`")
    return study


def proxy_baseline(config: SearchConfig, study: optuna.Study) -> float:
    """The proxy score of a head without context (a lone 1x1 convolution), trained like every trial: it tells whether
    context helps on this data at all, and how much the search found."""
    if BASELINE_KEY not in study.user_attrs:
        result = train_candidate(conv1x1_cell(), FeatureCache.load(cache_dir(config)), search_settings(config).proxy,
                                 device="cuda" if torch.cuda.is_available() else "cpu")
        record_baseline(study, result.miou)
    return study.user_attrs[BASELINE_KEY]


def rerank_config(config: SearchConfig, trial_number: int, cell_json: str, weights: Path | None) -> TrainConfig:
    model = config.backbone.model_copy(update={"head": "dpc", "cell": cell_json,
                                               "pretrained": weights or config.backbone.pretrained})
    return TrainConfig(name=f"trial-{trial_number}", seed=config.seed, output_dir=config.run_dir / "rerank",
                       data=config.data, model=model, optim=config.rerank.optim, checkpoint_every=50, log_every=10)


def rerank(config: SearchConfig, study: optuna.Study, top: int | None = None, progress: bool = True) -> dict[int,
                                                                                                         float]:
    """Re-train the best ``top`` proxy cells end to end (the paper's re-ranking) and record their val mIoU."""
    weights = config.run_dir / "backbone.pth"
    scores = {}
    for trial, cell in top_cells(study, config.rerank.top if top is None else top):
        key = f"full_miou:{trial.number}"
        if key in study.user_attrs:
            scores[trial.number] = study.user_attrs[key]
            continue
        result = train(rerank_config(config, trial.number, cell.to_json(), weights if weights.exists() else None),
                       resume=True, progress=progress)
        record_full_score(study, trial.number, result.val_miou)
        scores[trial.number] = result.val_miou
    return scores


def run_pipeline(config: SearchConfig, progress: bool = True, console: Console | None = None) -> dict[str, Path]:
    """All the stages, each resumed or skipped if done; returns where the report and the best cell are."""
    from .report import write_report

    console = console or Console()
    if config.data.root is None:
        raise ValueError("no data root: pass --data-root or set data.root in the config")
    console.print(f"[bold]1/4[/] feature cache in {cache_dir(config)}")
    build_feature_cache(config, progress)
    console.print(f"[bold]2/4[/] search: {config.search.trials} trials, {config.search.workers} workers, "
                  f"storage {redact(config.storage_url)}")
    study = run_search(config, progress)
    scores = sorted(trial.values[0] for trial in completed_trials(study))
    console.print(f"proxy mIoU: best {scores[-1]:.3f}, median {scores[len(scores) // 2]:.3f}, worst {scores[0]:.3f}; "
                  f"a lone 1x1 convolution (no context) {proxy_baseline(config, study):.3f}")
    console.print(f"[bold]3/4[/] re-ranking the top {config.rerank.top} end to end")
    rerank(config, study, progress=progress)
    console.print("[bold]4/4[/] report")
    return write_report(study, config.run_dir)
