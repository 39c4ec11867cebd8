# Two commands set up a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment .venv on first use. torch==2.13.0 is installed
# before anything that depends on it when the environment has no torch yet, so pip
# does not pull a second, CUDA-sized build on a CPU machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scmint-installed
TORCH ?= torch==2.13.0
DEMO_OUT ?= demo_output

# pytest-xdist workers (each gets cores / workers torch threads; see tests/conftest.py).
# Files stay whole on one worker (--dist loadfile), so module fixtures are built once.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

NEWEST ?= .venv-newest
# The tests run a second time against the newest pandas, numpy and anndata on the
# registry: laid over .venv with `pip --target` (no dependency resolution, since anndata
# 0.12 still declares pandas<3), as on a GPU server whose image already ships pandas 3.
# The approximate-neighbour tests (SCMINT_SLOW_TESTS) run once, in `make test`.

.PHONY: install demo test test-newest lint docs benchmark clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scmint demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

# `make test` also runs the tests of the approximate-neighbour paths (pynndescent compiles
# for about a minute per process); plain `pytest` skips them unless SCMINT_SLOW_TESTS=1.
test: lint
	SCMINT_SLOW_TESTS=1 $(PYTEST)

$(NEWEST)/.installed: $(STAMP)
	rm -rf $(NEWEST)
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target $(NEWEST) pandas numpy anndata
	touch $@

test-newest: $(NEWEST)/.installed
	PYTHONPATH=$(NEWEST) $(PYTEST) -p no:cacheprovider

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py --help

clean:
	rm -rf $(VENV) $(NEWEST) docs/_build $(DEMO_OUT)
