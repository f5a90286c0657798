"""Every error densecell raises on bad input or a job that cannot go on, under one base: ``DensecellError``.

Each message is one line that names the file, field or value at fault; a message states facts, never a command-line
flag (the command line adds its own advice). Input errors are also ``ValueError`` s and failed jobs
``RuntimeError`` s, so that code written against the standard exceptions keeps working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CacheDamaged", "CacheError", "CacheMissing", "CellError", "CheckpointError", "ConfigError", "DataError",
    "DataRootMissing", "DensecellError", "FileOperationError", "InputError", "Interrupted", "MissingExtra",
    "ModelError", "one_line", "PluginError", "RunExistsError", "RunInUseError", "SearchError", "StudyError",
    "TableError", "TrainingError"
]


class DensecellError(Exception):
    """The base of every densecell error: catch this one."""


class InputError(DensecellError, ValueError):
    """Bad input: a value, a file or a setting that densecell cannot use."""


class CellError(InputError):
    """An invalid cell; the message names the branch and the field at fault."""


class ConfigError(InputError):
    """A recipe, override or setting that does not validate; the message names the file and the field."""


class ModelError(InputError):
    """Model arguments that cannot build a model: an unknown backbone or head, weights that cannot be loaded."""


class DataError(InputError):
    """Bad data on disk; the message starts with the file or folder at fault."""


class DataRootMissing(ConfigError):
    """A dataset is needed but the recipe names no root folder."""

    def __init__(self) -> None:
        super().__init__("no data root: the recipe's data.root is not set")


class MissingExtra(DensecellError, ImportError):
    """An optional part of densecell whose libraries are not installed; the message names the pip extra."""


class TableError(InputError):
    """A ground-truth table that cannot be read; the message names the file and the field."""


class CheckpointError(InputError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


class CacheError(InputError):
    """A feature cache that is missing, incomplete or built with other settings; the message names the folder."""


class CacheMissing(CacheError):
    """No complete feature cache in a folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"{folder}: no complete feature cache here")
        self.folder = folder


class CacheDamaged(CacheError):
    """A file of a feature cache that cannot be read whole (truncated, or not what its spec says)."""

    def __init__(self, folder: Path, file: Path, reason: str) -> None:
        super().__init__(f"{file}: damaged feature cache file ({reason}); the cache in {folder} cannot be used until "
                         f"that folder is deleted and the cache built again")
        self.folder, self.file = folder, file


class StudyError(InputError):
    """A storage that cannot be opened, or a study that is missing or has other settings."""


class RunExistsError(InputError):
    """A new run was asked for where a run with that name already is."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"{run_dir}: a run with this name exists")
        self.run_dir = run_dir


class RunInUseError(InputError):
    """Another process holds the run folder (see :mod:`densecell.core.lock`)."""


class PluginError(DensecellError, ImportError):
    """An installed plugin (a ``densecell.plugins`` entry point) failed to load."""


class FileOperationError(DensecellError, OSError):
    """A file-system operation failed; the message names the operation and the file."""


class TrainingError(DensecellError, RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where."""


class SearchError(DensecellError, RuntimeError):
    """The search cannot go on (too many failed trials, workers that died)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a long job after it saved its state; ``saved`` is the file that holds it, if one does."""

    def __init__(self, message: str, saved: Path | None = None) -> None:
        super().__init__(message + (f"; state saved to {saved}" if saved else "; what was finished is saved"))
        self.saved = saved


def one_line(reason: BaseException | str, limit: int | None = None) -> str:
    """A library's message (an exception's, often several lines) as one line, cut at ``limit`` characters: the
    form every densecell message quotes another library's reason in."""
    text = " ".join(str(reason).split())
    return text if limit is None else text[:limit]
