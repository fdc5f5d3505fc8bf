# Alpha Panda: `make run` starts the whole system on embedded defaults; `make test` runs every test.
# The interpreter .venv is built from: see scripts/pick-python.sh (run once, when needed).
ifeq ($(origin PYTHON), undefined)
PYTHON = $(eval PYTHON := $$(shell sh scripts/pick-python.sh))$(PYTHON)
endif
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test unit bench system-deps lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# foreground.py: Ctrl-C reaches Alpha Panda alone, so make exits with its status (0 on a
# clean stop) instead of dying of the SIGINT itself ("make: *** Interrupt", 130)
run: $(STAMP)
	$(BIN)/python scripts/foreground.py $(BIN)/alpha-panda run $(ARGS)

system-deps:
	bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/kafka_pipeline.py
	$(BIN)/python bench/log.py
	$(BIN)/python bench/feed.py

lint: $(STAMP)
	$(BIN)/ruff check alpha_panda tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
