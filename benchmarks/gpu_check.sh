#!/usr/bin/env bash
# The GPU check, as one prepared script for a lent GPU machine (../shared/GPU.md): the paths only a GPU takes (fp16
# loss scaling in the eager step, the training step and the supernet; K candidates on their own generators; the graph
# capture and its fallback), the proxy benchmark on the GPU (the <= 60 s per candidate target), a head's latency by
# CUDA events against a synchronised clock (within 5%), the report, then the
# test suite on the GPU. Each part has its own timeout; results go
# under $OUT as they are written. Make the wheels first, on the CPU machine (GPU.md), and carry .whl:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
set -u
OUT=${OUT:-/tmp/densecell-gpu}
mkdir -p "$OUT/results"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
export DENSECELL_BENCH_RESULTS=$OUT/results DENSECELL_BENCH_REPORT=$OUT/BENCHMARKS.md
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
timeout 90 python3 benchmarks/gpu_paths.py --device cuda > "$OUT/gpu_paths.log" 2>&1
echo "gpu_paths exit $?" >> "$OUT/status.txt"
timeout 200 python3 benchmarks/proxy_throughput.py --device cuda --steps 50 --skip-end-to-end --ks 1,4,8 \
  > "$OUT/proxy_throughput.log" 2>&1
echo "proxy_throughput exit $?" >> "$OUT/status.txt"
timeout 60 python3 benchmarks/latency_cuda.py > "$OUT/latency_cuda.log" 2>&1
echo "latency_cuda exit $?" >> "$OUT/status.txt"
timeout 30 python3 benchmarks/report.py > "$OUT/report.log" 2>&1
echo "report exit $?" >> "$OUT/status.txt"
timeout 250 python3 -m pytest -q -n 8 -k "not postgres" -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "pytest exit $?" >> "$OUT/status.txt"
tail -3 "$OUT/pytest.log"; cat "$OUT/status.txt"
