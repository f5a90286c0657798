"""densecell: Dense Prediction Cells (Chen et al., NeurIPS 2018) in PyTorch.

The few names a user needs are here, as ``timm.create_model`` is::

    import densecell
    model = densecell.build_model(backbone="xception71", head="dpc", cell="cityscapes-top1", pretrained=True)
    model = densecell.from_pretrained("user/repo")   # a model saved with save_pretrained, or on the Hub
    cell = densecell.load_cell("cityscapes-top1")
    densecell.SearchSpace().size()      # 418414128120

Everything else lives in the modules (``densecell.proxy``, ``densecell.search`` ...), which import only what they use.
"""

from .config import ProxySettings, SearchSettings, load_config, load_search_config
from .cost import cell_costs, context_module_cost, model_cost, paper_table
from .errors import DensecellError
from .heads import ASPP, DensePredictionCell
from .model import SegmentationModel, backbone_normalization, build_model, from_pretrained
from .space import Branch, Cell, Operation, SearchSpace, load_cell

__version__ = "0.3.0"

__all__ = [
    "ASPP", "Branch", "Cell", "DensePredictionCell", "DensecellError", "Operation", "ProxySettings",
    "SearchSettings", "SearchSpace", "SegmentationModel", "backbone_normalization", "build_model", "cell_costs",
    "context_module_cost", "from_pretrained", "load_cell", "load_config", "load_search_config", "model_cost",
    "paper_table",
]
