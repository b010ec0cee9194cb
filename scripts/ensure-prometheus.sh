#!/usr/bin/env bash
# Installs Prometheus (and with it promtool) from Debian's packages when
# promtool is missing: the alert-rule and metrics tests run the real tools.
# Idempotent; safe to run every time.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

echo "prometheus/promtool not found; installing Debian's prometheus package" >&2

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "error: promtool is missing and installing it needs root (or sudo):" >&2
        echo "  apt-get install --no-install-recommends prometheus" >&2
        exit 1
    fi
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus

# The package may start a Prometheus server; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl stop prometheus 2>/dev/null || true
fi
if pid=$(pgrep -x prometheus -u prometheus 2>/dev/null); then
    "${SUDO[@]}" kill $pid 2>/dev/null || true
fi
