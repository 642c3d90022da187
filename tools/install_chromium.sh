#!/usr/bin/env bash
# Headless Chromium for the HTML report's browser test (tests/test_report.py) and for nothing else:
# `make test` runs this (`make browser` alone); `make demo` never does, the demo opens no browser.
# A no-op when a Chromium is on PATH (`chromium`, `chromium-browser`) or $CHROMIUM names one;
# otherwise Debian's `chromium` package with apt-get (sudo when not root), or, where apt-get is
# missing, how to get Chromium on this system.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ]; then
    if [ -x "$CHROMIUM" ]; then
        exit 0
    fi
    echo "error: CHROMIUM=$CHROMIUM is not an executable file; point it at a Chromium or Chrome binary" >&2
    exit 1
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi

manual_install() {
    cat >&2 <<'EOF'
Chromium is needed by the report's browser test (make test) only; make demo does not need it.
Install it, then run make test again:
  macOS:          brew install --cask chromium
                  export CHROMIUM=/Applications/Chromium.app/Contents/MacOS/Chromium
                  (or use Google Chrome: export CHROMIUM="/Applications/Google Chrome.app/Contents/MacOS/Google Chrome")
  Fedora/RHEL:    sudo dnf install chromium
  Arch:           sudo pacman -S chromium
  openSUSE:       sudo zypper install chromium
  Alpine:         sudo apk add chromium
  Debian/Ubuntu:  sudo apt-get install chromium   (Ubuntu: chromium-browser, or the snap)
Any Chromium or Chrome will do: have it on PATH as `chromium`, or set CHROMIUM to its binary.
EOF
}

if ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium is missing and apt-get is not available on this system." >&2
    manual_install
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "Chromium is missing, and installing it with apt-get needs root (there is no sudo here)." >&2
        manual_install
        exit 1
    fi
    SUDO=(sudo)
    echo "Installing Chromium for the report's browser test with sudo apt-get (sudo may ask for your password;"
    echo "press Ctrl-C to skip and install it yourself: README, Troubleshooting the first run)."
else
    echo "Installing Chromium (Debian's chromium package) for the report's browser test with apt-get"
fi
"${SUDO[@]}" apt-get update -qq
# Debian names the package chromium; Ubuntu only has chromium-browser (which installs the snap).
PACKAGE=chromium
if ! apt-cache show chromium >/dev/null 2>&1 && apt-cache show chromium-browser >/dev/null 2>&1; then
    PACKAGE=chromium-browser
fi
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PACKAGE"
