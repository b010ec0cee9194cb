#!/usr/bin/env bash
# pgvigil demo: makes sure PostgreSQL 15 is installed (scripts/ensure-postgres.sh,
# apt-get as root or with sudo), then runs `pgvigil demo`: a throwaway cluster,
# pgvigil in front of it and a shop's workload, with the dashboard to watch,
# until Ctrl-C, which removes everything.
#
# Arguments go to the subcommand, e.g. for CI:
#   scripts/demo.sh --duration 60 --print-summary
# pgvigil is built in release mode (the workload's few hundred clients are
# meant for an optimized build), unless PGVIGIL_BIN names a binary to run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$ROOT/scripts/ensure-postgres.sh"

if [ -n "${PGVIGIL_BIN:-}" ]; then
    exec "$PGVIGIL_BIN" demo "$@"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "demo: cargo is required to build pgvigil (https://rustup.rs)" >&2
    exit 1
fi
cd "$ROOT"
exec cargo run --release --quiet -p pgvigil -- demo "$@"
