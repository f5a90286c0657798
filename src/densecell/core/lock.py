"""One writer per run folder: a lock that every command writing in a run holds, and that names its holder.

The lock is ``filelock``'s (an OS file lock on ``RUN/.lock``), so the operating system releases it when its process
dies, however it dies. Beside it, ``RUN/.lock.json`` records who holds it (host, pid, command, start time): a second
command reads it to say who is in the way, and a command that takes the lock over from a process that died without
releasing it says so. A lock is per process: the same command must not take it twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import filelock

from .errors import RunInUseError
from .files import make_dirs, write_text
from .hold import hold

__all__ = ["Holder", "POLL_S", "run_folder_of", "RunLock"]

logger = logging.getLogger(__name__)
POLL_S = 0.5


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run's lock."""

    command: str
    pid: int
    host: str
    started: float

    def __str__(self) -> str:
        when = datetime.fromtimestamp(self.started).strftime("%Y-%m-%d %H:%M")
        return f"{self.command} (pid {self.pid} on host {self.host}), started {when}"


class RunLock:
    """Hold ``folder`` for ``command``: ``with RunLock(run_dir, "densecell train"): ...``.

    When another process holds it, raise :class:`~densecell.core.errors.RunInUseError` naming the holder, or, with
    ``wait=True``, call ``on_wait(holder)`` once and wait for it. ``enabled=False`` makes it a no-op (the other ranks
    of a distributed run)."""

    def __init__(self, folder: str | Path, command: str, wait: bool = False,
                 on_wait: Callable[[Holder | None], None] | None = None, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.command, self.wait, self.on_wait, self.enabled = command, wait, on_wait, enabled
        self._lock = filelock.FileLock(self.folder / ".lock")

    @property
    def record(self) -> Path:
        return self.folder / ".lock.json"

    def holder(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.record.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        make_dirs(self.folder)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            holder = self.holder()
            if not self.wait:
                raise RunInUseError(f"{self.folder} is in use by {holder or 'another process'}") from None
            if self.on_wait:
                self.on_wait(holder)
            self._lock.acquire(poll_interval=POLL_S)
        left = self.holder()
        if left is not None:  # a holder that released the lock removes its record: this one died holding it
            logger.warning("%s: taking over the lock left by %s, which is no longer running", self.folder, left)
        write_text(self.record, json.dumps(asdict(Holder(self.command, os.getpid(), socket.gethostname(),
                                                         time.time()))))
        hold("lock")
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        self.record.unlink(missing_ok=True)
        self._lock.release()


def run_folder_of(path: str | Path) -> Path | None:
    """The run folder that ``path`` lies in (the nearest folder above it that a command has locked), if any."""
    for folder in Path(path).resolve().parents:
        if (folder / ".lock").exists():
            return folder
    return None
