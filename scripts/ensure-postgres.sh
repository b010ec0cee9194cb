#!/usr/bin/env bash
# Installs PostgreSQL 15 (server, client with psql and pgbench, contrib) from
# Debian's packages when it is missing. Idempotent; safe to run every time.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

have_postgres() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ] &&
        [ -x "$PG_BIN/psql" ] && [ -x "$PG_BIN/pgbench" ]
}

# hypopg (hypothetical indexes) lets the advisor measure an index before
# anyone builds it; its integration tests need it.
have_hypopg() {
    [ -f /usr/share/postgresql/15/extension/hypopg.control ]
}

if have_postgres && have_hypopg; then
    exit 0
fi

echo "PostgreSQL 15 (with hypopg) not found under $PG_BIN; installing it with apt-get" >&2

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "error: PostgreSQL 15 is missing and installing it needs root (or sudo):" >&2
        echo "  apt-get install postgresql-15 postgresql-client-15 postgresql-contrib postgresql-15-hypopg" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    postgresql-15 postgresql-client-15 postgresql-contrib postgresql-15-hypopg

# The Debian package may create and start a default cluster; nothing here uses
# it (the demo and the tests make their own throwaway clusters), so make sure
# it is not left running.
if command -v pg_lsclusters >/dev/null 2>&1 &&
    pg_lsclusters --no-header 2>/dev/null | awk '$1 == "15" && $2 == "main" && $4 == "online" { f = 1 } END { exit !f }'; then
    "${SUDO[@]}" pg_ctlcluster 15 main stop || true
fi

if ! have_postgres; then
    echo "error: PostgreSQL 15 still incomplete under $PG_BIN after apt-get install" >&2
    exit 1
fi
