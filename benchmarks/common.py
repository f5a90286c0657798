"""What every benchmark script shares: the machine's description, a step timer and the JSON result file."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(os.environ.get("DENSECELL_BENCH_RESULTS", Path(__file__).parent / "results"))
"""Where results go; the smoke test points it (and BENCHMARKS.md, via DENSECELL_BENCH_REPORT) at a temporary folder."""


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``low`` (a bad one is argparse's one-line usage error)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def machine() -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU and versions: what a reader needs to compare figures."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "driver": _driver(), "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


def _driver() -> str | None:
    """The NVIDIA driver version, if there is one (nvidia-smi)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                          text=True)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(step: Callable[[], object], calls: int, device: torch.device = torch.device("cpu"),
                     warmup: int = 1) -> float:
    """Median seconds of ``calls`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(calls):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def write_result(name: str, result: dict[str, Any]) -> Path:
    """``benchmarks/results/NAME.json`` with the machine and the command that produced it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
               "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def versus_paper(ratio: float) -> str:
    """How a candidate's time compares with the paper's 90 GPU-minutes, in words that read right either way."""
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
