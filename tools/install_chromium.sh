#!/usr/bin/env bash
# Headless Chromium for the HTML report's browser test (tests/test_report.py): Debian's `chromium`
# package, installed with apt-get when no Chromium is on PATH (a no-op otherwise). `make setup` runs it.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: Chromium is missing and apt-get is not available; install Chromium with your package manager" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
