"""DeepLab-style models: a timm backbone (:mod:`~densecell.models.backbones`), a context head and the decoder
(:mod:`~densecell.models.model`); their costs (:mod:`~densecell.models.cost`) and their latency on a device
(:mod:`~densecell.models.latency`, :mod:`~densecell.models.profile`); saving, loading and sharing through the
Hugging Face Hub (:mod:`~densecell.models.hub`); ONNX export (:mod:`~densecell.models.export`)."""
