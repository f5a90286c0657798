"""The architecture search: an Optuna study over the cell space, run by any number of workers on any machines.

A cell is the Optuna parameters ``b{i}_input`` and ``b{i}_op`` of each branch; a uniform choice of each is a uniform
draw from the space (it is a product). Samplers:

- ``random``: uniform, the paper's baseline;
- ``local``: uniform draws mixed with one-branch mutations of the best cells so far (how the paper describes
  Vizier's random search: "sampling some points b near the currently best observed architectures");
- ``tpe``: Optuna's TPE;
- ``nsga2``: NSGA-II on two objectives (mIoU up; multiply-adds or measured latency down).

Everything a worker needs (cache folder, proxy settings, space, budget, objectives, sampler) is stored in the
study, so ``densecell search worker --storage URL --study NAME`` is all a new machine has to be told. Storage is any
SQLAlchemy URL: ``sqlite:///runs/NAME/study.db`` on a laptop, ``postgresql://...`` for many machines.

Exactly N completed trials, whatever happens to workers:

- each worker records a heartbeat while a trial runs; a trial whose worker died (SIGKILL, power loss) is failed by
  the next worker that looks, and a copy of it is queued again (``RetryHeartbeatStaleTrialCallback``);
- a worker starts a trial only while ``complete + running < N``, and a started trial that finds N trials
  complete-or-running *ahead of it* (lower trial numbers) steps aside before doing any work (state PRUNED,
  user attr ``surplus``). Since trial numbers are assigned in order by the database, two racing workers can never
  both take the last slot.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from .cell import DensePredictionCell
from .cost import context_module_cost, measure_latency
from .proxy import FeatureCache, ProxySettings, train_candidate
from .space import Branch, Cell, Operation, SearchSpace
from .train import TrainingError

SAMPLERS = ("random", "local", "tpe", "nsga2")
OBJECTIVES = ("miou", "miou+madds", "miou+latency")


class SearchError(RuntimeError):
    """The search cannot go on (too many failed trials)."""


class StudyError(ValueError):
    """A storage that cannot be opened, or a study that is missing or has other settings (an input error)."""


@dataclass(frozen=True)
class SearchSettings:
    """What every worker of a study needs; stored in the study's user attributes."""

    cache_dir: str
    trials: int = 100
    sampler: str = "random"
    objectives: str = "miou"
    proxy: ProxySettings = field(default_factory=ProxySettings)
    num_branches: int = 5
    rates: tuple[int, ...] = (1, 3, 6, 9, 12, 15, 18, 21)
    grids: tuple[int, ...] = (1, 2, 4, 8)
    seed: int = 0
    prune: bool = False
    threads: int = 1
    heartbeat_s: int = 5
    grace_s: int = 20
    max_retry: int = 3
    max_failures: int = 20

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.objectives not in OBJECTIVES:
            raise ValueError(f"objectives must be one of {', '.join(OBJECTIVES)}, got {self.objectives!r}")
        if self.sampler == "nsga2" and self.objectives == "miou":
            raise ValueError("the nsga2 sampler needs two objectives: miou+madds or miou+latency")

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.num_branches, self.rates, self.grids)

    @property
    def directions(self) -> list[str]:
        return ["maximize"] if self.objectives == "miou" else ["maximize", "minimize"]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SearchSettings:
        values = json.loads(text)
        values["proxy"] = ProxySettings(**values["proxy"])
        values["rates"], values["grids"] = tuple(values["rates"]), tuple(values["grids"])
        return cls(**values)


# --- the cell as Optuna parameters -------------------------------------------------------------------------------

def op_name(op: Operation) -> str:
    if op.rate is not None:
        return f"sep3x3_{op.rate[0]}x{op.rate[1]}"
    if op.grid is not None:
        return f"pool_{op.grid[0]}x{op.grid[1]}"
    return "conv1x1"


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    names = [op_name(op) for op in space.operations()]
    dists: dict[str, CategoricalDistribution] = {}
    for i in range(space.num_branches):
        dists[f"b{i}_input"] = CategoricalDistribution(list(range(-1, i)))
        dists[f"b{i}_op"] = CategoricalDistribution(names)
    return dists


def cell_params(cell: Cell) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, branch in enumerate(cell):
        params[f"b{i}_input"] = branch.input
        params[f"b{i}_op"] = op_name(branch.op)
    return params


def cell_from_params(params: dict[str, Any], space: SearchSpace) -> Cell:
    ops = {op_name(op): op for op in space.operations()}
    return Cell(tuple(Branch(int(params[f"b{i}_input"]), ops[params[f"b{i}_op"]])
                      for i in range(space.num_branches)))


def suggest_cell(trial: optuna.Trial, space: SearchSpace) -> Cell:
    params = {name: trial.suggest_categorical(name, dist.choices) for name, dist in distributions(space).items()}
    return cell_from_params(params, space)


class LocalSampler(BaseSampler):
    """Random search that also samples near the best cells: with probability ``explore`` a uniform cell, otherwise
    a one-branch mutation of one of the ``top`` best completed cells (by the first objective)."""

    def __init__(self, space: SearchSpace, explore: float = 0.5, top: int = 5, seed: int | None = None) -> None:
        self.space = space
        self.explore = explore
        self.top = top
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return dict(distributions(self.space))

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done or self._rng.random() < self.explore:
            return {}
        best = sorted(done, key=lambda t: t.values[0], reverse=True)[: self.top]
        parent = cell_from_params(self._rng.choice(best).params, self.space)
        return cell_params(self.space.mutate(parent, self._rng))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def make_sampler(settings: SearchSettings, worker_seed: int) -> BaseSampler:
    seed = settings.seed * 1000 + worker_seed
    if settings.sampler == "random":
        return RandomSampler(seed)
    if settings.sampler == "local":
        return LocalSampler(settings.space, seed=seed)
    if settings.sampler == "tpe":
        return TPESampler(seed=seed, n_startup_trials=10)
    return NSGAIISampler(seed=seed, population_size=10)


# --- storage and study ---------------------------------------------------------------------------------------------

def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def open_storage(url: str, settings: SearchSettings | None = None) -> RDBStorage:
    """An RDB storage with heartbeats (dead workers' trials are failed and retried) and a patient SQLite lock."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat = settings.heartbeat_s if settings else 5
    grace = settings.grace_s if settings else 20
    retries = settings.max_retry if settings else 3
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries))
    except Exception as exc:
        message = " ".join(str(exc).split()).replace(url, redact(url))
        raise StudyError(f"cannot open the study storage {redact(url)}: {message[:300]}") from None


def create_study(name: str, storage_url: str, settings: SearchSettings) -> optuna.Study:
    """Create the study (or open it, checking that its settings are these)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, settings)
    study = optuna.create_study(study_name=name, storage=storage, directions=settings.directions,
                                load_if_exists=True)
    stored = study.user_attrs.get("densecell")
    if stored is None:
        study.set_user_attr("densecell", settings.to_json())
    elif SearchSettings.from_json(stored) != settings:
        raise StudyError(f"study {name!r} in {redact(storage_url)} was created with other settings; use another "
                          f"study name")
    return study


def load_study(name: str, storage_url: str, worker_seed: int = 0) -> tuple[optuna.Study, SearchSettings]:
    probe = open_storage(storage_url)
    try:
        summary = {s.study_name for s in optuna.get_all_study_summaries(probe)}
    except Exception as exc:
        raise StudyError(f"cannot read {redact(storage_url)}: {' '.join(str(exc).split())[:200]}") from None
    if name not in summary:
        raise StudyError(f"no study {name!r} in {redact(storage_url)} (studies: {', '.join(sorted(summary)) or 'none'})")
    stored = optuna.load_study(study_name=name, storage=probe).user_attrs.get("densecell")
    if stored is None:
        raise StudyError(f"study {name!r} was not created by densecell (no settings stored)")
    settings = SearchSettings.from_json(stored)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, settings),
                              sampler=make_sampler(settings, worker_seed))
    return study, settings


# --- the worker ----------------------------------------------------------------------------------------------------

@dataclass
class Counts:
    complete: int
    running: int
    failed: int


def counts(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)  # not dead workers' trials
    return Counts(sum(t.state == TrialState.COMPLETE for t in trials),
                  sum(t.state == TrialState.RUNNING for t in trials), failed)


class Objective:
    """Trains one candidate on the cached features and returns its scores; one per worker (holds the cache)."""

    def __init__(self, settings: SearchSettings, device: str | torch.device = "cpu") -> None:
        self.settings = settings
        self.device = torch.device(device)
        self.cache = FeatureCache.load(settings.cache_dir, self.device)
        self.space = settings.space

    def is_surplus(self, trial: optuna.Trial) -> bool:
        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.number < trial.number]
        return len(ahead) >= self.settings.trials

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        if self.is_surplus(trial):
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("the budget was already taken by earlier trials")
        cell = suggest_cell(trial, self.space)
        with torch.device("meta"):
            head = DensePredictionCell(cell, self.cache.channels, filters=self.settings.proxy.filters,
                                       output_stride=self.cache.output_stride)
            cost = context_module_cost(head, self._image_size(), self.cache.output_stride)
        trial.set_user_attr("cell", cell.to_json())
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("madds", cost.madds)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())

        def report(iteration: int, miou: float) -> bool:
            trial.report(miou, iteration)
            return self.settings.prune and trial.should_prune()

        try:
            result = train_candidate(cell, self.cache, self.settings.proxy, seed=trial.number, device=self.device,
                                     report=report if self.settings.directions == ["maximize"] else None)
        except TrainingError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        trial.set_user_attr("proxy_miou", result.miou)
        trial.set_user_attr("seconds", result.seconds)
        if result.stopped_early:
            trial.set_user_attr("pruned_at", result.iterations)
            raise optuna.TrialPruned(f"stopped early at iteration {result.iterations}")
        if self.settings.objectives == "miou":
            return result.miou
        if self.settings.objectives == "miou+madds":
            return result.miou, float(cost.madds)
        latency = self._latency(cell)
        trial.set_user_attr("latency_s", latency)
        return result.miou, latency

    def _image_size(self) -> tuple[int, int]:
        stride = self.cache.output_stride
        return tuple((s - 1) * stride + 1 for s in self.cache.feature_size)  # type: ignore[return-value]

    def _latency(self, cell: Cell) -> float:
        head = DensePredictionCell(cell, self.cache.channels, filters=self.settings.proxy.filters,
                                   output_stride=self.cache.output_stride).to(self.device)
        features = self.cache.val_features[:1].float().to(self.device)
        return measure_latency(head, features, repeats=5)


def run_worker(name: str, storage_url: str, worker_seed: int | None = None, device: str | None = None,
               poll_s: float = 1.0, max_trials: int | None = None) -> int:
    """Take trials of the study until it has its N completed trials; returns how many this worker completed."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its failed-trial warnings carry tracebacks; see report()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    worker_seed = os.getpid() if worker_seed is None else worker_seed
    study, settings = load_study(name, storage_url, worker_seed)
    torch.set_num_threads(settings.threads)
    objective = Objective(settings, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    done = 0
    while max_trials is None or done < max_trials:
        optuna.storages.fail_stale_trials(study)
        now = counts(study)
        if now.complete >= settings.trials:
            break
        if now.failed >= settings.max_failures:
            raise SearchError(f"{now.failed} trials failed (see `densecell search status`); stopping this worker")
        if now.complete + now.running >= settings.trials:
            time.sleep(poll_s)  # the rest is running; wait in case a worker dies and its trial must be retried
            continue
        finished: list[FrozenTrial] = []

        def report(_: optuna.Study, trial: FrozenTrial) -> None:
            finished.append(trial)
            if trial.state == TrialState.FAIL:
                print(f"trial {trial.number} failed: {trial.user_attrs.get('error', 'see the study')}",
                      file=sys.stderr)

        study.optimize(objective, n_trials=1, catch=(TrainingError,), gc_after_trial=False, callbacks=[report])
        done += sum(t.state == TrialState.COMPLETE for t in finished)
    return done


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials, best first by proxy mIoU."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: t.values[0], reverse=True)


def top_cells(study: optuna.Study, k: int) -> list[tuple[FrozenTrial, Cell]]:
    return [(t, Cell.from_json(t.user_attrs["cell"])) for t in completed_trials(study)[:k]]


def full_scores(study: optuna.Study) -> dict[int, float]:
    """Re-ranking results: trial number -> end-to-end val mIoU."""
    return {int(key.split(":")[1]): value for key, value in study.user_attrs.items() if key.startswith("full_miou:")}


def proxy_full_pairs(study: optuna.Study) -> list[tuple[float, float]]:
    """(proxy mIoU, end-to-end mIoU) of every re-ranked cell, best proxy first."""
    full = full_scores(study)
    return [(t.values[0], full[t.number]) for t in completed_trials(study) if t.number in full]


def record_full_score(study: optuna.Study, trial_number: int, miou: float) -> None:
    study.set_user_attr(f"full_miou:{trial_number}", miou)


BASELINE_KEY = "baseline_miou"
"""Study attribute: the proxy score of :func:`~densecell.space.conv1x1_cell`, trained like every trial."""


def record_baseline(study: optuna.Study, miou: float) -> None:
    study.set_user_attr(BASELINE_KEY, miou)


def spearman(pairs: Sequence[tuple[float, float]]) -> float:
    from scipy.stats import spearmanr

    if len(pairs) < 3:
        return float("nan")
    return float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
