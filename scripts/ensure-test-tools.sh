#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real when missing:
# prometheus (with promtool) for the metrics and alert-rule tests, tmux for
# the `pgvigil top` test. Idempotent; safe to run every time.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "installing Debian packages for the tests: ${missing[*]}" >&2

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "error: installing ${missing[*]} needs root (or sudo):" >&2
        echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# The prometheus package may start a server; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl stop prometheus 2>/dev/null || true
fi
if pid=$(pgrep -x prometheus -u prometheus 2>/dev/null); then
    "${SUDO[@]}" kill $pid 2>/dev/null || true
fi
