"""timm backbones: weights from a local file or the Hugging Face cache (offline), tags, the normalisation timm
declares for them, and one-line errors."""

import os
import subprocess
import sys

import pytest
import timm
import torch

from densecell.core.errors import ModelError
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.models.backbones import KNOWN_BACKBONES
from densecell.models.model import build_model
from helpers import write_hf_cache


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_loads_a_local_timm_checkpoint(tmp_path, suffix):
    source = timm.create_model("mobilenetv2_100", pretrained=False)
    path = tmp_path / f"mobilenetv2_100{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_model(backbone="mobilenetv2_100", pretrained=path)
    loaded = model.backbone.state_dict()
    reference = source.state_dict()
    assert torch.equal(loaded["conv_stem.weight"], reference["conv_stem.weight"])
    assert torch.equal(loaded["blocks.6.0.conv_pwl.weight"], reference["blocks.6.0.conv_pwl.weight"])
    fresh = build_model(backbone="mobilenetv2_100").backbone.state_dict()
    assert not torch.equal(fresh["conv_stem.weight"], reference["conv_stem.weight"])
    assert "pretrained" not in model.config  # the weights travel in the state dict, not as a reference


HUB_SCRIPT = """
import sys, torch
from densecell import build_model
model = build_model(backbone="mobilenetv2_100", pretrained=sys.argv[1] if sys.argv[1] != "true" else True)
print(float(model.backbone.state_dict()["conv_stem.weight"].double().sum()))
"""


def run_offline(home, pretrained):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", HUB_SCRIPT, pretrained], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("pretrained", ["true", "mobilenetv2_100.ra_in1k", "ra_in1k"])
def test_pretrained_comes_from_the_hugging_face_cache_offline(tmp_path, pretrained):
    """timm's own loading through huggingface_hub: with HF_HUB_OFFLINE=1 it reads a cache in the hub's layout."""
    torch.manual_seed(5)
    source = timm.create_model("mobilenetv2_100")
    write_hf_cache(tmp_path / "hf", "timm/mobilenetv2_100.ra_in1k", source.state_dict())
    done = run_offline(tmp_path / "hf", pretrained)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) == pytest.approx(float(source.state_dict()["conv_stem.weight"].double()
                                                                 .sum()))


def test_offline_with_an_empty_cache_is_one_line_that_says_how_to_pass_a_file(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty")}
    write_synthetic_cityscapes(tmp_path / "data", train=1, val=1, size=(32, 32), objects=1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  backbone: xception71\n  pretrained: true\n")
    done = subprocess.run([sys.executable, "-m", "densecell", "train", "--config", str(recipe), "--data-root",
                           str(tmp_path / "data"), "--set", f"output_dir={tmp_path}"], env=env, capture_output=True,
                          text=True)
    err = done.stderr
    assert done.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "xception71.tf_in1k" in err and "not in the Hugging Face cache" in err and "pretrained: /path" in err


def test_a_tag_is_passed_to_timm_as_the_model_name(monkeypatch):
    """No network: timm.create_model is stood in for, and must be asked for the tagged name with pretrained=True."""
    seen = {}
    real = timm.create_model

    def fake(name, **kwargs):
        seen.update(name=name, **kwargs)
        return real(name.split(".")[0], **{k: v for k, v in kwargs.items() if k != "pretrained"})

    monkeypatch.setattr(timm, "create_model", fake)
    build_model(backbone="xception71", pretrained="xception71.tf_in1k", num_classes=3)
    assert seen["name"] == "xception71.tf_in1k" and seen["pretrained"] is True and seen["features_only"] is True
    build_model(backbone="mobilenetv2_100", pretrained=True, num_classes=3)
    assert seen["name"] == "mobilenetv2_100.ra_in1k" and seen["pretrained"] is True  # timm's default tag


@pytest.mark.parametrize("backbone", KNOWN_BACKBONES)
def test_normalisation_is_timms(backbone):
    """mean/std are what timm's resolve_data_config gives for the backbone (TF's [-1, 1] for xception71)."""
    from timm.data import resolve_data_config

    expected = resolve_data_config({}, model=timm.create_model(backbone, pretrained=False))
    with torch.device("meta"):
        model = build_model(backbone=backbone, num_classes=3)
    assert model.normalization == (tuple(expected["mean"]), tuple(expected["std"]))
    if backbone == "xception71":
        assert model.normalization == ((0.5,) * 3, (0.5,) * 3)


def test_pretrained_errors(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        build_model(pretrained=tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="is for resnet50"):
        build_model(backbone="mobilenetv2_100", pretrained="resnet50.a1_in1k")
    with pytest.raises(ModelError, match="not a timm model or tag"):
        build_model(backbone="mobilenetv2_100", pretrained="no_such_tag")


def test_owner_slash_name_means_what_it_means_for_a_saved_model(tmp_path, monkeypatch):
    """One rule with :func:`densecell.models.hub.locate`: an existing path is a file, never a Hub id; an owner/name
    that is no file is named for what it looks like (backbone weights from the Hub come through timm's tags)."""
    from densecell.models.backbones import resolve_weights

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="Hugging Face Hub id is not backbone weights"):
        resolve_weights("mobilenetv2_100", "someone/weights")
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "weights").write_bytes(b"")
    assert resolve_weights("mobilenetv2_100", "someone/weights") == str(tmp_path / "someone" / "weights")
