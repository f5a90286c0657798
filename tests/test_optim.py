"""What every trainer shares: TF DeepLab's weight decay, the poly schedule, random states, fp16 loss scaling."""

import math
import random

import torch
from torch import nn

from densecell.models.model import build_model
from densecell.training.optim import (
    LOSS_SCALE,
    decayed_parameters,
    loss_scaler,
    param_groups,
    poly_lambda,
    rng_state,
    set_rng_state,
    train_step,
)


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


def test_fp16_steps_scale_the_loss_grow_the_scale_and_skip_an_overflow():
    """One loss scaler for every eager fp16 step (the training loop's, the proxy's eager step, the supernet's):
    GradScaler's dynamic scale, which grows after ``growth_interval`` good steps and halves on an overflow, whose
    step is skipped. Elsewhere it is a no-op."""
    cpu = torch.device("cpu")
    assert not loss_scaler("off", cpu).is_enabled() and not loss_scaler("bf16", cpu).is_enabled()
    assert not loss_scaler("auto", cpu).is_enabled()  # fp32 on a CPU
    scaler = loss_scaler("fp16", cpu, growth_interval=2)
    assert scaler.is_enabled()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2, 8, 8))
    for _ in range(2):
        train_step(model, optimizer, images, labels, "fp16", scaler)
    assert scaler.get_scale() == LOSS_SCALE * 2  # two steps without an overflow: the scale doubled
    scaler.update(new_scale=2.0 ** 60)  # far beyond fp16's range: the scaled gradients overflow
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    loss = train_step(model, optimizer, images, labels, "fp16", scaler)
    assert math.isfinite(loss) and scaler.get_scale() == 2.0 ** 59  # the loss was fine; its gradients were not
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the step was skipped
    assert all(torch.equal(m, optimizer.state[p]["momentum_buffer"]) for m, p in zip(momentum, model.parameters()))
    scaler.update(new_scale=1024.0)
    train_step(model, optimizer, images, labels, "fp16", scaler)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # and then it goes on
