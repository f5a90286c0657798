"""What the tests share (imported by them as ``helpers``, never from another test file): writers of tiny fixtures in
the exact on-disk layouts of the real datasets and of a Hugging Face cache, the recipes' paths, the overrides of a
fast CPU training run, and the bad cells."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from densecell.data.voc import voc_palette

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def recipe(name: str) -> str:
    """The path of a shipped recipe, wherever the tests are started from."""
    return str(CONFIGS / name)


def tiny_overrides(root, output_dir, name, iterations=4, **extra):
    """Overrides for a fast CPU run on the synthetic data."""
    values = {
        "data.root": root, "data.crop_size": "[64,64]", "data.batch_size": 2, "data.workers": 0,
        "data.min_scale": 1.0, "data.max_scale": 1.0, "model.filters": 32, "optim.iterations": iterations,
        "optim.lr": 0.02, "checkpoint_every": 2, "log_every": 1, "output_dir": output_dir, "name": name,
        "allow_random_backbone": "true",  # random backbones on purpose: nothing pretrained can be downloaded here
    } | extra
    return [f"{key}={value}" for key, value in values.items()]


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_palette_png(array: np.ndarray, path: Path) -> None:
    """A palette ('P' mode) PNG with the VOC colour map, as VOC's SegmentationClass files are."""
    image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.astype(np.uint8).tobytes())
    image.putpalette([c for colour in voc_palette() for c in colour])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_cityscapes(root: Path, label_ids: dict[str, list[np.ndarray]], size=(16, 32), seed=0,
                     annotation="gtFine") -> Path:
    """``label_ids[split]`` are labelId maps; images are random. Cities alternate between two names; labels go under
    ``annotation`` (gtFine, or gtCoarse as for train_extra)."""
    rng = np.random.default_rng(seed)
    for split, maps in label_ids.items():
        for i, label in enumerate(maps):
            city = ("aachen", "bochum")[i % 2]
            stem = f"{city}_{i:06d}_000019"
            image_dir = root / "leftImg8bit" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(random_image(rng, *size)).save(image_dir / f"{stem}_leftImg8bit.png")
            if label is not None:
                label_dir = root / annotation / split / city
                label_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(label.astype(np.uint8)).save(label_dir / f"{stem}_{annotation}_labelIds.png")
    return root


def write_voc(root: Path, labels: dict[str, np.ndarray], splits: dict[str, list[str]], seed=0) -> Path:
    """VOC2012: JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette), ImageSets/Segmentation/<split>.txt."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for image_id, label in labels.items():
        Image.fromarray(random_image(rng, *label.shape)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_palette_png(label, root / "SegmentationClass" / f"{image_id}.png")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (sets / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def write_sbd(root: Path, voc_root: Path, labels: dict[str, np.ndarray], splits: dict[str, list[str]],
              seed=1) -> Path:
    """SBD: cls/<id>.mat with the struct GTcls (Segmentation, Boundaries, CategoriesPresent), train.txt, val.txt.
    The images of SBD-only ids go into the VOC JPEGImages folder (SBD's images are VOC2011 images)."""
    rng = np.random.default_rng(seed)
    (root / "cls").mkdir(parents=True, exist_ok=True)
    for image_id, label in labels.items():
        boundaries = np.empty((20, 1), dtype=object)
        for k in range(20):
            boundaries[k, 0] = np.zeros((0, 0), dtype=np.uint8)
        gt = {"Segmentation": label.astype(np.uint8), "Boundaries": boundaries,
              "CategoriesPresent": np.unique(label[label > 0]).astype(np.uint8)}
        scipy.io.savemat(root / "cls" / f"{image_id}.mat", {"GTcls": gt})
        image_path = voc_root / "JPEGImages" / f"{image_id}.jpg"
        if not image_path.exists():
            Image.fromarray(random_image(rng, *label.shape)).save(image_path)
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def write_person_part(root: Path, labels: dict[str, np.ndarray], splits: dict[str, list[str]], seed=0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationPart").mkdir(parents=True, exist_ok=True)
    (root / "list").mkdir(parents=True, exist_ok=True)
    for image_id, label in labels.items():
        Image.fromarray(random_image(rng, *label.shape)).save(root / "JPEGImages" / f"{image_id}.jpg")
        Image.fromarray(label.astype(np.uint8)).save(root / "SegmentationPart" / f"{image_id}.png")
    for split, ids in splits.items():
        (root / "list" / f"{split}_id.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def write_folder(root: Path, masks: dict[str, np.ndarray], classes_yaml: str, split="train", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(classes_yaml)
    for name, mask in masks.items():
        Image.fromarray(random_image(rng, *mask.shape)).save(root / split / "images" / f"{name}.jpg")
        Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"{name}.png")
    return root


def write_hf_snapshot(home: Path, repo_id: str, files: dict[str, bytes], commit: str = "0" * 39 + "1") -> Path:
    """A Hugging Face hub cache as ``huggingface_hub`` leaves it after downloading ``files`` of a model repo:
    ``HOME/hub/models--ORG--NAME/{refs/main, blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>}``."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return home


def write_hf_cache(home: Path, repo_id: str, state_dict: dict, commit: str = "0" * 39 + "1") -> Path:
    """The cache after a download of timm weights: ``model.safetensors`` of ``state_dict``."""
    from safetensors.torch import save

    weights = save({k: v.contiguous() for k, v in state_dict.items()})
    return write_hf_snapshot(home, repo_id, {"model.safetensors": weights}, commit)


def five(branch0: str) -> str:
    rest = ', '.join(['{"kernel": 1, "op": "conv", "input": 0}'] * 4)
    return f"[{branch0}, {rest}]"


BAD_CELLS = [
    ("[not json", "not valid JSON"),
    ('{"op": "conv"}', "expected a JSON list"),
    ("[]", "no branches"),
    ("[1, 2, 3, 4, 5]", "branch 0: expected an object"),
    (five('{"op": "dilated", "kernel": 3, "input": -1}'), "branch 0: field 'op'"),
    (five('{"kernel": 3, "rate": [1, 1], "input": -1}'), "branch 0: missing field 'op'"),
    (five('{"kernel": 3, "op": "conv", "input": -1}'), "branch 0: missing field 'rate'"),
    (five('{"rate": [1, 1], "op": "conv", "input": -1}'), "branch 0: missing field 'kernel'"),
    (five('{"kernel": 3, "rate": [1, 1], "op": "conv"}'), "branch 0: missing field 'input'"),
    (five('{"kernel": 1, "op": "conv", "input": -1, "color": "red"}'), "branch 0: unexpected field 'color'"),
    (five('{"kernel": 5, "rate": [1, 1], "op": "conv", "input": -1}'), "branch 0: field 'kernel'"),
    (five('{"kernel": 3, "rate": 6, "op": "conv", "input": -1}'), "branch 0: field 'rate'"),
    (five('{"kernel": 3, "rate": [6, "6"], "op": "conv", "input": -1}'), "branch 0: field 'rate'"),
    (five('{"kernel": 3, "rate": [0, 6], "op": "conv", "input": -1}'), "branch 0: field 'rate'"),
    (five('{"kernel": 3, "rate": [2, 6], "op": "conv", "input": -1}'), "branch 0: field 'rate' [2, 6] is outside"),
    (five('{"grid_size": [3, 1], "op": "pyramid_pooling", "input": -1}'), "branch 0: field 'grid_size' [3, 1]"),
    (five('{"grid_size": [true, 1], "op": "pyramid_pooling", "input": -1}'), "branch 0: field 'grid_size'"),
    (five('{"kernel": 1, "op": "conv", "input": "F"}'), "branch 0: field 'input' must be an integer"),
    (five('{"kernel": 1, "op": "conv", "input": 0}'), "branch 0: field 'input' is 0"),
    (five('{"kernel": 1, "op": "conv", "input": -2}'), "branch 0: field 'input' is -2"),
    ('[{"kernel": 1, "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 1}]', "branch 1: field 'input'"),
    ("[" + ", ".join(['{"kernel": 1, "op": "conv", "input": -1}'] * 1000) + "]", "1000 branches"),
]


def write_search_table(path: Path, cells: int = 60, repeats: int = 4, seed: int = 0) -> Path:
    """A small ground-truth table in the layout of benchmarks/search_table.py's: uniform cells whose score grows
    with their pooling branches (plus noise), their rungs, and the rankers' scores and costs."""
    import gzip
    import json
    import random

    from densecell.rankers import RANKERS, ZERO_COST
    from densecell.space import SearchSpace

    rng, space = random.Random(seed), SearchSpace()
    rows = []
    for i in range(cells):
        cell = space.sample(rng)
        score = 0.4 + 0.05 * sum(b.op.kind == "pool" for b in cell) + rng.gauss(0, 0.02)
        rows.append({"trial": i, "seed": i, "kind": "published" if i == 0 else "uniform", "cell": cell.to_records(),
                     "miou": score, "rungs": {str(s): score * s / 100 + rng.gauss(0, 0.01) for s in (20, 40, 60,
                                                                                                  80, 100)},
                     "madds": 1000 + i, "params": 100 + i, "seconds": 1.0})
    for row in rows[1:repeats + 1]:
        rows.append(row | {"kind": "repeat", "miou": row["miou"] + rng.gauss(0, 0.01)})
    scores = {name: [rng.random() for _ in rows] for name in RANKERS}
    scores |= {f"oneshot-{sampling}-300": [r["miou"] + rng.gauss(0, 0.05) for r in rows]
               for sampling in ("uniform", "family-first")}
    rankers = {name: {"scores": values, "seconds_per_cell": 0.01} | ({"train_steps": 300, "train_seconds": 1.0}
                                                                      if name.startswith("oneshot") else {})
               for name, values in scores.items()}
    costs = {"proxy_step_s": 1.0, "zero_cost_s": {n: 2.0 for n in ZERO_COST}, "oneshot_score_s": 30.0,
             "in_proxy_steps": {**{n: 2.0 for n in ZERO_COST}, "oneshot": 30.0}}
    table = {"commit": "test", "command": "tests", "proxy": {"iterations": 100}, "baseline_1x1": 0.3,
             "paper_costs": costs, "rankers": rankers, "rows": rows}
    with gzip.open(path, "wt") as handle:
        json.dump(table, handle)
    return path
