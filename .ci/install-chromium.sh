#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its matching chromedriver when either is missing
# (the browser test, tests/browser/, drives the Dagster and MLflow UIs with them). Idempotent: a
# machine that has both only prints their versions. Needs root (CI runs as root) and Debian's
# package mirrors; nothing else is downloaded (Selenium is pointed at /usr/bin/chromedriver).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have chromium && have chromedriver; then
    echo "chromium and chromedriver already installed"
else
    if [ "$(id -u)" -ne 0 ]; then
        echo "The browser test needs Chromium and ChromeDriver, which are missing, and installing" >&2
        echo "them needs root. Run this once, then run the tests again:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# `chromium --version` goes through Debian's wrapper script; ask the binary directly.
/usr/lib/chromium/chromium --version 2>/dev/null || chromium --version
chromedriver --version
