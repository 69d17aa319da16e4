# The two commands of the quick start (`make up`, `make test`) and the venv they share.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The aggregator's hot path compiled with mypyc (`aggregator.compiled`), rebuilt when a
# source of it changes; without it the same sources run interpreted.
HOT_PATH := $(addprefix src/aggregator/,sharded.py marker_index.py markers.py fold.py processing.py compiled.py)
COMPILED := src/aggregator/compiled-sources.json

.PHONY: up down test lint bench

$(INSTALLED): pyproject.toml setup.py src/aggregator/bigday.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

$(COMPILED): $(INSTALLED) $(HOT_PATH)
	$(BIN)/python -m aggregator.compiled --quiet

up: $(COMPILED)
	$(BIN)/meterflow up

down: $(INSTALLED)
	$(BIN)/meterflow down

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(COMPILED)
	$(BIN)/pytest

bench: $(COMPILED)
	$(BIN)/python -m bench.run
