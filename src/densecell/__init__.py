"""densecell: Dense Prediction Cells (Chen et al., NeurIPS 2018) in PyTorch."""

__version__ = "0.1.0"
