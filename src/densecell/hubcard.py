"""The cards that travel with what densecell shares, as the Hugging Face Hub reads them (Markdown under YAML metadata,
rendered by ``huggingface_hub.ModelCard``): the model card of a trained model (its cell, its classes, how to load it,
and what its training measured), and the card of a cell that a search found, published without a model.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .space import Cell, branch_label, load_cell

__all__ = ["CELL_CARD", "CITATION", "MODEL_CARD", "PAPER_URL", "cell_card", "model_card_facts"]

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
    cell = load_cell(config["cell"], space=None) if head == "dpc" else None
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
