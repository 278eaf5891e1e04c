# Two commands do all set-up on a fresh machine (Python 3.11 + pip): `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
comma  := ,

.PHONY: demo test lint services venv clean lambda-zip

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev,demo,stac-servers]'
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
	$(BIN)/pytest -q -n 3

# The Lambda deployment zip: `make lambda-zip PLATFORM=aarch64 EXTRAS=inventory,stac`.
PLATFORM ?= x86_64
EXTRAS   ?=
lambda-zip: $(STAMP)
	$(BIN)/cirrus-feed package --platform $(PLATFORM) --extras '$(EXTRAS)' \
		--output dist/cirrus-feed-lambda-$(PLATFORM)$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS))).zip

clean:
	rm -rf $(VENV) var dist .pytest_cache .mypy_cache .ruff_cache
