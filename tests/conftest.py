import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/layouts.py

from densecell.data.synthetic import write_synthetic_cityscapes  # noqa: E402
from densecell.model import resolve_normalization  # noqa: E402

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's


@pytest.fixture
def densecell(capsys, monkeypatch):
    """Run the ``densecell`` entry point in-process: ``densecell(*args) -> (exit code, stdout, stderr)``."""
    from densecell import cli

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["densecell", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset in the Cityscapes layout (16 train, 4 val images of 64x128)."""
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("synthetic"), train=16, val=4, size=(64, 128),
                                      objects=4)


def tiny_overrides(root, output_dir, name, iterations=4, **extra):
    """Overrides for a fast CPU run on the synthetic data."""
    values = {
        "data.root": root, "data.crop_size": "[64,64]", "data.batch_size": 2, "data.workers": 0,
        "data.min_scale": 1.0, "data.max_scale": 1.0, "model.filters": 32, "optim.iterations": iterations,
        "optim.lr": 0.02, "checkpoint_every": 2, "log_every": 1, "output_dir": output_dir, "name": name,
        "allow_random_backbone": "true",  # random backbones on purpose: nothing pretrained can be downloaded here
    } | extra
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="session")
def feature_cache(synthetic_root, tmp_path_factory):
    """The proxy cache of a (random, seeded) MobileNet-v2 over the synthetic data: 2 views of 64x64 crops."""
    import torch

    from densecell.data import Cityscapes, EvalTransform, TrainTransform
    from densecell.model import build_model
    from densecell.cache import build_cache

    torch.manual_seed(0)
    backbone = build_model(num_classes=19).backbone
    folder = tmp_path_factory.mktemp("cache") / "cache"
    build_cache(backbone, Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION)),
                Cityscapes(synthetic_root, "val", EvalTransform(NORMALIZATION)), folder, output_stride=16, crop_size=(64, 64),
                views=2, shard_size=12)
    return folder, backbone
