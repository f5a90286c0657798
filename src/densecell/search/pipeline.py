"""The one command for a user's own data: warm up a backbone, cache its features, search, re-rank, report.

It composes the stages of :mod:`densecell.search.stages`, each of which leaves its result on disk and is skipped or
resumed when the command runs again: the warm-up and the re-ranking runs are resumable training runs, the cache resumes
at its first missing shard, and the search is an Optuna study that any number of workers can join. A second command
on the same run waits for the stage the first holds, then finds it done and joins the search with its own workers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import SearchConfig
from ..core.progress import Progress
from ..models.profile import DeviceProfile
from . import stages
from .study import check_storage, load_study

__all__ = ["run_pipeline"]

logger = logging.getLogger(__name__)


def run_pipeline(config: SearchConfig, progress: Progress | None = None,
                 command: str = "densecell search") -> dict[str, Path]:
    """All the stages, each resumed or skipped if done; returns where the report and the best cell are. A search of
    a ground-truth table's space (``search.space: table=FILE``) has no data, cache or cells: its study is prepared
    and searched, and nothing is returned."""
    check_storage(config.storage_url)  # a mistyped URL is one line now, not after the cache is built
    if config.search.latency.profile is not None:  # so is a device profile that does not read
        DeviceProfile.read(config.search.latency.profile)
    if not config.search.on_cells:
        stages.prepare(config, progress, command)
        stages.search(config, progress)
        return {}
    config.data.require_root()
    logger.info("1/4 feature cache in %s", config.cache_dir)
    stages.feature_cache(config, progress, command)
    stages.prepare(config, progress, command)
    logger.info("2/4 search")
    stages.search(config, progress)
    logger.info("3/4 re-ranking")
    stages.rerank(config, progress=progress, command=command)
    logger.info("4/4 report")
    study, settings = load_study(config.name, config.storage_url)
    return stages.search_report(study, settings, config.run_dir, config.run_dir, command)
