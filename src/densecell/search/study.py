"""A study: its storage (SQLite on a laptop, PostgreSQL for many machines), its creation with the settings every
worker needs, its precision chosen once, and its sampler and pruner made from those settings.

Everything a worker needs (cache folder, proxy settings, space, budget, objectives, sampler, pruner) is stored in
the study (:mod:`densecell.search.record`), so a study's name and storage are all a new machine has to be told. Storage
is any SQLAlchemy URL: ``sqlite:///runs/NAME/study.db`` on a laptop, ``postgresql://...`` for many machines.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from ..config import StudySettings
from ..core.errors import DensecellError, StudyError, one_line
from ..core.extras import missing_extra
from ..core.files import make_dirs
from ..core.registry import PRUNERS, SAMPLERS, SPACES
from ..models.profile import DeviceProfile
from ..training.optim import default_device
from ..training.precision import Precision
from . import record
from .cache import FeatureCache
from .proxy import resolve_precision
from .pruners import LiveTrialsPruner
from .spaces import SamplerSpace

__all__ = ["check_storage", "create_study", "load_study", "make_pruner", "make_sampler", "make_space", "open_storage",
           "redact",
           "RetryCell", "study_precision"]


def make_space(settings: StudySettings) -> SamplerSpace:
    """The study's space (:data:`densecell.core.registry.SPACES`): ``dpc`` shaped by the settings (its members the
    cells under ``latency.budget_ms`` on the profile's device, when a budget is set), or ``NAME=SOURCE`` made from
    its source (``table=FILE``)."""
    name, _, source = settings.space.partition("=")
    if name != "dpc":
        return SPACES[name](source)
    latency = settings.latency
    if latency.budget_ms is None:
        return SPACES[name](settings.cell_space)
    profile, budget = DeviceProfile.read(latency.profile), latency.budget_ms
    return SPACES[name](settings.cell_space, cost=profile.predict_ms, budget=budget)


def make_sampler(settings: StudySettings, worker_seed: int) -> BaseSampler:
    """The study's sampler (:data:`densecell.core.registry.SAMPLERS`) on its space (:func:`make_space`), seeded per
    worker."""
    return SAMPLERS[settings.sampler](make_space(settings), settings.seed * 1000 + worker_seed)


def make_pruner(settings: StudySettings) -> BasePruner:
    """The study's pruner (:data:`densecell.core.registry.PRUNERS`; its rungs are the proxy's ``eval_every`` steps),
    comparing a trial only with trials that did not fail."""
    return LiveTrialsPruner(PRUNERS[settings.pruner](settings.proxy.eval_every, settings.proxy.iterations))


class RetryCell:
    """The retry of a trial whose worker died (its heartbeat lapsed): a new trial with the same cell, up to
    ``max_retry`` times. Unlike Optuna's ``RetryHeartbeatStaleTrialCallback`` it copies the cell only (and the
    one-shot score it was queued with, :func:`densecell.search.record.retry_attrs`), not the dead trial's system
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
    """The URL with its password replaced by ``***``, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def check_storage(url: str) -> str:
    """``url`` if it is a database URL SQLAlchemy can open (its dialect and driver installed), else a one-line
    error: checked before any work that leads to the study starts."""
    try:
        parsed = make_url(url)
    except Exception:
        raise StudyError(f"search.storage {redact(url)!r} is not a database URL (sqlite:///FILE or "
                         f"postgresql://USER@HOST/DB)") from None
    try:
        parsed.get_dialect()
    except ImportError as exc:  # the driver: psycopg for PostgreSQL
        if parsed.get_backend_name().startswith("postgres"):
            raise missing_extra(exc, "postgres") from None
        raise StudyError(f"search.storage {redact(url)}: no driver for {parsed.drivername!r} ({one_line(exc)})") \
            from None
    except Exception:
        raise StudyError(f"search.storage {redact(url)}: unknown database {parsed.drivername!r} (sqlite:///FILE or "
                         f"postgresql://USER@HOST/DB)") from None
    return url


def open_storage(url: str, settings: StudySettings | None = None) -> RDBStorage:
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
    except ImportError as exc:  # a database driver: psycopg for PostgreSQL
        if url.startswith("postgres"):
            raise missing_extra(exc, "postgres") from None
        raise StudyError(f"cannot open the study storage {redact(url)}: no driver ({one_line(exc)})") from None
    except Exception as exc:
        message = one_line(exc).replace(url, redact(url))
        raise StudyError(f"cannot open the study storage {redact(url)}: {message[:300]}") from None


def create_study(name: str, storage_url: str, settings: StudySettings,
                 device: str | torch.device | None = None) -> optuna.Study:
    """Create the study (or open it, checking that its settings are these), and choose the precision its trials
    compute in, once, on ``device`` (default: the first GPU, else the CPU): :func:`study_precision`."""
    storage = open_storage(storage_url, settings)
    study = optuna.create_study(study_name=name, storage=storage, directions=settings.directions,
                                load_if_exists=True)
    stored = _stored(study, storage_url)
    if stored is None:
        record.store_settings(study, settings.to_json())
    elif stored != settings:
        raise StudyError(f"study {name!r} in {redact(storage_url)} was created with other settings; use another "
                         f"study name")
    if settings.on_cells:  # a table's points are looked up, in no precision
        study_precision(study, settings, torch.device(device) if device else default_device())
    return study


def _stored(study: optuna.Study, storage_url: str) -> StudySettings | None:
    """The settings the study stores (None: none), or a one-line error naming the study when they cannot be read."""
    stored = record.stored_settings(study)
    if stored is None:
        return None
    try:
        return StudySettings.from_json(stored)
    except (ValueError, TypeError, AttributeError, DensecellError) as exc:
        raise StudyError(f"study {study.study_name!r} in {redact(storage_url)}: its stored settings are unreadable "
                         f"({one_line(exc, 200)})") from None


def study_precision(study: optuna.Study, settings: StudySettings, device: torch.device,
                    cache: FeatureCache | None = None) -> Precision:
    """The precision and memory layout of every trial of the study. Chosen once (by
    :func:`~densecell.search.proxy.resolve_precision`: measured on a GPU with ``amp: auto``) when the study is created,
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


def load_study(name: str, storage_url: str, worker_seed: int = 0) -> tuple[optuna.Study, StudySettings]:
    """Open a study densecell created, with its stored settings, its sampler and its pruner. Nothing is created:
    an SQLite file that is not there is a one-line error."""
    if storage_url.startswith("sqlite:///") and not storage_url.startswith("sqlite:///:memory:"):
        path = Path(storage_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StudyError(f"no study {name!r}: {path} does not exist (run densecell search first, or name the "
                             f"study's storage)")
    probe = open_storage(storage_url)
    try:
        summary = {s.study_name for s in optuna.get_all_study_summaries(probe)}
    except Exception as exc:
        raise StudyError(f"cannot read {redact(storage_url)}: {one_line(exc, 200)}") from None
    if name not in summary:
        known = ", ".join(sorted(summary)) or "none"
        raise StudyError(f"no study {name!r} in {redact(storage_url)} (studies: {known})")
    settings = _stored(optuna.load_study(study_name=name, storage=probe), storage_url)
    if settings is None:
        raise StudyError(f"study {name!r} was not created by densecell (no settings stored)")
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, settings),
                              sampler=make_sampler(settings, worker_seed), pruner=make_pruner(settings))
    return study, settings
