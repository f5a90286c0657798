"""A documented test hook: hold a command at a named point, so that a test acts while the command is there (starts
a second command on the same run, kills it, interrupts it) instead of racing it.

``DENSECELL_HOLD=POINT[:COUNT]:FILE``: the COUNT-th time (default 1) this process reaches ``POINT``, it writes
``FILE`` and waits until ``FILE`` is deleted. The points:

- ``lock``: a run's lock was just taken (:class:`densecell.core.lock.RunLock`);
- ``checkpoint``: a training checkpoint was just written;
- ``shard``: a feature-cache shard was just written;
- ``supernet``: a supernet checkpoint was just written;
- ``rung``: a search trial just reported its score at a rung (and its pruner decided).

Unset (always, outside tests), :func:`hold` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

__all__ = ["ENV", "hold"]

ENV = "DENSECELL_HOLD"
_reached: Counter[str] = Counter()


def hold(point: str) -> None:
    """Wait here while the test hook asks to (see the module's docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, rest = spec.partition(":")
    count, _, path = rest.partition(":") if rest.split(":", 1)[0].isdigit() else ("1", "", rest)
    if wanted != point:
        return
    _reached[point] += 1
    if _reached[point] != int(count):
        return
    marker = Path(path)
    marker.write_text(f"{os.getpid()}\n")
    while marker.exists():
        time.sleep(0.02)
