"""densecell: Dense Prediction Cells (Chen et al., NeurIPS 2018) in PyTorch.

The few names a user needs are here, as ``timm.create_model`` is::

    import densecell
    model = densecell.build_model(backbone="xception71", head="dpc", cell="cityscapes-top1", pretrained=True)
    cell = densecell.load_cell("cityscapes-top1")
    densecell.SearchSpace().size()      # 418414128120

Everything else lives in the modules (``densecell.proxy``, ``densecell.search`` ...), which import only what they use.
"""

from .config import ProxySettings, SearchSettings, load_config, load_search_config
from .cost import cell_costs, context_module_cost, model_cost, paper_table
from .errors import DensecellError
from .heads import ASPP, DensePredictionCell
from .model import backbone_normalization, build_model
from .space import Branch, Cell, Operation, SearchSpace, load_cell

__version__ = "0.2.0"

__all__ = [
    "ASPP", "Branch", "Cell", "DensePredictionCell", "DensecellError", "Operation", "ProxySettings",
    "SearchSettings", "SearchSpace", "backbone_normalization", "build_model", "cell_costs", "context_module_cost",
    "load_cell", "load_config", "load_search_config", "model_cost", "paper_table",
]
