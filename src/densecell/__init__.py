"""densecell: Dense Prediction Cells (Chen et al., NeurIPS 2018) in PyTorch.

The few names a user needs are here, as ``timm.create_model`` is::

    import densecell
    model = densecell.build_model(backbone="xception71", head="dpc", cell="cityscapes-top1", pretrained=True)
    model = densecell.from_pretrained("user/repo")   # a model saved with save_pretrained, or on the Hub
    cell = densecell.load_cell("cityscapes-top1")
    densecell.SearchSpace().size()      # 418414128120

Everything else lives in the layer packages, each importing only the layers below it: ``core`` (errors, files,
locks, settings plumbing, registries and plugins), ``cell`` (the cell as data, its heads), ``config`` (the typed
settings and recipes), ``data``, ``models`` (backbones, the model, costs, the Hub, export), ``training`` and
``search`` (the proxy task, samplers, the study and its workers, the report). The names here load with their module
when first used.
"""

import sys
from typing import TYPE_CHECKING

from .core.aliases import MovedModules, renamed_names
from .core.lazy import lazy_names

if TYPE_CHECKING:
    from .cell.heads import ASPP, DensePredictionCell
    from .cell.space import Branch, Cell, Operation, SearchSpace, load_cell
    from .config import ProxySettings, StudySettings, load_config, load_search_config
    from .core.errors import DensecellError
    from .models.backbones import backbone_normalization
    from .models.cost import cell_costs, context_module_cost, model_cost, paper_table
    from .models.model import SegmentationModel, build_model, from_pretrained

__version__ = "0.4.0"
"""The one place the version is written (pyproject.toml reads it)."""

_HOMES = {
    "config": ("ProxySettings", "StudySettings", "load_config", "load_search_config"),
    "models.cost": ("cell_costs", "context_module_cost", "model_cost", "paper_table"),
    "core.errors": ("DensecellError",),
    "cell.heads": ("ASPP", "DensePredictionCell"),
    "models.backbones": ("backbone_normalization",),
    "models.model": ("SegmentationModel", "build_model", "from_pretrained"),
    "cell.space": ("Branch", "Cell", "Operation", "SearchSpace", "load_cell"),
}

__all__ = [
    "ASPP", "Branch", "Cell", "DensePredictionCell", "DensecellError", "Operation", "ProxySettings", "SearchSpace",
    "StudySettings", "SegmentationModel", "backbone_normalization", "build_model", "cell_costs",
    "context_module_cost", "from_pretrained", "load_cell", "load_config", "load_search_config", "model_cost",
    "paper_table",
]

MOVED = {
    **{name: f"core.{name}" for name in ("errors", "extras", "figures", "files", "hold", "interrupts", "lock",
                                         "progress", "ranking", "registry", "resize")},
    "space": "cell.space", "heads": "cell.heads",
    **{name: f"models.{name}" for name in ("backbones", "cost", "export", "hub", "model")},
    **{name: f"training.{name}" for name in ("checkpoint", "evaluate", "loss", "metrics", "optim", "precision",
                                             "sharing", "steps", "train")},
    **{name: f"search.{name}" for name in ("cache", "fidelity", "pipeline", "proxy", "rankers", "record", "report",
                                           "stages", "supernet")},
}
"""The modules of densecell 0.4's flat layout and where each lives now: ``import densecell.space`` still works, with
one FutureWarning."""

if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(MovedModules(__name__, MOVED))

_lazy, __dir__ = lazy_names(__name__, _HOMES, globals())
__getattr__ = renamed_names(__name__, {"SearchSettings": "StudySettings"}, globals(), _lazy)
