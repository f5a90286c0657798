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
import json
import logging
import os
import signal
import time
from pathlib import Path

import optuna
import torch
from torch import nn

from . import record
from .cache import FeatureCache, build_cache
from .checkpoint import load_checkpoint, load_run
from .config import SearchConfig, TrainConfig
from .data import build_datasets
from .errors import ConfigError, SearchError
from .files import save_torch, write_text
from .lock import Holder, RunLock
from .model import backbone_normalization, create_backbone
from .oneshot import screen
from .optim import default_device
from .progress import Progress, report
from .search import counts, create_study, redact, start_workers, top_cells
from .space import conv1x1_cell
from .train import train

logger = logging.getLogger(__name__)


def _waiting(what: str):
    def say(holder: Holder | None) -> None:
        logger.info("waiting for %s to finish %s", holder or "another process", what)
    return say


def warmup_config(config: SearchConfig) -> TrainConfig:
    return TrainConfig(name="backbone", seed=config.seed, output_dir=config.run_dir, data=config.data,
                       model=config.backbone, optim=config.warmup, checkpoint_every=50, log_every=10)


def backbone_weights(config: SearchConfig) -> Path:
    """Where the warmed-up backbone's weights are saved."""
    return config.run_dir / "backbone.pth"


def cached_weights(config: SearchConfig) -> str | None:
    """The weights of the backbone whose features the cache holds (a file, a timm tag, or None for a random one):
    re-ranking starts from them, also when the cache is another run's (``cache.dir``)."""
    spec = config.cache_dir / "spec.json"
    return json.loads(spec.read_text())["source"].get("weights") if spec.exists() else None


def proxy_backbone(config: SearchConfig, progress: Progress | None = None) -> tuple[nn.Module, str | None]:
    """The backbone whose features the proxy caches, and where its weights come from.

    From the recipe's pretrained weights, or warmed up on the data first when the recipe has a ``warmup`` section.
    A backbone with neither is random: its features say nothing about the data, and the search would rank cells on
    noise, so it is refused unless the recipe says ``allow_random_backbone: true``."""
    model = config.backbone
    if config.warmup is None:
        if not model.pretrained and not config.allow_random_backbone:
            raise ConfigError(f"backbone {model.backbone}: neither pretrained weights nor a warm-up; set "
                              f"backbone.pretrained or a warmup section (or allow_random_backbone: true)")
        torch.manual_seed(config.seed)  # without weights the backbone is random: the same one on every rerun
        backbone = create_backbone(model.backbone, model.output_stride, model.pretrained, model.feature_stages)
        return backbone, str(model.pretrained) if model.pretrained else None
    run = warmup_config(config)
    checkpoint = run.run_dir / "checkpoint.pt"
    if not (checkpoint.exists() and load_checkpoint(checkpoint)["iteration"] >= run.optim.iterations):
        logger.info("backbone warm-up: %d iterations in %s", run.optim.iterations, run.run_dir)
        train(run, resume=True, progress=progress, command="densecell search (backbone warm-up)")
    backbone = load_run(checkpoint).model.backbone
    save_torch(backbone.state_dict(), backbone_weights(config))
    return backbone, str(backbone_weights(config).resolve())


def normalization(config: SearchConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    model = config.backbone
    mean, std = backbone_normalization(model.backbone, model.pretrained)
    return model.mean or mean, model.std or std


def build_feature_cache(config: SearchConfig, progress: Progress | None = None) -> Path:
    """The proxy's feature cache of the recipe (built, resumed, or found complete)."""
    if config.cache.dir is not None:
        FeatureCache.load(config.cache.dir)  # someone else's cache: it must be complete
        return config.cache.dir
    backbone, weights = proxy_backbone(config, progress)
    data = config.data
    stats = normalization(config)
    train_set, val_set = build_datasets(data.model_copy(update={"val_split": data.val_split or "val"}), stats)
    source = {"backbone": config.backbone.backbone, "weights": weights, "mean": list(stats[0]),
              "std": list(stats[1])}
    return build_cache(backbone, train_set, val_set, config.cache_dir, output_stride=config.backbone.output_stride,
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
    """The proxy score of a head without context (a lone 1x1 convolution), trained like every trial: it tells whether
    context helps on this data at all, and how much the search found."""
    from .proxy import train_candidate

    if record.baseline(study) is None:
        known = config.cache_dir / "baselines.json"  # one per proxy setting, shared by the studies of a cache
        baselines = json.loads(known.read_text()) if known.exists() else {}
        key = hashlib.sha1(config.proxy.model_dump_json().encode()).hexdigest()[:12]
        if key not in baselines:
            device = default_device()
            baselines[key] = train_candidate(conv1x1_cell(), FeatureCache.load(config.cache_dir, device),
                                             config.proxy, device=device).miou
            write_text(known, json.dumps(baselines, indent=1))
        record.store_baseline(study, baselines[key])
    return record.baseline(study)


def rerank_config(config: SearchConfig, name: str, cell_json: str, output_dir: Path | None = None) -> TrainConfig:
    """A re-ranking run: the cell on the proxy's backbone, trained end to end with the recipe's re-ranking data and
    optimisation, starting from the backbone whose features the cache holds."""
    model = config.backbone.model_copy(update={"head": "dpc", "cell": cell_json, "pretrained": cached_weights(config)})
    return TrainConfig(name=name, seed=config.seed, output_dir=output_dir or config.run_dir / "rerank",
                       data=config.rerank_data(), model=model, optim=config.rerank.optim, checkpoint_every=50,
                       log_every=10)


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
    with lock:
        build_feature_cache(config, progress)
        if config.search.mode == "oneshot":
            create_study(config.name, config.storage_url, config.search_settings())
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
