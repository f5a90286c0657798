import sys

import pytest

from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.models.backbones import resolve_normalization

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


@pytest.fixture(scope="session")
def feature_cache(synthetic_root, tmp_path_factory):
    """The proxy cache of a (random, seeded) MobileNet-v2 over the synthetic data: 2 views of 64x64 crops."""
    import torch

    from densecell.data import Cityscapes, EvalTransform, TrainTransform
    from densecell.models.model import build_model
    from densecell.search.cache import build_cache

    torch.manual_seed(0)
    backbone = build_model(num_classes=19).backbone
    folder = tmp_path_factory.mktemp("cache") / "cache"
    train = Cityscapes(synthetic_root, "train", TrainTransform((64, 64), 1.0, 1.0, normalization=NORMALIZATION))
    val = Cityscapes(synthetic_root, "val", EvalTransform(NORMALIZATION))
    build_cache(backbone, train, val, folder, output_stride=16, crop_size=(64, 64), views=2, shard_size=12)
    return folder, backbone


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The documentation site, built once as ``make docs`` builds it (warnings as errors, every cross-reference
    checked): ``(folder, sphinx's stderr)``."""
    import subprocess
    from pathlib import Path

    out = tmp_path_factory.mktemp("site")
    docs = Path(__file__).parent.parent / "docs"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-n", "-E", "-b", "html",
                           str(docs), str(out)], capture_output=True, text=True, timeout=900)
    return out, done.returncode, done.stderr
