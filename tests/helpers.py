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
    (five('{"grid_size": [true, 1], "op": "pyramid_pooling", "input": -1}'), "branch 0: field 'grid_size'"),
    (five('{"kernel": 1, "op": "conv", "input": "F"}'), "branch 0: field 'input' must be an integer"),
    (five('{"kernel": 1, "op": "conv", "input": 0}'), "branch 0: field 'input' is 0"),
    (five('{"kernel": 1, "op": "conv", "input": -2}'), "branch 0: field 'input' is -2"),
    ('[{"kernel": 1, "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 1}]', "branch 1: field 'input'"),
]
"""Cells no valid TF DeepLab cell is: refused wherever a cell is read."""
OUTSIDE_SPACE = [
    (five('{"kernel": 3, "rate": [2, 6], "op": "conv", "input": -1}'), "branch 0: field 'rate' [2, 6] is outside"),
    (five('{"grid_size": [3, 1], "op": "pyramid_pooling", "input": -1}'), "branch 0: field 'grid_size' [3, 1]"),
    ("[" + ", ".join(['{"kernel": 1, "op": "conv", "input": -1}'] * 1000) + "]", "1000 branches"),
]
"""Valid cells outside the paper's search space: a model takes them, a search never proposes them."""


def write_table(path: Path, kind: str = "sample", seed: int = 0) -> Path:
    """A small ground-truth table in the shared format (``densecell.search.tables``), its scores a function of the
    architecture plus noise: ``complete`` (4 positions x 3 choices, all 81 rows), ``sample`` (200 rows of 6
    positions x 5 numeric choices, one extra column) or ``dpc`` (60 DPC cells with rungs and repeats)."""
    import gzip
    import itertools
    import json
    import random

    rng = random.Random(seed)
    table: dict = {"name": f"test-{kind}", "source": "tests", "licence": "Apache-2.0", "metric": "score"}
    if kind == "dpc":
        from densecell.search import DPCSpace

        space = DPCSpace()
        points = list(dict.fromkeys(space.sample(rng) for _ in range(60)))
        rows = []
        for point in points:
            score = 0.4 + 0.05 * sum(b.op.kind == "pool" for b in space.cell(point)) + rng.gauss(0, 0.02)
            rungs = {str(step): score * step / 100 + rng.gauss(0, 0.01) for step in (20, 40, 60, 80)}
            rows.append({"x": list(point), "score": score, "madds": 1000 + len(rows), "rungs": rungs | {"100": score}})
        params = [{"name": name, "choices": list(dist.choices)} for name, dist in space.distributions().items()]
        table |= {"complete": False, "repeats": [[r["score"], r["score"] + rng.gauss(0, 0.01)] for r in rows[:4]],
                  "space": {"params": params, "dpc": {"num_branches": 5}}}
    else:
        positions, choices = (4, [0, 1, 2]) if kind == "complete" else (6, [8, 16, 32, 64, 128])
        codes = list(itertools.product(choices, repeat=positions))
        if kind == "sample":
            codes = rng.sample(codes, 200)
        rows = [{"x": list(x), "score": sum((i + 1) * v for i, v in enumerate(x)) / 10 + rng.gauss(0, 0.5),
                 "flops": float(sum(x))} for x in codes]
        table |= {"complete": kind == "complete",
                  "space": {"params": [{"name": f"p{i}", "choices": choices} for i in range(positions)]}}
    table["rows"] = rows
    with gzip.open(path, "wt") as handle:
        json.dump(table, handle)
    return path


class Held:
    """A command held at a named point by densecell's test hook (``densecell.core.hold``): the test acts while the
    command is there (starts a second one, kills it), instead of racing it.

    ``held = Held(tmp_path / "held", "shard", 3)``; start the command with ``env=held.env``; ``held.wait(process)``
    returns once it is held; ``held.release()`` lets it go on."""

    def __init__(self, marker: Path, point: str, count: int = 1) -> None:
        self.marker, self.point, self.count = Path(marker), point, count

    @property
    def env(self) -> dict[str, str]:
        return {"DENSECELL_HOLD": f"{self.point}:{self.count}:{self.marker}"}

    def wait(self, process, timeout: float = 300) -> None:
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.marker.exists():
                return
            if process.poll() is not None:
                raise AssertionError(f"exited ({process.returncode}) before it reached {self.point}: "
                                     f"{process.communicate()}")
            time.sleep(0.02)
        raise AssertionError(f"never reached {self.point} in {timeout} s")

    def release(self) -> None:
        self.marker.unlink(missing_ok=True)


class Output:
    """A process's output stream read as it comes (a thread collects its lines), so that a test can wait for a
    line without racing the process: ``out = Output(process.stdout)``; ``out.wait_for("waiting for")``."""

    def __init__(self, stream) -> None:
        import threading

        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 300) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout):
                raise AssertionError(f"{text!r} never appeared: {''.join(self.lines)[-2000:]}")

    def text(self, timeout: float = 600) -> str:
        """Everything, once the stream has ended."""
        self._thread.join(timeout)
        return "".join(self.lines)
