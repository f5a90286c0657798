# The two set-up commands: `make demo` and `make test`. Each creates .venv with pip when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench fidelity table install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "densecell needs Python >= 3.11"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q --durations=15

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
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/proxy_throughput.py
	$(BIN)/python benchmarks/search_scaling.py
	$(BIN)/python benchmarks/peer_models.py
	$(BIN)/python benchmarks/dpc_vs_aspp.py
	$(BIN)/python benchmarks/memory.py
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

# The ground-truth table of benchmarks/search_efficiency.py (1,051 proxy trials on the demo's data, the rankers'
# scores), then the strategies simulated on it; resumable. Hours on 2 CPU cores; not part of make bench or CI.
table: $(STAMP)
	$(BIN)/python benchmarks/search_table.py build
	$(BIN)/python benchmarks/search_table.py rank
	$(BIN)/python benchmarks/search_table.py export
	$(BIN)/python benchmarks/search_efficiency.py
	$(BIN)/python benchmarks/search_efficiency.py --seeds 20 --seed-offset 1000
	$(BIN)/python benchmarks/search_efficiency.py --seeds 20 --seed-offset 2000
	$(BIN)/python benchmarks/search_efficiency.py --candidate-steps 30000
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) runs .pytest_cache
