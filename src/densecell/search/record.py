"""What a search study stores, and the one place that names its keys.

Optuna keeps a trial's facts in its user attributes and the study's in the study's user attributes. densecell writes
and reads them only through this module: :class:`TrialRecord` for a trial, and the functions below for the study
(its settings, its precision, whether its workers may start, the lone 1x1 baseline, the end-to-end scores of
re-ranked trials, the one-shot screen's scores and record). A study written by an earlier version reads the same
way: a key it lacks takes its default.

The study's trials are proxy trials. The one-shot screen's cells (thousands, each scored in a fraction of a second)
are kept as study attributes in chunks (``oneshot:0``, ``oneshot:1`` ...), one database write per chunk rather than
one per suggested parameter; :func:`records` returns them as records of stage ``oneshot``, numbered in screen order.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from ..core.extras import missing_extra

try:
    import optuna
    from optuna.trial import FrozenTrial, TrialState
except ImportError as exc:  # the search extra
    raise missing_extra(exc, "search") from None

from ..cell.space import Cell

__all__ = [
    "baseline", "full_scores", "is_duplicate",
    "oneshot_records", "precision", "ready", "records", "retry_attrs", "screen_record",
    "ScreenRecord", "Stage", "stage_of", "store_baseline", "store_full_score", "store_oneshot_chunk",
    "store_precision", "store_ready", "store_screen_record", "store_settings", "stored_settings", "TrialRecord",
    "write"
]

Stage = Literal["proxy", "oneshot"]
"""Which score a trial's value is: the stand-alone proxy's, or the one-shot supernet's."""

_SETTINGS = "densecell"
_PRECISION = "precision"
_BASELINE = "baseline_miou"
_FULL_PREFIX = "full_miou:"
_MEASURED_PREFIX = "measured_ms:"
_SCREEN = "supernet"  # the key older studies carry: kept, though it holds the screen's record
_READY = "ready"
_ONESHOT_PREFIX = "oneshot:"


@dataclass(frozen=True)
class TrialRecord:
    """One trial as densecell sees it: Optuna's number, state and values, and the facts densecell stored."""

    number: int = -1
    state: TrialState = TrialState.RUNNING
    values: tuple[float, ...] = ()
    stage: Stage = "proxy"
    cell: Cell | None = None
    row: int | None = None
    """The row a trial on a ground-truth table's space looked up (``search.space: table=FILE``)."""
    params: int | None = None
    madds: int | None = None
    seconds: float | None = None
    host: str | None = None
    pid: int | None = None
    proxy_miou: float | None = None
    oneshot_miou: float | None = None
    latency_s: float | None = None
    """The head's latency timed on the worker (``miou+latency`` without a device profile)."""
    predicted_ms: float | None = None
    """The cell's latency on the device profile's device (``search.latency.profile``)."""
    amp: str | None = None
    """The precision the trial trained in (the study's choice: ``off`` is fp32)."""
    memory_format: str | None = None
    engine: str | None = None
    """The step that trained it: ``graph`` (a CUDA graph) or ``eager`` (also where a capture failed)."""
    steps: int | None = None
    pruned_at: int | None = None
    error: str | None = None
    surplus: bool = False
    duplicate: bool = False
    """The trial stepped aside because another worker had taken the same cell at the same moment."""

    @property
    def score(self) -> float | None:
        """The first objective (mIoU), or the last reported score of a pruned trial."""
        return self.values[0] if self.values else self.proxy_miou

    def to_attrs(self) -> dict[str, Any]:
        """The stored attributes: every fact that is set, the cell as its TF JSON."""
        attrs = {}
        for name in _ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and value != _DEFAULTS[name]:
                attrs[name] = value.to_json() if isinstance(value, Cell) else value
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], **trial: Any) -> TrialRecord:
        known = {name: attrs[name] for name in _ATTRIBUTES if name in attrs}
        if "cell" in known:
            known["cell"] = Cell.from_json(known["cell"])
        return cls(**trial, **known)

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        return cls.from_attrs(trial.user_attrs, number=trial.number, state=trial.state,
                              values=tuple(trial.values or ()))


_ATTRIBUTES = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name not in ("number", "state", "values"))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrialRecord)}


def write(trial: optuna.Trial | optuna.study.Study, **facts: Any) -> None:
    """Store facts of a running trial (``write(trial, cell=..., madds=...)``); unknown names are an error."""
    for name, value in TrialRecord(**facts).to_attrs().items():
        trial.set_user_attr(name, value)


_RETRIED_FACTS = ("oneshot_miou",)
"""What a retried trial keeps of the trial whose worker died, besides its cell (its parameters): the one-shot score
it was queued with. Never the pruner's rung markers, the dead run's scores, steps or host."""


def retry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The user attributes of the retry of ``trial``."""
    return {name: trial.user_attrs[name] for name in _RETRIED_FACTS if name in trial.user_attrs}


def is_duplicate(trial: FrozenTrial) -> bool:
    """Whether the trial stepped aside for another worker's trial of the same cell (its cell is not taken)."""
    return bool(trial.user_attrs.get("duplicate"))


def stage_of(trial: FrozenTrial) -> Stage:
    return trial.user_attrs.get("stage", "proxy")


def records(study: optuna.Study, states: tuple[TrialState, ...] | None = None,
            stage: Stage | None = "proxy") -> list[TrialRecord]:
    """The study's records of one stage (both with ``stage=None``) in the given states: its trials for ``proxy``,
    the screen's scored cells (all complete) for ``oneshot``."""
    found = []
    if stage in ("proxy", None):
        found += [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False, states=states)
                  if stage_of(t) == "proxy"]
    if stage in ("oneshot", None) and (states is None or TrialState.COMPLETE in states):
        found += oneshot_records(study)
    return found


def oneshot_records(study: optuna.Study) -> list[TrialRecord]:
    """The cells the one-shot screen scored, in order."""
    chunks = sorted((int(key.removeprefix(_ONESHOT_PREFIX)), value) for key, value in study.user_attrs.items()
                    if key.startswith(_ONESHOT_PREFIX))
    entries = [entry for _, chunk in chunks for entry in chunk]
    return [TrialRecord(number=i, state=TrialState.COMPLETE, values=tuple(entry["values"]), stage="oneshot",
                        cell=Cell.from_json(entry["cell"]), params=entry["params"], madds=entry["madds"],
                        oneshot_miou=entry["values"][0]) for i, entry in enumerate(entries)]


def store_oneshot_chunk(study: optuna.Study, index: int, chunk: list[TrialRecord]) -> None:
    """Chunk ``index`` of the screen's scored cells."""
    study.set_user_attr(f"{_ONESHOT_PREFIX}{index}", [
        {"cell": t.cell.to_json(), "values": list(t.values), "params": t.params, "madds": t.madds} for t in chunk])


# --- the study's own record ----------------------------------------------------------------------------------------

def stored_settings(study: optuna.Study) -> str | None:
    """The JSON of the :class:`~densecell.config.settings.StudySettings` the study was created with."""
    return study.user_attrs.get(_SETTINGS)


def store_settings(study: optuna.Study, settings_json: str) -> None:
    study.set_user_attr(_SETTINGS, settings_json)


def precision(study: optuna.Study) -> dict[str, Any] | None:
    """The precision every trial of the study computes in, chosen once when the study was created:
    ``{"amp": ..., "channels_last": ..., "device": ...}``."""
    return study.user_attrs.get(_PRECISION)


def store_precision(study: optuna.Study, choice: dict[str, Any]) -> None:
    study.set_user_attr(_PRECISION, choice)


def baseline(study: optuna.Study) -> float | None:
    """The proxy score of a lone 1x1 convolution (no context), trained like every trial."""
    return study.user_attrs.get(_BASELINE)


def store_baseline(study: optuna.Study, miou: float) -> None:
    study.set_user_attr(_BASELINE, miou)


def full_scores(study: optuna.Study) -> dict[int, float]:
    """Re-ranking results: trial number -> end-to-end val mIoU."""
    return {int(key.removeprefix(_FULL_PREFIX)): value for key, value in study.user_attrs.items()
            if key.startswith(_FULL_PREFIX)}


def store_full_score(study: optuna.Study, trial_number: int, miou: float) -> None:
    study.set_user_attr(f"{_FULL_PREFIX}{trial_number}", miou)


def measured_latencies(study: optuna.Study) -> dict[int, float]:
    """Re-ranked cells timed on the device profile's own machine: trial number -> milliseconds."""
    return {int(key.removeprefix(_MEASURED_PREFIX)): value for key, value in study.user_attrs.items()
            if key.startswith(_MEASURED_PREFIX)}


def store_measured_latency(study: optuna.Study, trial_number: int, milliseconds: float) -> None:
    study.set_user_attr(f"{_MEASURED_PREFIX}{trial_number}", milliseconds)


@dataclass(frozen=True)
class ScreenRecord:
    """What the one-shot screen left in the study: how many cells it scored and how many of the best it queued for
    the proxy (once)."""

    screened: int
    queued: int


def screen_record(study: optuna.Study) -> ScreenRecord | None:
    info = study.user_attrs.get(_SCREEN) or {}
    return ScreenRecord(info["screened"], info["queued"]) if info.get("queued") else None


def store_screen_record(study: optuna.Study, screen: ScreenRecord) -> None:
    study.set_user_attr(_SCREEN, dataclasses.asdict(screen))


def ready(study: optuna.Study) -> bool:
    """Whether the study's workers may start proxy trials: its search mode's preparation (the one-shot screen) is
    done. A study written before 0.3 says so by its mode and its screen record."""
    if _READY in study.user_attrs:
        return bool(study.user_attrs[_READY])
    mode = json.loads(stored_settings(study) or "{}").get("mode", "proxy")
    return mode != "oneshot" or screen_record(study) is not None


def store_ready(study: optuna.Study) -> None:
    study.set_user_attr(_READY, True)
