#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, build, and
# all unit and integration tests. The integration tests start throwaway
# PostgreSQL 15 clusters and the debug pgvigil binary (target/debug/pgvigil).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="/usr/lib/postgresql/15/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

"$ROOT/scripts/ensure-postgres.sh"
"$ROOT/scripts/ensure-test-tools.sh"
"$ROOT/scripts/ensure-browser.sh"

# The Python drivers the integration tests use go into a virtual
# environment under target/, never into the system's Python.
VENV="$ROOT/target/python-venv"
step "python drivers for the integration tests (tests/python/requirements.txt, into $VENV)"
if [ ! -x "$VENV/bin/python3" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export PGVIGIL_PYTHON="$VENV/bin/python3"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace"
cargo build --workspace

step "cargo test --workspace"
cargo test --workspace --no-fail-fast
