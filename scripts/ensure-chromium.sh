#!/usr/bin/env bash
# The report's HTML test opens the page in headless Chromium: install Debian's package when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (apt-get) for the HTML report test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
else
    echo "setup: chromium is missing and this user cannot apt-get it; tests/test_report.py's HTML test will fail" >&2
fi
