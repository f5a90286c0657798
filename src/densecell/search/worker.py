"""The worker: takes trials of a study and trains their cells on the proxy until the study has its N completed
trials, on any machine, beside any number of other workers.

Exactly N completed proxy trials, whatever happens to workers:

- each worker records a heartbeat while a trial runs; a trial whose worker died (SIGKILL, power loss) is failed by
  the next worker that looks, and a copy of its cell is queued again (:class:`~densecell.search.study.RetryCell`);
- a worker starts a trial only while ``complete + running < N``, and a started trial that finds N trials
  complete-or-running *ahead of it* (lower trial numbers) steps aside before doing any work (state PRUNED, recorded
  as ``surplus``). Since trial numbers are assigned in order by the database, two racing workers can never both take
  the last slot. A trial that a pruner stops (multi-fidelity search) is PRUNED with its last score and does not count.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..cell.heads import DensePredictionCell
from ..cell.space import Cell
from ..config import StudySettings
from ..core.errors import DensecellError, SearchError, TrainingError, one_line
from ..core.hold import hold
from ..core.interrupts import CtrlC
from ..models.cost import CellCoster, measure_latency
from ..models.profile import DeviceProfile
from ..training.optim import check_device
from . import record
from ._optuna import told_twice
from .cache import FeatureCache
from .proxy import train_candidate
from .record import TrialRecord
from .spaces import DPCSpace
from .study import load_study, make_space, study_precision
from .tables import Lookup

__all__ = ["BudgetedObjective", "Counts", "counts", "LookupObjective", "Objective", "own_process", "run_worker",
           "start_workers"]

logger = logging.getLogger(__name__)


def own_process(threads: int | None = None) -> None:
    """Settings that belong to a whole process, made only in a process densecell owns (the workers it starts, the
    command line) or by this explicit call, never on import: Optuna logs warnings only (densecell reports trials
    itself, one line per failure, where Optuna would print a traceback) and hides its experimental warnings;
    torch uses ``threads`` threads."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if threads is not None:
        torch.set_num_threads(threads)


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


class BudgetedObjective:
    """What every objective of a worker shares: the study's budget, which a trial beyond it steps aside from."""

    def __init__(self, settings: StudySettings) -> None:
        self.settings = settings
        self.ctrl_c = CtrlC()

    def is_surplus(self, trial: optuna.Trial) -> bool:
        ahead = [t for t in record.records(trial.study, (TrialState.COMPLETE, TrialState.RUNNING))
                 if t.number < trial.number]
        return len(ahead) >= self.settings.trials

    def step_aside(self, trial: optuna.Trial) -> None:
        """A trial beyond the budget: recorded as surplus and pruned, before any work."""
        if self.is_surplus(trial):
            record.write(trial, surplus=True)
            raise optuna.TrialPruned("the budget was already taken by earlier trials")

    def claim(self, trial: optuna.Trial) -> None:
        """Step aside (pruned, recorded as ``duplicate``, its cell left untaken) when another live trial holds the
        same cell. Two workers that ask at the same moment see the same history, and a sampler that is not random
        proposes the same cell to both. Each trial writes its cell before it looks, so of two such trials at least
        the later-looking one sees the other: at most one of them trains it."""
        live = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE)
        if any(other.number != trial.number and other.params == trial.params and not record.is_duplicate(other)
               for other in trial.study.get_trials(deepcopy=False, states=live)):
            record.write(trial, duplicate=True)
            raise optuna.TrialPruned("another worker took the same cell at the same moment")


class Objective(BudgetedObjective):
    """Trains one candidate on the cached features and returns its scores; one per worker (holds the cache)."""

    def __init__(self, study: optuna.Study, settings: StudySettings, device: str | torch.device = "cpu") -> None:
        super().__init__(settings)
        self.device = torch.device(device)
        self.cache = FeatureCache.load(settings.cache_dir, self.device)
        self.precision = study_precision(study, settings, self.device, self.cache)
        self.space = DPCSpace(settings.cell_space)
        self.profile = DeviceProfile.read(settings.latency.profile) if settings.latency.profile else None
        self.cost = CellCoster(self.cache.channels, settings.proxy.filters, self.cache.image_size,
                               self.cache.output_stride)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        self.step_aside(trial)
        cell = self.space.suggest_cell(trial)
        self.claim(trial)
        cost = self.cost(cell)
        record.write(trial, cell=cell, params=cost.params, madds=cost.madds, host=socket.gethostname(),
                     pid=os.getpid(), amp=self.precision.amp,
                     memory_format="channels_last" if self.precision.channels_last else "contiguous")
        predicted = self.within_budget(trial, cell)

        def report(iteration: int, miou: float) -> bool:
            trial.report(miou, iteration)
            prune = self.settings.pruner != "none" and trial.should_prune()
            hold("rung")
            return prune

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
        if predicted is not None:
            return result.miou, predicted
        latency = self._latency(cell)
        record.write(trial, latency_s=latency)
        return result.miou, latency * 1000

    def within_budget(self, trial: optuna.Trial, cell: Cell) -> float | None:
        """The cell's predicted latency on the profile's device (recorded), None without a profile. A cell over
        the budget (a queued or retried one: the samplers propose none) is pruned before it trains."""
        if self.profile is None:
            return None
        predicted = self.profile.predict_ms(cell)
        record.write(trial, predicted_ms=predicted)
        budget = self.settings.latency.budget_ms
        if budget is not None and predicted > budget:
            record.write(trial, error=f"over the latency budget: {predicted:.2f} ms > {budget:g} ms")
            raise optuna.TrialPruned(f"predicted {predicted:.2f} ms, over the {budget:g} ms budget")
        return predicted

    def _latency(self, cell: Cell) -> float:
        """Seconds of the head on the cached feature, on this worker's device (no device profile given)."""
        head = DensePredictionCell(cell, self.cache.channels, filters=self.settings.proxy.filters,
                                   output_stride=self.cache.output_stride).to(self.device)
        features = self.cache.val_features[:1].float().to(self.device)
        return measure_latency(head, features, repeats=5)


class LookupObjective(BudgetedObjective):
    """'Trains' a point of a ground-truth table's space by looking its score up (:class:`~.tables.Lookup`: the
    table's score with the study's scatter, after a training time slept for real), so that a search on a table runs
    through the real workers, storage, heartbeats and retries. A trial's draws depend on the study's seed and the
    trial's number only."""

    def __init__(self, study: optuna.Study, settings: StudySettings, device: str | torch.device = "cpu") -> None:
        super().__init__(settings)
        self.space = make_space(settings)
        table = getattr(self.space, "table", None)
        if table is None:
            raise SearchError(f"space {settings.space!r}: its points cannot be trained, only a table's looked up")
        noise = table.noise_sigma() if settings.lookup.noise == "auto" else settings.lookup.noise
        self.lookup = Lookup(table, noise, settings.lookup.seconds, settings.lookup.spread)

    def __call__(self, trial: optuna.Trial) -> float:
        self.step_aside(trial)
        row = self.space.row(self.space.suggest(trial))
        self.claim(trial)
        record.write(trial, row=row, host=socket.gethostname(), pid=os.getpid())
        rng = np.random.default_rng([self.settings.seed, trial.number])
        seconds = self.lookup.duration(rng)
        with self.ctrl_c.live_here():
            time.sleep(seconds)
        score = self.lookup.score(row, rng)
        record.write(trial, proxy_miou=score, seconds=seconds)
        return score


def run_worker(name: str, storage_url: str, worker_seed: int | None = None, device: str | None = None,
               poll_s: float = 1.0, max_trials: int | None = None, owns_process: bool = False) -> int:
    """Take trials of the study until it has its N completed trials; returns how many this worker completed.

    ``owns_process``: this worker is the whole process (a worker process, ``densecell search worker``), so it sets
    the process-wide settings (:func:`own_process`, with the study's ``threads``); a library caller's are left
    alone."""
    worker_seed = os.getpid() if worker_seed is None else worker_seed
    chosen = check_device(device)
    study, settings = load_study(name, storage_url, worker_seed)
    if owns_process:
        own_process(settings.threads)
    objective = (Objective if settings.on_cells else LookupObjective)(study, settings, chosen)
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
            if not told_twice(exc):
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
        logger.error("search worker %d: %s: %s", os.getpid(), type(exc).__name__, one_line(exc))
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
