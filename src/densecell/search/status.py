"""Reading a study: its completed proxy trials best first, the re-ranked pairs, and where it stands."""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from ..config import StudySettings
from . import record
from .record import TrialRecord

__all__ = ["completed_trials", "proxy_full_pairs", "state_counts", "study_status", "StudyStatus", "top_cells"]


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
    duplicates: int
    failures: list[tuple[int, str]]
    best: list[TrialRecord]
    full: dict[int, float]
    oneshot_cells: int = 0
    pruned_steps: int = 0
    spent_steps: int = 0
    settings: StudySettings | None = field(default=None, repr=False)


def state_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials are in each of Optuna's states (``complete``, ``running`` ...; zeros included), and how many
    one-shot cells the screen scored (``oneshot``, not a state: those trials are the screen's records)."""
    trials = record.records(study)
    counted = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    return counted | {"oneshot": len(record.records(study, (TrialState.COMPLETE,), stage="oneshot"))}


def study_status(study: optuna.Study, settings: StudySettings, top: int = 10) -> StudyStatus:
    trials = record.records(study)
    states = state_counts(study)
    oneshot = states.pop("oneshot")
    failures = [(t.number, t.error or "its worker died (no heartbeat); retried")
                for t in trials if t.state == TrialState.FAIL]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and not (t.surplus or t.duplicate)]
    return StudyStatus(
        study.study_name, settings.trials, {k: v for k, v in states.items() if v}, sum(t.surplus for t in trials),
        sum(t.duplicate for t in trials), failures, completed_trials(study)[:top], record.full_scores(study),
        oneshot_cells=oneshot, pruned_steps=sum(t.steps or 0 for t in pruned),
        spent_steps=sum(t.steps or 0 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
        settings=settings)
