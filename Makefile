# Two entry points for a fresh machine: `make demo` (the notebook's workflow, offline)
# and `make test` (everything CI runs). Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the CLI's and embedlab.open()'s default store too: `embedlab stats` reads it
STORE ?= ./embedlab-store
ARCHIVE := ../shared/data/20news-bydate.tar.gz
# Offline machines pass the archive; elsewhere scikit-learn downloads the corpus.
SOURCE := $(if $(wildcard $(ARCHIVE)),--source $(ARCHIVE),)
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first, so sentence-transformers does not pull CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/embedlab --store $(STORE) demo --provider local $(SOURCE) --out ./demo-report

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p build/mypy && ln -sfn ../.. build/mypy/embedlab
	$(BIN)/mypy

# Two workers (pytest-xdist): the suite waits on child processes, servers, browsers and
# fake latencies as much as it computes, so two cores run it in about half the time.
test: lint
	$(BIN)/pytest -q -n 2 --dist worksteal

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/analyze.py
	$(BIN)/python bench/neighbors.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/damage.py
	$(BIN)/python bench/encodings.py
	$(BIN)/python bench/scale.py
