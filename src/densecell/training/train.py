"""The DeepLab training loop: SGD + poly LR, cross-entropy with ignore, AMP, DDP, checkpoints and exact resume.

Exactness: the batch of iteration ``i`` is a pure function of (seed, i) (see :class:`IterationSampler`), the
checkpoint holds the model, optimiser, scheduler and RNG states, and so a run that is killed and resumed ends with
the same weights (on the CPU bit for bit; on a GPU with ``deterministic: true``) as one that never stopped.

Started by ``torchrun`` (``WORLD_SIZE`` > 1) the loop runs DistributedDataParallel, on NCCL with GPUs (with
SyncBatchNorm) or gloo on CPUs (per-process BatchNorm: torch's SyncBatchNorm has no CPU kernel); each process takes
``batch_size / world`` images of every global batch.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..config import TrainConfig
from ..core.errors import ConfigError, Interrupted, RunExistsError, TrainingError
from ..core.extras import missing_extra
from ..core.files import make_dirs, write_text
from ..core.hold import hold
from ..core.interrupts import CtrlC
from ..core.lock import RunLock
from ..core.progress import Progress, report
from ..data import SegmentationDataset, build_datasets, check_data
from ..models.backbones import check_backbone, resolve_normalization, resolve_weights
from ..models.model import SegmentationModel, build_model
from .checkpoint import (
    checkpoint_path,
    load_state,
    load_training_state,
    load_weights,
    save_checkpoint,
    training_payload,
)
from .evaluate import evaluate
from .optim import (
    default_device,
    freeze_batchnorm,
    loss_scaler,
    make_optimizer,
    poly_lambda,
    rng_state,
    set_rng_state,
    set_train_mode,
    train_step,
    use_deterministic,
)

__all__ = [
    "CSV_FIELDS", "Distributed", "IterationSampler", "MetricsLog", "setup_distributed", "starting_weights",
    "train", "TrainResult"
]

CSV_FIELDS = ("iteration", "loss", "lr", "seconds", "val_miou")
logger = logging.getLogger(__name__)


class IterationSampler(Sampler):
    """Endless ``(index, seed)`` keys: global batch ``i`` is positions ``[i*B, (i+1)*B)`` of a stream of per-epoch
    permutations seeded by (seed, epoch); process ``rank`` takes every ``world``-th key of each batch. The item seed
    drives that item's augmentation, so a batch is the same whichever worker loads it and wherever a run resumes."""

    def __init__(self, size: int, global_batch: int, seed: int, start_iteration: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.start_iteration, self.rank, self.world = start_iteration, rank, world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start_iteration * self.global_batch
        epoch, order = -1, None
        while True:
            this_epoch, offset = divmod(position, self.size)
            if this_epoch != epoch:
                epoch = this_epoch
                order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            if (position % self.global_batch) % self.world == self.rank:
                yield int(order[offset]), (self.seed << 40) + position
            position += 1


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(device=default_device())
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world, device)


class MetricsLog:
    """metrics.csv (truncated to the resumed iteration, so that no row is counted twice) and TensorBoard."""

    def __init__(self, run_dir: Path, start_iteration: int) -> None:
        self.path = run_dir / "metrics.csv"
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= start_iteration]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.board = _tensorboard(run_dir / "tensorboard", start_iteration)

    def write(self, iteration: int, **values: float) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, CSV_FIELDS).writerow({"iteration": iteration, **values})
        for key, value in values.items():
            if self.board is not None:
                self.board.add_scalar(key, value, iteration)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _tensorboard(folder: Path, start_iteration: int) -> Any:
    """A TensorBoard writer, or None (said once) where the tensorboard extra is not installed: metrics.csv holds
    the same figures."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        logger.info("no TensorBoard log (%s); metrics.csv has the figures", missing_extra(exc, "tensorboard"))
        return None
    return SummaryWriter(str(folder), purge_step=start_iteration + 1)


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    val_miou: float | None


@dataclass
class _Session:
    """One training run in progress: what the loop reads and updates."""

    config: TrainConfig
    env: Distributed
    model: nn.Module  # DDP-wrapped when distributed
    core: SegmentationModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    train_set: SegmentationDataset
    val_set: SegmentationDataset | None
    start: int
    weights: str | None
    """Where the backbone's starting weights came from (a timm tag, a file, a checkpoint), None if random."""
    completed: int = 0
    log: MetricsLog | None = None

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.config.run_dir)

    def save(self, iteration: int) -> None:
        if self.env.main:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "scaler": self.scaler.state_dict(), "rng": rng_state(), "backbone_weights": self.weights}
            save_checkpoint(training_payload(self.core, self.config, self.train_set.classes, self.train_set.palette,
                                             iteration, state), self.checkpoint)
            hold("checkpoint")


def _start_weights(model: nn.Module, config: TrainConfig) -> None:
    """A fine-tuning stage starts from another run's weights (``init_from``): the model only, not its optimizer."""
    if config.init_from is not None:
        load_state(model, load_weights(config.init_from), config.init_from)


def starting_weights(config: TrainConfig) -> str | None:
    """Where a run's backbone starts from: another run's checkpoint (``init_from``), the resolved pretrained
    weights, or None (random). DeepLab never trains its backbone from scratch, so a run without weights says so
    at its start, unless its recipe says ``allow_random_backbone: true``."""
    if config.init_from is not None:
        return f"checkpoint {config.init_from}"
    weights = resolve_weights(config.model.backbone, config.model.pretrained)
    if weights is None and not config.allow_random_backbone:
        logger.warning("%s: model.pretrained is not set, so the backbone %s starts from random weights (DeepLab "
                       "always starts from pretrained ones); set model.pretrained, or allow_random_backbone: true "
                       "if this is meant", config.run_dir, config.model.backbone)
    return weights


def _open(config: TrainConfig, resume: bool) -> _Session:
    """Build the model, optimizer and data of a run, and load its state when it resumes."""
    env = setup_distributed()
    use_deterministic(config.deterministic)
    checkpoint = checkpoint_path(config.run_dir)
    if checkpoint.exists() and not resume:
        raise RunExistsError(config.run_dir)
    weights = starting_weights(config) if env.main else None
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model_config = config.model
    mean, std = resolve_normalization(model_config.backbone, model_config.pretrained, model_config.mean,
                                      model_config.std)
    model_config = model_config.model_copy(update={"mean": mean, "std": std})
    train_set, val_set = build_datasets(config.data, (mean, std))
    if "num_classes" in config.model.model_fields_set and config.model.num_classes != train_set.num_classes:
        raise ConfigError(f"model.num_classes {config.model.num_classes} is not the {train_set.num_classes} classes "
                          f"of {train_set.name}")
    core = build_model(model_config, num_classes=train_set.num_classes).to(env.device)
    if config.optim.freeze_bn:
        freeze_batchnorm(core)
    optim = config.optim
    optimizer = make_optimizer(core, "sgd", optim.lr, optim.momentum, optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(optim.iterations, optim.power))
    scaler = loss_scaler(config.amp, env.device)
    start = 0
    if resume and checkpoint.exists():
        state = load_training_state(checkpoint)
        load_state(core, state.model, checkpoint)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        if state.scaler:
            scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng)
        start = state.iteration
    else:
        _start_weights(core, config)
    return _Session(config, env, _distribute(core, env), core, optimizer, scheduler, scaler, train_set, val_set,
                    start, weights)


def _distribute(core: nn.Module, env: Distributed) -> nn.Module:
    if env.world == 1:
        return core
    model = core
    if env.device.type == "cuda":  # torch's SyncBatchNorm has no CPU kernel: gloo runs keep per-process BN
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[env.device.index] if env.device.index is not None
                                               else None)


def _batches(session: _Session) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    config, env = session.config, session.env
    if config.data.batch_size % env.world:
        raise ConfigError(f"data.batch_size {config.data.batch_size} is not divisible by {env.world} processes")
    sampler = IterationSampler(len(session.train_set), config.data.batch_size, config.seed, session.start, env.rank,
                               env.world)
    loader = DataLoader(session.train_set, batch_size=config.data.batch_size // env.world, sampler=sampler,
                        num_workers=config.data.workers, pin_memory=env.device.type == "cuda",
                        persistent_workers=config.data.workers > 0,
                        generator=torch.Generator().manual_seed(config.seed))  # keeps the global RNG untouched
    return iter(loader)


def _loop(session: _Session, stop: CtrlC, progress: Progress | None) -> None:
    """Run iterations until the end or a stop request, counting them in ``session.completed``."""
    config, env = session.config, session.env
    total, tic = config.optim.iterations, time.perf_counter()
    session.completed = session.start
    batches = _batches(session)
    set_train_mode(session.model, config.optim.freeze_bn)
    for iteration in range(session.start + 1, total + 1):
        if stop.requested:
            break
        images, labels = next(batches)
        loss = train_step(session.model, session.optimizer, images.to(env.device), labels.to(env.device), config.amp,
                          session.scaler)
        if not math.isfinite(loss):
            saved = session.checkpoint if session.checkpoint.exists() else "none yet"
            raise TrainingError(f"loss is {loss} at iteration {iteration}; last saved state: {saved}")
        session.scheduler.step()
        session.completed = iteration
        lr = session.optimizer.param_groups[0]["lr"]
        if env.main:
            report(progress, "train", iteration, total, f"loss {loss:.3f} lr {lr:.2e}")
        val_now = _maybe_evaluate(session, iteration)
        if session.log and (iteration % config.log_every == 0 or val_now is not None):
            session.log.write(iteration, loss=loss, lr=lr, seconds=time.perf_counter() - tic,
                              **({"val_miou": val_now} if val_now is not None else {}))
        if iteration % config.checkpoint_every == 0 or iteration == total:
            session.save(iteration)


def _maybe_evaluate(session: _Session, iteration: int) -> float | None:
    config = session.config
    if not (config.eval_every and iteration % config.eval_every == 0 and iteration < config.optim.iterations
            and session.val_set):
        return None
    miou = evaluate(session.core, session.val_set, device=session.env.device).miou
    set_train_mode(session.model, config.optim.freeze_bn)
    return miou


def _finish(session: _Session, progress: Progress | None) -> TrainResult:
    """The final evaluation and ``val.json``."""
    config, env = session.config, session.env
    val_miou = None
    if env.main and session.val_set is not None:
        val_miou = evaluate(session.core, session.val_set, device=env.device, progress=progress).miou
        session.log.write(config.optim.iterations, val_miou=val_miou)
        write_text(config.run_dir / "val.json", json.dumps({"iteration": config.optim.iterations, "val_miou": val_miou,
                                                            "backbone_weights": session.weights}))
    if session.log:
        session.log.close()
    if env.world > 1:
        dist.barrier()
    return TrainResult(config.run_dir, config.optim.iterations, val_miou)


def train(config: TrainConfig, resume: bool = False, progress: Progress | None = None,
          command: str = "densecell train") -> TrainResult:
    """Train (or resume) the run ``config.run_dir``; returns where it is and its final val mIoU.

    The run folder is locked for the whole run (:class:`~densecell.core.lock.RunLock`): a second command on it fails at
    once with the holder's name. Ctrl-C finishes the current iteration, saves, and raises
    :class:`~densecell.core.errors.Interrupted`. The backbone and the data are checked before anything is made."""
    check_backbone(config.model.backbone)
    check_data(config.data, (config.data.train_split, config.data.val_split))
    make_dirs(config.run_dir)
    with RunLock(config.run_dir, command, enabled=int(os.environ.get("RANK", "0")) == 0):
        session = _open(config, resume)
        session.log = MetricsLog(config.run_dir, session.start) if session.env.main else None
        stop = CtrlC(escalate=True)  # the first Ctrl-C stops after this iteration, a second one at once
        try:
            with stop.noted():
                _loop(session, stop, progress)
        except Exception:
            if not stop.requested:  # a real failure: what was checkpointed stays the last good state
                raise
        if stop.requested:  # Ctrl-C: the model holds exactly `completed` iterations, so save them
            session.save(session.completed)
            if session.log:
                session.log.close()
            raise Interrupted(f"training interrupted after iteration {session.completed}",
                              session.checkpoint if session.env.main else None)
        return _finish(session, progress)
