"""The one command for a user's own data: warm up a backbone, cache its features, search, re-rank, report.

Every stage leaves its result on disk and is skipped or resumed when the command runs again: the warm-up and the
re-ranking runs are resumable training runs, the cache resumes at its first missing shard, and the search is an
Optuna study that any number of workers can join.

Two commands on one run share the work instead of colliding: the warm-up and the cache are built under the run's
lock (:mod:`densecell.lock`), so a second command waits for them; the search stage is open to every command's
workers; re-ranking and the report run under the lock again, and a command that finds them done for the study as it
stands does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from . import record
from .cache import CacheSource, FeatureCache, build_cache, cache_source, check_cache, remembered
from .checkpoint import load_checkpoint, load_run
from .config import SearchConfig, TrainConfig
from .data import build_datasets
from .errors import ConfigError, SearchError
from .files import save_torch
from .lock import Holder, RunLock
from .model import create_backbone, resolve_normalization, resolve_weights
from .oneshot import screen
from .optim import default_device
from .progress import Progress, report
from .proxy import train_candidate
from .search import counts, create_study, redact, start_workers, study_precision, top_cells
from .space import conv1x1_cell
from .train import train

logger = logging.getLogger(__name__)


def _waiting(what: str):
    def say(holder: Holder | None) -> None:
        logger.info("waiting for %s to finish %s", holder or "another process", what)
    return say


def warmup_config(config: SearchConfig) -> TrainConfig:
    return TrainConfig(name="backbone", seed=config.seed, output_dir=config.run_dir, data=config.data,
                       model=config.backbone, optim=config.warmup, checkpoint_every=50, log_every=10,
                       allow_random_backbone=config.allow_random_backbone)


def backbone_weights(config: SearchConfig) -> Path:
    """Where the warmed-up backbone's weights are saved."""
    return config.run_dir / "backbone.pth"


def proxy_backbone(config: SearchConfig, progress: Progress | None = None) -> tuple[nn.Module, str | None]:
    """The backbone whose features the proxy caches, and the weights it loaded (resolved: a timm tag or a file).

    From the recipe's pretrained weights, or warmed up on the data first when the recipe has a ``warmup`` section.
    A backbone with neither is random: its features say nothing about the data, and the search would rank cells on
    noise, so it is refused unless the recipe says ``allow_random_backbone: true``."""
    model = config.backbone
    if config.warmup is None:
        weights = resolve_weights(model.backbone, model.pretrained)
        if weights is None and not config.allow_random_backbone:
            raise ConfigError(f"backbone {model.backbone}: neither pretrained weights nor a warm-up; set "
                              f"backbone.pretrained or a warmup section (or allow_random_backbone: true)")
        with torch.random.fork_rng(devices=[]):  # without weights the backbone is random: the same on every rerun
            torch.manual_seed(config.seed)
            backbone = create_backbone(model.backbone, model.output_stride, weights, model.feature_stages)
        return backbone, weights
    run = warmup_config(config)
    checkpoint = run.run_dir / "checkpoint.pt"
    if not (checkpoint.exists() and load_checkpoint(checkpoint)["iteration"] >= run.optim.iterations):
        logger.info("backbone warm-up: %d iterations in %s", run.optim.iterations, run.run_dir)
        train(run, resume=True, progress=progress, command="densecell search (backbone warm-up)")
    backbone = load_run(checkpoint).model.backbone
    save_torch(backbone.state_dict(), backbone_weights(config))
    return backbone, str(backbone_weights(config).resolve())


def build_feature_cache(config: SearchConfig, progress: Progress | None = None) -> Path:
    """The proxy's feature cache of the recipe (built, resumed, or found complete and whole)."""
    if config.cache.dir is not None:
        check_cache(config.cache.dir)  # someone else's cache: it must be complete and whole
        return config.cache.dir
    model, data = config.backbone, config.data
    backbone, weights = proxy_backbone(config, progress)
    mean, std = resolve_normalization(model.backbone, model.pretrained, model.mean, model.std)
    train_set, val_set = build_datasets(data.model_copy(update={"val_split": data.val_split or "val"}), (mean, std))
    source = CacheSource(backbone=model.backbone, weights=weights, mean=mean, std=std)
    return build_cache(backbone, train_set, val_set, config.cache_dir, output_stride=model.output_stride,
                       crop_size=data.crop_size, val_size=config.cache.val_size, views=config.cache.views,
                       shard_size=config.cache.shard_size, seed=config.seed, device=default_device(),
                       progress=progress, source=source)


def run_search(config: SearchConfig, progress: Progress | None = None) -> optuna.Study:
    """Create the study (or join it) and run ``search.workers`` worker processes on it until it has its trials."""
    study = create_study(config.name, config.storage_url, config.search_settings())
    workers = start_workers(config.name, config.storage_url, config.search.workers)
    try:
        while any(worker.is_alive() for worker in workers):
            now = counts(study)
            report(progress, "search", now.complete, config.search.trials,
                   f"{now.running} running, {now.failed} failed")
            time.sleep(1)
    except KeyboardInterrupt:  # the workers stop too; their finished trials are in the study
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGINT)
        for worker in workers:
            worker.join()
        raise
    now = counts(study)
    report(progress, "search", now.complete, config.search.trials)
    codes = [w.exitcode for w in workers if w.exitcode]
    if codes and now.complete < config.search.trials:
        raise SearchError(f"study {config.name!r}: search workers exited with codes {codes} before it had its "
                          f"{config.search.trials} trials")
    return study


def proxy_baseline(config: SearchConfig, study: optuna.Study) -> float:
    """The proxy score of a head without context (a lone 1x1 convolution), trained like every trial (the study's
    precision included): it tells whether context helps on this data at all, and how much the search found. One per
    proxy setting and precision, shared by the studies of a cache (``baselines.json``)."""
    if record.baseline(study) is None:
        device = default_device()
        cache = FeatureCache.load(config.cache_dir, device)
        precision = study_precision(study, config.search_settings(), device, cache)
        key = hashlib.sha1(f"{config.proxy.model_dump_json()} {precision}".encode()).hexdigest()[:12]
        miou = remembered(cache.folder, "baselines.json", key, lambda: train_candidate(
            conv1x1_cell(), cache, config.proxy, device=device, precision=precision).miou)
        record.store_baseline(study, miou)
    return record.baseline(study)


def rerank_config(config: SearchConfig, name: str, cell_json: str, output_dir: Path | None = None) -> TrainConfig:
    """A re-ranking run: the cell on the proxy's backbone, trained end to end with the recipe's re-ranking data and
    optimisation, starting from the weights whose features the cache holds (as the cache recorded them, also when
    it is another run's), with the normalisation they were cached with."""
    source = cache_source(config.cache_dir)
    update: dict[str, Any] = {"head": "dpc", "cell": cell_json}
    if source is not None:
        update |= {"pretrained": source.weights, "mean": source.mean, "std": source.std}
    return TrainConfig(name=name, seed=config.seed, output_dir=output_dir or config.run_dir / "rerank",
                       data=config.rerank_data(), model=config.backbone.model_copy(update=update),
                       optim=config.rerank.optim, checkpoint_every=50, log_every=10,
                       allow_random_backbone=config.allow_random_backbone)


def rerank(config: SearchConfig, study: optuna.Study, top: int | None = None,
           progress: Progress | None = None) -> dict[int, float]:
    """Re-train the best ``top`` proxy cells end to end (the paper's re-ranking) and record their val mIoU."""
    done = record.full_scores(study)
    scores = {}
    for trial in top_cells(study, config.rerank.top if top is None else top):
        if trial.number not in done:
            run = rerank_config(config, f"trial-{trial.number}", trial.cell.to_json())
            result = train(run, resume=True, progress=progress, command="densecell rerank")
            record.store_full_score(study, trial.number, result.val_miou)
            done[trial.number] = result.val_miou
        scores[trial.number] = done[trial.number]
    return scores


def run_pipeline(config: SearchConfig, progress: Progress | None = None,
                 command: str = "densecell search") -> dict[str, Path]:
    """All the stages, each resumed or skipped if done; returns where the report and the best cell are."""
    from .report import report_is_current, write_report

    config.data.require_root()
    lock = RunLock(config.run_dir, command, wait=True, on_wait=_waiting("the backbone warm-up and the cache"))
    logger.info("1/4 feature cache in %s", config.cache_dir)
    with lock:  # the cache, the study and its precision are made once, before any worker starts
        build_feature_cache(config, progress)
        create_study(config.name, config.storage_url, config.search_settings())
        if config.search.mode == "oneshot":
            logger.info("one-shot screen: the supernet scores %d cells", config.search.oneshot_cells)
            screen(config, progress)
    logger.info("2/4 search: %d trials, %d workers here, storage %s", config.search.trials, config.search.workers,
                redact(config.storage_url))
    study = run_search(config, progress)
    lock.on_wait = _waiting("re-ranking and the report")
    with lock:
        scores = sorted(trial.values[0] for trial in top_cells(study, config.search.trials))
        logger.info("proxy mIoU: best %.3f, median %.3f, worst %.3f; a lone 1x1 convolution (no context) %.3f",
                    scores[-1], scores[len(scores) // 2], scores[0], proxy_baseline(config, study))
        if config.rerank.top:
            logger.info("3/4 re-ranking the top %d end to end", config.rerank.top)
        else:
            logger.info("3/4 re-ranking: none asked for (rerank.top is 0)")
        rerank(config, study, progress=progress)
        logger.info("4/4 report")
        current = report_is_current(study, config.run_dir)
        outputs = write_report(study, config.run_dir)
        logger.info("report is up to date: %s" if current else "report written: %s", outputs["report"])
        return outputs
