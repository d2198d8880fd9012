# Two entry points for a fresh machine: `make quickstart` (train) and `make test` (checks).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install data quickstart test test-fast test-gpu docs lint benchmark gpu-kit

# Python byte-compiles each module when it is first imported and keeps it (in __pycache__), even
# where the shell sets PYTHONDONTWRITEBYTECODE: that compiles the quarter of the environment's
# 20,000 files that the commands and tests import, where pip (or compileall) would compile them all.
export PYTHONDONTWRITEBYTECODE :=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST from the Debian/Ubuntu package when we can install it; otherwise train.py
# downloads the official files (MD5-verified) into data/fashion-mnist on first use.
data:
	@if [ -f $(FMNIST) ]; then echo "Fashion-MNIST: $(dir $(FMNIST))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST will be downloaded to data/fashion-mnist on first use"; fi

quickstart: install data
	$(BIN)/python train.py

lint: install
	$(BIN)/ruff check .

# The docs site, strict: a broken link or anchor, or a docs page missing from mkdocs.yml's nav, fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# pytest-xdist workers: one per core of the 2-core CI machine (docs/contributing.md).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup

# Every tier (what CI runs, via .ci/run); gpu tests skip without CUDA. The suite builds the docs
# site strictly (tests/test_docs_site.py).
test: install data lint
	$(BIN)/python -m pytest $(XDIST) --durations=30

# The unit tier: no training runs, browser, PostgreSQL server or GPU (see docs/contributing.md).
test-fast: install
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not browser and not postgres and not gpu"

test-gpu: install data
	$(BIN)/python -m pytest -m gpu

benchmark: install data
	$(BIN)/python benchmarks/train_overhead.py

# Everything a lent GPU machine lacks, into gpu_kit/ (needs the network; docs/gpu_session.md), then there:
# bash benchmarks/gpu_session.sh OUTDIR
gpu-kit: install data
	$(BIN)/python benchmarks/gpu_kit.py
