"""densecell: Dense Prediction Cells (Chen et al., NeurIPS 2018) in PyTorch.

The few names a user needs are here, as ``timm.create_model`` is::

    import densecell
    model = densecell.build_model(backbone="xception71", head="dpc", cell="cityscapes-top1", pretrained=True)
    model = densecell.from_pretrained("user/repo")   # a model saved with save_pretrained, or on the Hub
    cell = densecell.load_cell("cityscapes-top1")
    densecell.SearchSpace().size()      # 418414128120

Everything else lives in the modules (``densecell.proxy``, ``densecell.search`` ...), which import only what they use;
the names here load with their module when first used.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backbones import backbone_normalization
    from .config import ProxySettings, SearchSettings, load_config, load_search_config
    from .cost import cell_costs, context_module_cost, model_cost, paper_table
    from .errors import DensecellError
    from .heads import ASPP, DensePredictionCell
    from .model import SegmentationModel, build_model, from_pretrained
    from .space import Branch, Cell, Operation, SearchSpace, load_cell

_HOMES = {
    "config": ("ProxySettings", "SearchSettings", "load_config", "load_search_config"),
    "cost": ("cell_costs", "context_module_cost", "model_cost", "paper_table"),
    "errors": ("DensecellError",),
    "heads": ("ASPP", "DensePredictionCell"),
    "backbones": ("backbone_normalization",),
    "model": ("SegmentationModel", "build_model", "from_pretrained"),
    "space": ("Branch", "Cell", "Operation", "SearchSpace", "load_cell"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__version__ = "0.4.0"
"""The one place the version is written (pyproject.toml reads it)."""

__all__ = [
    "ASPP", "Branch", "Cell", "DensePredictionCell", "DensecellError", "Operation", "ProxySettings",
    "SearchSettings", "SearchSpace", "SegmentationModel", "backbone_normalization", "build_model", "cell_costs",
    "context_module_cost", "from_pretrained", "load_cell", "load_config", "load_search_config", "model_cost",
    "paper_table",
]


def __getattr__(name: str) -> Any:
    """The names above load with their module on first use: ``densecell.model`` brings timm and torchvision (seconds
    at start-up), which a search worker or ``densecell space`` never needs."""
    if name not in _HOME:
        raise AttributeError(f"module 'densecell' has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
