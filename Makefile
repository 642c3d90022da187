# Two commands do everything on a fresh machine (see README):
#   make demo   set up, start Azurite, sweep the bundled sample tenant, stop Azurite
#   make test   set up, run the whole test suite
# Set-up is idempotent: it creates .venv and node_modules only when missing or stale.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test lint bench clean

setup: $(STAMP) node_modules/.installed browser

# Headless Chromium (Debian's `chromium`) for the HTML report's browser test; a no-op when present.
browser:
	bash tools/install_chromium.sh

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/python -m grading demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .demo
