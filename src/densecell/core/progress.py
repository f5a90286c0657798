"""Progress of long jobs as events: the library reports, whoever called it renders.

A long function takes ``progress: Progress | None`` and calls it with a :class:`ProgressEvent` as it goes; the
command line renders the events with rich, a notebook could use tqdm, a test passes nothing. Messages that are not
progress (a stage starts, a lock is taken over) go through :mod:`logging` under the ``densecell`` logger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressEvent", "report"]


@dataclass(frozen=True)
class ProgressEvent:
    """``completed`` of ``total`` units of ``task`` are done (``total`` None when unknown); ``info`` is a short
    status such as the loss."""

    task: str
    completed: int
    total: int | None = None
    info: str = ""


Progress = Callable[[ProgressEvent], None]


def report(progress: Progress | None, task: str, completed: int, total: int | None = None, info: str = "") -> None:
    """Send one event, if anyone listens."""
    if progress is not None:
        progress(ProgressEvent(task, completed, total, info))
