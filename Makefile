# takhin-ws: the two commands of the README are `make run` and `make test`.
#
# One virtualenv, installed in layers, each with its own stamp: `make run` installs only
# what running needs (the package and its dependencies); `make test` adds the test and
# lint tools and the optional extras the suite drives (redis, kafka, asgi).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
#: the package and what it needs at run time
RUN_STAMP := $(VENV)/.installed-run
#: everything `make test` uses (the name other tools and the docs refer to)
STAMP := $(VENV)/.installed
TEST_EXTRAS := dev,redis,kafka,asgi

.PHONY: run test lint typecheck unit bench mutation docs clean

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PIP) install -e '.[$(TEST_EXTRAS)]'
	touch $@

run: $(RUN_STAMP)
	$(BIN)/python -m takhin_ws $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(PIP) install -e '.[bench]'
	$(BIN)/python -m benchmarks $(ARGS)

# mutation testing of the core modules, each against its own tests (slow: not part of
# `make test`); ARGS: module names, --keep (see docs/contributing.md)
mutation: $(STAMP)
	$(PIP) install -e '.[mutation]'
	$(BIN)/python tools/mutation.py $(ARGS)

# docs/reference.md from the code: run it after changing a message, a setting, a public
# name or a /metrics family (tests/test_reference.py fails while the page is stale);
# the test layer: the page documents KafkaSource, which needs the kafka extra
docs: $(STAMP)
	$(BIN)/python tools/gen_reference.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .mutation
