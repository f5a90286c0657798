"""Write BENCHMARKS.md from benchmarks/results/*.json: each figure next to its target, met or missed, with the machine
and the command that produced it. `make bench` runs it last."""

from __future__ import annotations

import json
import os
from pathlib import Path

from common import RESULTS, table

OUT = Path(os.environ.get("DENSECELL_BENCH_REPORT", Path(__file__).parent.parent / "BENCHMARKS.md"))


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def provenance(result: dict) -> str:
    m = result["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads"
    return f"Measured on {where}; Python {m['python']}, torch {m['torch']}. Command: `{result['command']}`."


def proxy_section(result: dict) -> list[str]:
    ratios, steps = result["ratios"], result["s_per_step"]
    hours = result["hours_per_candidate_at_30k"]
    lines = [f"## 1. Proxy throughput ({result['device']})", "",
             f"{result['crop']}x{result['crop']} crops, batch {result['batch']}, MobileNet-v2 OS 16 features "
             f"{result['feature']}, the published cell with 256 filters; median of {result['steps_timed']} steps. "
             + provenance(result), "",
             table(["step", "s/step", "hours per candidate at 30K steps"],
                   [[name, s, hours[name]] for name, s in steps.items()]), "",
             table(["ratio", "measured", "target", ""], [
                 ["(a)/(b)", ratios["(a)/(b)"], "about 17 (plain CPU implementation)", ""],
                 ["(a')/(b)", ratios["(a')/(b)"], "about 4.6", ""],
                 ["(b0)/(b)", ratios["(b0)/(b)"], ">= 1.3", verdict(ratios["(b0)/(b)"] >= 1.3)],
                 ["(b0)/(b, exact loss)", ratios["(b0)/(b, exact loss)"], "(what remains without the loss change)",
                  ""]]), "",
             f"torch.compile takes {result['compile_s']:.0f} s once per candidate (its first step) on top of the "
             "steady step time in the table.", "",
             table(["K candidates sharing the device", "candidate steps/s", "x one at a time"],
                   [[k, v, result["shared_speedup"][k]] for k, v in result["shared_steps_per_s"].items()]), ""]
    for name, ops in result["profiles"].items():
        lines += [table([f"profile of {name}: operator", "share of self time"], ops), ""]
    best = max(result["shared_speedup"].values())
    if result["device"].startswith("cuda"):
        seconds = steps["(b) cached, ours"] * 30_000
        lines += [f"Seconds per candidate at the paper's fidelity: {seconds:.0f} s (target <= 60 s on one H100): "
                  f"{verdict(seconds <= 60)}. K candidates sharing the GPU: {best:.2f}x one at a time (target >= 3x): "
                  f"{verdict(best >= 3)}.", ""]
    else:
        lines += ["GPU targets (<= 60 s per candidate on one H100, >= 3x with K candidates sharing it): **not "
                  "measured** here; no GPU was lent to the session that wrote this file. On a GPU machine run "
                  "`python benchmarks/proxy_throughput.py --device cuda`, then `python benchmarks/report.py`.", ""]
    return lines


def scaling_section(result: dict) -> list[str]:
    workers = result["workers"]
    return [f"## 2. Search scaling", "",
            f"{result['trials']} trials of {result['iterations_per_trial']} proxy steps each, one SQLite study, one "
            "torch thread per worker. " + provenance(result), "",
            table(["workers", "trials/min", "wall s with start-up", "trials/min with start-up"],
                  [[w, r["trials_per_min"], r["wall_s"], r["trials_per_min_with_startup"]] for w, r in workers.items()]),
            "", f"2 workers / 1 worker: {result['speedup_2_over_1']:.2f}x (target >= 1.7x): "
            f"{verdict(result['speedup_2_over_1'] >= 1.7)}.", ""]


def peer_section(result: dict) -> list[str]:
    rows, ok = [], True
    for encoder, entry in result["encoders"].items():
        for name in ("densecell", "smp"):
            e = entry[name]
            rows.append([encoder, name, e["params_m"], e["gmadds"], e["train_step_s"], e["inference_s"]])
        rows.append([encoder, "ours / smp", "", "", entry["train_ratio"], entry["inference_ratio"]])
        ok = ok and entry["train_ratio"] <= 1.05 and entry["inference_ratio"] <= 1.05
    lines = [f"## 3. DeepLabv3+ against segmentation_models_pytorch {result['smp']}", "",
             f"{result['size']}x{result['size']}, training step at batch {result['batch']}, inference at batch 1. "
             + provenance(result), "",
             table(["encoder", "model", "params (M)", "GMAdds", "train step s", "inference s"], rows), "",
             f"Target: every ratio <= 1.05: {verdict(ok)}. Where our training step spends more time than smp's "
             "(profiled, one step each):", ""]
    for encoder, entry in result["encoders"].items():
        lines += [table([f"{encoder}: operator", "ours s", "smp s", "ours - smp s"], entry["slower_ops"]), ""]
    return lines


def dpc_section(result: dict) -> list[str]:
    header = ["size", "head", "model params (M)", "model GMAdds", "model s", "branches params (M)",
              "branches GMAdds", "head GMAdds", "head s"]
    keys = ["model_params_m", "model_gmadds", "model_latency_s", "branches_params_m", "branches_gmadds",
            "head_gmadds", "head_latency_s"]
    rows = []
    for size, entry in result["sizes"].items():
        for head in ("dpc", "aspp"):
            rows.append([size, head, *(entry[head][k] for k in keys)])
        rows.append([size, "DPC / ASPP", *(entry["dpc_over_aspp"][k] for k in keys)])
    return [f"## 4. DPC against ASPP on {result['backbone']}", "", provenance(result), "", table(header, rows), ""]


def memory_section(result: dict) -> list[str]:
    return ["## 5. Memory", "", f"Measured on {result['images_measured']} synthetic 1024x2048 images. "
            + provenance(result), "",
            table(["what", "measured"], [
                ["peak RSS, `densecell cache`", f"{result['cache_peak_rss_mib']:.0f} MiB"],
                ["peak RSS, `densecell search worker` (batch 8, 256 filters)", f"{result['worker_peak_rss_mib']:.0f} MiB"],
                ["cache per training crop (769x769: features + labels)", f"{result['bytes_per_train_crop'] / 1e6:.2f} MB"],
                ["cache per val image (1024x2048)", f"{result['bytes_per_val_image'] / 1e6:.2f} MB"],
                ["Cityscapes (2975 + 500 images), one view, extrapolated",
                 f"{result['cityscapes_cache_gb_per_view']:.2f} GB"]]), ""]


def main() -> None:
    sections = {"proxy_throughput_cuda": proxy_section, "proxy_throughput_cpu": proxy_section,
                "search_scaling": scaling_section, "peer_models": peer_section, "dpc_vs_aspp": dpc_section,
                "memory": memory_section}
    lines = ["# Benchmarks", "",
             "Written by `make bench` (`python benchmarks/report.py` after the scripts in `benchmarks/`) from "
             "`benchmarks/results/*.json`; every figure below can be reproduced with the command under it. Timings "
             "are side by side in one run of one script. The analysis that reads them is in "
             "[benchmarks/ANALYSIS.md](benchmarks/ANALYSIS.md).", ""]
    for name, section in sections.items():
        result = load(name)
        if result is not None:
            lines += section(result)
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
