# Two entry points, each installing what it needs into .venv first:
#   make demo   the whole journey on the embedded default (SQLite, SMTP, HTTP)
#   make test   lint, types and every test, core and plugins

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := plugins/openfactura plugins/simpleboleta plugins/tuu
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck install clean bench

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/haulmer-onboarding demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict $(addsuffix /haulmer_*,$(PLUGINS)) examples/openretail/haulmer_openretail

test: lint typecheck
	$(BIN)/pytest

# Not part of test: each script prints ratios against a baseline measured in
# the same run (docs/benchmarks.md). links_http.py needs Debian's wrk.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/tokens.py
	$(BIN)/python benchmarks/signatures.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/links_http.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
