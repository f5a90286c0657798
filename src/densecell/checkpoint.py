"""Checkpoints: written atomically, read with ``weights_only=True``, rebuilt from the config they carry.

A checkpoint is a plain dict: ``model_config`` (the keyword arguments of :func:`~densecell.model.build_model`),
``model`` (the state dict), ``classes`` and, for a training checkpoint, ``optimizer``, ``scheduler``,
``iteration``, ``rng`` and the run's ``config``. Nothing in it needs unpickling of arbitrary objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .model import SegmentationModel, build_model


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write to ``path.partial``, fsync, then rename: a crash never leaves a truncated file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    return path


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


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str | Path) -> None:
    """``load_state_dict`` with a one-line error that names the mismatching tensors."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch: {', '.join(wrong[:3])}" + (" ..." if len(wrong) > 3 else ""))
        if missing:
            parts.append(f"missing: {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
        raise CheckpointError(f"{origin}: does not fit this model ({'; '.join(parts)})")
    model.load_state_dict(state)


def load_model(path: str | Path, **overrides: Any) -> tuple[SegmentationModel, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained with (``overrides`` such as ``output_stride=8`` change the
    architecture's evaluation settings, not its weights) and load its weights."""
    payload = load_checkpoint(path)
    model = build_model(**(payload["model_config"] | overrides))
    load_state(model, payload["model"], path)
    return model.eval(), payload
