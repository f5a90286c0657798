"""Proxy throughput at the paper's proxy shape (769x769 crops, batch 8, MobileNet-v2 at OS 16: 320x49x49 features).

    python benchmarks/proxy_throughput.py                 # CPU; on a GPU machine: --device cuda
    python benchmarks/proxy_throughput.py --crop 385 --steps 2 --ks 1,2   # a quick look

Steps of one candidate (the published cell + a 1x1 classifier, 256 filters), each timed as the median of --steps:
  (a)  end-to-end: the whole MobileNet-v2 + head trained, images read and augmented every step (paper Fig. 3b);
  (a') the backbone frozen but still run every step, images read every step;
  (b)  ours: cached fp16 features, channels-last, bf16 where the device has it, loss on subsampled labels;
  (b, exact loss) the same with the loss on logits upsampled to the crop, as the paper's proxy;
  (b, contiguous) the same without channels-last;
  (b, torch.compile) the head compiled with torch.compile (its one-off compile time is reported apart);
  (b, bf16 autocast) on a CPU only: (b) in bf16, to show whether the CPU gains from it (fp32 is the CPU default);
  (b0) a plain eager fp32 step, contiguous tensors, upsampled logits, on the same cached features.
(a), (a') and (b) share precision, memory format and loss. (c): K candidates share the device, as K worker
processes reading one memory-mapped cache (on a CPU, cores/K threads each), each timing --steps steps of (b) after a
shared start; throughput is K * steps / the slowest worker's time. Synthetic images stand in for Cityscapes: the
timing does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import tempfile
from pathlib import Path

import torch
from common import seconds_per_call, table, write_result
from torch import nn

from densecell.data import Cityscapes, EvalTransform, TrainTransform
from densecell.data.synthetic import write_synthetic_cityscapes
from densecell.model import build_model
from densecell.proxy import (FeatureCache, FrozenBackboneFeatures, ProxySettings, build_cache, build_proxy_head,
                             proxy_optimizer, proxy_step)

PAPER_ITERATIONS = 30_000


class EndToEnd(nn.Module):
    """Backbone and candidate head trained together: what the proxy's cache avoids."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)[-1])


def candidate(cache: FeatureCache, settings: ProxySettings, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    head = build_proxy_head("cityscapes-top1", cache.channels, len(cache.classes), cache.output_stride,
                            settings.filters)
    return head.to(device, memory_format=torch.channels_last if settings.channels_last else torch.contiguous_format)


def stepper(module: nn.Module, batches, settings: ProxySettings, device: torch.device):
    """One proxy training step of ``module`` on a fresh batch per call, with its own optimizer."""
    optimizer = proxy_optimizer(module, settings)
    return lambda: proxy_step(module, optimizer, *batches(), settings, settings.lr, device)


def time_steps(module: nn.Module, batches, settings: ProxySettings, device: torch.device, steps: int) -> float:
    return seconds_per_call(stepper(module, batches, settings, device), steps, device)


def profile(module: nn.Module, batches, settings: ProxySettings, device: torch.device, top: int = 6) -> list:
    """The operators that take the step's time (self time, two steps): what limits it."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    step = stepper(module, batches, settings, device)
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profiler(activities=activities) as trace:
        for _ in range(2):
            step()

    def self_time(event) -> float:
        return event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total

    events = sorted(trace.key_averages(), key=self_time, reverse=True)
    total = sum(self_time(e) for e in events)
    return [[e.key, self_time(e) / total] for e in events[:top]]


def random_batches(count: int, batch: int, read):
    generator = torch.Generator().manual_seed(0)
    return lambda: read(torch.randint(count, (batch,), generator=generator))


def compiled_step(module: nn.Module, batches, settings: ProxySettings, device: torch.device,
                  steps: int) -> tuple[float, float]:
    """Seconds per step of the torch.compile'd head, and the one-off compile time (its first step minus a step)."""
    step = stepper(torch.compile(module), batches, settings, device)
    first = seconds_per_call(step, 1, device, warmup=0)
    seconds = seconds_per_call(step, steps, device, warmup=0)
    return seconds, first - seconds


def share_worker(folder: str, device: str, threads: int, steps: int, settings: ProxySettings, barrier, queue) -> None:
    """One of K processes in (c): its own head, the shared memory-mapped cache."""
    torch.set_num_threads(threads)
    device_ = torch.device(device)
    cache = FeatureCache.load(folder, device_)
    batches = random_batches(len(cache.train_features), settings.batch_size, cache.train_batch)
    step = stepper(candidate(cache, settings, device_), batches, settings, device_)
    step()  # warm-up
    barrier.wait()
    queue.put(seconds_per_call(step, steps, device_, warmup=0) * steps)


def shared_throughput(folder: Path, device: torch.device, k: int, steps: int, settings: ProxySettings) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=769)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    ours = ProxySettings(batch_size=args.batch, channels_last=True, upsample_logits=False, amp="auto")
    plain = ProxySettings(batch_size=args.batch, channels_last=False, upsample_logits=True, amp="off")
    crop = (args.crop, args.crop)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_cityscapes(Path(tmp) / "data", train=args.images, val=1, size=crop)
        torch.manual_seed(0)
        backbone = build_model(backbone="mobilenetv2_100", num_classes=19).backbone.to(device)
        train_set = Cityscapes(root, "train", TrainTransform(crop, 1.0, 1.0))
        folder = build_cache(backbone, train_set, Cityscapes(root, "val", EvalTransform()), Path(tmp) / "cache",
                             output_stride=16, crop_size=crop, device=device, progress=False)
        cache = FeatureCache.load(folder, device)
        frozen = FrozenBackboneFeatures(cache, backbone, train_set, device)
        count, feature = len(cache.train_features), list(cache.train_features.shape[1:])
        cached = random_batches(count, args.batch, cache.train_batch)
        rows = {}
        end_to_end = EndToEnd(backbone, candidate(cache, ours, device)).to(memory_format=torch.channels_last)
        rows["(a) end to end"] = time_steps(end_to_end, random_batches(count, args.batch, frozen.images), ours,
                                            device, args.steps)
        frozen.backbone = build_model(backbone="mobilenetv2_100", num_classes=19).backbone.to(device).eval()
        rows["(a') frozen backbone run every step"] = time_steps(
            candidate(cache, ours, device), random_batches(count, args.batch, frozen.train_batch), ours, device,
            args.steps)
        rows["(b) cached, ours"] = time_steps(candidate(cache, ours, device), cached, ours, device, args.steps)
        exact = dataclasses.replace(ours, upsample_logits=True)
        rows["(b) cached, ours, exact loss"] = time_steps(candidate(cache, exact, device), cached, exact, device,
                                                          args.steps)
        contiguous = dataclasses.replace(ours, channels_last=False)
        rows["(b) cached, ours, contiguous"] = time_steps(candidate(cache, contiguous, device), cached, contiguous,
                                                          device, args.steps)
        if device.type == "cpu":  # on a GPU (b) already runs in bf16; on a CPU show what bf16 would give
            bf16 = dataclasses.replace(ours, amp="bf16")
            rows["(b) cached, ours, bf16 autocast"] = time_steps(candidate(cache, bf16, device), cached, bf16, device,
                                                                 args.steps)
        rows["(b) cached, ours, torch.compile"], compile_s = compiled_step(candidate(cache, ours, device), cached,
                                                                           ours, device, args.steps)
        rows["(b0) cached, plain eager fp32"] = time_steps(candidate(cache, plain, device), cached, plain, device,
                                                           args.steps)
        profiles = {"(b) cached, ours": profile(candidate(cache, ours, device), cached, ours, device),
                    "(b) cached, ours, exact loss": profile(candidate(cache, exact, device), cached, exact, device)}
        del cache, frozen
        shared = {k: shared_throughput(folder, device, k, args.steps, ours) for k in map(int, args.ks.split(","))}
    b = rows["(b) cached, ours"]
    ratios = {"(a)/(b)": rows["(a) end to end"] / b, "(a')/(b)": rows["(a') frozen backbone run every step"] / b,
              "(b0)/(b)": rows["(b0) cached, plain eager fp32"] / b,
              "(b0)/(b, exact loss)": rows["(b0) cached, plain eager fp32"] / rows["(b) cached, ours, exact loss"]}
    step_rows = [[name, seconds, seconds * PAPER_ITERATIONS / 3600] for name, seconds in rows.items()]
    one = shared[min(shared)]
    shared_rows = [[k, steps_per_s, steps_per_s / one] for k, steps_per_s in shared.items()]
    print(f"proxy step at {args.crop}x{args.crop}, batch {args.batch}, features {feature} on {device}")
    print(table(["step", "s/step", "h per candidate at 30K steps"], step_rows))
    print(table(["ratio", "value"], [[k, v] for k, v in ratios.items()]))
    print(f"torch.compile: {compile_s:.0f} s to compile, paid once per candidate")
    print(table(["K candidates sharing the device", "candidate steps/s", "x one at a time"], shared_rows))
    for name, ops in profiles.items():
        print(table([f"{name}: operator", "share of self time"], ops))
    write_result(f"proxy_throughput_{device.type}", {
        "crop": args.crop, "batch": args.batch, "feature": feature, "device": str(device), "steps_timed": args.steps,
        "s_per_step": rows, "hours_per_candidate_at_30k": {k: v * PAPER_ITERATIONS / 3600 for k, v in rows.items()},
        "ratios": ratios, "compile_s": compile_s, "shared_steps_per_s": shared,
        "shared_speedup": {k: v / one for k, v in shared.items()}, "profiles": profiles,
    })


if __name__ == "__main__":
    main()
