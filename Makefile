# The two set-up commands: `make demo` and `make test`. Each creates .venv with pip when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "densecell needs Python >= 3.11"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/densecell space
	$(BIN)/densecell cell show cityscapes-top1
	$(BIN)/densecell cost --paper-table
	$(BIN)/densecell cost --backbone xception71 --head dpc --image-size 1025x2049
	$(BIN)/densecell export runs/demo/mobilenetv2-dpc-cityscapes-top1.onnx --backbone mobilenetv2_100 --head dpc --cell cityscapes-top1 --image-size 513x513

clean:
	rm -rf $(VENV) runs .pytest_cache
