"""The DeepLab training loop: SGD + poly LR, cross-entropy with ignore, AMP, DDP, checkpoints and exact resume.

Exactness: the batch of iteration ``i`` is a pure function of (seed, i) (see :class:`IterationSampler`), the
checkpoint holds the model, optimiser, scheduler and RNG states, and so a run that is killed and resumed ends with
the same weights (on the CPU, bit for bit) as one that never stopped.

Started by ``torchrun`` (``WORLD_SIZE`` > 1) the loop runs DistributedDataParallel, on NCCL with GPUs (with
SyncBatchNorm) or gloo on CPUs (per-process BatchNorm: torch's SyncBatchNorm has no CPU kernel); each process takes
``batch_size / world`` images of every global batch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .checkpoint import load_checkpoint, load_state, save_checkpoint
from .config import DataConfig, TrainConfig
from .data import IGNORE_INDEX, EvalTransform, SegmentationDataset, TrainTransform, build_dataset
from .evaluate import evaluate
from .model import build_model

CSV_FIELDS = ("iteration", "loss", "lr", "seconds", "val_miou")


class StopRequest:
    """While active, the first Ctrl-C only asks the loop to stop after the current iteration (so that the saved
    state is a whole number of iterations); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where and what was saved."""


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
        return Distributed(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world, device)


def autocast_for(amp: str, device: torch.device) -> Any:
    """bf16 autocast on GPUs that support it ('auto') or when asked ('bf16'); fp32 otherwise. No fp16: it would
    need loss scaling, and every GPU that DeepLab-size training runs on today has bf16."""
    if amp == "off" or (amp == "auto" and not (device.type == "cuda" and torch.cuda.is_bf16_supported())):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def poly_lambda(iterations: int, power: float) -> Any:
    return lambda step: max(0.0, 1.0 - step / iterations) ** power


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on convolution kernels only, as DeepLab's slim regulariser (not on BN or biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BN statistics and affine parameters fixed (DeepLab's ``fine_tune_batch_norm=False``)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        freeze_batchnorm(model)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               amp: str = "auto") -> float:
    """One SGD step of pixel-wise cross-entropy (ignore 255); returns the loss (the step is skipped if it is not
    finite, so the weights stay as they were)."""
    with autocast_for(amp, images.device):
        logits = model(images)
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
    value = loss.item()
    if math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return value


def build_datasets(data: DataConfig) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The training split with DeepLab's augmentation and the val split (if any) without."""
    if data.root is None:
        raise ValueError("no data root: pass --data-root or set data.root in the config")
    train_set = build_dataset(
        data.dataset, data.root, data.train_split,
        TrainTransform(data.crop_size, data.min_scale, data.max_scale, data.scale_step), **data.dataset_options(),
    )
    val_set = None
    if data.val_split:
        val_set = build_dataset(data.dataset, data.root, data.val_split, EvalTransform(), **data.dataset_options())
    return train_set, val_set


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
        from torch.utils.tensorboard import SummaryWriter

        self.board = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_iteration + 1)

    def write(self, iteration: int, **values: float) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, CSV_FIELDS).writerow({"iteration": iteration, **values})
        for key, value in values.items():
            self.board.add_scalar(key, value, iteration)

    def close(self) -> None:
        self.board.close()


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    val_miou: float | None


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) the run ``config.run_dir``; returns where it is and its final val mIoU."""
    env = setup_distributed()
    run_dir = config.run_dir
    checkpoint_path = run_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not resume:
        raise ValueError(f"{run_dir}: a run with this name exists; pass --resume to continue it or choose another "
                         f"name")
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    train_set, val_set = build_datasets(config.data)
    model: nn.Module = build_model(**config.model.build_kwargs(), num_classes=train_set.num_classes,
                                   crop_size=None).to(env.device)
    if config.optim.freeze_bn:
        freeze_batchnorm(model)
    optimizer = torch.optim.SGD(param_groups(model, config.optim.weight_decay), lr=config.optim.lr,
                                momentum=config.optim.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(config.optim.iterations, config.optim.power))
    start = 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        load_state(model, state["model"], checkpoint_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = int(state["iteration"])
    core = model
    if env.world > 1:
        if env.device.type == "cuda":  # torch's SyncBatchNorm has no CPU kernel: gloo runs keep per-process BN
            model = core = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[env.device.index] if env.device.index
                                                    is not None else None)
    if config.data.batch_size % env.world:
        raise ValueError(f"data.batch_size {config.data.batch_size} is not divisible by {env.world} processes")
    sampler = IterationSampler(len(train_set), config.data.batch_size, config.seed, start, env.rank, env.world)
    loader = DataLoader(train_set, batch_size=config.data.batch_size // env.world, sampler=sampler,
                        num_workers=config.data.workers, pin_memory=env.device.type == "cuda",
                        persistent_workers=config.data.workers > 0,
                        generator=torch.Generator().manual_seed(config.seed))  # keeps the global RNG untouched
    run_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(run_dir, start) if env.main else None

    def payload(iteration: int) -> dict[str, Any]:
        return {
            "config": config.model_dump(mode="json"), "model_config": core.config, "classes": train_set.classes,
            "palette": train_set.palette, "model": core.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "iteration": iteration, "rng": rng_state(),
        }

    total = config.optim.iterations
    bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not (progress and env.main))
    task = bar.add_task("train", total=total, completed=start, info="")
    batches = iter(loader)
    completed = start
    tic = time.perf_counter()
    stop = StopRequest()
    try:
        with bar, stop:
            set_train_mode(model, config.optim.freeze_bn)
            for iteration in range(start + 1, total + 1):
                if stop.requested:
                    break
                images, labels = next(batches)
                loss = train_step(model, optimizer, images.to(env.device), labels.to(env.device), config.amp)
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"loss is {loss} at iteration {iteration}; the last good state is "
                        f"{checkpoint_path if checkpoint_path.exists() else 'not saved yet'} (lower optim.lr?)"
                    )
                scheduler.step()
                completed = iteration
                lr = optimizer.param_groups[0]["lr"]
                bar.update(task, completed=iteration, info=f"loss {loss:.3f} lr {lr:.2e}")
                val_now = None
                if config.eval_every and iteration % config.eval_every == 0 and iteration < total and val_set:
                    val_now = evaluate(core, val_set, device=env.device, progress=False).miou
                    set_train_mode(model, config.optim.freeze_bn)
                if log and (iteration % config.log_every == 0 or val_now is not None):
                    log.write(iteration, loss=loss, lr=lr, seconds=time.perf_counter() - tic,
                              **({"val_miou": val_now} if val_now is not None else {}))
                if env.main and (iteration % config.checkpoint_every == 0 or iteration == total):
                    save_checkpoint(payload(iteration), checkpoint_path)
    except Exception:
        if not stop.requested:  # a real failure: what was checkpointed stays the last good state
            raise
    if stop.requested:  # Ctrl-C: the model holds exactly `completed` iterations, so save them
        if env.main:
            save_checkpoint(payload(completed), checkpoint_path)
            if log:
                log.close()
        raise KeyboardInterrupt(
            f"interrupted after iteration {completed}; state saved to {checkpoint_path}; continue with --resume"
        )
    val_miou = None
    if env.main and val_set is not None:
        val_miou = evaluate(core, val_set, device=env.device, progress=progress).miou
        log.write(total, val_miou=val_miou)
        (run_dir / "val.json").write_text(json.dumps({"iteration": total, "val_miou": val_miou}))
    if log:
        log.close()
    if env.world > 1:
        dist.barrier()
    return TrainResult(run_dir, total, val_miou)
