"""What every trainer shares: TF DeepLab's weight decay, the poly schedule, random states."""

import random

import torch

from densecell.model import build_model
from densecell.optim import decayed_parameters, param_groups, poly_lambda, rng_state, set_rng_state


def test_weight_decay_as_tf_deeplab():
    """Decayed: kernels of convolutions that are not depthwise, and the classifier's. Not decayed: depthwise
    kernels (TF's split_separable_conv2d, MobileNet-v2 and Xception set depthwise_regularizer=None), BatchNorm,
    biases."""
    model = build_model(backbone="mobilenetv2_100", head="dpc", cell="cityscapes-top1", num_classes=3)
    decayed = set(decayed_parameters(model))
    assert "head.branches.0.conv_pw.weight" in decayed and "head.project.conv.weight" in decayed
    assert "classifier.weight" in decayed and "decoder.reduce.conv.weight" in decayed
    assert "decoder.refine.0.conv_pw.weight" in decayed and "backbone.conv_stem.weight" in decayed
    assert "backbone.blocks.1.0.conv_pw.weight" in decayed  # MobileNet-v2's expansion 1x1
    for name in ("head.branches.0.conv_dw.weight", "decoder.refine.1.conv_dw.weight",
                 "backbone.blocks.1.0.conv_dw.weight", "head.branches.0.bn_dw.weight", "classifier.bias"):
        assert name not in decayed, name
    modules = dict(model.named_modules())
    for name in decayed:
        module = modules[name.removesuffix(".weight")]
        assert module.groups == 1 or module.groups != module.in_channels, name
    groups = param_groups(model, 4e-5)
    assert groups[0]["weight_decay"] == 4e-5 and groups[1]["weight_decay"] == 0.0
    assert len(groups[0]["params"]) == len(decayed)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_poly_learning_rate():
    f = poly_lambda(100, 0.9)
    assert f(0) == 1 and f(100) == 0 and abs(f(50) - 0.5**0.9) < 1e-12


def test_random_states_round_trip():
    state = rng_state()
    first = (torch.rand(3), random.random())
    set_rng_state(state)
    assert torch.equal(torch.rand(3), first[0]) and random.random() == first[1]
