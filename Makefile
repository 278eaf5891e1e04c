# Two commands do all set-up on a fresh machine (Python 3.11 + pip): `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint services venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo,stac-servers]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/cirrus-feed demo

lint: $(STAMP)
	$(BIN)/ruff check cirrus_feed feeders tests bench
	$(BIN)/ruff format --check cirrus_feed feeders tests bench
	$(BIN)/mypy
	$(BIN)/cfn-lint deploy/*.json

# PostgreSQL + PostGIS for the pgstac test server (tests/servers/); `demo` does not need them.
services:
	bash .ci/install-services

test: lint services
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
