"""The feature cache's folder: checked whole when it is opened, damaged files named with what to do, val images of
several sizes padded to the largest, and the weights it was computed from recorded resolved."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from densecell.config import load_search_config
from densecell.core.errors import CacheDamaged, CacheError, CacheMissing
from densecell.data import Cityscapes, EvalTransform, FolderDataset, PascalVOC, TrainTransform
from densecell.models.backbones import resolve_normalization
from densecell.models.model import build_model
from densecell.search.cache import CacheSource, FeatureCache, build_cache, cache_source, check_cache
from densecell.search.stages import rerank_config
from helpers import recipe, write_folder, write_voc

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's


def synthetic_sets(root):
    train = Cityscapes(root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    return train, Cityscapes(root, "val", EvalTransform(NORMALIZATION))


class Crashing(torch.nn.Module):
    """The backbone, raising on its ``at``-th call (a crash between shards); set ``calls`` to count a rerun."""

    def __init__(self, backbone, at):
        super().__init__()
        self.backbone, self.at, self.calls = backbone, at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("simulated crash")
        return self.backbone(x)


def test_cache_layout_and_contents(feature_cache, synthetic_root):
    folder, backbone = feature_cache
    cache = FeatureCache.load(folder)
    assert cache.train_features.shape == (16 * 2, 320, 4, 4) and cache.train_features.dtype == torch.float16
    assert cache.train_labels.shape == (32, 64, 64) and cache.val_labels.shape == (4, 64, 128)
    assert cache.val_features.shape == (4, 320, 4, 8)
    assert not list((folder / "train").glob("shard-*"))  # consolidated into one memory-mappable file per array
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["views"] == 2 and spec["classes"][0] == "road"
    # item 5 is image 2, view 1: the same crop the training transform makes with that seed, through the backbone
    data = Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    image, label = data[(2, 2 * 2 + 1)]
    with torch.inference_mode():
        expected = backbone.eval()(image[None])[-1][0]
    assert torch.equal(cache.train_labels[5].long(), label)
    assert torch.allclose(cache.train_features[5].float(), expected, atol=2e-2, rtol=1e-2)


def test_cache_is_deterministic_and_refuses_other_settings(feature_cache, synthetic_root, tmp_path):
    folder, backbone = feature_cache
    train, val = synthetic_sets(synthetic_root)
    again = build_cache(backbone, train, val, tmp_path / "again", output_stride=16, crop_size=(64, 64), views=2,
                        shard_size=5)
    for name in ("train.features.npy", "train.labels.npy", "val.features.npy", "val.labels.npy"):
        assert np.array_equal(np.load(folder / name), np.load(again / name)), name
    with pytest.raises(CacheError, match="other settings"):
        build_cache(backbone, train, val, again, output_stride=16, crop_size=(64, 64), views=1)
    with pytest.raises(CacheError, match="no complete feature cache"):
        FeatureCache.load(tmp_path / "nothing")


def test_cache_resumes_after_a_crash(feature_cache, synthetic_root, tmp_path):
    """A crash between shards leaves finished shards on disk; the rerun keeps them and ends with the same files."""
    folder, backbone = feature_cache
    train, val = synthetic_sets(synthetic_root)
    crashing, target = Crashing(backbone, at=4), tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_cache(crashing, train, val, target, output_stride=16, crop_size=(64, 64), views=2, shard_size=12,
                    batch_size=4)
    assert len(list((target / "train").glob("shard-*.features.npy"))) == 1
    crashing.calls = -1000
    build_cache(crashing, train, val, target, output_stride=16, crop_size=(64, 64), views=2, shard_size=12,
                batch_size=4)
    assert crashing.calls == -1000 + (32 - 12) // 4 + 1  # only the missing shards' batches (and the val batch) ran
    assert np.array_equal(np.load(folder / "train.features.npy"), np.load(target / "train.features.npy"))


def copy_cache(feature_cache, tmp_path):
    folder = tmp_path / "cache"
    shutil.copytree(feature_cache[0], folder)
    return folder


def truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


DAMAGE = {
    "truncated data": lambda f: truncate(f / "train.features.npy", (f / "train.features.npy").stat().st_size - 100),
    "truncated header": lambda f: truncate(f / "val.labels.npy", 90),
    "empty file": lambda f: truncate(f / "train.labels.npy", 0),
    "not an array": lambda f: (f / "val.features.npy").write_text("these are my notes"),
    "another array": lambda f: np.save(f / "train.labels.npy", np.zeros((3, 64, 64), dtype=np.uint8)),
    "another dtype": lambda f: np.save(f / "val.labels.npy", np.zeros((4, 64, 128), dtype=np.int64)),
    "missing array": lambda f: (f / "val.features.npy").unlink(),
    "spec not json": lambda f: (f / "spec.json").write_text("{"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_is_refused_naming_the_file_and_the_folder(feature_cache, tmp_path, damage):
    folder = copy_cache(feature_cache, tmp_path)
    FeatureCache.load(folder)  # whole
    DAMAGE[damage](folder)
    with pytest.raises(CacheDamaged) as info:
        FeatureCache.load(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message and "deleted" in message
    assert message.startswith(str(folder / ""))  # the file at fault comes first


def test_a_damaged_cache_through_the_cli_says_what_to_delete_and_what_rebuilds_it(densecell, feature_cache, tmp_path,
                                                                                    synthetic_root):
    folder = copy_cache(feature_cache, tmp_path)
    DAMAGE["truncated data"](folder)
    code, _, err = densecell("search", "--config", recipe("search-synthetic.yaml"), "--data-root", synthetic_root,
                             "--set", f"output_dir={tmp_path / 'runs'}", "--set", f"cache.dir={folder}")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{folder / 'train.features.npy'}: damaged" in err and f"delete {folder}" in err
    assert "densecell cache --config" in err
    assert not (tmp_path / "runs" / "search-synthetic" / "study.db").exists()  # refused before the search


def test_a_damaged_shard_is_computed_again_when_the_cache_resumes(feature_cache, synthetic_root, tmp_path):
    """A crashed build leaves whole shards; one that a disk fault truncated is made again, not joined in."""
    train, val = synthetic_sets(synthetic_root)
    crashing, folder = Crashing(feature_cache[1], at=5), tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_cache(crashing, train, val, folder, output_stride=16, crop_size=(64, 64), views=2, shard_size=12,
                    batch_size=4)
    damaged = folder / "train" / "shard-00000.features.npy"
    truncate(damaged, damaged.stat().st_size // 2)
    crashing.calls = -1000
    build_cache(crashing, train, val, folder, output_stride=16, crop_size=(64, 64), views=2, shard_size=12,
                batch_size=4)
    assert crashing.calls == -1000 + 3 + 3 + 2 + 1  # the damaged shard, the two missing ones, the val batch
    for name in ("train.features.npy", "train.labels.npy", "val.features.npy", "val.labels.npy"):
        assert np.array_equal(np.load(feature_cache[0] / name), np.load(folder / name)), name


def test_a_cache_without_its_complete_marker_is_missing(feature_cache, tmp_path):
    folder = copy_cache(feature_cache, tmp_path)
    (folder / "complete").unlink()
    with pytest.raises(CacheMissing):
        check_cache(folder)


def varied_masks(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return {f"img{i}": rng.integers(0, 3, size, dtype=np.uint8) for i, size in enumerate(sizes)}


@pytest.mark.parametrize("layout", ["folder", "voc"])
def test_val_images_of_several_sizes_are_padded_to_the_largest(tmp_path, layout, caplog, monkeypatch):
    """VOC's and Person-Part's val images vary in size: by default every one is padded to the largest height and
    width (as TF pads to its eval crop), and the cache says what it chose."""
    val_sizes = [(40, 56), (52, 36), (48, 48)]
    if layout == "folder":
        root = write_folder(tmp_path / "data", varied_masks([(48, 48)] * 3), "classes: [a, b, c]\n", split="train")
        write_folder(root, varied_masks(val_sizes, seed=1), "classes: [a, b, c]\n", split="val")
        train = FolderDataset(root, "train", TrainTransform((33, 33), 1.0, 1.0, normalization=NORMALIZATION))
        val = FolderDataset(root, "val", EvalTransform(NORMALIZATION))
    else:
        masks = varied_masks([(48, 48)] * 2 + val_sizes)
        root = write_voc(tmp_path / "voc", masks, {"train": list(masks)[:2], "val": list(masks)[2:]})
        train = PascalVOC(root, "train", TrainTransform((33, 33), 1.0, 1.0, normalization=NORMALIZATION))
        val = PascalVOC(root, "val", EvalTransform(NORMALIZATION))
    torch.manual_seed(0)
    backbone = build_model(num_classes=3, feature_stages=2).backbone
    monkeypatch.setattr(logging.getLogger("densecell"), "propagate", True)  # a CLI test in this process turns it off
    caplog.set_level("INFO", logger="densecell.search.cache")
    folder = build_cache(backbone, train, val, tmp_path / "cache", output_stride=4, crop_size=(33, 33))
    cache = FeatureCache.load(folder)
    assert cache.spec.val_size == (52, 56) and cache.val_labels.shape == (3, 52, 56)
    assert "padded to 52x56" in caplog.text and "3 sizes" in caplog.text
    labels = cache.val_labels
    assert (labels[0, 40:] == 255).all() and (labels[1, :, 36:] == 255).all()  # the padding is ignored
    fixed = build_cache(backbone, train, val, tmp_path / "fixed", output_stride=4, crop_size=(33, 33),
                        val_size=(64, 64))
    assert FeatureCache.load(fixed).val_labels.shape == (3, 64, 64)  # cache.val_size still fixes a size


def test_the_source_records_resolved_weights_and_reads_old_caches(feature_cache, tmp_path):
    """pretrained: true is stored as the timm tag it loads, and a cache written before that (weights "True") reads
    as the tag, so re-ranking starts from real weights instead of the tag 'mobilenetv2_100.True'."""
    assert CacheSource(backbone="mobilenetv2_100", weights="True").weights == "mobilenetv2_100.ra_in1k"
    assert CacheSource(backbone="xception71", weights="true").weights == "xception71.tf_in1k"
    folder = copy_cache(feature_cache, tmp_path)
    spec = json.loads((folder / "spec.json").read_text())
    spec["source"] = {"backbone": "mobilenetv2_100", "weights": "True", "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225]}
    (folder / "spec.json").write_text(json.dumps(spec))
    assert cache_source(folder).weights == "mobilenetv2_100.ra_in1k"
    config = load_search_config(recipe("search-synthetic.yaml"), [f"cache.dir={folder}", "backbone.pretrained=true",
                                                                  "warmup=null"])
    run = rerank_config(config, "trial-0", "cityscapes-top1")
    assert run.model.pretrained == "mobilenetv2_100.ra_in1k" and run.model.mean == (0.485, 0.456, 0.406)
