"""Files written whole or not at all, and file-system errors as one line that names the operation and the file.

Every result densecell writes (checkpoints, cache shards, reports, exported models) goes through
:func:`atomic_path`: the data goes to a temporary file with a unique name in the target's folder, is flushed to disk
and renamed over the target. A crash never leaves a truncated file under the final name, and two processes writing
the same target can never rename each other's temporary file away.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import FileOperationError, one_line

__all__ = ["atomic_path", "describe", "make_dirs", "save_array", "save_torch", "write_bytes", "write_text"]


def describe(exc: OSError) -> str:
    """An OSError as ``file: reason`` (``a -> b: reason`` for a rename), without the errno prefix."""
    reason = exc.strerror or one_line(exc)
    if exc.filename is None:
        return reason
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {reason}"


def _failed(operation: str, path: Path, exc: OSError) -> FileOperationError:
    return FileOperationError(f"cannot {operation} {path}: {exc.strerror or exc}")


def make_dirs(folder: str | Path) -> Path:
    """``mkdir -p``, with a one-line error."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _failed("create the folder", folder, exc) from None
    return folder


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside ``path``: write it inside the block; on success it is synced to disk and
    renamed to ``path``, on failure removed."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:
        raise _failed("write in", path.parent, exc) from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _failed("write", path, exc) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def save_torch(payload: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return Path(path)


def save_array(array: Any, path: str | Path) -> Path:
    """``numpy.save`` through :func:`atomic_path` (a file handle, so numpy adds no suffix)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array)
    return Path(path)
