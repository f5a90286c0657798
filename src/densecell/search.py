"""The architecture search: an Optuna study over the cell space, run by any number of workers on any machines.

A cell is the Optuna parameters ``b{i}_input`` and ``b{i}_op`` of each branch; a uniform choice of each is a uniform
draw from the space (it is a product). Samplers:

- ``random``: uniform;
- ``local``: uniform draws mixed with one-branch mutations of the best cells so far. The paper's search used
  Google Vizier's random search, which "basically employs the strategy of sampling points b uniformly at random as
  well as sampling some points b near the currently best observed architectures"; ``local`` is that strategy;
- ``evolution``: regularized (aging) evolution: a one-branch mutation of the best of a random sample of the most
  recent cells;
- ``tpe``: Optuna's TPE;
- ``nsga2``: NSGA-II on two objectives (mIoU up; multiply-adds or measured latency down).

Everything a worker needs (cache folder, proxy settings, space, budget, objectives, sampler, pruner) is stored in
the study (:mod:`densecell.record`), so a study's name and storage are all a new machine has to be told. Storage is
any SQLAlchemy URL: ``sqlite:///runs/NAME/study.db`` on a laptop, ``postgresql://...`` for many machines.

Exactly N completed proxy trials, whatever happens to workers:

- each worker records a heartbeat while a trial runs; a trial whose worker died (SIGKILL, power loss) is failed by
  the next worker that looks, and a copy of it is queued again (``RetryHeartbeatStaleTrialCallback``);
- a worker starts a trial only while ``complete + running < N``, and a started trial that finds N trials
  complete-or-running *ahead of it* (lower trial numbers) steps aside before doing any work (state PRUNED, recorded
  as ``surplus``). Since trial numbers are assigned in order by the database, two racing workers can never both take
  the last slot. A trial that a pruner stops (multi-fidelity search) is PRUNED with its last score and does not count.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import CategoricalDistribution
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from . import record
from .cache import FeatureCache
from .config import SearchSettings
from .cost import CellCoster, measure_latency
from .errors import DensecellError, SearchError, StudyError, TrainingError
from .files import make_dirs
from .heads import DensePredictionCell
from .optim import default_device
from .proxy import resolve_precision, train_candidate
from .rankers import Predictor
from .record import TrialRecord
from .registry import PRUNERS, SAMPLERS
from .space import Branch, Cell, SearchSpace
from .steps import Precision

__all__ = [
    "cell_from_params", "cell_params", "completed_trials", "Counts", "counts", "create_study", "distributions",
    "EvolutionSampler", "hyperband_pruner", "LiveTrialsPruner", "load_study", "LocalSampler", "make_pruner",
    "make_sampler", "median_pruner", "no_pruner", "nsga2_sampler", "Objective", "open_storage", "own_process",
    "proxy_full_pairs", "random_sampler", "redact", "RetryCell", "run_worker", "start_workers", "study_precision",
    "study_status", "StudyStatus", "successive_halving_pruner", "suggest_cell", "top_cells", "tpe_sampler"
]

logger = logging.getLogger(__name__)


# --- the cell as Optuna parameters -------------------------------------------------------------------------------

def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    names = [op.choice for op in space.operations()]
    dists: dict[str, CategoricalDistribution] = {}
    for i in range(space.num_branches):
        dists[f"b{i}_input"] = CategoricalDistribution(list(range(-1, i)))
        dists[f"b{i}_op"] = CategoricalDistribution(names)
    return dists


def cell_params(cell: Cell) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, branch in enumerate(cell):
        params[f"b{i}_input"] = branch.input
        params[f"b{i}_op"] = branch.op.choice
    return params


def cell_from_params(params: dict[str, Any], space: SearchSpace) -> Cell:
    ops = {op.choice: op for op in space.operations()}
    return Cell(tuple(Branch(int(params[f"b{i}_input"]), ops[params[f"b{i}_op"]])
                      for i in range(space.num_branches)))


def suggest_cell(trial: optuna.Trial, space: SearchSpace) -> Cell:
    params = {name: trial.suggest_categorical(name, dist.choices) for name, dist in distributions(space).items()}
    return cell_from_params(params, space)


def _proposal(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A trial's parameters as a hashable key, whatever order they were suggested in."""
    return tuple(sorted(params.items()))


class _MutationSampler(BaseSampler):
    """A sampler that proposes whole cells: a mutation of a parent among the completed trials of the trial's own
    stage, or a uniform draw; never a cell the stage has already proposed, while there are others."""

    attempts = 1000

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self.space = space
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return dict(distributions(self.space))

    def parent(self, done: list[FrozenTrial]) -> FrozenTrial | None:
        raise NotImplementedError

    @staticmethod
    def history(study: optuna.Study, trial: FrozenTrial) -> tuple[list[FrozenTrial], set[tuple]]:
        """The completed trials of ``trial``'s stage, and every cell the stage has proposed."""
        stage = record.stage_of(trial)
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number and
                  record.stage_of(t) == stage]
        return [t for t in others if t.state == TrialState.COMPLETE], {_proposal(t.params) for t in others}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        """A cell no trial of this stage has proposed yet: a mutation can undo an earlier one (a branch's input
        changed back), and two workers can mutate one parent alike, so repeats are drawn again."""
        done, proposed = self.history(study, trial)
        for attempt in range(self.attempts):
            parent = self.parent(done) if done and attempt < self.attempts // 10 else None
            cell = (self.space.sample(self._rng) if parent is None  # (a parent's neighbours may all be taken)
                    else self.space.mutate(cell_from_params(parent.params, self.space), self._rng))
            params = cell_params(cell)
            if _proposal(params) not in proposed:
                break
        return params  # after `attempts` repeats (a tiny space, nearly all proposed), the last one

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


class LocalSampler(_MutationSampler):
    """Random search that also samples near the best cells: with probability ``explore`` a uniform cell, otherwise
    a one-branch mutation of one of the ``top`` best completed cells (by the first objective)."""

    def __init__(self, space: SearchSpace, explore: float = 0.5, top: int = 5, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.explore, self.top = explore, top

    @classmethod
    def from_settings(cls, settings: SearchSettings, seed: int) -> LocalSampler:
        return cls(settings.space, seed=seed)

    def parent(self, done: list[FrozenTrial]) -> FrozenTrial | None:
        if self._rng.random() < self.explore:
            return None
        return self._rng.choice(sorted(done, key=lambda t: t.values[0], reverse=True)[: self.top])


class EvolutionSampler(_MutationSampler):
    """Regularized evolution (Real et al. 2019): until ``population`` cells are scored, uniform; then a one-branch
    mutation of the best of ``sample`` cells drawn from the ``population`` most recent ones."""

    def __init__(self, space: SearchSpace, population: int = 20, sample: int = 5, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.population, self.sample = population, sample

    @classmethod
    def from_settings(cls, settings: SearchSettings, seed: int) -> EvolutionSampler:
        return cls(settings.space, seed=seed)

    def parent(self, done: list[FrozenTrial]) -> FrozenTrial | None:
        if len(done) < self.population:
            return None
        recent = sorted(done, key=lambda t: t.number)[-self.population:]
        return max(self._rng.sample(recent, self.sample), key=lambda t: t.values[0])


class PredictorSampler(_MutationSampler):
    """A surrogate-guided search: after ``startup`` uniform cells, a gradient-boosting predictor of the proxy score
    (:class:`densecell.rankers.Predictor`), refitted on the stage's completed trials, ranks ``candidates`` uniform
    draws the stage has not proposed, and the best predicted is proposed. benchmarks/search_efficiency.py measures
    it against the paper's random search on a table of 1,000 cells."""

    def __init__(self, space: SearchSpace, startup: int = 10, candidates: int = 2000, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.startup, self.candidates = startup, candidates

    @classmethod
    def from_settings(cls, settings: SearchSettings, seed: int) -> PredictorSampler:
        return cls(settings.space, seed=seed)

    def parent(self, done: list[FrozenTrial]) -> FrozenTrial | None:
        return None  # before the predictor: uniform draws

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        done, proposed = self.history(study, trial)
        if len(done) < self.startup:
            return super().sample_relative(study, trial, search_space)
        predictor = Predictor(self.space, self._rng.randrange(2**31))
        predictor.fit([cell_from_params(t.params, self.space) for t in done], [t.values[0] for t in done])
        drawn = {self.space.sample(self._rng) for _ in range(self.candidates)}
        fresh = [cell for cell in drawn if _proposal(cell_params(cell)) not in proposed] or list(drawn)
        return cell_params(fresh[int(np.argmax(predictor.predict(fresh)))])


def random_sampler(settings: SearchSettings, seed: int) -> BaseSampler:
    return RandomSampler(seed)


def tpe_sampler(settings: SearchSettings, seed: int) -> BaseSampler:
    return TPESampler(seed=seed, n_startup_trials=10)


def nsga2_sampler(settings: SearchSettings, seed: int) -> BaseSampler:
    return NSGAIISampler(seed=seed, population_size=10)


def make_sampler(settings: SearchSettings, worker_seed: int) -> BaseSampler:
    """The study's sampler (:data:`densecell.registry.SAMPLERS`), seeded per worker."""
    return SAMPLERS[settings.sampler](settings, settings.seed * 1000 + worker_seed)


class _LiveTrialsStorage:
    """A view of an Optuna storage without the trials whose workers died (FAIL)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [t for t in self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
                if t.state != TrialState.FAIL]


class LiveTrialsPruner(BasePruner):
    """An Optuna pruner that compares a trial only with trials that did not fail: the rung values that a dead
    worker's trial recorded (successive halving's ``completed_rung_N``) leave the pool that decides who goes on,
    as its retry (:class:`RetryCell`) starts again at the first rung."""

    def __init__(self, pruner: BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        live = optuna.Study(study_name=study.study_name, storage=_LiveTrialsStorage(study._storage),
                            sampler=study.sampler, pruner=self.pruner)
        return self.pruner.prune(live, trial)


def no_pruner(settings: SearchSettings) -> BasePruner:
    return NopPruner()


def median_pruner(settings: SearchSettings) -> BasePruner:
    return MedianPruner(n_startup_trials=5)


def successive_halving_pruner(settings: SearchSettings) -> BasePruner:
    return SuccessiveHalvingPruner(min_resource=settings.proxy.eval_every, reduction_factor=3)


def hyperband_pruner(settings: SearchSettings) -> BasePruner:
    return HyperbandPruner(min_resource=settings.proxy.eval_every, max_resource=settings.proxy.iterations,
                           reduction_factor=3)


def make_pruner(settings: SearchSettings) -> BasePruner:
    """The study's pruner (:data:`densecell.registry.PRUNERS`; its rungs are the proxy's ``eval_every`` steps),
    comparing a trial only with trials that did not fail."""
    return LiveTrialsPruner(PRUNERS[settings.pruner](settings))


class RetryCell:
    """The retry of a trial whose worker died (its heartbeat lapsed): a new trial with the same cell, up to
    ``max_retry`` times. Unlike Optuna's ``RetryHeartbeatStaleTrialCallback`` it copies the cell only (and the
    one-shot score it was queued with, :func:`densecell.record.retry_attrs`), not the dead trial's system
    attributes: those hold the pruner's rung markers, with which the retry would skip rungs."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            return
        study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=record.retry_attrs(trial), system_attrs={"failed_trial": history[0], "retry_history": history}))


# --- storage and study ---------------------------------------------------------------------------------------------

def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def open_storage(url: str, settings: SearchSettings | None = None) -> RDBStorage:
    """An RDB storage with heartbeats (dead workers' trials are failed and retried) and a patient SQLite lock."""
    heartbeat = settings.heartbeat_s if settings else 5
    grace = settings.grace_s if settings else 20
    retries = settings.max_retry if settings else 3
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        engine_kwargs["connect_args"] = {"timeout": 120}
        make_dirs(Path(url.removeprefix("sqlite:///")).parent)
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: say so once, here, not per call
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=grace,
                              heartbeat_stale_trial_callback=RetryCell(max_retry=retries))
    except Exception as exc:
        message = " ".join(str(exc).split()).replace(url, redact(url))
        raise StudyError(f"cannot open the study storage {redact(url)}: {message[:300]}") from None


def create_study(name: str, storage_url: str, settings: SearchSettings,
                 device: str | torch.device | None = None) -> optuna.Study:
    """Create the study (or open it, checking that its settings are these), and choose the precision its trials
    compute in, once, on ``device`` (default: the first GPU, else the CPU): :func:`study_precision`."""
    storage = open_storage(storage_url, settings)
    study = optuna.create_study(study_name=name, storage=storage, directions=settings.directions,
                                load_if_exists=True)
    stored = record.stored_settings(study)
    if stored is None:
        record.store_settings(study, settings.to_json())
    elif SearchSettings.from_json(stored) != settings:
        raise StudyError(f"study {name!r} in {redact(storage_url)} was created with other settings; use another "
                         f"study name")
    study_precision(study, settings, torch.device(device) if device else default_device())
    return study


def study_precision(study: optuna.Study, settings: SearchSettings, device: torch.device,
                    cache: FeatureCache | None = None) -> Precision:
    """The precision and memory layout of every trial of the study. Chosen once (by
    :func:`~densecell.proxy.resolve_precision`: measured on a GPU with ``amp: auto``) when the study is created,
    before any worker starts, and stored with it, so that one study never mixes bf16- and fp16-trained trials;
    a study that has none (written before 0.3) gets it from its first worker."""
    if record.precision(study) is None:
        if cache is None and device.type == "cuda":
            cache = FeatureCache.load(settings.cache_dir, device)
        chosen = resolve_precision(settings.proxy, cache, device)
        record.store_precision(study, {"amp": chosen.amp, "channels_last": chosen.channels_last,
                                       "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                                       else "cpu"})
    stored = record.precision(study)
    return Precision(stored["amp"], bool(stored["channels_last"]))


def own_process(threads: int | None = None) -> None:
    """Settings that belong to a whole process, made only in a process densecell owns (the workers it starts, the
    command line) or by this explicit call, never on import: Optuna logs warnings only (densecell reports trials
    itself, one line per failure, where Optuna would print a traceback) and hides its experimental warnings;
    torch uses ``threads`` threads."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if threads is not None:
        torch.set_num_threads(threads)


def load_study(name: str, storage_url: str, worker_seed: int = 0) -> tuple[optuna.Study, SearchSettings]:
    """Open a study densecell created, with its stored settings, its sampler and its pruner."""
    probe = open_storage(storage_url)
    try:
        summary = {s.study_name for s in optuna.get_all_study_summaries(probe)}
    except Exception as exc:
        raise StudyError(f"cannot read {redact(storage_url)}: {' '.join(str(exc).split())[:200]}") from None
    if name not in summary:
        known = ", ".join(sorted(summary)) or "none"
        raise StudyError(f"no study {name!r} in {redact(storage_url)} (studies: {known})")
    stored = record.stored_settings(optuna.load_study(study_name=name, storage=probe))
    if stored is None:
        raise StudyError(f"study {name!r} was not created by densecell (no settings stored)")
    settings = SearchSettings.from_json(stored)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, settings),
                              sampler=make_sampler(settings, worker_seed), pruner=make_pruner(settings))
    return study, settings


# --- the worker ----------------------------------------------------------------------------------------------------

@dataclass
class Counts:
    complete: int
    running: int
    failed: int


def counts(study: optuna.Study) -> Counts:
    """Proxy trials: complete, running, and failed with a reason (not dead workers' trials, which are retried)."""
    trials = record.records(study)
    return Counts(sum(t.state == TrialState.COMPLETE for t in trials),
                  sum(t.state == TrialState.RUNNING for t in trials),
                  sum(t.state == TrialState.FAIL and t.error is not None for t in trials))


class CtrlC:
    """A worker's Ctrl-C: delivered at once only while a candidate trains, held back while Optuna keeps its books.

    Optuna starts a trial's heartbeat thread (not a daemon) before the ``try`` that joins it, and writes the trial
    around that: a KeyboardInterrupt in between leaves the thread beating forever, so the process never exits and
    its trial stays RUNNING, never stale. Held back, the interrupt is raised at the start of the training (the
    trial fails cleanly, Optuna stops its thread) or after the trial is told."""

    def __init__(self) -> None:
        self.pending = False
        self.live = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.live:
            raise KeyboardInterrupt
        self.pending = True

    @contextmanager
    def held(self) -> Iterator[None]:
        """Around ``study.optimize``: Ctrl-C is only noted, and raised on the way out."""
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread receives signals; a library caller's thread keeps the default
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextmanager
    def live_here(self) -> Iterator[None]:
        """Around the training: Ctrl-C interrupts at once (one noted before raises now)."""
        self.live = True  # first, so that a signal after the check below is raised, not only noted
        try:
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt
            yield
        finally:
            self.live = False


class Objective:
    """Trains one candidate on the cached features and returns its scores; one per worker (holds the cache)."""

    def __init__(self, study: optuna.Study, settings: SearchSettings, device: str | torch.device = "cpu") -> None:
        self.settings = settings
        self.device = torch.device(device)
        self.cache = FeatureCache.load(settings.cache_dir, self.device)
        self.precision = study_precision(study, settings, self.device, self.cache)
        self.space = settings.space
        self.cost = CellCoster(self.cache.channels, settings.proxy.filters, self.cache.image_size,
                               self.cache.output_stride)
        self.ctrl_c = CtrlC()

    def is_surplus(self, trial: optuna.Trial) -> bool:
        ahead = [t for t in record.records(trial.study, (TrialState.COMPLETE, TrialState.RUNNING))
                 if t.number < trial.number]
        return len(ahead) >= self.settings.trials

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        if self.is_surplus(trial):
            record.write(trial, surplus=True)
            raise optuna.TrialPruned("the budget was already taken by earlier trials")
        cell = suggest_cell(trial, self.space)
        cost = self.cost(cell)
        record.write(trial, cell=cell, params=cost.params, madds=cost.madds, host=socket.gethostname(),
                     pid=os.getpid(), amp=self.precision.amp,
                     memory_format="channels_last" if self.precision.channels_last else "contiguous")

        def report(iteration: int, miou: float) -> bool:
            trial.report(miou, iteration)
            return self.settings.pruner != "none" and trial.should_prune()

        try:
            with self.ctrl_c.live_here():
                result = train_candidate(cell, self.cache, self.settings.proxy, seed=trial.number,
                                         device=self.device,
                                         report=report if self.settings.directions == ["maximize"] else None,
                                         precision=self.precision)
        except TrainingError as exc:
            record.write(trial, error=str(exc))
            raise
        record.write(trial, proxy_miou=result.miou, seconds=result.seconds, steps=result.iterations,
                     engine=result.engine)
        if result.stopped_early:
            record.write(trial, pruned_at=result.iterations)
            raise optuna.TrialPruned(f"stopped at iteration {result.iterations}")
        if self.settings.objectives == "miou":
            return result.miou
        if self.settings.objectives == "miou+madds":
            return result.miou, float(cost.madds)
        latency = self._latency(cell)
        record.write(trial, latency_s=latency)
        return result.miou, latency

    def _latency(self, cell: Cell) -> float:
        head = DensePredictionCell(cell, self.cache.channels, filters=self.settings.proxy.filters,
                                   output_stride=self.cache.output_stride).to(self.device)
        features = self.cache.val_features[:1].float().to(self.device)
        return measure_latency(head, features, repeats=5)


_TOLD_TWICE = "Cannot tell a COMPLETE trial"
"""Optuna's error when a trial another worker has already finished is told again."""


def run_worker(name: str, storage_url: str, worker_seed: int | None = None, device: str | None = None,
               poll_s: float = 1.0, max_trials: int | None = None, owns_process: bool = False) -> int:
    """Take trials of the study until it has its N completed trials; returns how many this worker completed.

    ``owns_process``: this worker is the whole process (a worker process, ``densecell search worker``), so it sets
    the process-wide settings (:func:`own_process`, with the study's ``threads``); a library caller's are left
    alone."""
    worker_seed = os.getpid() if worker_seed is None else worker_seed
    study, settings = load_study(name, storage_url, worker_seed)
    if owns_process:
        own_process(settings.threads)
    objective = Objective(study, settings, device or default_device())
    done = 0
    while max_trials is None or done < max_trials:
        if not record.ready(study):
            time.sleep(poll_s)  # the search mode's preparation (the one-shot screen) is not done yet
            continue
        with warnings.catch_warnings():  # "experimental" in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now = counts(study)
        if now.complete >= settings.trials:
            break
        if now.failed >= settings.max_failures:
            raise SearchError(f"study {name!r}: {now.failed} trials failed; this worker stops")
        if now.complete + now.running >= settings.trials:
            time.sleep(poll_s)  # the rest is running; wait in case a worker dies and its trial must be retried
            continue
        finished: list[FrozenTrial] = []
        try:
            with objective.ctrl_c.held():
                study.optimize(objective, n_trials=1, catch=(TrainingError,), gc_after_trial=False,
                               callbacks=[lambda _, trial, into=finished: into.append(trial)])
        except ValueError as exc:
            if not str(exc).startswith(_TOLD_TWICE):
                raise
            # SQLite has no row locks: two workers that start together may both take the same queued trial. The
            # first to finish records it; the second's result is a duplicate, dropped, and this worker goes on.
            logger.warning("worker %d: its trial was also taken and finished by another worker; result dropped",
                           os.getpid())
        for trial in finished:
            if trial.state == TrialState.FAIL:
                logger.warning("trial %d failed: %s", trial.number, TrialRecord.from_trial(trial).error)
        done += sum(t.state == TrialState.COMPLETE for t in finished)
    return done


def _worker_process(name: str, storage_url: str, seed: int, device: str | None) -> None:
    """A worker started by :func:`start_workers`: one line for each failure, an exit code for the parent."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        run_worker(name, storage_url, seed, device, owns_process=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except DensecellError as exc:
        logger.error("search worker %d: %s", os.getpid(), exc)
        sys.exit(2)
    except Exception as exc:  # a worker must not print a traceback over the parent's progress bar
        logger.error("search worker %d: %s: %s", os.getpid(), type(exc).__name__, " ".join(str(exc).split()))
        sys.exit(1)


def start_workers(name: str, storage_url: str, count: int, device: str | None = None) -> list[multiprocessing.Process]:
    """Start ``count`` worker processes on this machine (spawned, so each has its own torch and CUDA context; the
    storage URL travels through a pipe, never on a command line). Their sampler seeds derive from this process's
    pid, so that the workers of two commands on one study do not propose the same cells."""
    context = multiprocessing.get_context("spawn")
    base = (os.getpid() % 100_000) * 100
    workers = [context.Process(target=_worker_process, args=(name, storage_url, base + index, device), daemon=False)
               for index in range(count)]
    for worker in workers:
        worker.start()
    return workers


# --- reading a study -----------------------------------------------------------------------------------------------

def completed_trials(study: optuna.Study) -> list[TrialRecord]:
    """Completed proxy trials, best first by proxy mIoU."""
    return sorted(record.records(study, (TrialState.COMPLETE,)), key=lambda t: t.values[0], reverse=True)


def top_cells(study: optuna.Study, k: int) -> list[TrialRecord]:
    return completed_trials(study)[:k]


def proxy_full_pairs(study: optuna.Study) -> list[tuple[float, float]]:
    """(proxy mIoU, end-to-end mIoU) of every re-ranked cell, best proxy first."""
    full = record.full_scores(study)
    return [(t.values[0], full[t.number]) for t in completed_trials(study) if t.number in full]


@dataclass
class StudyStatus:
    """Where a study stands: proxy trials by state, why trials failed, the best cells."""

    name: str
    trials: int
    states: dict[str, int]
    surplus: int
    failures: list[tuple[int, str]]
    best: list[TrialRecord]
    full: dict[int, float]
    oneshot_cells: int = 0
    pruned_steps: int = 0
    spent_steps: int = 0
    settings: SearchSettings | None = field(default=None, repr=False)


def study_status(study: optuna.Study, settings: SearchSettings, top: int = 10) -> StudyStatus:
    trials = record.records(study)
    states = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    failures = [(t.number, t.error or "its worker died (no heartbeat); retried")
                for t in trials if t.state == TrialState.FAIL]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and not t.surplus]
    return StudyStatus(
        study.study_name, settings.trials, {k: v for k, v in states.items() if v}, sum(t.surplus for t in trials),
        failures, completed_trials(study)[:top], record.full_scores(study),
        oneshot_cells=len(record.records(study, (TrialState.COMPLETE,), stage="oneshot")),
        pruned_steps=sum(t.steps or 0 for t in pruned),
        spent_steps=sum(t.steps or 0 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
        settings=settings)
