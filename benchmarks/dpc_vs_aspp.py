"""DPC against ASPP on Xception-71 (OS 16): params, multiply-adds and measured CPU latency of the whole model and of
the context module alone, at 1025x2049 (Cityscapes) and 769x769. The paper: DPC needs about half the parameters and
38% of the head's multiply-adds.

    python benchmarks/dpc_vs_aspp.py [--repeats 2] [--sizes 1025x2049,769x769]

Batch 1, inference, fp32, random weights. "context module" is the head as it runs (branches, projection, BN), on a
backbone-shaped feature map, so its latency is not hidden behind the backbone's.
"""

from __future__ import annotations

import argparse

import torch

from common import at_least, table, write_result
from densecell.models.cost import build_head, context_module_cost, feature_size, head_cost, measure_latency, model_cost
from densecell.models.model import build_model

COLUMNS = {"model_params_m": "model params (M)", "model_gmadds": "model GMAdds", "model_latency_s": "model s",
           "branches_params_m": "branches params (M)", "branches_gmadds": "branches GMAdds",
           "head_gmadds": "head GMAdds", "head_latency_s": "head s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=at_least(1), default=2)
    parser.add_argument("--sizes", default="1025x2049,769x769")
    parser.add_argument("--backbone", default="xception71")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    results, rows = {}, []
    for size in sizes:
        key = f"{size[0]}x{size[1]}"
        results[key] = {}
        for head_name in ("dpc", "aspp"):
            torch.manual_seed(0)
            model = build_model(backbone=args.backbone, head=head_name, num_classes=19, output_stride=16).eval()
            channels = model.backbone.feature_info.channels()[-1]
            head = build_head(head_name, channels).eval()
            with torch.device("meta"):  # counted without computing anything
                whole = model_cost(build_model(backbone=args.backbone, head=head_name, num_classes=19), size)
                meta_head = build_head(head_name, channels)
                context = head_cost(meta_head, channels, size)
                branches = context_module_cost(meta_head, size)  # Table 1's convention: branches, conv weights
            features = torch.randn(1, channels, *feature_size(size, 16))
            entry = {
                "model_params_m": whole.params / 1e6, "model_gmadds": whole.madds / 1e9,
                "model_latency_s": measure_latency(model, torch.randn(1, 3, *size), repeats=args.repeats),
                "branches_params_m": branches.params / 1e6, "branches_gmadds": branches.madds / 1e9,
                "head_params_m": context.params / 1e6, "head_gmadds": context.madds / 1e9,
                "head_latency_s": measure_latency(head, features, repeats=max(3, args.repeats)),
            }
            results[key][head_name] = entry
            rows.append([key, head_name, *(entry[k] for k in COLUMNS)])
        dpc, aspp = results[key]["dpc"], results[key]["aspp"]
        ratio = {name: dpc[name] / aspp[name] for name in dpc}
        results[key]["dpc_over_aspp"] = ratio
        rows.append([key, "DPC / ASPP", *(ratio[k] for k in COLUMNS)])
    print(f"{args.backbone}, OS 16, batch 1, {torch.get_num_threads()} threads")
    print(table(["size", "head", *COLUMNS.values()], rows))
    write_result("dpc_vs_aspp", {"backbone": args.backbone, "sizes": results})


if __name__ == "__main__":
    main()
