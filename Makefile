# Two commands: `make run` serves on the embedded defaults, `make test` runs every check and test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench simulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.env:
	$(PYTHON) scripts/init_env.py .env

run: $(STAMP) .env
	$(BIN)/systeme-flow serve

simulator: $(STAMP)
	$(BIN)/systeme-flow simulator --port 9000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.drain
	$(BIN)/python -m bench.drain --limit 400 --window 10 --workers 2
	$(BIN)/python -m bench.rules
	$(BIN)/python -m bench.hostile

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
