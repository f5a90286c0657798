"""Write BENCHMARKS.md from benchmarks/results/*.json: each figure next to its target, met or missed, with the machine
and the command that produced it. `make bench` runs it last."""

from __future__ import annotations

import json
import os
from pathlib import Path

from common import RESULTS, table, versus_paper

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
    steps, per_candidate = result["s_per_step"], result["s_per_candidate"]
    gpu = result["device"].startswith("cuda")
    lines = [f"## 1. Proxy throughput ({result['machine']['gpu'] or result['device']})", "",
             f"{result['crop']}x{result['crop']} crops, batch {result['batch']}, MobileNet-v2 OS 16 features "
             f"{result['feature']}, the published cell with 256 filters; median of {result['steps_timed']} steps. "
             + provenance(result) + (f" Driver {result['machine']['driver']}." if result["machine"].get("driver")
                                     else ""), "",
             table(["step", "ms/step", "s per 30K-step candidate"],
                   [[name, s * 1e3, per_candidate[name]] for name, s in steps.items()]), ""]
    if result.get("compile_s") is not None:
        lines += [f"torch.compile takes {result['compile_s']:.0f} s once per candidate (each cell is a new graph), on "
                  "top of the steady step time in the table.", ""]
    seconds = result["candidate_seconds_paper_loss"]
    lines += [f"One candidate at the paper's loss: {result['setup_s']:.1f} s of setup (build, capture, scoring) + 30K "
              f"steps of `{result['fastest_paper_loss_step']}` = **{seconds:.0f} s**, "
              f"{result['candidates_per_hour_one_at_a_time']:.1f} candidates per device-hour. The paper: 90 minutes "
              f"per candidate on one GPU; this is {versus_paper(result['vs_paper_90_min'])}.", ""]
    for mode, values in result["shared_steps_per_s"].items():
        one = values[min(values, key=int)]
        lines += [table([f"K candidates sharing the device ({mode})", "candidate steps/s", "x one at a time"],
                        [[k, v, v / one] for k, v in values.items()]), ""]
    shared = ", ".join(f"{mode} {v:.1f}" for mode, v in result["candidates_per_hour_shared"].items())
    lines += [f"Candidates per device-hour, K at once: {shared}.", ""]
    for name, ops in result["profiles"].items():
        lines += [table([f"profile of the {name}: operator", "share of self time"], ops), ""]
    if gpu:
        lines += [f"Target, at most 60 s per candidate at a paper-ranking loss on one H100 or H200: "
                  f"{verdict(seconds <= 60)} ({seconds:.0f} s).", ""]
    else:
        lines += ["The GPU target (at most 60 s per candidate on one H100 or H200) is measured by "
                  "`python benchmarks/proxy_throughput.py --device cuda` on such a GPU; see the GPU section when "
                  "it is there.", ""]
    return lines


def scaling_section(result: dict) -> list[str]:
    workers = result["workers"]
    return ["## 2. Search scaling", "",
            f"{result['trials']} trials of {result['iterations_per_trial']} proxy steps each, one SQLite study, one "
            "torch thread per worker. " + provenance(result), "",
            table(["workers", "trials/min", "wall s with start-up", "trials/min with start-up"],
                  [[w, r["trials_per_min"], r["wall_s"], r["trials_per_min_with_startup"]]
                   for w, r in workers.items()]),
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
    size = result.get("image_size", "1024x2048")
    return ["## 5. Memory", "", f"Measured on {result['images_measured']} synthetic {size} images. "
            + provenance(result), "",
            table(["what", "measured"], [
                ["peak RSS, `densecell cache`", f"{result['cache_peak_rss_mib']:.0f} MiB"],
                ["peak RSS, `densecell search worker` (batch 8, 256 filters)",
                 f"{result['worker_peak_rss_mib']:.0f} MiB"],
                ["cache per training crop (769x769: features + labels)",
                 f"{result['bytes_per_train_crop'] / 1e6:.2f} MB"],
                [f"cache per val image ({size})", f"{result['bytes_per_val_image'] / 1e6:.2f} MB"],
                ["Cityscapes (2975 + 500 images), one view, extrapolated",
                 f"{result['cityscapes_cache_gb_per_view']:.2f} GB"]]), ""]


def multifidelity_section(result: dict) -> list[str]:
    return ["## 6. Multi-fidelity search (synthetic data)", "",
            f"A search with Optuna's {result['pruner']} pruner (rungs every {result['eval_every']} proxy steps) ran "
            f"until {result['complete']} trials completed; it touched {result['cells']} cells, each of which was then "
            "also trained at the full budget. " + provenance(result), "",
            table(["measure", "value"], [
                ["proxy steps spent / full budget of the same cells",
                 f"{result['steps_spent']} / {result['steps_full_budget']}"],
                ["compute saved", f"{result['compute_saved']:.0%}"],
                ["Spearman rho, score when stopped vs full score", f"{result['rho_stopped_vs_full']:.3f}"],
                ["top-5 overlap", f"{result['top5_overlap']}/5"],
                ["best kept cell, full-budget mIoU", f"{result['best_kept_full_miou']:.3f}"],
                ["best of all its cells at full budget", f"{result['best_of_all_full_miou']:.3f}"]]), ""]


def oneshot_section(result: dict) -> list[str]:
    return ["## 7. One-shot screen + proxy against random search at equal compute (synthetic data)", "",
            f"The one-shot search (supernet, {result['oneshot_cells']} cells screened, the best "
            f"{result['proxy_trials']} trained on the proxy) took {result['seconds']:.0f} s; random search on the "
            "same proxy was given the same seconds on the same machine. " + provenance(result), "",
            table(["search", "cells trained on the proxy", "best proxy mIoU"], [
                ["one-shot screen + proxy top-N", result["proxy_trials"], result["oneshot_best_proxy_miou"]],
                ["random search", result["random_cells"], result["random_best_proxy_miou"]]]), ""]


def gpu_paths_section(result: dict) -> list[str]:
    checks = result["checks"]
    ok = all(status == "ok" for status, _ in checks.values())
    return [f"## 8. The GPU-only paths ({result['machine']['gpu'] or result['device']}): {verdict(ok)}", "",
            "fp16 loss scaling in the eager proxy step, the training step and the supernet; K candidates at once "
            "against one at a time; the CUDA graph's capture and its eager fallback. " + provenance(result), "",
            table(["path", "result", "detail"], [[name, *values] for name, values in checks.items()]), ""]


def efficiency_section(result: dict) -> list[str]:
    steps = result["candidate_steps"]
    rankers = [[name, r["rho"], r["top5"], r["top1pct"], r["steps_per_cell"]] for name, r in result["rankers"].items()]
    strategies = []
    for name, found in result["strategies"].items():
        share = found["fraction_of_random"]
        strategies.append([name, *("-" if r is None else f"{r * 100:.2f}" for r in found["median_regret"]),
                           f"{found['p_top1'][-1]:.2f}", "-" if share is None else f"{share:.0%}"])
    return [f"## 9. Which search to use: {result['cells']} cells, candidates of {steps:,} proxy steps", "",
            f"The strategies simulated on the ground-truth table over {result['seeds']} seeds (offset "
            f"{result['seed_offset']}); regret in mIoU points at each compute (proxy steps), the chance of having "
            f"trained a top-1% cell at the budget, and the compute at which the median best matches random search's "
            f"median best after 100 cells, as a share of the compute random search's own median best first gets there "
            f"({result['random_reach']:,.0f} proxy steps). Noise floor: Spearman rho "
            f"{result['noise_rho']:.3f} between two seeds of {result['repeats']} cells. " + provenance(result), "",
            table(["ranker", "Spearman rho", "top-5 overlap", "top-1% overlap", "proxy steps per cell"], rankers), "",
            table(["strategy", *(f"regret @{c:,.0f}" for c in result["grid"]), "P(top-1%)", "compute of random's"],
                  strategies), "", f"![regret against compute](benchmarks/results/{result['plot']})", ""]


def main() -> None:
    sections = {"proxy_throughput_cuda": proxy_section, "proxy_throughput_cpu": proxy_section,
                "search_scaling": scaling_section, "peer_models": peer_section, "dpc_vs_aspp": dpc_section,
                "memory": memory_section, "search_fidelity_multifidelity": multifidelity_section,
                "search_fidelity_oneshot": oneshot_section, "gpu_paths_cuda": gpu_paths_section,
                "gpu_paths_cpu": gpu_paths_section, "search_efficiency_100": efficiency_section,
                "search_efficiency_100_seeds1000": efficiency_section,
                "search_efficiency_100_seeds2000": efficiency_section, "search_efficiency_30000": efficiency_section}
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
