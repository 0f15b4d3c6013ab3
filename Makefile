# Two commands: `make run` serves on the embedded defaults, `make test` runs every check and test.
# The tests' services: TEST_REDIS_URL (a database they flush), TEST_POSTGRES_URL, TEST_DB_PREFIX, e.g.
#   make test TEST_REDIS_URL=redis://127.0.0.1:6379/13 TEST_DB_PREFIX=sf_mine_
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every dependency's version is pinned here (the image installs the same); `make constraints` renews it.
CONSTRAINTS := constraints.txt
PIN_VENV := .pin-venv
# Dependencies of dependencies that only some Pythons install (redis wants async-timeout below 3.11.3, as in
# Debian 12): pinned as well, so an image on such a base gets a pinned version too.
PIN_ALSO := async-timeout

.PHONY: run test lint bench chaos simulator constraints clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

.env:
	$(PYTHON) scripts/init_env.py .env

# `make run PORT=8001` when 8000 is taken.
PORT ?= 8000
run: $(STAMP) .env
	$(BIN)/systeme-flow serve --port $(PORT)

# `make simulator SIM_PORT=9001` when 9000 is taken (then SYSTEME_API_URL=http://127.0.0.1:9001).
SIM_PORT ?= 9000
simulator: $(STAMP)
	$(BIN)/systeme-flow simulator --port $(SIM_PORT) --api-key dev-key

# The docs build is strict (mkdocs.yml): a broken link, a missing anchor or a page left out of the nav fails it.
# Not --quiet: it hides the warnings that strict mode counts, and the build then passes whatever is broken.
# NO_MKDOCS_2_WARNING silences Material's banner about its end of life (May 2027).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: lint
	$(BIN)/pytest

# bench.launch twice: both mirrors and a second account (issue 20), then the launch as before it (a run sleeping in
# its worker slot on its account's quota: the second account's buyers wait behind the burst).
bench: $(STAMP)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.drain
	$(BIN)/python -m bench.drain --limit 400 --window 10 --workers 2
	$(BIN)/python -m bench.rules
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.payments
	$(BIN)/python -m bench.launch
	$(BIN)/python -m bench.launch --mirror complete --slot-wait 65

# Several replicas and workers, each part killed under load (bench/chaos.py): not in `make bench`, it takes minutes
# and starts its own PostgreSQL and Redis. `make chaos EVENTS=600 MINUTES=2 CHAOS_ARGS=--baseline` for a shorter one.
EVENTS ?= 2000
MINUTES ?= 4
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --events $(EVENTS) --minutes $(MINUTES) $(CHAOS_ARGS)

# After changing a dependency in pyproject.toml: the newest versions that fit, installed in a clean venv, frozen.
constraints:
	rm -rf $(PIN_VENV)
	$(PYTHON) -m venv $(PIN_VENV)
	$(PIN_VENV)/bin/pip install --quiet --upgrade pip
	$(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > $(PIN_VENV)/requirements.in
	echo $(PIN_ALSO) >> $(PIN_VENV)/requirements.in
	$(PIN_VENV)/bin/pip install --quiet -r $(PIN_VENV)/requirements.in
	{ echo "# Pinned versions of every dependency, runtime and dev (pip install -c $(CONSTRAINTS) ...)."; \
	  echo "# Written by \`make constraints\` from pyproject.toml; do not edit by hand."; \
	  $(PIN_VENV)/bin/pip freeze; } > $(CONSTRAINTS)
	rm -rf $(PIN_VENV)

clean:
	rm -rf $(VENV) $(PIN_VENV) var site .pytest_cache .mypy_cache .ruff_cache
