"""Training and evaluation end to end: one optimisation step and its precision (:mod:`~densecell.training.optim`,
:mod:`~densecell.training.precision`, :mod:`~densecell.training.steps`), the loss and the metrics, the training
loop (:mod:`~densecell.training.train`, exact resume from :mod:`~densecell.training.checkpoint`), evaluation as TF
DeepLab does it (:mod:`~densecell.training.evaluate`) and a run's model card (:mod:`~densecell.training.sharing`)."""
