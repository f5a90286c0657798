"""Proxy throughput at the paper's proxy shape (769x769 crops, batch 8, MobileNet-v2 at OS 16: 320x49x49 features).

    python benchmarks/proxy_throughput.py                         # CPU
    python benchmarks/proxy_throughput.py --device cuda --steps 50  # one GPU
    python benchmarks/proxy_throughput.py --crop 385 --steps 2 --ks 1,2   # a quick look

Steps of one candidate (the published cell + a 1x1 classifier, 256 filters), each the median of --steps steps, given
in ms and in seconds per 30K-step candidate (the paper's proxy budget). "paper loss" is the loss on logits upsampled
to the crop (TF ``upsample_logits``, the paper's); "subsampled loss" is the loss on labels subsampled to the logits.

  (a)  end to end: the whole MobileNet-v2 + head trained, images read and augmented every step (paper Fig. 3b);
  (a') the backbone frozen but still run every step, images read every step;
  (b0) fbd9eb0's plain step: eager fp32, NCHW, upsampling by F.interpolate and F.cross_entropy (the reference loss);
  (b)  densecell's eager step (torch.optim), fused paper loss or subsampled loss, in the precision chosen for the
       device;
  (g)  densecell's graph step: the whole step on the device, captured as one CUDA graph on a GPU (run as it is on a
       CPU), for each precision and layout on a GPU;
  (b, torch.compile) the eager step with the head compiled (its one-off compile time is reported apart).
Then what a candidate costs as a whole: its setup (build, capture, scoring) plus 30K steps; candidates per device
hour one at a time, and K at once: K graph steps in one process on K CUDA streams (proxy.train_candidates), and K
processes sharing the device. Synthetic images stand in for Cityscapes: the timing does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common import at_least, seconds_per_call, sync, table, versus_paper, write_result
from densecell.config import ProxySettings
from densecell.data import Cityscapes, EvalTransform, TrainTransform
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.models.backbones import resolve_normalization
from densecell.models.model import build_model
from densecell.search.cache import FeatureCache, FrozenBackboneFeatures, build_cache
from densecell.search.proxy import advance, build_proxy_head, resolve_precision, train_candidates
from densecell.training.optim import make_optimizer
from densecell.training.precision import Precision
from densecell.training.steps import EagerStep, GraphStep

NORMALIZATION = resolve_normalization("mobilenetv2_100")  # the random MobileNet-v2s here: ImageNet's

PAPER_ITERATIONS = 30_000
PAPER_SECONDS = 90 * 60  # "a proxy task that runs in 90 minutes on a GPU"


class EndToEnd(nn.Module):
    """Backbone and candidate head trained together: what the proxy's cache avoids."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)[-1])


def candidate(cache: FeatureCache, settings: ProxySettings, precision: Precision, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    head = build_proxy_head("cityscapes-top1", cache.channels, len(cache.classes), cache.output_stride,
                            settings.filters)
    return head.to(device, memory_format=precision.memory_format)


def random_batches(count: int, batch: int, read):
    generator = torch.Generator().manual_seed(0)
    return lambda: read(torch.randint(count, (batch,), generator=generator))


def eager(module: nn.Module, batches, settings: ProxySettings, precision: Precision, device: torch.device):
    """One densecell eager step per call, on a fresh batch."""
    engine = EagerStep(module, None, settings, precision, device, seed=0)
    return lambda: engine.step(*batches(), settings.lr)


def plain(module: nn.Module, batches, settings: ProxySettings, device: torch.device):
    """fbd9eb0's (b0): eager fp32, NCHW, F.interpolate + F.cross_entropy, torch.optim SGD."""
    optimizer = make_optimizer(module, "sgd", settings.lr, settings.momentum, settings.weight_decay)

    def step() -> float:
        features, labels = batches()
        logits = module(features.to(device).float())
        labels = labels.to(device).long()
        loss = F.cross_entropy(F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True),
                               labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def graph(cache: FeatureCache, settings: ProxySettings, precision: Precision, device: torch.device):
    engine = GraphStep(candidate(cache, settings, precision, device), cache.train_features, cache.train_labels,
                       settings, precision, device)
    return lambda: engine.run(1)


def profile(step, device: torch.device, top: int = 8) -> list:
    """The operators that take the step's time (self time, two steps): what limits it."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profiler(activities=activities) as trace:
        for _ in range(2):
            step()
        sync(device)

    def self_time(event) -> float:
        return event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total

    events = sorted(trace.key_averages(), key=self_time, reverse=True)
    total = sum(self_time(e) for e in events) or 1.0
    return [[e.key[:70], self_time(e) / total] for e in events[:top]]


def compiled(cache, batches, settings, precision, device, steps: int) -> tuple[float, float]:
    """Seconds per step of the eager step with the head compiled, and the one-off compile time."""
    step = eager(torch.compile(candidate(cache, settings, precision, device)), batches, settings, precision, device)
    first = seconds_per_call(step, 1, device, warmup=0)
    seconds = seconds_per_call(step, steps, device, warmup=0)
    return seconds, first - seconds


def step_rows(args, cache, frozen, settings, precision, device) -> tuple[dict[str, float], float | None]:
    """Seconds per step of every way of taking a proxy step, and torch.compile's one-off compile time."""
    paper = settings.model_copy(update={"upsample_logits": True})
    cheap = settings.model_copy(update={"upsample_logits": False})
    count = len(cache.train_features)
    cached = random_batches(count, args.batch, cache.train_batch)
    timed = lambda step: seconds_per_call(step, args.steps, device)  # noqa: E731
    rows = {}
    if not args.skip_end_to_end:
        model = EndToEnd(frozen.backbone, candidate(cache, paper, precision, device))
        rows["(a) end to end, paper loss"] = timed(eager(model, random_batches(count, args.batch, frozen.images),
                                                         paper, precision, device))
        frozen.backbone = build_model(backbone="mobilenetv2_100", num_classes=19).backbone.to(device).eval()
        rows["(a') frozen backbone run every step, paper loss"] = timed(eager(
            candidate(cache, paper, precision, device), random_batches(count, args.batch, frozen.train_batch),
            paper, precision, device))
    rows["(b0) fbd9eb0 plain eager fp32, reference paper loss"] = timed(
        plain(candidate(cache, paper, Precision(), device), cached, paper, device))
    for name, loss in (("paper loss", paper), ("subsampled loss", cheap)):
        rows[f"(b) eager, {name}"] = timed(eager(candidate(cache, loss, precision, device), cached, loss, precision,
                                                 device))
    for option in precisions(device, precision):
        label = f"{'fp32' if option.amp == 'off' else option.amp} {'channels-last' if option.channels_last else 'NCHW'}"
        for name, loss in (("paper loss", paper), ("subsampled loss", cheap)):
            rows[f"(g) graph step, {name}, {label}"] = timed(graph(cache, loss, option, device))
    compile_s = None
    if not args.skip_compile:
        rows["(b) eager, paper loss, torch.compile"], compile_s = compiled(cache, cached, paper, precision, device,
                                                                          args.steps)
    return rows, compile_s


def precisions(device: torch.device, chosen: Precision) -> list[Precision]:
    if device.type != "cuda":
        return [chosen]
    return [Precision(amp, layout) for amp in ("bf16", "fp16") for layout in (False, True)]


def candidate_seconds(cache, settings, device, steps: int, k: int = 1) -> tuple[float, float]:
    """(setup seconds per candidate, seconds per step of all k candidates together): k candidates are trained for
    ``steps`` and for ``2 * steps`` iterations with proxy.train_candidates; the difference gives the step time, the
    rest is setup (build, capture, scoring)."""
    cells = ["cityscapes-top1"] * k

    def wall(iterations: int) -> float:
        sync(device)
        start = time.perf_counter()
        train_candidates(cells, cache, settings.model_copy(update={"iterations": iterations}), list(range(k)), device)
        sync(device)
        return time.perf_counter() - start

    wall(steps)  # warm (cuDNN, allocator)
    short, long = wall(steps), wall(2 * steps)
    per_step = max((long - short) / steps, 1e-9)
    return max(short - steps * per_step, 0.0) / k, per_step


def share_worker(folder: str, device: str, threads: int, steps: int, settings: ProxySettings, barrier, queue) -> None:
    """One of K processes sharing the device: its own candidate, the shared cache."""
    torch.set_num_threads(threads)
    device_ = torch.device(device)
    cache = FeatureCache.load(folder, device_)
    precision = resolve_precision(settings, cache, device_)
    if device_.type == "cuda":
        step = graph(cache, settings, precision, device_)
    else:
        step = eager(candidate(cache, settings, precision, device_),
                     random_batches(len(cache.train_features), settings.batch_size, cache.train_batch), settings,
                     precision, device_)
    step()
    barrier.wait()
    queue.put(seconds_per_call(step, steps, device_, warmup=0) * steps)


def shared_processes(folder: Path, device: torch.device, k: int, steps: int, settings: ProxySettings) -> float:
    context = mp.get_context("spawn")
    barrier, queue = context.Barrier(k), context.Queue()
    threads = max(1, torch.get_num_threads() // k) if device.type == "cpu" else 1
    workers = [context.Process(target=share_worker, args=(str(folder), str(device), threads, steps, settings,
                                                           barrier, queue)) for _ in range(k)]
    for worker in workers:
        worker.start()
    elapsed = [queue.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join()
    return k * steps / max(elapsed)


def streams(cache, settings, precision, device, k: int, steps: int) -> float:
    """Candidate steps per second of k graph steps replayed on k CUDA streams in one process."""
    engines = [GraphStep(candidate(cache, settings, precision, device), cache.train_features, cache.train_labels,
                         settings, precision, device) for _ in range(k)]
    advance(engines, 2, device)
    sync(device)
    start = time.perf_counter()
    advance(engines, steps, device)
    sync(device)
    return k * steps / (time.perf_counter() - start)


def sharing(args, folder, cache, settings, precision, device) -> dict[str, dict[int, float]]:
    ks = [int(k) for k in args.ks.split(",")]
    result = {"processes": {k: shared_processes(folder, device, k, args.steps, settings) for k in ks}}
    if device.type == "cuda":
        result["streams in one process"] = {k: streams(cache, settings, precision, device, k, args.steps)
                                            for k in ks}
    return result


def make_cache(args, tmp: Path, device: torch.device):
    crop = (args.crop, args.crop)
    root = write_synthetic_cityscapes(tmp / "data", train=args.images, val=1, size=crop)
    torch.manual_seed(0)
    backbone = build_model(backbone="mobilenetv2_100", num_classes=19).backbone.to(device)
    train_set = Cityscapes(root, "train", TrainTransform(crop, 1.0, 1.0, normalization=NORMALIZATION))
    folder = build_cache(backbone, train_set, Cityscapes(root, "val", EvalTransform(NORMALIZATION)), tmp / "cache",
                         output_stride=16, crop_size=crop, device=device)
    cache = FeatureCache.load(folder, device)
    return folder, cache, FrozenBackboneFeatures(cache, backbone, train_set, device)


def summarise(rows, setup, shared, device) -> dict:
    """Seconds per 30K-step candidate of each row; the fastest paper-loss step with the setup; candidates/hour."""
    per_candidate = {name: s * PAPER_ITERATIONS for name, s in rows.items()}
    paper = {n: s for n, s in rows.items()
             if "paper loss" in n and n.startswith(("(b)", "(g)")) and "torch.compile" not in n}
    best_name = min(paper, key=paper.get)
    seconds = setup[0] + PAPER_ITERATIONS * paper[best_name]
    best_k = {mode: max(values, key=lambda k: values[k]) for mode, values in shared.items()}
    return {"s_per_candidate": per_candidate, "fastest_paper_loss_step": best_name,
            "candidate_seconds_paper_loss": seconds, "setup_s": setup[0],
            "candidates_per_hour_one_at_a_time": 3600 / seconds,
            "candidates_per_hour_shared": {mode: 3600 * values[k] / (PAPER_ITERATIONS + values[k] * setup[0])
                                           for mode, values in shared.items() for k in [best_k[mode]]},
            "vs_paper_90_min": PAPER_SECONDS / seconds}


def report(args, rows, compile_s, summary, shared, profiles, feature, device) -> None:
    print(f"proxy step at {args.crop}x{args.crop}, batch {args.batch}, features {feature} on "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device}")
    print(table(["step", "ms/step", "s per 30K-step candidate"],
                [[n, s * 1e3, summary["s_per_candidate"][n]] for n, s in rows.items()]))
    if compile_s is not None:
        print(f"torch.compile: {compile_s:.0f} s to compile, paid once per candidate (each cell is a new graph)")
    print(f"one candidate at the paper's loss: {summary['setup_s']:.1f} s setup + 30K x the fastest step "
          f"({summary['fastest_paper_loss_step']}) = {summary['candidate_seconds_paper_loss']:.0f} s; "
          f"{summary['candidates_per_hour_one_at_a_time']:.1f} candidates per device-hour")
    print(f"the paper: 90 minutes per candidate on one GPU; here {summary['candidate_seconds_paper_loss']:.0f} s, "
          f"{versus_paper(summary['vs_paper_90_min'])}")
    for mode, values in shared.items():
        one = values[min(values)]
        print(table([f"K candidates sharing the device ({mode})", "candidate steps/s", "x one at a time"],
                    [[k, v, v / one] for k, v in values.items()]))
    print(f"candidates per device-hour with sharing: {summary['candidates_per_hour_shared']}")
    for name, ops in profiles.items():
        print(table([f"{name}: operator", "share of self time"], ops))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=at_least(17), default=769)
    parser.add_argument("--batch", type=at_least(1), default=8)
    parser.add_argument("--images", type=at_least(1), default=8)
    parser.add_argument("--steps", type=at_least(1), default=3)
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-compile", action="store_true", help="Leave out the torch.compile row.")
    parser.add_argument("--skip-end-to-end", action="store_true", help="Leave out rows (a) and (a').")
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = ProxySettings(batch_size=args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache, frozen = make_cache(args, Path(tmp), device)
        precision = resolve_precision(settings, cache, device)
        rows, compile_s = step_rows(args, cache, frozen, settings, precision, device)
        setup = candidate_seconds(cache, settings, device, args.steps)
        best = graph(cache, settings, precision, device) if device.type == "cuda" else \
            eager(candidate(cache, settings, precision, device),
                  random_batches(len(cache.train_features), args.batch, cache.train_batch), settings, precision, device)
        profiles = {"fastest paper-loss step": profile(best, device)}
        feature = list(cache.train_features.shape[1:])
        del cache, frozen
        shared = sharing(args, folder, FeatureCache.load(folder, device), settings, precision, device)
    summary = summarise(rows, setup, shared, device)
    report(args, rows, compile_s, summary, shared, profiles, feature, device)
    write_result(f"proxy_throughput_{device.type}", {
        "crop": args.crop, "batch": args.batch, "feature": feature, "device": str(device), "steps_timed": args.steps,
        "precision": {"amp": precision.amp, "channels_last": precision.channels_last},
        "s_per_step": rows, "compile_s": compile_s, **summary, "shared_steps_per_s": shared, "profiles": profiles,
    })


if __name__ == "__main__":
    main()
