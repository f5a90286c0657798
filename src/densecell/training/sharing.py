"""What a run's model card says of its training, and the run saved or pushed with it: the recipe, the costs at the
training size, the val mIoU of every evaluation found in the run folder (``val.json``, and ``densecell eval
--output`` files). The saving and pushing themselves are :mod:`densecell.models.hub`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from ..cell.space import branch_label
from ..models.cost import branch_costs, context_module_cost, feature_size, head_cost, model_cost
from ..models.hub import push
from ..models.model import build_model
from .checkpoint import Run, load_run

__all__ = ["card_facts", "push_run", "save_run"]


def _evaluations(run: Run) -> list[list[str]]:
    """The run folder's evaluations: ``val.json`` (single-scale, at the end of training) and the JSON files of
    ``densecell eval --output`` (their scales and flip), as card rows."""
    folder = run.path.parent if run.path.is_file() else run.path
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(result, dict) or not isinstance(result.get("val_miou", result.get("miou")), float):
            continue
        settings = result.get("settings", {})
        scales = settings.get("scales", [1.0])
        how = ("single-scale" if scales == [1.0] else f"scales {', '.join(f'{s:g}' for s in scales)}") + \
            (" + flip" if settings.get("flip") else "")
        rows.append([path.name, how, f"{result.get('val_miou', result.get('miou')) * 100:.2f}%"])
    return rows


def _costs(run: Run) -> tuple[list[list[str]], list[str], list[list[str]]]:
    """Params and MAdds of the context module, the head and the whole model at the training crop (counted on the
    meta device), and each branch's cost and importance."""
    config = run.model.config
    size = run.config.data.crop_size if run.config else (513, 513)
    with torch.device("meta"):
        model = build_model(**config)
        channels = model.head.in_channels
        parts = {f"context module (paper convention), {size[0]}x{size[1]}": context_module_cost(
            model.head, size, config["output_stride"]), "head": head_cost(model.head, channels, size,
                                                                         config["output_stride"]),
                 "whole model": model_cost(model, size)}
        branches = branch_costs(model.head, (1, channels, *feature_size(size, config["output_stride"]))) \
            if config["head"] == "dpc" else []
    rows = [[part, f"{cost.params / 1e6:.3f}M", f"{cost.madds / 1e9:.3f}B"] for part, cost in parts.items()]
    if not branches:
        return rows, [], []
    importance = run.model.head.branch_importance()
    total = sum(importance)
    columns = ["params", "MAdds", "importance (L1 share)"]
    extra = [[f"{c.params / 1e6:.3f}M", f"{c.madds / 1e9:.3f}B", f"{v / total:.0%}" if total else ""]
             for c, v in zip(branches, importance)]
    return rows, columns, extra


def card_facts(run: Run, repo_id: str | None = None) -> dict[str, Any]:
    """What a run's model card says beyond the model itself."""
    costs, columns, extra = _costs(run)
    branches = [[label, source, op, *more] for (label, source, op), more in
                zip(_model_branches(run), extra)] if extra else None
    facts: dict[str, Any] = {"costs": costs, "results": _evaluations(run),
                             "dataset": run.dataset or "", "repo_id": repo_id or "PATH_OR_REPO_ID",
                             "recipe": yaml.safe_dump(run.config.model_dump(mode="json"), sort_keys=False)
                             if run.config else ""}
    if branches:
        facts |= {"branches": branches, "branch_columns": columns}
    return facts


def _model_branches(run: Run) -> list[tuple[str, str, str]]:
    return [(branch_label(i), branch_label(b.input), str(b.op)) for i, b in enumerate(run.model.head.cell)]


def save_run(source: str | Path, out_dir: str | Path) -> Path:
    """Save a run's model (a checkpoint, its run folder, or a saved model) as a folder that
    :func:`densecell.models.model.from_pretrained` loads, with its card."""
    run = load_run(source)
    (Path(out_dir) / "README.md").unlink(missing_ok=True)  # save_pretrained keeps a card it finds: this one is new
    run.model.save_pretrained(out_dir, model_card_kwargs=card_facts(run))
    return Path(out_dir)


def push_run(source: str | Path, repo_id: str, private: bool | None = None) -> str:
    """Push a run's model to the Hugging Face Hub as ``repo_id`` (``user/name``), with its card; returns the commit's
    URL (:func:`densecell.models.hub.push`: a hub that cannot be reached, or refuses, is one line)."""
    run = load_run(source)
    return push(run.model, repo_id, private, card_facts(run, repo_id))
