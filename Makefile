# `make repro` and `make test` work on a fresh machine: they build .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: repro test

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

repro: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" dvc repro

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q tests
