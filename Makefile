# The two set-up commands: `make demo` and `make test`. Each creates .venv with pip when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast docs bench fidelity table install clean floors

# Every extra (search, postgres, export, report, tensorboard), the test and documentation tools, with this
# repository's exact torch pins (constraints.txt); the package itself asks only for ranges.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "densecell needs Python >= 3.11"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,test,docs]'
	@touch $(STAMP)

install: $(STAMP)

# The suite runs on 2 processes (pytest-xdist, one test file per process at a time) with one torch thread each:
# most of a test's time is imports, process start-up and polling, which the other process fills. On 2 cores: 7 min
# 21 s, against 10 min 20 s on one process with torch's 2 threads and 11 min 37 s on one with 1 thread.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

# The suite builds the documentation site itself, as make docs does (tests/test_docs.py), and opens the report and
# two of its pages in headless Chromium where it is installed (tests/test_pages.py).
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(PYTEST) --durations=15

# The documentation site (Sphinx: guides, and the API, CLI, recipe and results pages generated from the code and
# benchmarks/results) into docs/_build/html; a warning (a broken link or cross-reference, a missing page) fails it.
docs: $(STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -n -E -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# The inner loop: the suite without the end-to-end tests marked slow (CI runs them all, through make test).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(PYTEST) -m "not slow"

# The oldest Optuna and huggingface_hub that pyproject.toml allows (downloaded into .floors, ahead of .venv on the
# path), against the tests that pin what densecell needs of them. Not part of make test: tests never download.
floors: $(STAMP)
	rm -rf .floors
	$(BIN)/python -m pip install --quiet --no-deps --target .floors $$($(BIN)/python -c 'import re, tomllib; \
	  p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  deps = p["dependencies"] + p["optional-dependencies"]["search"]; \
	  print(" ".join(re.sub(">=", "==", d) for d in deps if d.startswith(("optuna", "huggingface_hub"))))')
	PYTHONPATH=.floors $(BIN)/python -c 'import optuna, huggingface_hub; print("floors: optuna", optuna.__version__, "huggingface_hub", huggingface_hub.__version__)'
	PYTHONPATH=.floors $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_optuna_contract.py tests/test_samplers.py tests/test_hub.py tests/test_sharing.py

demo: $(STAMP)
	$(BIN)/densecell space
	$(BIN)/densecell cell show cityscapes-top1
	$(BIN)/densecell cost --paper-table
	$(BIN)/densecell cost --backbone xception71 --head dpc --image-size 1025x2049
	$(BIN)/densecell export runs/demo/mobilenetv2-dpc-cityscapes-top1.onnx --backbone mobilenetv2_100 --head dpc --cell cityscapes-top1 --image-size 513x513
	$(BIN)/densecell synthetic runs/synthetic-data
	$(BIN)/densecell train --config configs/synthetic-mobilenetv2-dpc.yaml --data-root runs/synthetic-data --resume
	$(BIN)/densecell predict runs/synthetic-data/leftImg8bit/val/synthcity/synthcity_00000[0-3]_000019_leftImg8bit.png --checkpoint runs/synthetic-mobilenetv2-dpc/checkpoint.pt --output runs/demo/predictions
	$(BIN)/densecell save runs/synthetic-mobilenetv2-dpc runs/demo/synthetic-mobilenetv2-dpc
	$(BIN)/densecell eval --checkpoint runs/demo/synthetic-mobilenetv2-dpc --data-root runs/synthetic-data
	$(BIN)/densecell search --config configs/search-synthetic.yaml --data-root runs/synthetic-data
	$(BIN)/densecell search status --config configs/search-synthetic.yaml

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,bench]'
	$(BIN)/python benchmarks/proxy_throughput.py
	$(BIN)/python benchmarks/search_scaling.py
	$(BIN)/python benchmarks/peer_models.py
	$(BIN)/python benchmarks/dpc_vs_aspp.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/latency_model.py
	$(EFFICIENCY) --table benchmarks/data/dpc-synthetic-proxy.json.gz $(HELD) --seeds 30 \
	  --latency-profile benchmarks/results/profile_onnxruntime_cpu.json --sampler random --sampler predictor \
	  --sampler evolution --name latency_budget_dpc-synthetic-proxy
	$(BIN)/python benchmarks/report.py

# The ranking studies behind the README's fidelity figures, on the demo's data and cache (run make demo first);
# each resumes where it stopped. About an hour on 2 CPU cores.
fidelity: $(STAMP)
	$(BIN)/densecell fidelity --config configs/search-synthetic.yaml --data-root runs/synthetic-data --cells 31 --against end-to-end
	$(BIN)/densecell fidelity --config configs/search-synthetic.yaml --data-root runs/synthetic-data --cells 32 --against proxy.upsample_logits=false
	$(BIN)/densecell fidelity --config configs/search-synthetic-oneshot.yaml --data-root runs/synthetic-data --cells 32 --against oneshot
	$(BIN)/python benchmarks/search_fidelity.py multifidelity
	$(BIN)/python benchmarks/search_fidelity.py oneshot
	$(BIN)/python benchmarks/report.py

# Which search to use: the DPC ground-truth table (1,051 proxy trials on the demo's data, the rankers' scores; hours on
# 2 CPU cores, resumable; skipped when benchmarks/data/dpc-synthetic-proxy.json.gz is there), then every registered
# sampler measured on it and on the public tables of ../shared/tables (TABLES=... for others): one worker without noise
# and the predictor's one-worker variants (tuning seeds); the predictor's many-worker variants at W = 8 with noise
# (tuning seeds); the recipes' sampler at W = 1, 8 and 32 with and without noise, and every sampler at W = 8 with noise
# (held-out seeds, which choose nothing); then what a proposal costs at 1,000 to 28,000 completed trials.
# BENCHMARKS.md section "Which search to use" is written from their JSON. Not in CI; several hours on 2 cores.
TABLES ?= benchmarks/data/dpc-synthetic-proxy.json.gz $(wildcard ../shared/tables/*.json.gz)
EFFICIENCY = $(BIN)/python benchmarks/search_efficiency.py
VARIANTS = --variant predictor:refit=0 --variant predictor:acquisition=ei --variant predictor:model=forest \
  --variant predictor:candidates=0 --variant predictor:candidates=500
MANY = --variant predictor:pending=ignore --variant predictor:pending=liar --variant predictor:costs=true \
  --variant predictor:acquisition=its
HELD = --seed-set held-out --budget 150
table: $(STAMP)
	@test -f benchmarks/data/dpc-synthetic-proxy.json.gz || { $(BIN)/python benchmarks/search_table.py build && \
	  $(BIN)/python benchmarks/search_table.py rank && $(BIN)/python benchmarks/search_table.py export; }
	for t in $(TABLES); do n=$$(basename $$t .json.gz); \
	  $(EFFICIENCY) --table $$t --seeds 30 --budget 500 && \
	  $(EFFICIENCY) --table $$t --seeds 30 --budget 100 --sampler predictor $(VARIANTS) --name search_variants_$$n && \
	  $(EFFICIENCY) --table $$t --seeds 30 --budget 150 --workers 8 --noise --sampler predictor $(MANY) \
	    --name search_tuning_$${n}_w8_noise && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 50 --workers 8 --noise --sampler predictor --sampler random && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 50 --workers 1 --noise --sampler predictor && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 50 --workers 32 --noise --sampler predictor && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 30 --workers 1 --sampler predictor && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 30 --workers 8 --sampler predictor && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 30 --workers 32 --sampler predictor && \
	  $(EFFICIENCY) --table $$t $(HELD) --seeds 30 --workers 8 --noise --sampler vizier --sampler evolution \
	    --sampler local-search --sampler tpe --name search_efficiency_$${n}_w8_noise_held-out_others || exit 1; done
	$(BIN)/python benchmarks/search_overhead.py
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build docs/_generated
