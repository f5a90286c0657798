"""The paper's Dense Prediction Cell: the cell as data (:mod:`~densecell.cell.space`: operations, branches, cells,
the recursive search space and the released presets), the heads as modules (:mod:`~densecell.cell.heads`: DPC and
ASPP) and a cell drawn (:mod:`~densecell.cell.drawing`)."""
