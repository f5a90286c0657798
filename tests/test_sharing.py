"""Sharing what a search found the way the Hugging Face ecosystem does: save_pretrained and from_pretrained round trips,
a model loaded offline from the hub's cache by its repo id, push_to_hub through huggingface_hub's own upload calls,
model cards with the Hub's metadata, and cards for found cells."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from densecell import from_pretrained, load_cell
from densecell.config import load_config
from densecell.models.model import build_model
from densecell.training.checkpoint import load_run
from densecell.training.train import train
from helpers import tiny_overrides, write_hf_snapshot

FILES = ("config.json", "model.safetensors", "training.json", "cell.json", "cell.png", "README.md")


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    """A tiny trained run, evaluated twice (val.json at the end of training, and an eval file with scales + flip)."""
    folder = tmp_path_factory.mktemp("runs")
    train(load_config(None, tiny_overrides(synthetic_root, folder, "tiny", iterations=2)))
    run = folder / "tiny"
    (run / "eval-ms.json").write_text(json.dumps({"miou": 0.25, "settings": {"scales": [0.75, 1.0], "flip": True}}))
    return run


def test_save_pretrained_and_from_pretrained_give_the_same_outputs_without_downloading(tmp_path):
    """The backbone's ImageNet weights are in model.safetensors: loading builds it without asking for them (here the
    weights file it was built from is gone, as a colleague's machine would not have it)."""
    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    torch.save(build_model(feature_stages=2).backbone.state_dict(), weights)
    model = build_model(feature_stages=2, decoder=False, filters=16, pretrained=weights, classes=["sky", "road"],
                        palette=[[0, 0, 255], [128, 64, 128]]).eval()
    model.save_pretrained(tmp_path / "saved")
    weights.unlink()
    loaded = from_pretrained(tmp_path / "saved")
    images = torch.randn(2, 3, 65, 97)
    assert torch.equal(model(images), loaded(images)) and not loaded.training
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "pretrained" not in config and config["classes"] == ["sky", "road"] and config["num_classes"] == 2
    assert config["backbone"] == "mobilenetv2_100" and config["head"] == "dpc" and config["output_stride"] == 16
    assert json.loads(config["cell"]) == load_cell("cityscapes-top1").to_records()  # the cell, as TF JSON
    assert config["mean"] == [0.485, 0.456, 0.406] and loaded.normalization == model.normalization
    assert from_pretrained(tmp_path / "saved", output_stride=8).config["output_stride"] == 8


def test_densecell_save_writes_a_folder_with_a_card_that_the_hub_reads(trained, tmp_path, densecell):
    code, out, err = densecell("save", trained, tmp_path / "shared")
    assert code == 0, err
    assert all((tmp_path / "shared" / name).is_file() for name in FILES)
    card = ModelCard.load(tmp_path / "shared" / "README.md")
    assert card.data.library_name == "densecell" and card.data.pipeline_tag == "image-segmentation"
    assert {"semantic-segmentation", "dense-prediction-cell"} <= set(card.data.tags)
    text = card.text
    for expected in ("densecell.from_pretrained(", "![the Dense Prediction Cell](cell.png)", "| Y1 | F |",
                     "trained on cityscapes", "scales 0.75, 1 + flip", "25.00%", "val.json", "multiply-adds",
                     "optim:", "chen2018searching", "road, sidewalk"):
        assert expected in text, expected
    again = load_run(tmp_path / "shared")  # the recipe travels too (training.json)
    assert again.config.data.dataset == "cityscapes" and again.iteration == 2 and len(again.classes) == 19


def test_commands_that_take_a_checkpoint_take_a_saved_folder(trained, tmp_path, densecell, synthetic_root):
    densecell("save", trained, tmp_path / "shared")
    results = {}
    for source in (trained / "checkpoint.pt", tmp_path / "shared"):
        code, out, err = densecell("eval", "--checkpoint", source, "--data-root", synthetic_root, "--output",
                                   tmp_path / f"eval-{source.name}.json")
        assert code == 0, err
        results[source.name] = json.loads((tmp_path / f"eval-{source.name}.json").read_text())["miou"]
    assert results["checkpoint.pt"] == results["shared"]
    image = next((synthetic_root / "leftImg8bit" / "val").rglob("*.png"))
    code, _, err = densecell("predict", image, "--checkpoint", tmp_path / "shared", "--output", tmp_path / "pred")
    assert code == 0 and list((tmp_path / "pred").glob("*_labelIds.png")), err  # Cityscapes ids, from the recipe
    code, _, err = densecell("export", tmp_path / "m.onnx", "--checkpoint", tmp_path / "shared", "--image-size", "65")
    assert code == 0, err
    code, out, err = densecell("cell", "importance", tmp_path / "shared", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 5, err


def test_a_saved_model_loads_offline_from_the_hub_cache_by_its_repo_id(trained, tmp_path, densecell):
    densecell("save", trained, tmp_path / "shared")
    files = {name: (tmp_path / "shared" / name).read_bytes() for name in FILES}
    write_hf_snapshot(tmp_path / "hf", "someone/tiny-dpc", files)
    script = ("import sys, torch, densecell; torch.manual_seed(0); x = torch.rand(1, 3, 65, 65); "
              "print(float(densecell.from_pretrained(sys.argv[1])(x).sum()))")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script, "someone/tiny-dpc"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.manual_seed(0)
    images = torch.rand(1, 3, 65, 65)
    with torch.inference_mode():
        expected = float(from_pretrained(tmp_path / "shared")(images).sum())
    assert float(done.stdout.split()[-1]) == pytest.approx(expected, rel=1e-6)
    missing = subprocess.run([sys.executable, "-m", "densecell", "cell", "importance", "someone/not-cached"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "someone/not-cached" in missing.stderr and "Hugging Face cache" in missing.stderr


def test_push_goes_through_huggingface_hubs_upload(trained, tmp_path, densecell, monkeypatch):
    """huggingface_hub's own calls are the seam: the repository is created, then the folder uploaded."""
    calls = {}

    def create_repo(self, repo_id, private=None, exist_ok=False, **_):
        calls["create"] = (repo_id, private, exist_ok)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, **kwargs):
        calls["files"] = {path.name: path.read_bytes() for path in sorted(os.scandir(folder_path), key=str)
                          for path in [__import__("pathlib").Path(path.path)]}
        return f"https://huggingface.co/{repo_id}/commit/123"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    code, out, err = densecell("push", trained, "--repo-id", "someone/tiny-dpc", "--private")
    assert code == 0, err
    assert calls["create"] == ("someone/tiny-dpc", True, True) and set(FILES) <= set(calls["files"])
    assert b'densecell.from_pretrained("someone/tiny-dpc")' in calls["files"]["README.md"]
    assert "commit/123" in out


def test_push_without_a_network_is_one_line(trained, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the probe is
    env = os.environ | {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_test"}
    done = subprocess.run([sys.executable, "-m", "densecell", "push", str(trained), "--repo-id", "someone/tiny"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot push to the Hugging Face Hub as someone/tiny" in done.stderr
