"""The proxy task (paper Sec. 3.2): candidate cells trained on cached backbone features alone.

A candidate is the cell on the backbone feature and a 1x1 classifier (:func:`build_proxy_head`). It trains on batches
drawn from the cache (:mod:`densecell.search.cache`) with the proxy's settings, one step at a time by
:mod:`densecell.training.steps` (eagerly on a CPU, as a replayed CUDA graph on a GPU), and its score is the
single-scale val mIoU on the cached val features, as in the paper's search. Several candidates can share one GPU in one
process (:func:`train_candidates`), each replaying its own graph on its own CUDA stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..cell.heads import DensePredictionCell, PoolingMode
from ..cell.space import Cell
from ..config import ProxySettings
from ..core.errors import one_line
from ..training.metrics import val_miou
from ..training.optim import autocast_for
from ..training.precision import Precision
from ..training.steps import EagerStep, GraphStep, candidate_generator
from .cache import FeatureCache, remembered

__all__ = [
    "advance", "build_proxy_head", "EVAL_ELEMENTS", "proxy_miou", "ProxyResult", "resolve_precision",
    "train_candidate", "train_candidates", "TUNE_STEPS"
]

logger = logging.getLogger(__name__)

EVAL_ELEMENTS = 1 << 25
"""Upsampled val logits held at once when scoring (128 MiB in fp32)."""
TUNE_STEPS = 20
"""Steps timed per precision and layout when a GPU's best is measured."""


def build_proxy_head(cell: Cell | str, channels: int, num_classes: int, output_stride: int, filters: int, *,
                     dropout: float = 0.1, pooling: PoolingMode = "tf") -> nn.Module:
    """The candidate: the cell on the backbone feature and a 1x1 classifier (logits at feature resolution); the
    one definition, for the proxy, the rankers and the cells the supernet hands out."""
    return nn.Sequential(
        DensePredictionCell(cell, channels, filters=filters, concat_channels=filters, dropout=dropout,
                            output_stride=output_stride, pooling=pooling),
        nn.Conv2d(filters, num_classes, 1),
    )


@dataclass
class ProxyResult:
    miou: float
    iterations: int
    seconds: float
    stopped_early: bool = False
    scores: list[tuple[int, float]] = field(default_factory=list)
    """(iteration, val mIoU) every ``eval_every`` iterations and at the end."""
    precision: Precision = Precision()
    engine: str = "eager"
    """The step that trained it: ``graph`` or ``eager`` (also where a capture failed)."""
    head: nn.Module | None = field(default=None, repr=False)
    """The trained head."""


def proxy_miou(head: nn.Module, cache: FeatureCache, precision: Precision, device: torch.device) -> float:
    """Single-scale val mIoU of a head on the cached val features (logits upsampled to the label size)."""
    head.eval()
    chunk = max(1, EVAL_ELEMENTS // (len(cache.classes) * cache.val_labels[0].numel()))

    def logits(features: torch.Tensor) -> torch.Tensor:
        with autocast_for(precision.amp, device):
            return head(features.to(device).float().contiguous(memory_format=precision.memory_format))

    return val_miou(logits, cache.val_features, cache.val_labels, len(cache.classes), chunk)


def resolve_precision(settings: ProxySettings, cache: FeatureCache, device: torch.device) -> Precision:
    """The precision and layout a candidate computes in. On a CPU: fp32 and channels-last (measured faster there,
    BENCHMARKS.md). On a GPU, 'auto' is decided by timing the published cell's step in each choice once per GPU
    model, torch version and proxy shape; the result is kept beside the cache (``autotune.json``, under a lock).
    A search chooses once, when its study is created, and every trial uses the study's choice
    (:func:`densecell.search.study.study_precision`)."""
    amps = ["bf16", "fp16"] if settings.amp == "auto" else [settings.amp]
    layouts = [False, True] if settings.memory_format == "auto" else [settings.memory_format == "channels_last"]
    if device.type != "cuda":
        return Precision("off" if settings.amp == "auto" else settings.amp, settings.memory_format != "contiguous")
    options = [Precision(amp, layout) for amp in amps for layout in layouts]
    if len(options) == 1:
        return options[0]
    key = (f"{torch.cuda.get_device_name(device)} | torch {torch.__version__} | {tuple(cache.train_features.shape[1:])}"
           f" | batch {settings.batch_size} | filters {settings.filters} | upsample_logits {settings.upsample_logits}")

    def measure() -> dict[str, Any]:
        timings = {option: _step_seconds(cache, settings, option, device) for option in options}
        best = min(timings, key=timings.get)
        seconds = {f"{o.amp} {'channels_last' if o.channels_last else 'nchw'}": t for o, t in timings.items()}
        logger.info("proxy step on %s: %s", torch.cuda.get_device_name(device), seconds)
        return {"amp": best.amp, "channels_last": best.channels_last, "seconds": seconds}

    chosen = remembered(cache.folder, "autotune.json", key, measure)
    return Precision(chosen["amp"], chosen["channels_last"])


def _step_seconds(cache: FeatureCache, settings: ProxySettings, precision: Precision, device: torch.device) -> float:
    head = _head("cityscapes-top1", cache, settings, precision, device)
    step = GraphStep(head, cache.train_features, cache.train_labels, settings, precision, device,
                     candidate_generator(0, device))
    step.run(3)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    step.run(TUNE_STEPS)
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / TUNE_STEPS


def _head(cell: Cell | str, cache: FeatureCache, settings: ProxySettings, precision: Precision,
          device: torch.device, seed: int = 0) -> nn.Module:
    """A candidate's head, initialised from ``seed`` alone (the caller's random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = build_proxy_head(cell, cache.channels, len(cache.classes), cache.output_stride, settings.filters)
    return head.to(device, memory_format=precision.memory_format)


_capture_failure: str | None = None
"""Why a CUDA graph capture failed in this process: its later candidates go straight to the eager step."""


def _engine(head: nn.Module, cache: FeatureCache, settings: ProxySettings, precision: Precision,
            device: torch.device, seed: int) -> EagerStep | GraphStep:
    """The graph step on a GPU (and wherever ``engine: graph``), the eager one on a CPU. A graph that cannot be
    captured (an operation that cannot be, a driver that refuses) must not end a search: this worker then trains
    with the eager step, and says why once."""
    global _capture_failure
    if settings.engine == "graph" or (settings.engine == "auto" and device.type == "cuda"):
        if _capture_failure is None:
            try:
                return GraphStep(head, cache.train_features.to(device), cache.train_labels.to(device), settings,
                                 precision, device, candidate_generator(seed, device))
            except Exception as exc:  # the capture's failures have no common type (RuntimeError, CUDA errors)
                _capture_failure = f"{type(exc).__name__}: {one_line(exc, 200)}"
                logger.warning("the proxy step cannot be captured as a CUDA graph (%s): this worker trains its "
                               "candidates with the eager step", _capture_failure)
    count = len(cache.train_features)

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return cache.train_batch(torch.randint(count, (settings.batch_size,), generator=generator))

    return EagerStep(head, sample, settings, precision, device, seed)


def _checkpoints(settings: ProxySettings) -> list[int]:
    """The iterations after which a candidate is scored: every ``eval_every``, and the last."""
    every = settings.eval_every or settings.iterations
    return sorted({*range(every, settings.iterations, every), settings.iterations})


def train_candidate(
    cell: Cell | str,
    cache: FeatureCache,
    settings: ProxySettings = ProxySettings(),
    seed: int = 0,
    device: str | torch.device = "cpu",
    report: Callable[[int, float], bool] | None = None,
    precision: Precision | None = None,
) -> ProxyResult:
    """Train one candidate head on the cached training features and score it on the cached val features.

    With ``eval_every`` the candidate is also scored every ``eval_every`` iterations and ``report(iteration, miou)``
    is called; returning True stops it there (a pruner's decision). ``precision`` is the study's choice (default:
    :func:`resolve_precision`). A non-finite loss raises :class:`~densecell.core.errors.TrainingError`."""
    return train_candidates([cell], cache, settings, [seed], device, [report] if report else None, precision)[0]


def train_candidates(
    cells: Sequence[Cell | str],
    cache: FeatureCache,
    settings: ProxySettings = ProxySettings(),
    seeds: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    reports: Sequence[Callable[[int, float], bool] | None] | None = None,
    precision: Precision | None = None,
) -> list[ProxyResult]:
    """Train several candidates at once on one device: on a GPU each replays its CUDA graph on its own stream, so
    that their kernels overlap; on a CPU they run one after the other. Each draws from its own generator, so the
    results are those of one at a time, weight for weight."""
    device = torch.device(device)
    seeds = list(seeds) if seeds is not None else list(range(len(cells)))
    reports = list(reports) if reports is not None else [None] * len(cells)
    precision = precision or resolve_precision(settings, cache, device)
    start = time.perf_counter()
    heads = [_head(cell, cache, settings, precision, device, seed) for cell, seed in zip(cells, seeds)]
    engines = [_engine(head, cache, settings, precision, device, seed) for head, seed in zip(heads, seeds)]
    history: list[list[tuple[int, float]]] = [[] for _ in cells]
    results: list[ProxyResult | None] = [None] * len(cells)
    done = 0
    for checkpoint in _checkpoints(settings):
        live = [i for i, result in enumerate(results) if result is None]
        advance([engines[i] for i in live], checkpoint - done, device)
        done = checkpoint
        for i in live:
            if isinstance(engines[i], GraphStep):
                engines[i].check()
            history[i].append((checkpoint, proxy_miou(heads[i], cache, precision, device)))
            final = checkpoint == settings.iterations
            stop = not final and reports[i] is not None and reports[i](*history[i][-1])
            if final or stop:
                engine = "graph" if isinstance(engines[i], GraphStep) else "eager"
                results[i] = ProxyResult(history[i][-1][1], checkpoint, time.perf_counter() - start, stop, history[i],
                                         precision, engine, heads[i])
    return results  # type: ignore[return-value]


def advance(engines: list[EagerStep | GraphStep], steps: int, device: torch.device) -> None:
    if device.type != "cuda" or len(engines) == 1:
        for engine in engines:
            engine.run(steps)
        return
    streams = [torch.cuda.Stream(device) for _ in engines]
    for stream in streams:
        stream.wait_stream(torch.cuda.current_stream(device))
    for _ in range(steps):
        for engine, stream in zip(engines, streams):
            with torch.cuda.stream(stream):
                engine.run(1)
    for stream in streams:
        torch.cuda.current_stream(device).wait_stream(stream)
