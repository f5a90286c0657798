"""The samplers: each proposes whole points of a :class:`~densecell.search.spaces.SamplerSpace`, and every proposal goes
through the space's :meth:`~densecell.search.spaces.SamplerSpace.project` (the nearest member no trial has taken), so
the same sampler searches the DPC space and a public table, and no sampler trains a cell twice while others remain.

- ``random``: uniform draws without replacement (the paper's random search);
- ``vizier`` (``local`` before densecell 0.5): the paper's search, Vizier's random search: half uniform draws, half
  one-position mutations of the 5 best;
- ``evolution``: regularized (aging) evolution (Real et al. 2019);
- ``local-search``: a true local search (White et al. 2020): train the untried neighbours of the best cell of the
  current run, move as soon as one is better, restart from a uniform cell when all are tried and none is;
- ``predictor``: Bayesian optimisation: a Gaussian process (or, as in BANANAS, White et al. 2021, a random forest
  whose trees are the ensemble) fitted on the completed trials gives a mean and a spread for each candidate (uniform
  draws and mutations of the best cells), and the best upper confidence bound is proposed;
- ``tpe`` and ``nsga2``: Optuna's own, their proposals projected like every other's.

A sampler is registered in :data:`densecell.core.registry.SAMPLERS` as a factory ``(space, seed) -> sampler``.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from ..core.aliases import renamed_names
from ..core.extras import missing_extra
from . import record
from ._optuna import set_trial_system_attr
from .spaces import Point, SamplerSpace

__all__ = ["EvolutionSampler", "History", "VizierSampler", "LocalSearchSampler", "OptunaSampler", "PredictorSampler",
           "SpaceSampler", "UniformSampler", "history", "nsga2_sampler", "tpe_sampler"]


@dataclass
class History:
    """What a sampler knows for one proposal: every point the trial's stage has taken (in any state, other
    workers' running trials included), the completed points with their first objective, in trial order, and the
    pending points (running or queued elsewhere: taken, not yet scored)."""

    taken: set[Point] = field(default_factory=set)
    points: list[Point] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    pending: list[Point] = field(default_factory=list)

    def best(self, count: int) -> list[Point]:
        """The ``count`` best completed points, best first."""
        order = np.argsort(-np.asarray(self.values), kind="stable")[:count]
        return [self.points[i] for i in order]


def history(study: optuna.Study, trial: FrozenTrial, space: SamplerSpace) -> History:
    """The history of ``trial``'s stage (:func:`densecell.search.record.stage_of`) in ``study``."""
    found = History()
    stage = record.stage_of(trial)
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number or record.stage_of(other) != stage or record.is_duplicate(other):
            continue
        point = space.point(other.params)
        if point is None:
            continue  # a trial that stepped aside before suggesting its cell
        found.taken.add(point)
        if other.state == TrialState.COMPLETE and other.values:
            found.points.append(point)
            found.values.append(float(other.values[0]))
            found.numbers.append(other.number)
        elif other.state in (TrialState.RUNNING, TrialState.WAITING):
            found.pending.append(point)
    return found


class SpaceSampler(BaseSampler):
    """A sampler that proposes a whole point of its space (:meth:`propose`), projected to the nearest untaken
    member; parameters outside the space (none in densecell's own studies) are drawn uniformly."""

    def __init__(self, space: SamplerSpace, seed: int | None = None) -> None:
        self.space = space
        self.rng = random.Random(seed)
        self._independent = RandomSampler(seed)

    @classmethod
    def create(cls, space: SamplerSpace, seed: int, **options: Any) -> SpaceSampler:
        """The registry's factory: the sampler on ``space`` with its defaults (or measured ``options``)."""
        return cls(space, seed=seed, **options)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.space.distributions())

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        raise NotImplementedError

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        past = history(study, trial, self.space)
        point = self.propose(study, trial, past)
        return self.space.params(self.space.project(point, past.taken, self.rng))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)


class UniformSampler(SpaceSampler):
    """Random search: a uniform draw among the untaken points (the paper's search used random search)."""

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        return self.space.draw(self.rng, past.taken)


class VizierSampler(SpaceSampler):
    """Random search that also samples near the best cells, as the paper's Google Vizier search did: with
    probability ``explore`` a uniform draw, otherwise a one-position mutation of one of the ``top`` best."""

    def __init__(self, space: SamplerSpace, explore: float = 0.5, top: int = 5, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.explore, self.top = explore, top

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        if not past.points or self.rng.random() < self.explore:
            return self.space.draw(self.rng, past.taken)
        return self.space.mutate(self.rng.choice(past.best(self.top)), self.rng)


class EvolutionSampler(SpaceSampler):
    """Regularized evolution (Real et al. 2019): uniform until ``population`` points are scored; then a mutation of
    the best of ``sample`` points drawn from the ``population`` most recent ones."""

    def __init__(self, space: SamplerSpace, population: int = 20, sample: int = 5, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.population, self.sample = population, sample

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        if len(past.points) < self.population:
            return self.space.draw(self.rng, past.taken)
        recent = list(range(len(past.points)))[-self.population:]
        parent = max(self.rng.sample(recent, min(self.sample, len(recent))), key=lambda i: past.values[i])
        return self.space.mutate(past.points[parent], self.rng)


class LocalSearchSampler(SpaceSampler):
    """Local search (White et al. 2020, "Local search is state of the art for NAS benchmarks"): a run starts at a
    uniform point; its untried neighbours are trained in random order, and the run moves to a neighbour as soon as
    one scores better than its best; when every neighbour of the run's best is taken and none is better (a local
    optimum), a new run starts from a uniform point. Runs are read from the study (each trial records its run in a
    system attribute), so any number of workers share them."""

    KEY = "local_search_run"

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        runs = {t.number: t.system_attrs.get(self.KEY, 0) for t in study.get_trials(deepcopy=False)
                if t.number != trial.number}
        current = max(runs.values(), default=0)
        members = [i for i, number in enumerate(past.numbers) if runs.get(number) == current]
        if members:
            center = max(members, key=lambda i: past.values[i])
            moves = [point for point in self.space.neighbours(past.points[center]) if point not in past.taken]
            if moves:
                set_trial_system_attr(study, trial, self.KEY, current)
                return self.rng.choice(moves)
            current += 1  # a local optimum: restart
        elif current in runs.values():
            # the run's first point is still training elsewhere: start another run rather than wait
            current += 1
        set_trial_system_attr(study, trial, self.KEY, current)
        return self.space.draw(self.rng, past.taken)


class PredictorSampler(SpaceSampler):
    """Bayesian optimisation over the space's encoding: after ``startup`` uniform points, a surrogate fitted on the
    completed points (``gp``: scikit-learn's Gaussian process, a Matern kernel on the encoding scaled to [0, 1]
    with a noise term, which also absorbs a noisy proxy's scatter; ``forest``: a random forest, its trees as the
    ensemble of BANANAS, White et al. 2021) gives a mean and a spread for each candidate: ``candidates`` untaken
    uniform draws and ``mutations`` mutations of each of the ``parents`` best points. The acquisition picks one:
    ``ucb`` (mean + ``kappa`` spreads), ``ei`` (expected improvement), ``its`` (independent Thompson sampling) or
    ``mean``. ``costs``: the space's free measurements of a point (:meth:`~densecell.search.spaces.SamplerSpace.costs`:
    a cell's multiply-adds and parameters, a table's free columns) join the encoding.

    Many workers: a point that another worker is still training (``pending``) is given a believed score before the
    acquisition (``believer``: the surrogate's mean there, the kriging believer; ``liar``: the worst score so far,
    the constant liar; ``ignore``: none, as a lone worker), so that W workers asking before the next result lands
    propose W different promising points rather than W neighbours of one optimum.

    Its cost stays flat as a study grows: it fits on at most ``fit_limit`` points (the best half and the most
    recent half), and the Gaussian process tunes its kernel only once the completed points have grown by ``refit``
    (a share) since the last tuning; in between it is conditioned on every new point with the kernel it has (a
    Cholesky factorisation: milliseconds). A forest is refitted on the same cadence."""

    def __init__(self, space: SamplerSpace, startup: int = 5, model: str = "gp", acquisition: str = "ucb",
                 kappa: float = 2.0, candidates: int = 100, parents: int = 10, mutations: int = 20,
                 trees: int = 100, refit: float = 0.1, fit_limit: int = 500, pending: str = "believer",
                 costs: bool = False, seed: int | None = None) -> None:
        super().__init__(space, seed)
        _choose("model", model, ("gp", "forest"))
        _choose("acquisition", acquisition, ("ucb", "ei", "its", "mean"))
        _choose("pending", pending, ("believer", "liar", "ignore"))
        self.startup, self.model, self.acquisition, self.kappa = startup, model, acquisition, kappa
        self.candidates, self.parents, self.mutations = candidates, parents, mutations
        self.trees, self.refit, self.fit_limit = trees, refit, fit_limit
        self.pending, self.costs = pending, costs
        self._model: Any = None
        self._fitted = 0
        self._low = self._span = np.zeros(0)
        self._best = 0.0
        self._believing = False

    def encode(self, points: Sequence[Point]) -> np.ndarray:
        """The surrogate's inputs: the space's encoding, and its free measurements where ``costs`` is set."""
        encoded = self.space.encode(points)
        return np.hstack([encoded, self.space.costs(points)]) if self.costs else encoded

    def _fit(self, past: History, tune: bool) -> tuple[np.ndarray, np.ndarray]:
        """Fit the surrogate on the chosen points (returned, encoded, with their values); ``tune``: choose the
        kernel's (or grow the forest's) parameters anew, else keep the Gaussian process's kernel and only condition
        it on the points."""
        count = len(past.points)
        chosen = list(range(count))
        if count > self.fit_limit:
            best = set(np.argsort(-np.asarray(past.values), kind="stable")[: self.fit_limit // 2].tolist())
            recent = [i for i in range(count - 1, -1, -1) if i not in best][: self.fit_limit - len(best)]
            chosen = sorted(best | set(recent))
        encoded = self.encode([past.points[i] for i in chosen])
        values = np.asarray(past.values)[chosen]
        self._best = float(values.max())
        if tune:
            self._low, high = encoded.min(0), encoded.max(0)
            self._span = np.where(high > self._low, high - self._low, 1.0)
            self._model = _surrogate(self.model, self.trees, encoded.shape[1], self.rng.randrange(2**31))
            self._fitted = count
        self._train(encoded, values, tune)
        return encoded, values

    def _train(self, encoded: np.ndarray, values: np.ndarray, tune: bool) -> None:
        if not tune and self.model == "gp":
            self._model.set_params(kernel=self._model.kernel_, optimizer=None)
        with warnings.catch_warnings(), _one_blas_thread():  # a kernel parameter at its bound is fine, not news
            warnings.simplefilter("ignore")
            self._model.fit((encoded - self._low) / self._span, values)

    def _believe(self, encoded: np.ndarray, values: np.ndarray, pending: Sequence[Point]) -> None:
        """Condition the surrogate, fitted on ``encoded`` and ``values``, on the pending points at their believed
        scores (``pending``: believer or liar), with the kernel it has: its spread there and near them shrinks, so
        the acquisition looks elsewhere."""
        extra = self.encode(pending)
        believed = self.predict_encoded(extra)[0] if self.pending == "believer" else np.full(len(pending),
                                                                                              values.min())
        self._train(np.vstack([encoded, extra]), np.concatenate([values, believed]), tune=False)

    def candidate_points(self, past: History) -> list[Point]:
        """Untaken uniform draws and mutations of the best points, each once."""
        found: dict[Point, None] = {}
        taken = set(past.taken)
        for _ in range(self.candidates):
            point = self.space.draw(self.rng, taken)
            if point in taken:
                break  # every member is taken
            found[point] = None
            taken.add(point)
        for parent in past.best(self.parents):
            for _ in range(self.mutations):
                point = self.space.project(self.space.mutate(parent, self.rng), past.taken, self.rng)
                if point not in past.taken:
                    found[point] = None
        return list(found)

    def predict(self, points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
        """The surrogate's mean and spread at each point."""
        return self.predict_encoded(self.encode(points))

    def predict_encoded(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scaled = (encoded - self._low) / self._span
        with _one_blas_thread():
            if self.model == "gp":
                return self._model.predict(scaled, return_std=True)
            per_tree = np.stack([tree.predict(scaled) for tree in self._model.estimators_])
        return per_tree.mean(0), per_tree.std(0)

    def scores(self, points: Sequence[Point]) -> np.ndarray:
        """The acquisition of each point."""
        mean, spread = self.predict(points)
        if self.acquisition == "mean":
            return mean
        if self.acquisition == "ucb":
            return mean + self.kappa * spread
        if self.acquisition == "ei":
            from scipy.stats import norm

            gain = mean - self._best
            z = gain / np.maximum(spread, 1e-12)
            return gain * norm.cdf(z) + spread * norm.pdf(z)
        return np.random.default_rng(self.rng.randrange(2**63)).normal(mean, spread + 1e-12)

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        if len(past.points) < self.startup:
            return self.space.draw(self.rng, past.taken)
        tune = self._model is None or len(past.points) - self._fitted >= max(1.0, self.refit * self._fitted)
        believe = bool(past.pending) and self.pending != "ignore"
        if tune or self.model == "gp" or believe or self._believing:  # a forest that held beliefs drops them
            seen = self._fit(past, tune)
            if believe:
                self._believe(*seen, past.pending)
        self._believing = believe
        candidates = self.candidate_points(past)
        if not candidates:
            return self.space.draw(self.rng, past.taken)
        return candidates[int(np.argmax(self.scores(candidates)))]


def _choose(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{option} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")


def _one_blas_thread() -> Any:
    """Linear algebra on one thread while the surrogate fits and predicts: its matrices are small (at most
    ``fit_limit`` points), and a worker's cores belong to the candidate it trains (several BLAS threads beside torch's
    made a 400-point Cholesky 30 times slower here)."""
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    return threadpool_limits(limits=1, user_api="blas")


def _surrogate(kind: str, trees: int, features: int, seed: int) -> Any:
    """A scikit-learn regressor (imported here: a second to import, in every search worker)."""
    try:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    except ImportError as exc:
        raise missing_extra(exc, "search") from None
    if kind == "forest":
        return RandomForestRegressor(n_estimators=trees, max_features=0.5, random_state=seed)

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(length_scale=max(1.0, features ** 0.5),
                                                        length_scale_bounds=(1e-2, 1e3), nu=2.5) \
        + WhiteKernel(1e-2, (1e-6, 1e1))
    return GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)


class OptunaSampler(SpaceSampler):
    """One of Optuna's samplers, its proposal (relative where it has one, each other parameter independent)
    projected to the nearest untaken member like every other sampler's."""

    def __init__(self, space: SamplerSpace, inner: BaseSampler, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.inner = inner

    def propose(self, study: optuna.Study, trial: FrozenTrial, past: History) -> Point:
        relative_space = self.inner.infer_relative_search_space(study, trial)
        relative = self.inner.sample_relative(study, trial, relative_space) if relative_space else {}
        params = {name: relative[name] if name in relative else
                  self.inner.sample_independent(study, trial, name, dist)
                  for name, dist in self.space.distributions().items()}
        return self.space.point(params)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)


def tpe_sampler(space: SamplerSpace, seed: int, **options: Any) -> BaseSampler:
    return OptunaSampler(space, TPESampler(**({"n_startup_trials": 10} | options), seed=seed), seed)


def nsga2_sampler(space: SamplerSpace, seed: int, **options: Any) -> BaseSampler:
    return OptunaSampler(space, NSGAIISampler(**({"population_size": 10} | options), seed=seed), seed)


__getattr__ = renamed_names(__name__, {"LocalSampler": "VizierSampler"}, globals())
