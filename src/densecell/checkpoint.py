"""Checkpoints and run folders: written atomically, read with ``weights_only=True``, rebuilt from the config they
carry.

A checkpoint is a plain dict: ``model_config`` (the keyword arguments of :func:`~densecell.model.build_model`, with the
input normalisation), ``model`` (the state dict), ``classes``, ``palette`` and, for a training checkpoint,
``optimizer``, ``scheduler``, ``scaler``, ``iteration``, ``rng``, the run's ``config`` and ``backbone_weights``
(what the backbone started from: a timm tag, a file, a checkpoint, or None for random weights). Nothing in it needs
unpickling of arbitrary objects. This module is the only one that knows the keys and where a run keeps its
checkpoint (and a search its re-ranking runs); everyone else gets a :class:`Run`, a :class:`TrainingState` or a path
from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .errors import CheckpointError, ConfigError
from .files import save_torch
from .model import SegmentationModel, build_model

__all__ = ["CHECKPOINT", "Run", "TrainingState", "checkpoint_path", "finished_iteration", "load_checkpoint",
           "load_run", "load_state", "load_training_state", "load_weights", "rerank_run", "save_checkpoint",
           "training_payload"]

CHECKPOINT = "checkpoint.pt"


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where a run folder keeps its checkpoint."""
    return Path(run_dir) / CHECKPOINT


def rerank_run(search_run_dir: str | Path, trial_number: int) -> Path:
    """The run folder in which a search re-trains trial ``trial_number`` end to end."""
    return Path(search_run_dir) / "rerank" / f"trial-{trial_number}"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (:func:`~densecell.files.atomic_path`): a crash never leaves a truncated file under ``path``."""
    return save_torch(payload, path)


def training_payload(model: SegmentationModel, config: TrainConfig, classes: tuple[str, ...], palette: Any,
                     iteration: int, state: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint: the model, what it was trained with, and ``state`` (optimizer, scheduler, rng)."""
    return {"config": config.model_dump(mode="json"), "model_config": model.config, "classes": list(classes),
            "palette": [list(c) for c in palette], "model": model.state_dict(), "iteration": iteration, **state}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with forbidden globals, not a torch file at all
        raise CheckpointError(f"{path}: not a readable densecell checkpoint ({' '.join(str(exc).split())[:200]})") \
            from None
    if not isinstance(payload, dict) or "model" not in payload or "model_config" not in payload:
        raise CheckpointError(f"{path}: not a densecell checkpoint (no 'model' and 'model_config' entries)")
    return payload


def finished_iteration(path: str | Path) -> int | None:
    """The iteration a checkpoint was saved at, None when there is no checkpoint there."""
    return int(load_checkpoint(path)["iteration"]) if Path(path).is_file() else None


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The model's state dict in a checkpoint (a fine-tuning stage starts from it)."""
    return load_checkpoint(path)["model"]


@dataclass
class TrainingState:
    """What a resumed training run reads back: the weights, the optimizer, the schedule, the loss scale and the random
    states, at ``iteration``."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]
    iteration: int


def load_training_state(path: str | Path) -> TrainingState:
    payload = load_checkpoint(path)
    return TrainingState(payload["model"], payload["optimizer"], payload["scheduler"], payload.get("scaler") or {},
                         payload["rng"], int(payload["iteration"]))


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str | Path) -> None:
    """``load_state_dict`` with a one-line error that names the mismatching tensors."""
    own = model.state_dict()
    problems = {
        "shape mismatch": [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                           if k in state and state[k].shape != v.shape],
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
    }
    parts = [f"{kind}: {', '.join(names[:3])}" + (" ..." if len(names) > 3 else "")
             for kind, names in problems.items() if names]
    if parts:
        raise CheckpointError(f"{origin}: does not fit this model ({'; '.join(parts)})")
    model.load_state_dict(state)


@dataclass
class Run:
    """A trained model and what it was trained with."""

    path: Path
    model: SegmentationModel
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    iteration: int | None
    config: TrainConfig | None
    backbone_weights: str | None = None
    """What the backbone started from (a timm tag, a file, a checkpoint); None: random weights, or not recorded."""

    @property
    def dataset(self) -> str | None:
        """The dataset the run was trained on (``cityscapes``, ``voc`` ...), if the checkpoint says."""
        return self.config.data.dataset if self.config else None


def load_run(path: str | Path, **overrides: Any) -> Run:
    """Rebuild the model a checkpoint was trained with and load its weights. ``overrides`` such as
    ``output_stride=8`` change the architecture's evaluation settings, not its weights."""
    path = Path(path)
    payload = load_checkpoint(path)
    model = build_model(**(payload["model_config"] | overrides))
    load_state(model, payload["model"], path)
    try:
        config = TrainConfig(**payload["config"]) if "config" in payload else None
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its training recipe does not read ({exc})") from None
    palette = tuple(tuple(c) for c in payload.get("palette", ()))
    return Run(path, model.eval(), tuple(payload.get("classes", ())), palette,  # type: ignore[arg-type]
               payload.get("iteration"), config, payload.get("backbone_weights"))
