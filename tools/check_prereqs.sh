#!/bin/sh
# What `make setup` (so `make demo` and `make test`) needs before it installs anything: Python
# (pyproject.toml's requires-python) with its venv module, Node (package.json's engines.node), npm
# and make. Each problem names the tool, the version found, the version needed and how to get it;
# the exit code is 1 when there is any. When all is well it prints one line.
#
# POSIX sh on purpose: it has to run where python3 is missing or too old to run this project.
#
#   sh tools/check_prereqs.sh [PYTHON]
#
# PYTHON defaults to $PY, then python3 (the Makefile passes its PY). NODE, NPM and MAKE name the
# other commands (default node, npm, make); the tests point them at fakes.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-${PY:-python3}}
NODE=${NODE:-node}
NPM=${NPM:-npm}
MAKE_CMD=${MAKE:-make}

# The versions needed come from the files that pin them, so they cannot drift from this check.
PY_NEEDED=$(sed -n 's/^requires-python *= *">= *\([0-9.]*\)".*/\1/p' "$ROOT/pyproject.toml" | head -n 1)
NODE_NEEDED=$(sed -n 's/^ *"node" *: *">= *\([0-9.]*\)".*/\1/p' "$ROOT/package.json" | head -n 1)
PY_NEEDED=${PY_NEEDED:-3.11}
NODE_NEEDED=${NODE_NEEDED:-20}
NPM_NEEDED=7  # package-lock.json is lockfileVersion 3, which npm reads from version 7

case $(uname -s 2>/dev/null) in
    Darwin) OS=macos ;;
    *) OS=other ;;
esac

problems=0
report=""

# version_ge FOUND NEEDED: true when dotted version FOUND >= NEEDED (missing parts count as 0).
version_ge() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, "."); n = split(b, y, ".")
        for (i = 1; i <= n; i++) { if (x[i] + 0 > y[i] + 0) exit 0; if (x[i] + 0 < y[i] + 0) exit 1 }
        exit 0 }'
}

# The first dotted number in the text, e.g. "v18.19.0" -> 18.19.0, "GNU Make 4.3" -> 4.3.
first_version() {
    sed -n 's/[^0-9]*\([0-9][0-9]*\(\.[0-9][0-9]*\)*\).*/\1/p' | head -n 1
}

problem() {  # problem TOOL WHAT HOW
    problems=$((problems + 1))
    report="$report
  $1: $2
      how to get it: $3"
}

# --- Python -------------------------------------------------------------------------------
if [ "$OS" = macos ]; then
    py_how="brew install python@3.12 (or the installer from https://www.python.org/downloads/)"
else
    py_how="your distribution's python3.11 or newer (Ubuntu 22.04: sudo apt-get install python3.11 python3.11-venv), pyenv, or https://www.python.org/downloads/"
fi
py_version=""
if command -v "$PY" >/dev/null 2>&1; then
    # %-formatting and no f-string: this line has to run on any Python, even Python 2.
    py_version=$("$PY" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null | first_version)
fi
if [ -z "$py_version" ]; then
    problem "Python" "$PY not found (or it does not run); needs Python $PY_NEEDED or newer" "$py_how"
elif ! version_ge "$py_version" "$PY_NEEDED"; then
    how="$py_how"
    # A newer Python may already be installed under another name: say which, and how to use it.
    for candidate in python3.14 python3.13 python3.12 python3.11; do
        v=$("$candidate" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null | first_version)
        if [ -n "$v" ] && version_ge "$v" "$PY_NEEDED"; then
            how="$candidate ($v) is already installed: run make with PY=$candidate (e.g. make demo PY=$candidate)"
            break
        fi
    done
    problem "Python" "found $py_version ($PY), needs $PY_NEEDED or newer" "$how"
elif [ ! -x "$ROOT/.venv/bin/python" ] && ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's pip bootstrap as a separate package; `python3 -m venv` then fails.
    minor=$(echo "$py_version" | cut -d. -f1,2)
    problem "Python venv module" "found Python $py_version ($PY) without venv/ensurepip; needs a Python $PY_NEEDED+ that can create a virtual environment" \
        "sudo apt-get install python$minor-venv (Debian/Ubuntu), or a Python from https://www.python.org/downloads/"
fi

# --- Node and npm -------------------------------------------------------------------------
if [ "$OS" = macos ]; then
    node_how="brew install node@$NODE_NEEDED (or the installer from https://nodejs.org/)"
else
    node_how="https://nodejs.org/en/download (binaries, or nvm: nvm install $NODE_NEEDED), or NodeSource's packages; Debian 12's nodejs package is 18, too old"
fi
node_version=""
if command -v "$NODE" >/dev/null 2>&1; then
    node_version=$("$NODE" --version 2>/dev/null | first_version)
fi
if [ -z "$node_version" ]; then
    problem "Node" "$NODE not found; needs Node $NODE_NEEDED or newer (it runs Azurite and Kusto.Language)" "$node_how"
elif ! version_ge "$node_version" "$NODE_NEEDED"; then
    problem "Node" "found $node_version ($NODE), needs $NODE_NEEDED or newer (for Azurite and Kusto.Language)" "$node_how"
fi

npm_version=""
if command -v "$NPM" >/dev/null 2>&1; then
    npm_version=$("$NPM" --version 2>/dev/null | first_version)
fi
npm_how="npm comes with Node from nodejs.org, brew and nvm; Debian/Ubuntu package it apart: sudo apt-get install npm"
if [ -z "$npm_version" ]; then
    problem "npm" "$NPM not found; needs npm $NPM_NEEDED or newer" "$npm_how"
elif ! version_ge "$npm_version" "$NPM_NEEDED"; then
    problem "npm" "found $npm_version ($NPM), needs $NPM_NEEDED or newer" "npm install -g npm@latest, or a newer Node (it brings its npm)"
fi

# --- make ---------------------------------------------------------------------------------
make_version=""
if command -v "$MAKE_CMD" >/dev/null 2>&1; then
    make_version=$("$MAKE_CMD" --version 2>/dev/null | head -n 1 | first_version)
fi
if [ -z "$make_version" ]; then
    if [ "$OS" = macos ]; then make_how="xcode-select --install"; else make_how="sudo apt-get install make (dnf install make, ...)"; fi
    problem "make" "$MAKE_CMD not found (or not GNU make); needs GNU make, any version" "$make_how"
fi

if [ "$problems" -gt 0 ]; then
    echo "The set-up needs these first:$report" >&2
    echo "Then run the same make command again. (README: Troubleshooting the first run.)" >&2
    exit 1
fi
echo "Prerequisites: Python $py_version ($PY), Node $node_version, npm $npm_version, make $make_version"
