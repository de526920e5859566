#!/usr/bin/env bash
# Best effort: make headless Chromium available for the report test (tests/test_results_report.py opens the
# report of a 1,000-model database in it through playwright, which downloads no browser). Running uebench never
# needs it. Installs Debian's `chromium` as root when missing; otherwise prints one line saying why not and exits 0
# (the test then skips with the reason).
set -uo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: not installed and cannot install it here (needs root and apt-get); the report browser test will skip"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    if ! apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
        echo "chromium: apt-get install chromium failed; the report browser test will skip"
        exit 0
    fi
fi
echo "chromium: installed $(chromium --version 2>/dev/null)"
