# `make repro` and `make test` work on a fresh machine: they build .venv from requirements.txt (and the
# documentation and test tools of requirements-dev.txt) first.
# With GPU=1 (`make repro GPU=1`) .venv gets the GPU build instead: requirements-gpu.txt's TensorFlow
# and every other line of requirements.txt. Switching between the two rebuilds .venv from scratch
# (tensorflow-cpu and tensorflow are one package under two names and must not meet in one venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium
GPU ?=
ifeq ($(GPU),)
STAMP := $(BIN)/.installed
OTHER_STAMP := $(BIN)/.installed-gpu
REQUIREMENTS := requirements.txt
else
STAMP := $(BIN)/.installed-gpu
OTHER_STAMP := $(BIN)/.installed
REQUIREMENTS := requirements.txt requirements-gpu.txt
endif

.PHONY: repro test serve mutation docs

$(STAMP): $(REQUIREMENTS) requirements-dev.txt
	if [ -e $(OTHER_STAMP) ]; then rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(GPU),)
	$(BIN)/python -m pip install --quiet -r requirements.txt
else
	grep -v '^tensorflow-cpu==' requirements.txt | $(BIN)/python -m pip install --quiet -r /dev/stdin -r requirements-gpu.txt
endif
	grep -v '^-r ' requirements-dev.txt | $(BIN)/python -m pip install --quiet -r /dev/stdin  # requirements.txt is in
	touch $@

repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" dvc repro

serve: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" python -m pipeline serve

# Two pytest-xdist workers, a test file each at a time (a file's tests share its fixtures); conftest builds the
# shared DVC project once for both. Measured on 2 cores: BENCHMARKS.md, "The test suite".
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

# The documentation site from docs/ and mkdocs.yml into site/ (tests/test_docs.py builds it with --strict).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# tests/test_plots_page.py and tests/test_web.py render pages in Debian's Chromium (Playwright drives it;
# `playwright install` is never needed). Installing it needs root:
# as root this installs it once; otherwise it says what to run, and only that test fails.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	else \
		echo "$(CHROMIUM) is missing: tests/test_plots_page.py and tests/test_web.py need it (sudo apt-get install chromium)" >&2; \
	fi

# Mutation testing of metrics, stats, knn, split, the image reader and params, each mutant under the fast unit
# tests that call its function (config: [tool.mutmut] in pyproject.toml); not part of `make test`. Scores and the
# equivalent survivors: BENCHMARKS.md. On a busy shared machine, `mutmut run --max-children 1`.
mutation: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" mutmut run --max-children 2; PATH="$(abspath $(BIN)):$$PATH" mutmut results
