"""The benchmark scripts run end to end at toy sizes and the report reads what they write (no timing is checked
here: the figures live in BENCHMARKS.md). The smp peer is a benchmark extra, not installed for the tests, so
peer_models.py is left to `make bench`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_table

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
RUNS = {
    "proxy_throughput": ["--crop", "65", "--batch", "2", "--images", "2", "--steps", "1", "--ks", "1,2",
                         "--skip-compile"],
    "search_scaling": ["--trials", "2", "--iterations", "2"],
    "dpc_vs_aspp": ["--sizes", "65x65", "--backbone", "mobilenetv2_100", "--repeats", "1"],
    "memory": ["--images", "1", "--image-size", "769x769", "--steps", "1"],
    "gpu_paths": ["--device", "cpu"],
    "latency_model": ["--runtime", "torch", "--cells", "10", "--image-size", "65"],
}


@pytest.mark.slow
def test_benchmarks_run_and_the_report_reads_them(tmp_path):
    env = os.environ | {"DENSECELL_BENCH_RESULTS": str(tmp_path / "results"),
                        "DENSECELL_BENCH_REPORT": str(tmp_path / "BENCHMARKS.md")}
    # all at once, one thread each: at toy sizes a script's time is mostly its imports, which use one core; each
    # writes its stderr to a file (pipes read one after another could fill and stall a script)
    logs = {script: tmp_path / f"{script}.stderr" for script in RUNS}
    running = {}
    for script, args in RUNS.items():
        with logs[script].open("w") as err:
            running[script] = subprocess.Popen([sys.executable, str(BENCHMARKS / f"{script}.py"), *args],
                                               env=env | {"OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                               stderr=err)
    for script, process in running.items():
        assert process.wait(timeout=600) == 0, (script, logs[script].read_text()[-2000:])
    results = {path.stem: json.loads(path.read_text()) for path in (tmp_path / "results").glob("*.json")}
    assert set(results) == {"proxy_throughput_cpu", "search_scaling", "dpc_vs_aspp", "memory", "gpu_paths_cpu",
                            "latency_model", "profile_torch_cpu"}  # the profile, kept for a search under a budget
    assert set(results["latency_model"]["runtimes"]["torch"]) >= {"model", "lookup_only", "noise"}
    assert all(status == "ok" for status, _ in results["gpu_paths_cpu"]["checks"].values())
    proxy = results["proxy_throughput_cpu"]
    assert proxy["feature"] == [320, 5, 5] and set(proxy["shared_steps_per_s"]["processes"]) == {"1", "2"}
    assert all(seconds > 0 for seconds in proxy["s_per_step"].values())
    assert proxy["candidate_seconds_paper_loss"] > 0 and proxy["candidates_per_hour_one_at_a_time"] > 0
    assert any(name.startswith("(g) graph step, paper loss") for name in proxy["s_per_step"])
    assert results["search_scaling"]["workers"]["2"]["trials"] == 2
    assert results["memory"]["bytes_per_train_crop"] == pytest.approx(320 * 49 * 49 * 2 + 769 * 769, rel=0.01)
    done = subprocess.run([sys.executable, str(BENCHMARKS / "report.py")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "BENCHMARKS.md").read_text()
    # sections are numbered in the order they appear (the smp section is absent here, so the rest move up one)
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert [h.split(". ", 1)[0] for h in headings] == [f"## {n}" for n in range(1, len(headings) + 1)]
    for heading in ("Proxy throughput (cpu)", "Search scaling", "DPC against ASPP", "Memory",
                    "The GPU-only paths (cpu): **met**", "The latency model"):
        assert any(h.split(". ", 1)[1].startswith(heading) for h in headings), heading
    assert "python benchmarks/proxy_throughput.py --crop 65" in report


@pytest.mark.parametrize("kind", ["dpc", "sample"])
def test_search_efficiency_runs_every_registered_sampler_on_a_table(tmp_path, kind):
    """The harness on a small generated table: every registered single-objective sampler (and, on the DPC table
    with its rungs, every pruner) runs through ask/tell on three seeds and is summarised; the JSON names its table."""
    table = write_table(tmp_path / f"{kind}.json.gz", kind)
    env = os.environ | {"DENSECELL_BENCH_RESULTS": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "search_efficiency.py"), "--table", str(table),
                           "--seeds", "2", "--budget", "30", "--jobs", "1"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "results" / f"search_efficiency_test-{kind}.json").read_text())
    assert result["table"] == f"{kind}.json.gz" and result["seeds"] == 2
    expected = {"random", "vizier", "evolution", "local-search", "predictor", "tpe"}
    if kind == "dpc":
        expected |= {"random+median", "random+hyperband", f"{result['recipe_sampler']}+successive-halving"}
        assert result["noise_floor"]["pairs"] == 4 and result["workers"] == 1 and result["noise"]["sigma"] == 0
    assert expected <= set(result["strategies"]) and "nsga2" in result["skipped"]
    random_search = result["strategies"]["random"]
    regrets = [random_search["median_regret"][b] for b in ("10", "20")]
    assert regrets[0] >= regrets[1] >= 0  # more compute, no more regret
    scores = sorted((r["score"] for r in _rows(table)), reverse=True)
    assert set(result["random_median_best"]) == ({"100"} if kind == "sample" else set())  # R no larger than the table
    for target in result["random_median_best"].values():
        assert scores[5] <= target <= scores[0]  # the best of 100 of 200 rows: their top 1 to 5
    assert (tmp_path / "results" / result["plot"]).stat().st_size > 10_000
    assert "predictor" in done.stdout and ("share @100" in done.stdout) == (kind == "sample")


def _rows(path):
    import gzip

    with gzip.open(path, "rt") as handle:
        return json.load(handle)["rows"]
