# `make repro` and `make test` work on a fresh machine: they build .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium

.PHONY: repro test serve mutation

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

repro: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" dvc repro

serve: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m pipeline serve

test: $(BIN)/.installed $(CHROMIUM)
	$(BIN)/python -m pytest -q tests

# tests/test_plots_page.py and tests/test_web.py render pages in Debian's Chromium (Playwright drives it;
# `playwright install` is never needed). Installing it needs root:
# as root this installs it once; otherwise it says what to run, and only that test fails.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	else \
		echo "$(CHROMIUM) is missing: tests/test_plots_page.py and tests/test_web.py need it (sudo apt-get install chromium)" >&2; \
	fi

# Mutation testing of pipeline/analysis/metrics.py and stats.py under tests/test_metrics.py and
# tests/test_stats.py (config: [tool.mutmut] in pyproject.toml); not part of `make test`. Scores: BENCHMARKS.md.
$(BIN)/.dev-installed: $(BIN)/.installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

mutation: $(BIN)/.dev-installed
	PATH="$(abspath $(BIN)):$$PATH" mutmut run --max-children 2; PATH="$(abspath $(BIN)):$$PATH" mutmut results
