"""The one-shot screen (``search.mode: oneshot``): a sampler searches the space on supernet scores, and the best
cells go on to the stand-alone proxy, in the same study.

The sampler (any of the search's) asks and is told in memory; every ``FLUSH`` cells the scored ones are written to
the study as records of stage ``oneshot`` (:mod:`densecell.record`), which the proxy's exact-N budget does not count.
When the screen has its ``search.oneshot_cells`` cells, the ``search.trials`` best distinct ones are queued as proxy
trials carrying their one-shot score, and any worker then trains them: each record says which score is which.
Interrupted, the screen resumes from what the study holds (losing at most ``FLUSH`` cells), and the queueing happens
once.
"""

from __future__ import annotations

import logging

import optuna

from . import record
from .cache import FeatureCache
from .config import SearchConfig, SearchSettings
from .cost import CellCoster
from .fidelity import Protocol
from .lock import RunLock
from .optim import default_device
from .progress import Progress, report
from .search import cell_params, distributions, load_study, make_sampler, study_precision, suggest_cell
from .space import Cell
from .steps import Precision
from .supernet import Supernet, score_cell, train_supernet

logger = logging.getLogger(__name__)
FLUSH = 50


def trained_supernet(config: SearchConfig, cache: FeatureCache, progress: Progress | None = None,
                     precision: Precision | None = None) -> Supernet:
    """The recipe's supernet, trained (or resumed, or loaded) in ``RUN/supernet``, in the study's precision."""
    settings = config.search_settings()
    return train_supernet(cache, settings.space, config.proxy, config.supernet, config.run_dir / "supernet",
                          config.seed, cache.train_features.device, progress, precision)


def oneshot_protocol(config: SearchConfig, progress: Progress | None = None) -> Protocol:
    """The one-shot score as a fidelity protocol (``densecell fidelity --against oneshot``)."""
    device = default_device()
    cache = FeatureCache.load(config.cache_dir, device)
    with RunLock(config.run_dir / "supernet", "densecell fidelity (supernet)", wait=True):
        supernet = trained_supernet(config, cache, progress)
    return lambda cell, seed: score_cell(supernet, cell, cache, config.supernet, device)


def _replay(records: list[record.TrialRecord], settings: SearchSettings) -> list[optuna.trial.FrozenTrial]:
    """The scored cells as finished trials, for the sampler's memory."""
    return [optuna.trial.create_trial(params=cell_params(t.cell), distributions=distributions(settings.space),
                                      values=list(t.values), user_attrs=t.to_attrs()) for t in records]


def screen(config: SearchConfig, progress: Progress | None = None) -> list[record.TrialRecord]:
    """Train the supernet, score ``search.oneshot_cells`` cells with it, queue the best ``search.trials`` for the
    proxy; returns the queued cells' one-shot records, best first."""
    study, settings = load_study(config.name, config.storage_url, worker_seed=config.seed)
    device = default_device()
    cache = FeatureCache.load(config.cache_dir, device)
    supernet = trained_supernet(config, cache, progress, study_precision(study, settings, device, cache))
    coster = CellCoster(cache.channels, config.proxy.filters, cache.image_size, cache.output_stride)
    scored = record.oneshot_records(study)
    memory = optuna.create_study(directions=settings.directions, sampler=make_sampler(settings, config.seed))
    memory.add_trials(_replay(scored, settings))
    for count in range(len(scored), settings.oneshot_cells):
        trial = memory.ask()
        record.write(trial, stage="oneshot")
        cell = suggest_cell(trial, settings.space)
        miou, cost = score_cell(supernet, cell, cache, config.supernet, device), coster(cell)
        values = (miou,) if settings.objectives == "miou" else (miou, float(cost.madds))
        memory.tell(trial, values[0] if len(values) == 1 else values)
        scored.append(record.TrialRecord(values=values, stage="oneshot", cell=cell, params=cost.params,
                                         madds=cost.madds, oneshot_miou=miou))
        if (count + 1) % FLUSH == 0 or count + 1 == settings.oneshot_cells:
            chunk = count // FLUSH
            record.store_oneshot_chunk(study, chunk, scored[chunk * FLUSH:(chunk + 1) * FLUSH])
        report(progress, "one-shot screen", count + 1, settings.oneshot_cells)
    return _queue_best(study, scored, settings.trials)


def _queue_best(study: optuna.Study, scored: list[record.TrialRecord], count: int) -> list[record.TrialRecord]:
    """Queue the ``count`` best distinct cells of ``scored`` (the screen's records) as proxy trials, once."""
    distinct: dict[Cell, record.TrialRecord] = {}
    for trial in sorted(scored, key=lambda t: t.values[0], reverse=True):
        distinct.setdefault(trial.cell, trial)  # one per cell: its best score
    best = list(distinct.values())[:count]
    info = record.supernet_info(study) or {}
    if not info.get("queued"):
        for trial in best:
            study.enqueue_trial(cell_params(trial.cell), user_attrs=record.TrialRecord(
                oneshot_miou=trial.oneshot_miou).to_attrs())
        record.store_supernet_info(study, info | {"queued": len(best), "screened": len(scored)})
        logger.info("one-shot screen: %d cells scored; the best %d go to the proxy (one-shot mIoU %.3f to %.3f)",
                    len(scored), len(best), best[0].oneshot_miou, best[-1].oneshot_miou)
    return best
