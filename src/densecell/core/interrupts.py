"""Ctrl-C in densecell's long loops: one SIGINT handler that either notes the request (to be acted on at a safe
point) or interrupts at once, so that no loop is stopped halfway through writing its state.

- Training notes the first Ctrl-C and stops after the current iteration (the saved state is a whole number of
  iterations); a second one interrupts at once (:meth:`CtrlC.noted`, ``escalate=True``).
- A search worker holds Ctrl-C back while Optuna keeps its books and delivers it at once while a candidate trains
  (:meth:`CtrlC.held`, :meth:`CtrlC.live_here`). Optuna starts a trial's heartbeat thread (not a daemon) before the
  ``try`` that joins it, and writes the trial around that: a KeyboardInterrupt in between leaves the thread beating
  forever, so the process never exits and its trial stays RUNNING, never stale.

Only the main thread receives signals: in another thread (a library caller's) the handler is left as it is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CtrlC"]


class CtrlC:
    """A SIGINT handler: while :attr:`live`, Ctrl-C raises KeyboardInterrupt at once; otherwise it is noted in
    :attr:`requested` (and, with ``escalate``, a second one raises)."""

    def __init__(self, escalate: bool = False) -> None:
        self.escalate = escalate
        self.requested = False
        self.live = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.live or (self.escalate and self.requested):
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def noted(self) -> Iterator[CtrlC]:
        """Ctrl-C is noted in :attr:`requested` while inside; the loop checks it at its safe points."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Ctrl-C is only noted inside, and raised on the way out."""
        with self.noted():
            yield
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt

    @contextmanager
    def live_here(self) -> Iterator[None]:
        """Inside :meth:`held`: Ctrl-C interrupts at once (one noted before raises now)."""
        self.live = True  # first, so that a signal after the check below is raised, not only noted
        try:
            if self.requested:
                self.requested = False
                raise KeyboardInterrupt
            yield
        finally:
            self.live = False
