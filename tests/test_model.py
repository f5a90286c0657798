
import pytest
import torch

from densecell.cell.heads import ASPP, DensePredictionCell
from densecell.core.errors import ModelError
from densecell.models.backbones import KNOWN_BACKBONES
from densecell.models.model import build_model


@pytest.mark.parametrize("backbone", KNOWN_BACKBONES)
def test_known_backbones_build_and_feed_the_head(backbone):
    with torch.device("meta"):
        model = build_model(backbone=backbone, num_classes=7)
        logits = model.eval()(torch.empty(1, 3, 129, 97))
    expected_channels = {"mobilenetv2_100": 320}.get(backbone, 2048)
    assert model.head.in_channels == expected_channels
    assert logits.shape == (1, 7, 129, 97)


@pytest.mark.parametrize("head,cls", [("dpc", DensePredictionCell), ("aspp", ASPP)])
@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("decoder", [True, False])
@pytest.mark.parametrize("size", [(65, 97), (64, 96)])
def test_logits_at_input_resolution(head, cls, output_stride, decoder, size):
    model = build_model(head=head, num_classes=5, output_stride=output_stride, decoder=decoder).eval()
    assert type(model.head) is cls
    assert (model.decoder is not None) == decoder
    with torch.inference_mode():
        assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)


def test_decoder_reads_stride_4_features():
    model = build_model(num_classes=3)
    assert model.backbone.feature_info.reduction()[model.low_level_index] == 4
    assert model.decoder.reduce.conv.in_channels == model.backbone.feature_info.channels()[model.low_level_index]
    assert model.decoder.reduce.conv.out_channels == 48


def test_feature_stages_cut_the_backbone():
    model = build_model(num_classes=3, feature_stages=2, decoder=False)
    assert model.backbone.feature_info.reduction() == [2, 4]
    assert model.head.in_channels == 24  # MobileNet-v2's stride-4 stage
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert build_model(**model.config).backbone.feature_info.reduction() == [2, 4]
    with pytest.raises(ValueError, match="feature_stages"):
        build_model(feature_stages=0)


def test_whole_model_trains_end_to_end():
    model = build_model(num_classes=3).train()
    images = torch.randn(2, 3, 65, 65)
    torch.nn.functional.cross_entropy(model(images), torch.randint(0, 3, (2, 65, 65))).backward()
    for name in ("backbone", "head", "decoder", "classifier"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_config_rebuilds_the_same_architecture():
    model = build_model(backbone="mobilenetv2_100", head="dpc", num_classes=4, output_stride=8)
    again = build_model(**model.config)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}
    again.load_state_dict(model.state_dict())


def test_bad_arguments():
    with pytest.raises(ModelError, match="not a timm model"):
        build_model(backbone="no_such_net")
    with pytest.raises(ModelError, match="head"):
        build_model(head="psp")
