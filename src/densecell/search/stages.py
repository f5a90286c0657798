"""The search's stages, each a function that takes the run's lock itself, resumes or skips what it finds done, and
returns what it made: the feature cache (with the backbone's warm-up), the study and its search mode's preparation
(the one-shot screen), the search, re-ranking and the report. :func:`densecell.search.pipeline.run_pipeline` composes
them, :mod:`densecell.search.fidelity` re-uses them, and each command of the command line is one of them.

Two commands on one run share the work instead of colliding: a stage that writes in the run folder holds its lock
(:mod:`densecell.core.lock`), so a second command waits for it and then finds it done; the search stage is open to every
command's workers.
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

from ..cell.space import conv1x1_cell
from ..config import SearchConfig, StudySettings, TrainConfig
from ..core.errors import CacheError, ConfigError, InputError, SearchError
from ..core.files import save_torch
from ..core.lock import Holder, RunLock
from ..core.progress import Progress, report
from ..core.ranking import summarise_scores
from ..core.registry import SEARCH_MODES
from ..data import build_datasets, check_data
from ..models.backbones import check_backbone, create_backbone, resolve_normalization, resolve_weights
from ..models.cost import CellCoster
from ..models.profile import DeviceProfile, measure_on_host
from ..training.checkpoint import checkpoint_path, finished_iteration, load_run, rerank_run
from ..training.optim import default_device
from ..training.precision import Precision
from ..training.train import train
from . import record
from .cache import CacheSource, FeatureCache, build_cache, cache_source, check_cache, remembered
from .proxy import train_candidate
from .report import report_is_current, write_report
from .spaces import DPCSpace
from .status import top_cells
from .study import create_study, load_study, make_sampler, redact, study_precision
from .supernet import Supernet, score_cell, train_supernet
from .worker import counts, start_workers

__all__ = ["OneShotMode", "ProxyMode", "SearchMode", "feature_cache", "prepare", "proxy_baseline", "rerank",
           "rerank_config", "search", "search_report", "screen", "supernet"]

logger = logging.getLogger(__name__)
FLUSH = 50
"""The one-shot screen writes its scored cells to the study this many at a time."""


def _locked(config: SearchConfig | Path, command: str, what: str) -> RunLock:
    """The run's lock (a recipe's run folder, or a folder), waiting (and saying so once) while another command holds
    it."""
    def say(holder: Holder | None) -> None:
        logger.info("waiting for %s to finish %s", holder or "another process", what)

    folder = config if isinstance(config, Path) else config.run_dir
    return RunLock(folder, command, wait=True, on_wait=say)


# --- the feature cache -------------------------------------------------------------------------------------------

def warmup_config(config: SearchConfig) -> TrainConfig:
    return TrainConfig(name="backbone", seed=config.seed, output_dir=config.run_dir, data=config.data,
                       model=config.backbone, optim=config.warmup, checkpoint_every=50, log_every=10,
                       allow_random_backbone=config.allow_random_backbone)


def _proxy_backbone(config: SearchConfig, progress: Progress | None) -> tuple[nn.Module, str | None]:
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
    if (finished_iteration(checkpoint_path(run.run_dir)) or 0) < run.optim.iterations:
        logger.info("backbone warm-up: %d iterations in %s", run.optim.iterations, run.run_dir)
        train(run, resume=True, progress=progress, command="densecell search (backbone warm-up)")
    backbone = load_run(checkpoint_path(run.run_dir)).model.backbone
    weights = config.run_dir / "backbone.pth"
    save_torch(backbone.state_dict(), weights)
    return backbone, str(weights.resolve())


def feature_cache(config: SearchConfig, progress: Progress | None = None, command: str = "densecell cache") -> Path:
    """The recipe's feature cache: built (the backbone warmed up first if the recipe says), resumed, or found
    complete and whole; ``cache.dir`` names another run's, which must be complete."""
    if config.cache.dir is not None:
        check_cache(config.cache.dir)
        return config.cache.dir
    check_backbone(config.backbone.backbone)
    check_data(config.data, (config.data.train_split, config.data.val_split or "val"))
    with _locked(config, command, "the backbone warm-up and the cache"):
        model, data = config.backbone, config.data
        backbone, weights = _proxy_backbone(config, progress)
        mean, std = resolve_normalization(model.backbone, model.pretrained, model.mean, model.std)
        train_set, val_set = build_datasets(data.model_copy(update={"val_split": data.val_split or "val"}),
                                            (mean, std))
        return build_cache(backbone, train_set, val_set, config.cache_dir, output_stride=model.output_stride,
                           crop_size=data.crop_size, val_size=config.cache.val_size, views=config.cache.views,
                           shard_size=config.cache.shard_size, seed=config.seed, device=default_device(),
                           progress=progress, source=CacheSource(backbone=model.backbone, weights=weights, mean=mean,
                                                                 std=std))


# --- the study and its search mode -------------------------------------------------------------------------------

class SearchMode:
    """What runs once before a study's workers may start proxy trials (under the run's lock). A new mode is a
    subclass and one entry in :data:`densecell.core.registry.SEARCH_MODES`."""

    def prepare(self, config: SearchConfig, study: optuna.Study, progress: Progress | None) -> None:
        """Nothing: the plain search's workers start at once."""


class ProxyMode(SearchMode):
    """The paper's search: every cell the sampler proposes is trained on the proxy."""


class OneShotMode(SearchMode):
    """The one-shot screen first (:func:`screen`): a sampler searches on the supernet's scores, and the best
    ``search.trials`` distinct cells are queued as the proxy's trials."""

    def prepare(self, config: SearchConfig, study: optuna.Study, progress: Progress | None) -> None:
        logger.info("one-shot screen: the supernet scores %d cells", config.search.oneshot_cells)
        _screen(config, study, progress)


def prepare(config: SearchConfig, progress: Progress | None = None,
            command: str = "densecell search") -> optuna.Study:
    """The study: created (or joined) with its precision chosen once, and its search mode's preparation done, before
    any worker starts."""
    with _locked(config, command, "the study's preparation"):
        study = create_study(config.name, config.storage_url, config.search_settings())
        if not record.ready(study):
            SEARCH_MODES[config.search.mode]().prepare(config, study, progress)
            record.store_ready(study)
    return study


def supernet(config: SearchConfig, progress: Progress | None = None,
             precision: Precision | None = None) -> tuple[Supernet, FeatureCache]:
    """The recipe's supernet, trained (or resumed, or loaded) in ``RUN/supernet`` under that folder's lock, with the
    cache it was trained on (on the default device)."""
    cache = FeatureCache.load(config.cache_dir, default_device())
    folder = config.run_dir / ("supernet" if config.supernet.sampling == "uniform" else
                               f"supernet-{config.supernet.sampling}")
    with RunLock(folder, "densecell supernet", wait=True):
        trained = train_supernet(cache, config.search_settings().cell_space, config.proxy, config.supernet, folder,
                                 config.seed, cache.train_features.device, progress, precision)
    return trained, cache


def _replay(records: list[record.TrialRecord], settings: StudySettings) -> list[optuna.trial.FrozenTrial]:
    """The scored cells as finished trials, for the sampler's memory."""
    space = DPCSpace(settings.cell_space)
    return [optuna.trial.create_trial(params=space.params_of(t.cell), distributions=space.distributions(),
                                      values=list(t.values), user_attrs=t.to_attrs()) for t in records]


def _screen(config: SearchConfig, study: optuna.Study, progress: Progress | None) -> list[record.TrialRecord]:
    """Train the supernet, score ``search.oneshot_cells`` cells with it into the study (any sampler searches on
    these scores, asked and told in memory, written every :data:`FLUSH` cells), queue the best for the proxy."""
    settings = config.search_settings()
    device = default_device()
    model, cache = supernet(config, progress, study_precision(study, settings, device))
    coster = CellCoster(cache.channels, config.proxy.filters, cache.image_size, cache.output_stride)
    scored = record.oneshot_records(study)
    memory = optuna.create_study(directions=settings.directions, sampler=make_sampler(settings, config.seed))
    memory.add_trials(_replay(scored, settings))
    space = DPCSpace(settings.cell_space)
    for count in range(len(scored), settings.oneshot_cells):
        trial = memory.ask()
        record.write(trial, stage="oneshot")
        cell = space.suggest_cell(trial)
        miou, cost = score_cell(model, cell, cache, config.supernet, device), coster(cell)
        values = (miou,) if settings.objectives == "miou" else (miou, float(cost.madds))
        memory.tell(trial, values[0] if len(values) == 1 else values)
        scored.append(record.TrialRecord(values=values, stage="oneshot", cell=cell, params=cost.params,
                                         madds=cost.madds, oneshot_miou=miou))
        if (count + 1) % FLUSH == 0 or count + 1 == settings.oneshot_cells:
            chunk = count // FLUSH
            record.store_oneshot_chunk(study, chunk, scored[chunk * FLUSH:(chunk + 1) * FLUSH])
        report(progress, "one-shot screen", count + 1, settings.oneshot_cells)
    return _queue_best(study, scored, settings.trials)


def _best_distinct(scored: list[record.TrialRecord], count: int) -> list[record.TrialRecord]:
    """The ``count`` best distinct cells of the screen's records, each with its best score, best first."""
    distinct: dict[Any, record.TrialRecord] = {}
    for trial in sorted(scored, key=lambda t: t.values[0], reverse=True):
        distinct.setdefault(trial.cell, trial)
    return list(distinct.values())[:count]


def _queue_best(study: optuna.Study, scored: list[record.TrialRecord], count: int) -> list[record.TrialRecord]:
    """Queue the ``count`` best distinct cells of ``scored`` (the screen's records) as proxy trials, once."""
    best = _best_distinct(scored, count)
    if record.screen_record(study) is None:
        for trial in best:
            study.enqueue_trial(DPCSpace().params_of(trial.cell), user_attrs=record.TrialRecord(
                oneshot_miou=trial.oneshot_miou).to_attrs())
        record.store_screen_record(study, record.ScreenRecord(screened=len(scored), queued=len(best)))
        logger.info("one-shot screen: %d cells scored; the best %d go to the proxy (one-shot mIoU %.3f to %.3f)",
                    len(scored), len(best), best[0].oneshot_miou, best[-1].oneshot_miou)
    return best


def screen(config: SearchConfig, progress: Progress | None = None,
           command: str = "densecell supernet") -> list[record.TrialRecord]:
    """The one-shot stage alone (``densecell supernet``, for a recipe whose ``search.mode`` is ``oneshot``): the
    cache and the study prepared as :func:`prepare` does (the supernet's screen of ``search.oneshot_cells`` cells,
    the best ``search.trials`` queued for the proxy); returns their one-shot records, best first."""
    if config.search.mode != "oneshot":
        raise ConfigError(f"{command} is the one-shot screen, and this recipe's search.mode is "
                          f"{config.search.mode!r}: set search.mode=oneshot (its study would otherwise mix modes)")
    feature_cache(config, progress, command)
    study = prepare(config, progress, command)
    return _best_distinct(record.oneshot_records(study), config.search.trials)


# --- the search --------------------------------------------------------------------------------------------------

def search(config: SearchConfig, progress: Progress | None = None) -> optuna.Study:
    """Run ``search.workers`` worker processes on the study until it has its trials (other commands' workers may
    join it: this stage takes no lock)."""
    study = load_study(config.name, config.storage_url)[0]
    now = counts(study)
    if now.complete >= config.search.trials:  # a finished study: no worker to start (seconds each, to find it done)
        logger.info("search: the study has its %d trials", config.search.trials)
        report(progress, "search", now.complete, config.search.trials)
        return study
    logger.info("search: %d trials, %d workers here, storage %s", config.search.trials, config.search.workers,
                redact(config.storage_url))
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


# --- re-ranking and the report -----------------------------------------------------------------------------------

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


def rerank(config: SearchConfig, top: int | None = None, progress: Progress | None = None,
           command: str = "densecell rerank") -> dict[int, float]:
    """Re-train the best ``top`` proxy cells end to end (the paper's re-ranking; default: the recipe's
    ``rerank.top``) and record their val mIoU in the study; returns trial number -> end-to-end val mIoU."""
    top = config.rerank.top if top is None else top
    if top < 0:
        raise InputError(f"re-ranking top {top}: how many cells to re-train, at least 0")
    with _locked(config, command, "re-ranking"):
        study = load_study(config.name, config.storage_url)[0]
        done, scores = record.full_scores(study), {}
        logger.info(f"re-ranking the top {top} end to end" if top else "re-ranking: none asked for (rerank.top is 0)")
        best = top_cells(study, top)
        for trial in best:
            if trial.number not in done:
                run = rerank_config(config, rerank_run(config.run_dir, trial.number).name, trial.cell.to_json())
                result = train(run, resume=True, progress=progress, command=command)
                record.store_full_score(study, trial.number, result.val_miou)
                done[trial.number] = result.val_miou
            scores[trial.number] = done[trial.number]
        _measure_latency(config, study, best)
    return scores


def _measure_latency(config: SearchConfig, study: optuna.Study, trials: list[record.TrialRecord]) -> None:
    """The re-ranked cells timed whole on the device profile's machine, when this is it (else they keep their
    predicted latency only)."""
    if config.search.latency.profile is None:
        return
    profile, known = DeviceProfile.read(config.search.latency.profile), record.measured_latencies(study)
    for trial in trials:
        if trial.number not in known:
            measured = measure_on_host(profile, trial.cell)
            if measured is None:
                logger.info("re-ranked cells keep their predicted latency: the profile was made on %s",
                            profile.host or "another device")
                return
            record.store_measured_latency(study, trial.number, measured)


def proxy_baseline(settings: StudySettings, study: optuna.Study) -> float | None:
    """The proxy score of a head without context (a lone 1x1 convolution), trained like every trial (the study's
    precision included): it tells whether context helps on this data at all, and how much the search found. One per
    proxy setting and precision, shared by the studies of a cache (``baselines.json``). None where the study has
    none yet and its cache is not on this machine."""
    if record.baseline(study) is None:
        device = default_device()
        try:
            cache = FeatureCache.load(settings.cache_dir, device)
        except CacheError as exc:
            logger.info("no 1x1 baseline in the report: %s", exc)
            return None
        precision = study_precision(study, settings, device, cache)
        key = hashlib.sha1(f"{settings.proxy.model_dump_json()} {precision}".encode()).hexdigest()[:12]
        miou = remembered(cache.folder, "baselines.json", key, lambda: train_candidate(
            conv1x1_cell(), cache, settings.proxy, device=device, precision=precision).miou)
        record.store_baseline(study, miou)
    return record.baseline(study)


def search_report(study: optuna.Study, settings: StudySettings, out: Path, search_run: Path | None = None,
                  command: str = "densecell report") -> dict[str, Path]:
    """The study's report in ``out/report``, with the lone 1x1 baseline, under ``out``'s lock; written once for the
    study as it stands. ``search_run``: the search's run folder, whose re-ranking runs give the best cell's branch
    importance (default ``out``). ``densecell search``, ``report`` and ``correlate`` all write it here."""
    with _locked(Path(out), command, "the report"):
        trials = top_cells(study, settings.trials)
        if trials:
            baseline = proxy_baseline(settings, study)
            logger.info("proxy mIoU: %s", summarise_scores([t.values[0] for t in trials])
                        + ("" if baseline is None else f"; a lone 1x1 convolution (no context) {baseline:.3f}"))
        current = report_is_current(study, out)
        outputs = write_report(study, out, search_run=search_run)
        logger.info("report is up to date: %s" if current else "report written: %s", outputs["report"])
        return outputs

