# Two commands do everything on a fresh machine (see README):
#   make demo   set up, start Azurite, sweep the bundled sample tenant, stop Azurite
#               (needs only Python 3.11+, Node 20+ and make)
#   make test   set up, install Chromium if missing, run the whole test suite
# Set-up is idempotent: it checks the prerequisites, then creates .venv and node_modules only when
# missing or stale. Chromium is for the report's browser test only (`make browser`), never the demo.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup prereqs browser demo test lint bench clean

setup: prereqs $(STAMP) node_modules/.installed

# Names each missing or too-old tool with the version found and needed, and how to get it.
prereqs:
	@sh tools/check_prereqs.sh "$(PY)"

# Headless Chromium (Debian's `chromium`) for the HTML report's browser test; a no-op when present.
browser:
	@bash tools/install_chromium.sh

# pip's own output goes to a log (shown when it fails), so set-up prints what it installs, not a page.
$(STAMP): pyproject.toml requirements.txt | prereqs
	@echo "Installing the Python packages (pyproject.toml) into $(VENV); log: $(VENV)/pip.log"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } \
		> $(VENV)/pip.log 2>&1 || { tail -n 30 $(VENV)/pip.log >&2; \
		echo "error: pip install failed; full log: $(VENV)/pip.log (README: Troubleshooting the first run)" >&2; \
		exit 1; }
	@touch $@

node_modules/.installed: package.json package-lock.json | prereqs
	@echo "Installing the Node tools (Azurite, Kusto.Language; package-lock.json) into node_modules"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	@echo
	@$(BIN)/python -m grading demo

# Two pytest-xdist workers, a test file each at a time (--dist loadfile: a file's module fixtures, its
# simulated tenants, are built once); each worker starts and stops its own Azurite on free ports.
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.steady_state

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .demo
