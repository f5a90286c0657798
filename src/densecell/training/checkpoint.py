"""Checkpoints and run folders: written atomically, read with ``weights_only=True``, rebuilt from the config they
carry.

A checkpoint is a plain dict: ``model_config`` (the keyword arguments of :func:`~densecell.models.model.build_model`,
with the input normalisation), ``model`` (the state dict), ``classes``, ``palette`` and, for a training checkpoint,
``optimizer``, ``scheduler``, ``scaler``, ``iteration``, ``rng``, the run's ``config`` and ``backbone_weights``
(what the backbone started from: a timm tag, a file, a checkpoint, or None for random weights). Nothing in it needs
unpickling of arbitrary objects. This module is the only one that knows the keys and where a search keeps its
re-ranking runs; everyone else gets a :class:`Run`, a :class:`TrainingState` or a path from here. The checkpoint's
file name in a run folder (:data:`densecell.models.hub.CHECKPOINT`) is the Hub module's, whose path-or-id rule must
recognise a run folder without importing training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, TrainConfig
from ..core.errors import CheckpointError, ConfigError, InputError, one_line
from ..core.files import save_torch
from ..models.hub import CHECKPOINT, load_saved, load_state, locate
from ..models.model import SegmentationModel, build_model

__all__ = ["CHECKPOINT", "Run", "TrainingState", "checkpoint_path", "finished_iteration", "load_checkpoint",
           "load_run", "load_training_state", "load_weights", "rerank_run", "save_checkpoint", "training_payload"]


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where a run folder keeps its checkpoint."""
    return Path(run_dir) / CHECKPOINT


def rerank_run(search_run_dir: str | Path, trial_number: int) -> Path:
    """The run folder in which a search re-trains trial ``trial_number`` end to end."""
    return Path(search_run_dir) / "rerank" / f"trial-{trial_number}"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (:func:`~densecell.core.files.atomic_path`): a crash never leaves a truncated file under
    ``path``."""
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
        raise CheckpointError(f"{path}: not a readable densecell checkpoint ({one_line(exc, 200)})") \
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


@dataclass
class Run:
    """A trained model and what it was trained with: from a checkpoint, or from a folder or Hub repo that
    ``save_pretrained`` (``densecell save``) wrote."""

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

    @property
    def provenance(self) -> dict[str, Any]:
        """What a saved model carries besides its weights and config (``training.json``)."""
        return {"recipe": self.config.model_dump(mode="json") if self.config else None, "iteration": self.iteration,
                "backbone_weights": self.backbone_weights}


def _recipe(values: dict[str, Any] | None, origin: str | Path) -> TrainConfig | None:
    try:
        return TrainConfig(**values) if values else None
    except ConfigError as exc:
        raise CheckpointError(f"{origin}: its training recipe does not read ({exc})") from None


def load_run(source: str | Path, **overrides: Any) -> Run:
    """Rebuild a trained model and load its weights, from a checkpoint (or the run folder that holds one), a folder
    written by ``save_pretrained``, or a Hugging Face Hub repo id (through its cache): what ``source`` is follows
    :func:`densecell.models.hub.locate`'s one rule. ``overrides`` such as ``output_stride=8`` change the architecture's
    evaluation settings, not its weights."""
    if overrides:  # the caller's evaluation settings, checked as such (not blamed on the saved config)
        try:
            ModelConfig(**overrides)
        except ConfigError as exc:
            raise InputError(f"{str(exc).removeprefix('ModelConfig: ')} (an evaluation setting of {source})") \
                from None
    found = locate(source)
    if found.kind == "checkpoint":
        path = Path(found.where)
        payload = load_checkpoint(path)
        known = {"classes": payload.get("classes") or None, "palette": payload.get("palette") or None}
        model = build_model(**(payload["model_config"] | known | overrides))
        load_state(model, payload["model"], path)
        run = Run(path, model.eval(), model.classes, _palette(model), payload.get("iteration"),
                  _recipe(payload.get("config"), path), payload.get("backbone_weights"))
    else:
        model, facts = load_saved(SegmentationModel, found, **overrides)
        run = Run(Path(found.where), model, model.classes, _palette(model), facts.get("iteration"),
                  _recipe(facts.get("recipe"), found.where), facts.get("backbone_weights"))
    run.model.provenance = run.provenance
    return run


def _palette(model: SegmentationModel) -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(c) for c in model.config.get("palette") or ())  # type: ignore[misc]
