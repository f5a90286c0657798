"""Everything Hugging Face: how a model is saved and loaded (``save_pretrained`` / ``from_pretrained``, a folder
or a Hub repo and its cache) and pushed, the cards that travel with models and cells, and the one rule that tells
what a model source is.

The rule (:func:`locate`): a path that exists is a file (a training checkpoint) or a folder (a run folder with its
``checkpoint.pt``, or a folder that ``save_pretrained`` wrote, with ``config.json``), never a Hub id; a Hub id is
tried only for ``owner/name`` that is not a path. A damaged file in a folder is one line that names the file and
what is wrong with it; a Hub repo that is neither cached nor reachable is one line too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from huggingface_hub.errors import HfHubHTTPError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

from ..cell.space import Cell, branch_label, load_cell
from ..core.errors import CheckpointError, DensecellError, InputError, ModelError, one_line
from ..core.files import write_text

__all__ = ["CELL_CARD", "cell_card", "CHECKPOINT", "CITATION", "HubMixin", "is_repo_id", "load_saved", "load_state",
           "locate", "MODEL_CARD", "model_card_facts", "PAPER_URL", "push", "Source", "TRAINING"]

TRAINING = "training.json"
"""Beside a saved model's config: what it was trained with."""
CHECKPOINT = "checkpoint.pt"
"""What a run folder keeps its training checkpoint in."""
HUB_TAGS = ["semantic-segmentation", "deeplab", "dense-prediction-cell", "neural-architecture-search"]
HUB_OPTIONS = ("revision", "cache_dir", "force_download", "local_files_only", "token")
"""The keyword arguments of ``from_pretrained`` that go to the Hub's download, not to the model."""

PAPER_URL = "https://arxiv.org/abs/1809.04184"
CITATION = """@inproceedings{chen2018searching,
  title     = {Searching for Efficient Multi-Scale Architectures for Dense Image Prediction},
  author    = {Chen, Liang-Chieh and Collins, Maxwell D. and Zhu, Yukun and Papandreou, George and Zoph, Barret and
               Schroff, Florian and Adam, Hartwig and Shlens, Jonathon},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2018}
}"""

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

A DeepLab-style semantic segmentation model made with densecell: a
{{ backbone }} backbone (output stride {{ output_stride }}) with a {{ head_name }} head{{ decoder }}, predicting
{{ num_classes }} classes{% if dataset %}, trained on {{ dataset }}{% endif %}.
{% if head == "dpc" %}
![the Dense Prediction Cell](cell.png)
{% endif %}
## How to load it

```python
import densecell
model = densecell.from_pretrained("{{ repo_id }}")
logits = model(images)  # images: [N, 3, H, W] in [0, 1], normalised with model.normalization
```

Inputs are RGB scaled to [0, 1], then `(x - mean) / std` with mean {{ mean }} and std {{ std }}.
{% if branches %}
## The cell

| branch | input | operation |{% for column in branch_columns %} {{ column }} |{% endfor %}
|---|---|---|{% for column in branch_columns %}---|{% endfor %}
{% for row in branches %}| {{ row | join(" | ") }} |
{% endfor %}
The cell in TF DeepLab's JSON (`cell.json`): `{{ cell_json }}`
{% endif %}{% if costs %}
## Cost

| part | parameters | multiply-adds |
|---|---|---|
{% for row in costs %}| {{ row | join(" | ") }} |
{% endfor %}
{% endif %}{% if results %}
## Results

| split | inference | val mIoU |
|---|---|---|
{% for row in results %}| {{ row | join(" | ") }} |
{% endfor %}
{% endif %}{% if recipe %}
## Training recipe

```yaml
{{ recipe }}
```
{% endif %}
## Classes

{{ classes | join(", ") }}

## Citation

The Dense Prediction Cell and its search are from
[Searching for Efficient Multi-Scale Architectures for Dense Image Prediction]({{ paper_url }}) (NeurIPS 2018):

```bibtex
{{ citation }}
```
"""

CELL_CARD = """---
{{ card_data }}
---

# {{ title }}

A Dense Prediction Cell found by a densecell search (study
`{{ study }}`, trial {{ trial }}), published as a cell, without a trained model. Build a model on it with

```python
import densecell
model = densecell.build_model(backbone="xception71", head="dpc", cell="cell.json", num_classes=19)
```

![the cell](cell.png)

| branch | input | operation |
|---|---|---|
{% for row in branches %}| {{ row | join(" | ") }} |
{% endfor %}
| score | value |
|---|---|
{% for row in scores %}| {{ row | join(" | ") }} |
{% endfor %}
The cell in TF DeepLab's JSON (`cell.json`): `{{ cell_json }}`

## The search's settings

```json
{{ settings }}
```

## Citation

```bibtex
{{ citation }}
```
"""


def _branches(cell: Cell) -> list[list[str]]:
    return [[branch_label(i), branch_label(b.input), str(b.op)] for i, b in enumerate(cell)]


def model_card_facts(config: dict[str, Any]) -> dict[str, Any]:
    """What a model's card says of the model itself, from its config; the training's facts come on top."""
    head = config["head"]
    cell = load_cell(config["cell"]) if head == "dpc" else None
    return {
        "title": f"{config['backbone']} + {'DPC' if head == 'dpc' else head.upper()}", "backbone": config["backbone"],
        "head": head, "head_name": "Dense Prediction Cell" if head == "dpc" else head.upper(),
        "decoder": " and the DeepLabv3+ decoder" if config.get("decoder") else "",
        "output_stride": config["output_stride"], "num_classes": config["num_classes"],
        "classes": list(config.get("classes") or [f"class_{i}" for i in range(config["num_classes"])]),
        "mean": list(config["mean"]), "std": list(config["std"]), "repo_id": "PATH_OR_REPO_ID",
        "branches": _branches(cell) if cell else [], "branch_columns": [], "cell_json": cell.to_json() if cell else "",
        "costs": [], "results": [], "recipe": "", "dataset": "", "citation": CITATION,
    }


def cell_card(cell: Cell, study: str, trial: int, scores: list[list[str]], settings_json: str) -> ModelCard:
    """The card of a cell a search found: the cell, its scores (proxy, end to end, one-shot) and the study's
    settings, under the Hub's metadata."""
    data = ModelCardData(library_name="densecell", tags=["dense-prediction-cell", "neural-architecture-search",
                                                         "semantic-segmentation"])
    return ModelCard.from_template(data, template_str=CELL_CARD, title=f"Dense Prediction Cell {cell.digest()}",
                                   study=study, trial=trial, branches=_branches(cell), scores=scores,
                                   cell_json=cell.to_json(), settings=settings_json, citation=CITATION)


# --- the model's side: save_pretrained, from_pretrained, push_to_hub -------------------------------------------------

class HubMixin(PyTorchModelHubMixin, library_name="densecell", pipeline_tag="image-segmentation", tags=HUB_TAGS,
               paper_url=PAPER_URL, model_card_template=MODEL_CARD):
    """Shared as the Hugging Face ecosystem shares models (``huggingface_hub.PyTorchModelHubMixin``):
    ``save_pretrained(folder)`` writes ``config.json`` (the model's ``config``), ``model.safetensors``, the cell
    drawn and a model card; ``from_pretrained(folder or "user/repo")`` builds the model from ``config.json``
    without downloading ImageNet weights and loads its own; ``push_to_hub("user/repo")``."""

    config: dict[str, Any]
    provenance: dict[str, Any] | None = None
    """What the model was trained with (the recipe, the iterations, the backbone's starting weights), when it came
    from a run: saved as ``training.json`` beside it."""

    def _save_pretrained(self, save_directory: Path) -> None:
        """``model.safetensors``, ``config.json`` (the model's config: its constructor's arguments), ``training.json``
        (:attr:`provenance`, if known) and, for a DPC, ``cell.json`` and ``cell.png`` (the cell in TF DeepLab JSON,
        and drawn, where the report extra is installed)."""
        save_model(self, str(save_directory / SAFETENSORS_SINGLE_FILE))
        write_text(save_directory / CONFIG_NAME, json.dumps(self.config, indent=2, sort_keys=True))
        if self.provenance:
            write_text(save_directory / TRAINING, json.dumps(self.provenance, indent=2))
        if self.config["head"] == "dpc":
            cell = load_cell(self.config["cell"])
            write_text(save_directory / "cell.json", cell.to_json())
            try:
                from ..cell.drawing import draw_cell  # here: matplotlib takes a second to import, and only saving draws
            except ImportError:
                return
            draw_cell(cell, save_directory / "cell.png", "the Dense Prediction Cell")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> Any:
        """A saved model from a folder or a Hub repo (:func:`locate`, :func:`load_saved`), with one-line errors;
        ``kwargs`` are the Hub's download options (``revision``, ``cache_dir``, ``token`` ...) and evaluation
        settings of the model (``output_stride=8``)."""
        source = locate(pretrained_model_name_or_path)
        if source.kind == "checkpoint":
            raise CheckpointError(f"{source.where}: a training checkpoint, not a saved model (load it with "
                                  f"densecell.training.checkpoint.load_run)")
        options = {key: kwargs.pop(key) for key in HUB_OPTIONS if key in kwargs}
        return load_saved(cls, source, options, **kwargs)[0]

    def generate_model_card(self, *args: Any, **facts: Any) -> ModelCard:
        """The model card (Markdown with the Hub's YAML metadata): what the model is, how to load it, its cell and
        classes, and what ``facts`` tell of its training (the command line's ``densecell save`` and ``push`` give
        the recipe, the costs and the val mIoU)."""
        return super().generate_model_card(**(model_card_facts(self.config) | facts))


def load_state(model: nn.Module, state: dict[str, torch.Tensor], origin: str | Path) -> None:
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


# --- the one rule: what a model source is ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Where a trained model is: a training ``checkpoint`` file, a ``saved`` folder, or a ``hub`` repo id."""

    kind: Literal["checkpoint", "saved", "hub"]
    where: str


def is_repo_id(text: str) -> bool:
    """``owner/name``: two non-empty parts of the characters the Hub allows, not a path."""
    parts = text.split("/")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return len(parts) == 2 and all(parts) and all(set(part) <= allowed for part in parts) and \
        not text.startswith(".") and not any(part in (".", "..") for part in parts)


def locate(source: str | Path) -> Source:
    """What ``source`` names, by the rule of this module's docstring; a one-line error when it names nothing."""
    path = Path(source).expanduser()
    if path.is_file():
        return Source("checkpoint", str(path))
    if path.is_dir():
        if (path / CHECKPOINT).is_file():
            return Source("checkpoint", str(path / CHECKPOINT))
        if (path / CONFIG_NAME).is_file():
            return Source("saved", str(path))
        raise CheckpointError(f"{path}: neither a run folder (no {CHECKPOINT}) nor a saved model (no {CONFIG_NAME})")
    if isinstance(source, str) and is_repo_id(source):
        return Source("hub", source)
    raise CheckpointError(f"{source}: checkpoint not found: no such file or folder (a model is a checkpoint.pt, its "
                          f"run folder, a folder written by densecell save, or a Hugging Face Hub id owner/name)")


def _hub_path(repo_id: str, name: str, required: bool = True, options: dict[str, Any] | None = None) -> Path | None:
    """A file of a Hub repo, from the cache or downloaded; None for an optional one that is not there."""
    try:
        return Path(hf_hub_download(repo_id, name, **(options or {})))
    except (OSError, ValueError, HfHubHTTPError) as exc:  # offline and not cached, no such repo or file
        if not required:
            return None
        raise CheckpointError(f"{repo_id}: cannot load this densecell model: its {name} is not in the Hugging Face "
                              f"cache and the hub cannot give it ({type(exc).__name__})") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({one_line(exc)})") from None
    if not isinstance(found, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return found


def load_saved(model_class: type, source: Source, hub_options: dict[str, Any] | None = None,
               map_location: str = "cpu", **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """A model that ``save_pretrained`` wrote (a folder, or a Hub repo through its cache) and its ``training.json``
    facts: built from ``config.json`` with ``overrides`` (evaluation settings such as ``output_stride=8``), its
    weights from ``model.safetensors``, each file's problem one line naming it."""
    hub = source.kind == "hub"
    folder = None if hub else Path(source.where)

    def file(name: str, required: bool = True) -> Path | None:
        if hub:
            return _hub_path(source.where, name, required, hub_options)
        path = folder / name
        if required and not path.is_file():
            raise CheckpointError(f"{folder}: no {name} (a folder written by save_pretrained has one)")
        return path if path.is_file() else None

    config_path = file(CONFIG_NAME)
    config = _read_json(config_path)
    known = {key: value for key, value in config.items() if key not in ("pretrained",)}
    try:
        model = model_class(**(known | overrides))
    except DensecellError as exc:
        raise type(exc)(f"{config_path}: {exc}") from None
    except TypeError as exc:
        raise ModelError(f"{config_path}: not a densecell model config ({one_line(exc)})") from None
    weights = file(SAFETENSORS_SINGLE_FILE)
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({one_line(exc, 200)})") from None
    load_state(model, state, weights)
    training = file(TRAINING, required=False)
    return model.eval(), (_read_json(training) if training is not None else {})


def push(model: HubMixin, repo_id: str, private: bool | None = None, card: dict[str, Any] | None = None) -> str:
    """Push ``model`` to the Hub as ``repo_id`` (``owner/name``) with its card; the commit's URL. A hub that cannot
    be reached, or refuses, is one line."""
    if not is_repo_id(repo_id):
        raise InputError(f"repo id {repo_id!r}: expected owner/name")
    try:
        return str(model.push_to_hub(repo_id, private=private, model_card_kwargs=card or {}))
    except Exception as exc:
        if not isinstance(exc, (OSError, HfHubHTTPError)) and not _transport_error(exc):
            raise
        raise InputError(f"cannot push to the Hugging Face Hub as {repo_id}: {type(exc).__name__}: "
                         f"{one_line(exc, 200)}") from None


def _transport_error(exc: Exception) -> bool:
    """A network error of the HTTP library under huggingface_hub (httpx2, httpx or requests, by its version)."""
    return type(exc).__module__.split(".")[0] in ("httpx2", "httpx", "requests", "urllib3")

