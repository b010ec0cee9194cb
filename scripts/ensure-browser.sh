#!/usr/bin/env bash
# Installs what the web dashboard's browser test (tests/tests/dashboard.rs)
# needs: Debian's chromium at /usr/bin/chromium and tests/e2e/node_modules
# (playwright-core from the npm registry, pinned by package-lock.json; it
# drives the system chromium and downloads no browser of its own).
# Idempotent; safe to run every time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SUDO=()
need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "error: $1 is missing and installing it needs root (or sudo):" >&2
            echo "  $2" >&2
            exit 1
        fi
    fi
}

packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

if [ "${#packages[@]}" -gt 0 ]; then
    echo "installing ${packages[*]} with apt-get (for the dashboard browser test)" >&2
    need_root "${packages[*]}" "apt-get install -y --no-install-recommends ${packages[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "error: /usr/bin/chromium still missing after apt-get install chromium" >&2
    exit 1
fi

if [ ! -d "$ROOT/tests/e2e/node_modules/playwright-core" ]; then
    echo "installing tests/e2e/node_modules (npm ci)" >&2
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$ROOT/tests/e2e" --no-audit --no-fund
fi
