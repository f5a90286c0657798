"""Our DeepLabv3+ (ASPP) against segmentation_models_pytorch's DeepLabV3Plus with the same encoder: a training step
(forward + backward + SGD) and inference latency, same input, same threads, side by side. The target: ours is not
slower (ratio <= 1.05).

    pip install -e '.[bench]'            # the peer is a benchmark extra, not a dependency
    python benchmarks/peer_models.py [--size 512] [--batch 2] [--steps 3]

Both at output stride 16, 19 classes, random weights (nothing is downloaded). smp needs sides divisible by 16, hence
512 rather than DeepLab's 513. The two differ slightly by design: smp's ASPP uses rates 12/24/36 and its decoder one
separable 3x3 convolution; ours uses 6/12/18 and two (DeepLabv3+). Their MAdds are printed so the times can be read
against them. The encoders are timm's (ours) and smp's own ports of the same networks.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from common import at_least, seconds_per_call, table, write_result
from densecell.models.cost import count_madds, measure_latency
from densecell.models.model import build_model

ENCODERS = {"mobilenet_v2": "mobilenetv2_100", "resnet50": "resnet50"}  # smp name -> timm name


def training_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        model.train()
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def op_seconds(step) -> dict[str, float]:
    """Self CPU seconds per operator over one call of ``step`` (after a warm-up call)."""
    from torch.profiler import profile

    step()
    with profile() as trace:
        step()
    return {event.key: event.self_cpu_time_total / 1e6 for event in trace.key_averages()}


def slower_ops(ours: dict[str, float], peer: dict[str, float], top: int = 6) -> list[list]:
    """The operators where our training step spends the most extra time: what limits the ratio."""
    gaps = {key: ours.get(key, 0.0) - peer.get(key, 0.0) for key in ours.keys() | peer.keys()}
    return [[key, ours.get(key, 0.0), peer.get(key, 0.0), gap]
            for key, gap in sorted(gaps.items(), key=lambda item: -item[1])[:top]]


def main() -> None:
    import segmentation_models_pytorch as smp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=at_least(32), default=512)
    parser.add_argument("--batch", type=at_least(1), default=2)
    parser.add_argument("--steps", type=at_least(1), default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 19, (args.batch, args.size, args.size))
    results, rows = {}, []
    for smp_name, timm_name in ENCODERS.items():
        models = {
            "densecell": build_model(backbone=timm_name, head="aspp", num_classes=19, output_stride=16),
            "smp": smp.DeepLabV3Plus(encoder_name=smp_name, encoder_weights=None, encoder_output_stride=16,
                                     classes=19),
        }
        entry, ops = {}, {}
        for name, model in models.items():
            train_s = seconds_per_call(training_step(model, images, labels), args.steps)
            ops[name] = op_seconds(training_step(model, images, labels))
            infer_s = measure_latency(model, images[:1], repeats=args.steps)
            madds = count_madds(model.eval(), images[:1])
            entry[name] = {"train_step_s": train_s, "inference_s": infer_s, "gmadds": madds / 1e9,
                           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
        entry["train_ratio"] = entry["densecell"]["train_step_s"] / entry["smp"]["train_step_s"]
        entry["inference_ratio"] = entry["densecell"]["inference_s"] / entry["smp"]["inference_s"]
        entry["slower_ops"] = slower_ops(ops["densecell"], ops["smp"])
        results[smp_name] = entry
        for name in models:
            e = entry[name]
            rows.append([smp_name, name, e["params_m"], e["gmadds"], e["train_step_s"], e["inference_s"]])
        rows.append([smp_name, "ours / smp", "", "", entry["train_ratio"], entry["inference_ratio"]])
    print(f"DeepLabv3+ at {args.size}x{args.size}: training step batch {args.batch}, inference batch 1, "
          f"{torch.get_num_threads()} threads")
    print(table(["encoder", "model", "params (M)", "GMAdds", "train step s", "inference s"], rows))
    for encoder, entry in results.items():
        print(table([f"{encoder} training step: operator", "ours s", "smp s", "ours - smp s"], entry["slower_ops"]))
    write_result("peer_models", {"size": args.size, "batch": args.batch, "smp": smp.__version__, "encoders": results})


if __name__ == "__main__":
    main()
