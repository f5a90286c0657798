import numpy as np
import pytest
import torch

from densecell.models.export import export_onnx, onnx_max_error
from densecell.models.model import build_model


def randomise_batchnorm(model, generator):
    """Fresh BatchNorm statistics make eval-mode outputs almost constant; random ones make the parity test bite."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.5, generator=generator)


@pytest.mark.parametrize("head,pooling", [("dpc", "tf"), ("aspp", "grid")])
def test_onnx_matches_pytorch(tmp_path, head, pooling):
    generator = torch.Generator().manual_seed(0)
    cell = '[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, ' \
           '{"grid_size": [2, 4], "op": "pyramid_pooling", "input": 0}, {"kernel": 1, "op": "conv", "input": 1}, ' \
           '{"kernel": 3, "rate": [12, 3], "op": "conv", "input": 0}, ' \
           '{"grid_size": [1, 1], "op": "pyramid_pooling", "input": -1}]'
    model = build_model(head=head, cell=cell, num_classes=4, pooling=pooling).eval()
    randomise_batchnorm(model, generator)
    path = export_onnx(model, tmp_path / "model.onnx", (97, 129))
    assert path.is_file() and not list(tmp_path.glob("*.partial"))
    images = torch.randn(1, 3, 97, 129, generator=generator)
    with torch.inference_mode():
        scale = float(model(images).std())
    assert scale > 0.05  # the outputs vary, so a small error means something
    assert onnx_max_error(model, path, images) < 1e-3
    assert np.isfinite(scale)


def test_the_normalisation_travels_in_the_onnx_metadata(tmp_path):
    from densecell.models.export import read_metadata

    model = build_model(num_classes=3, decoder=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", (33, 33), classes=("a", "b", "c"))
    metadata = read_metadata(path)
    assert metadata["mean"] == [0.5] * 3 and metadata["std"] == [0.5] * 3 and metadata["classes"] == ["a", "b", "c"]
    assert metadata["model_config"]["backbone"] == "mobilenetv2_100" and "(x - mean) / std" in metadata["input"]
