"""The paths that only a GPU takes, checked on one (a lent machine runs it from gpu_check.sh): fp16 loss scaling in the
eager proxy step, the training step and the supernet; K candidates at once, each on its own generator, against one at
a time; the CUDA graph's capture, and the eager fallback when a capture fails. Prints a table, writes
``results/gpu_paths.json``, and exits 1 if a check fails.

    python benchmarks/gpu_paths.py                  # on the GPU
    python benchmarks/gpu_paths.py --device cpu     # the same checks where they can run on a CPU (the smoke test)
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from common import table, write_result
from densecell.cell.space import SearchSpace
from densecell.config import ProxySettings, SupernetConfig
from densecell.data import Cityscapes, EvalTransform, TrainTransform
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.models.backbones import resolve_normalization
from densecell.models.model import build_model
from densecell.search import proxy
from densecell.search.cache import FeatureCache, build_cache
from densecell.search.proxy import build_proxy_head, train_candidate, train_candidates
from densecell.search.supernet import train_supernet
from densecell.training.optim import LOSS_SCALE, loss_scaler, train_step
from densecell.training.precision import Precision
from densecell.training.steps import EagerStep

CELLS = ["cityscapes-top1", SearchSpace().sample(1), SearchSpace().sample(2)]


def small_cache(folder: Path) -> FeatureCache:
    """MobileNet-v2 features of a few synthetic 129x129 crops (9x9 features)."""
    root = write_synthetic_cityscapes(folder / "data", train=8, val=2, size=(129, 257), objects=3)
    norm = resolve_normalization("mobilenetv2_100")
    torch.manual_seed(0)
    backbone = build_model(num_classes=19).backbone
    built = build_cache(backbone, Cityscapes(root, "train", TrainTransform((129, 129), 1.0, 1.0, normalization=norm)),
                        Cityscapes(root, "val", EvalTransform(norm)), folder / "cache", output_stride=16,
                        crop_size=(129, 129))
    return FeatureCache.load(built)


def eager_fp16(cache: FeatureCache, device: torch.device) -> str:
    """The eager proxy step in fp16: an overflow is skipped and halves the scale; then it trains."""
    settings = ProxySettings(iterations=20, batch_size=4, filters=64)
    torch.manual_seed(0)
    head = build_proxy_head("cityscapes-top1", cache.channels, 19, 16, settings.filters).to(device)
    count = len(cache.train_features)
    step = EagerStep(head, lambda g: cache.train_batch(torch.randint(count, (4,), generator=g)), settings,
                     Precision("fp16"), device, 0)
    step.run(1)
    step.scaler.update(new_scale=2.0 ** 60)
    before = [p.detach().clone() for p in head.parameters()]
    step.run(1)
    skipped = all(torch.equal(a, b) for a, b in zip(before, head.parameters()))
    step.scaler.update(new_scale=LOSS_SCALE)
    step.run(10)
    moved = any(not torch.equal(a, b) for a, b in zip(before, head.parameters()))
    assert skipped and moved, (skipped, moved)
    return f"overflow skipped, then trained; scale {step.scaler.get_scale():.0f}"


def training_fp16(cache: FeatureCache, device: torch.device) -> str:
    """The training loop's step in fp16 with its scaler."""
    torch.manual_seed(0)
    model = build_model(num_classes=19, feature_stages=2, decoder=False, filters=32).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = loss_scaler("fp16", device)
    images = torch.randn(2, 3, 129, 129, device=device)
    labels = torch.randint(0, 19, (2, 129, 129), device=device)
    losses = [train_step(model, optimizer, images, labels, "fp16", scaler) for _ in range(5)]
    assert scaler.is_enabled() and all(torch.isfinite(torch.tensor(losses))), losses
    return f"losses {losses[0]:.3f} -> {losses[-1]:.3f}; scale {scaler.get_scale():.0f}"


def supernet_fp16(cache: FeatureCache, device: torch.device, folder: Path) -> str:
    """The supernet trained in fp16 with its loss scaled; the scale is in its checkpoint."""
    settings = ProxySettings(batch_size=4, filters=32, optimizer="adam")
    train_supernet(cache, SearchSpace(), settings, SupernetConfig(steps=10, checkpoint_every=5), folder, 0, device,
                   precision=Precision("fp16"))
    saved = torch.load(folder / "supernet.pt", weights_only=True)
    assert saved["scaler"].get("scale"), saved["scaler"]
    return f"10 steps; scale {saved['scaler']['scale']:.0f}"


def together_alone(cache: FeatureCache, device: torch.device) -> str:
    """K candidates at once (their graphs on K streams on a GPU) against one at a time, weight for weight."""
    settings = ProxySettings(iterations=30, batch_size=4, filters=64, eval_every=15, amp="off")
    together = train_candidates(CELLS, cache, settings, seeds=[1, 2, 3], device=device)
    alone = [train_candidate(cell, cache, settings, seed=seed, device=device) for cell, seed in zip(CELLS, [1, 2, 3])]
    gap = max((a - b).abs().max().item() for t, o in zip(together, alone)
              for a, b in zip(t.head.state_dict().values(), o.head.state_dict().values()) if a.is_floating_point())
    engines = {r.engine for r in together + alone}
    assert gap < 1e-4, gap
    return f"max |weight difference| {gap:.2e}, engines {sorted(engines)}"


def capture(cache: FeatureCache, device: torch.device) -> str:
    """The graph step captures on a GPU; a capture made to fail falls back to the eager step."""
    settings = ProxySettings(iterations=10, batch_size=4, filters=64, engine="graph")
    natural = train_candidate("cityscapes-top1", cache, settings, device=device).engine

    class Refusing(proxy.GraphStep):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("capture refused on purpose")

    real = proxy.GraphStep
    proxy.GraphStep, proxy._capture_failure = Refusing, None
    try:
        forced = train_candidate("cityscapes-top1", cache, settings, device=device).engine
    finally:
        proxy.GraphStep, proxy._capture_failure = real, None
    assert forced == "eager" and (natural == "graph" or device.type != "cuda"), (natural, forced)
    return f"captured: {natural}; refused: {forced}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    device = torch.device(parser.parse_args().device)
    with tempfile.TemporaryDirectory() as tmp:
        cache = small_cache(Path(tmp))
        if device.type == "cuda":
            cache = FeatureCache.load(cache.folder, device)
        checks: dict[str, Callable[[], str]] = {
            "eager proxy step, fp16": lambda: eager_fp16(cache, device),
            "training step, fp16": lambda: training_fp16(cache, device),
            "supernet, fp16": lambda: supernet_fp16(cache, device, Path(tmp) / "supernet"),
            "K candidates at once vs one at a time": lambda: together_alone(cache, device),
            "graph capture and its fallback": lambda: capture(cache, device),
        }
        rows = []
        for name, check in checks.items():
            try:
                rows.append([name, "ok", check()])
            except Exception as exc:  # a failed check is a row of the table, and the exit code
                rows.append([name, "FAILED", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"])
    print(table(["path", "result", "detail"], rows))
    write_result(f"gpu_paths_{device.type}", {"device": str(device), "checks": {r[0]: r[1:] for r in rows}})
    raise SystemExit(1 if any(r[1] != "ok" for r in rows) else 0)


if __name__ == "__main__":
    main()
