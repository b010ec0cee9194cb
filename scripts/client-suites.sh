#!/usr/bin/env bash
# Client libraries' own test suites through pgvigil: psycopg 3's tests,
# node-postgres's integration tests and SQLAlchemy's PostgreSQL dialect and ORM
# tests, each against PostgreSQL directly, pgvigil in session mode and pgvigil
# in transaction mode, compared test by test.
#
#   scripts/client-suites.sh [--out DIR] [--only psycopg,sqlalchemy,node]
#       [--psycopg-src DIR] [--node-postgres-src DIR] [--targets direct,session,transaction]
#       [-k EXPR] [-m EXPR] [--psycopg-tests PATHS] [--sqlalchemy-tests PATHS]
#       [--node-tests REGEX] [--suite-timeout S] [--test-timeout S] [--no-build]
#       [--session-server-lifetime S]
#
# --session-server-lifetime 0 uses each session-mode server connection once
# (PgBouncer's meaning of server_lifetime = 0): every session gets a backend,
# and a pid, of its own, as on a direct connection.
# psycopg's and node-postgres's tests live only in their source repositories
# (github.com/psycopg/psycopg, github.com/brianc/node-postgres): give the path
# of a checkout with --psycopg-src / --node-postgres-src (or $PSYCOPG_SRC /
# $NODE_POSTGRES_SRC). A suite without its source is reported as skipped and
# the others still run. SQLAlchemy's tests come with its source distribution,
# downloaded with pip at the pinned version. Nothing is copied into this
# repository; the source trees are only read (builds happen in copies under the
# temporary folder).
#
# One run:
#   1. builds pgvigil (cargo build --release -p pgvigil) unless --no-build,
#   2. creates a throwaway PostgreSQL 15 cluster on a free port (SCRAM over
#      TCP, TLS offered with a throwaway certificate, superuser role "suite",
#      one database per suite and target),
#   3. starts two pgvigil processes, session mode and transaction mode, each
#      with every database and the "suite" user configured (client_auth
#      scram-sha-256, as PostgreSQL),
#   4. for each suite and each target runs the suite (Python ones in a venv
#      under the output folder, node-postgres with npm in a copy of its
#      packages/pg), bounded by --suite-timeout, one result per test,
#   5. writes DIR/comparison.json and DIR/summary.md: per suite and mode, the
#      tests that pass directly but not through pgvigil,
#   6. removes the cluster, the pgvigil processes and the temporary folder.
# Default output: client-suites-results/<timestamp>. Not part of the CI test
# run (a full run takes well over an hour on two cores); see docs/client-suites.md.
set -euo pipefail
# One brace group: bash reads the whole script before running it.
{
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PG_BIN (on PATH), step, plain, as_pg, pg_super, pg_cluster_*, free_ports, stop_process.
. "$ROOT/scripts/lib/pgcluster.sh"
PGVIGIL="$ROOT/target/release/pgvigil"

# Pinned versions. psycopg and node-postgres are pinned by the source tree
# given (its commit is recorded in meta.json); docs/client-suites.md names the
# commit the recorded counts come from.
SQLALCHEMY_VERSION=2.0.58
PSYCOPG2_VERSION=2.9.13
PYTEST_VERSION=8.3.5
PYTEST_TIMEOUT_VERSION=2.3.1

# --- options ------------------------------------------------------------------
COMMAND="scripts/client-suites.sh${*:+ $*}"
OUT=""
ONLY=psycopg,sqlalchemy,node
TARGETS=direct,session,transaction
SESSION_SERVER_LIFETIME=""
PSYCOPG_SRC=${PSYCOPG_SRC:-}
NODE_POSTGRES_SRC=${NODE_POSTGRES_SRC:-}
K_EXPR=""
M_EXPR=""
PSYCOPG_TESTS=tests
SQLALCHEMY_TESTS="test/dialect/postgresql test/orm"
NODE_TESTS=""
# A suite that runs longer is stopped; what it reached counts, the rest is
# "not reached". One test that hangs is failed after --test-timeout.
SUITE_TIMEOUT=5400
TEST_TIMEOUT=120
BUILD=1
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --targets) TARGETS=$2; shift ;;
        --psycopg-src) PSYCOPG_SRC=$2; shift ;;
        --node-postgres-src) NODE_POSTGRES_SRC=$2; shift ;;
        -k) K_EXPR=$2; shift ;;
        -m) M_EXPR=$2; shift ;;
        --psycopg-tests) PSYCOPG_TESTS=$2; shift ;;
        --sqlalchemy-tests) SQLALCHEMY_TESTS=$2; shift ;;
        --node-tests) NODE_TESTS=$2; shift ;;
        --suite-timeout) SUITE_TIMEOUT=$2; shift ;;
        --test-timeout) TEST_TIMEOUT=$2; shift ;;
        --no-build) BUILD=0 ;;
        --session-server-lifetime) SESSION_SERVER_LIFETIME=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for s in ${ONLY//,/ }; do
    case "$s" in psycopg | sqlalchemy | node) ;; *) echo "--only: unknown suite $s" >&2; exit 2 ;; esac
done
for t in ${TARGETS//,/ }; do
    case "$t" in direct | session | transaction) ;; *) echo "--targets: unknown target $t" >&2; exit 2 ;; esac
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
[ -n "$OUT" ] || OUT="$ROOT/client-suites-results/$(date +%Y%m%d-%H%M%S)"

# The role every suite logs in as, through pgvigil too (pgvigil logs in to
# PostgreSQL as the client's user with the password from its [users]).
# Superuser: the suites create extensions, terminate backends, read settings.
SUITE_USER=suite
SUITE_PASSWORD=suite
# One database per suite and target (SUITE_TARGET, e.g. sqlalchemy_session),
# each fresh: a suite stopped by --suite-timeout leaves its tables behind,
# and the next target's run must not start on them. "postgres" and
# "template1" too, for tests that reach for them.
SUITE_DBS=""
for s in psycopg sqlalchemy node; do
    for t in direct session transaction; do SUITE_DBS="$SUITE_DBS ${s}_$t"; done
done
DATABASES="$SUITE_DBS postgres template1"

TMP=""
SESSION_PID=""
TXN_PID=""

die() {
    printf 'client suites FAILED: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$SESSION_PID" ]; then stop_process "$SESSION_PID" 5; fi
    if [ -n "$TXN_PID" ]; then stop_process "$TXN_PID" 5; fi
    if [ -n "$TMP" ]; then
        for f in pgvigil-session.log pgvigil-transaction.log; do
            [ -f "$TMP/$f" ] && plain "$TMP/$f" >"$OUT/logs/$f"
        done
        [ -f "$TMP/postgres.log" ] && tail -n 5000 "$TMP/postgres.log" >"$OUT/logs/postgres.log"
    fi
    pg_cluster_stop
    if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 0. prerequisites -----------------------------------------------------------
"$ROOT/scripts/ensure-postgres.sh"
TOOLS="python3 cargo psql timeout openssl"
if wants node; then TOOLS="$TOOLS node npm"; fi
for tool in $TOOLS; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
SKIPPED=()
if wants psycopg; then
    if [ -z "$PSYCOPG_SRC" ] || ! [ -d "$PSYCOPG_SRC/tests" ] || ! [ -d "$PSYCOPG_SRC/psycopg" ]; then
        SKIPPED+=("psycopg: no source tree (give --psycopg-src DIR or PSYCOPG_SRC, a checkout of github.com/psycopg/psycopg)")
        ONLY=$(echo ",$ONLY," | sed 's/,psycopg,/,/; s/^,//; s/,$//')
    else
        PSYCOPG_SRC=$(cd "$PSYCOPG_SRC" && pwd)
    fi
fi
if wants node; then
    if [ -z "$NODE_POSTGRES_SRC" ] || ! [ -d "$NODE_POSTGRES_SRC/packages/pg/test/integration" ]; then
        SKIPPED+=("node: no source tree (give --node-postgres-src DIR or NODE_POSTGRES_SRC, a checkout of github.com/brianc/node-postgres)")
        ONLY=$(echo ",$ONLY," | sed 's/,node,/,/; s/^,//; s/,$//')
    else
        NODE_POSTGRES_SRC=$(cd "$NODE_POSTGRES_SRC" && pwd)
    fi
fi
if [ ${#SKIPPED[@]} -gt 0 ]; then
    printf 'SKIPPED %s\n' "${SKIPPED[@]}" | tee "$OUT/skipped.txt" >&2
fi
[ -n "$ONLY" ] || die "no suite left to run"

# --- 1. build -------------------------------------------------------------------
if [ "$BUILD" -eq 1 ]; then
    step "Building pgvigil (cargo build --release -p pgvigil)"
    (cd "$ROOT" && cargo build --release -p pgvigil)
fi
[ -x "$PGVIGIL" ] || die "$PGVIGIL was not built"

# --- 2. throwaway PostgreSQL ------------------------------------------------------
read -r PG_PORT SESSION_PORT SESSION_ADMIN TXN_PORT TXN_ADMIN < <(free_ports 5)
TMP=$(pg_tmpdir pgvigil-client-suites)
chmod 755 "$TMP"
# TLS offered by PostgreSQL and by both pgvigils (the suites have TLS tests,
# which connect without checking the certificate): one throwaway self-signed
# certificate for 127.0.0.1, under $TMP so it goes with it.
step "Creating a throwaway certificate for 127.0.0.1 (openssl)"
mkdir "$TMP/tls"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$TMP/tls/server.key" -out "$TMP/tls/server.crt" -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName = IP:127.0.0.1" >"$TMP/openssl.log" 2>&1 ||
    { cat "$TMP/openssl.log" >&2; die "openssl failed"; }
chmod 600 "$TMP/tls/server.key"
chown -R postgres:postgres "$TMP/tls" 2>/dev/null || true
step "Creating a PostgreSQL 15 cluster in $TMP (port $PG_PORT)"
# max_prepared_transactions: psycopg's two-phase commit tests run instead of
# skipping. max_connections: the suites' pools plus both pgvigils' pools.
pg_cluster_create "$TMP" "$PG_PORT" "pgvigil client suites" \
    "max_connections = 300" "max_prepared_transactions = 20" "shared_buffers = 64MB" \
    "synchronous_commit = off" "full_page_writes = off" \
    "ssl = on" "ssl_cert_file = '$TMP/tls/server.crt'" "ssl_key_file = '$TMP/tls/server.key'"
pg_super -c "CREATE ROLE $SUITE_USER LOGIN SUPERUSER PASSWORD '$SUITE_PASSWORD'"
for db in $SUITE_DBS; do
    pg_super -c "CREATE DATABASE $db OWNER $SUITE_USER"
    case "$db" in
        # SQLAlchemy's tests expect these schemas and extensions (README.unittests).
        sqlalchemy_*) psql -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PG_PORT" -U postgres -d "$db" \
            -c "CREATE SCHEMA test_schema AUTHORIZATION $SUITE_USER" \
            -c "CREATE SCHEMA test_schema_2 AUTHORIZATION $SUITE_USER" \
            -c "CREATE EXTENSION hstore" -c "CREATE EXTENSION citext" ;;
        psycopg_*) psql -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PG_PORT" -U postgres -d "$db" \
            -c "CREATE EXTENSION hstore" ;;
    esac
done

# --- 3. pgvigil, session and transaction mode ----------------------------------------
write_config() { # mode port admin pool_size
    {
        printf '[pgvigil]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n' "$2" "$3"
        printf 'client_auth = "scram-sha-256"\nmax_client_conn = 1000\n'
        # TLS for clients that ask, as PostgreSQL here; towards PostgreSQL
        # plain TCP on loopback, to leave the two cores to the suites.
        printf 'client_tls_sslmode = "prefer"\nclient_tls_cert_file = "%s"\nclient_tls_key_file = "%s"\n' \
            "$TMP/tls/server.crt" "$TMP/tls/server.key"
        printf 'server_tls_sslmode = "disable"\n\n'
        printf '[pool]\npool_mode = "%s"\npool_size = %s\nacquire_timeout = 60.0\n' "$1" "$4"
        if [ "$1" = session ] && [ -n "$SESSION_SERVER_LIFETIME" ]; then
            printf 'server_lifetime = %s\n' "$SESSION_SERVER_LIFETIME"
        fi
        # Pinning is the point of the transaction-mode run; a cap the suites
        # never reach keeps it out of the results.
        printf 'max_pinned_clients = 200\npin_session_state = true\n\n'
        for db in $DATABASES; do
            printf '[databases.%s]\nhost = "127.0.0.1"\nport = %s\ndbname = "%s"\n\n' "$db" "$PG_PORT" "$db"
        done
        printf '[users.%s]\npassword = "%s"\n' "$SUITE_USER" "$SUITE_PASSWORD"
    } >"$TMP/pgvigil-$1.toml"
}
# Session mode: one server connection per client, so as many as the suites
# open at once. Transaction mode: a small pool, as deployed.
write_config session "$SESSION_PORT" "$SESSION_ADMIN" 100
write_config transaction "$TXN_PORT" "$TXN_ADMIN" 20
step "Starting pgvigil on 127.0.0.1:$SESSION_PORT (session mode) and 127.0.0.1:$TXN_PORT (transaction mode)"
setsid "$PGVIGIL" --config "$TMP/pgvigil-session.toml" </dev/null >"$TMP/pgvigil-session.log" 2>&1 &
SESSION_PID=$!
setsid "$PGVIGIL" --config "$TMP/pgvigil-transaction.toml" </dev/null >"$TMP/pgvigil-transaction.log" 2>&1 &
TXN_PID=$!
wait_listening "$TMP/pgvigil-session.log" "$SESSION_PID" "pgvigil (session)"
wait_listening "$TMP/pgvigil-transaction.log" "$TXN_PID" "pgvigil (transaction)"
export PGPASSWORD=$SUITE_PASSWORD
for port in "$PG_PORT" "$SESSION_PORT" "$TXN_PORT"; do
    psql -X -q -At -h 127.0.0.1 -p "$port" -U "$SUITE_USER" -d postgres -c "SELECT 1" >/dev/null ||
        die "no answer on port $port"
done
unset PGPASSWORD

port_of() {
    case "$1" in
        direct) echo "$PG_PORT" ;;
        session) echo "$SESSION_PORT" ;;
        transaction) echo "$TXN_PORT" ;;
    esac
}

source_commit() { # dir
    if git -C "$1" rev-parse HEAD >/dev/null 2>&1; then
        git -C "$1" describe --tags --always --dirty 2>/dev/null || git -C "$1" rev-parse HEAD
    else
        echo "unknown (not a git checkout)"
    fi
}

# meta KEY VALUE: one line of OUT/meta.json (what ran, at which versions).
rm -f "$OUT/meta.jsonl"
meta() {
    python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$1" "$2" >>"$OUT/meta.jsonl"
}
meta command "$COMMAND"
meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta pgvigil "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
meta postgresql "$(pg_super -At -c 'SHOW server_version')"
meta targets "$TARGETS"
meta "pytest -k" "$K_EXPR"
meta "pytest -m" "$M_EXPR"

# pytest_args: the options every pytest suite gets.
PYTEST_COMMON=(-p client_suites -q -rN --maxfail=1000000
    --timeout="$TEST_TIMEOUT")
if [ -n "$K_EXPR" ]; then PYTEST_COMMON+=(-k "$K_EXPR"); fi
if [ -n "$M_EXPR" ]; then PYTEST_COMMON+=(-m "$M_EXPR"); fi

make_venv() { # name packages...
    local venv="$OUT/venv-$1"
    shift
    if ! [ -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

# run_pytest suite target dir args...: one pytest run, results in
# OUT/suite/target.jsonl, output in OUT/logs/suite-target.log.
run_pytest() {
    local suite=$1 target=$2 dir=$3 rc=0
    shift 3
    mkdir -p "$OUT/$suite"
    # A fresh cache: psycopg's conftest keeps state there between runs.
    rm -rf "$OUT/$suite/$target.jsonl" "$OUT/pytest-cache/$suite-$target"
    step "$suite via $target (port $(port_of "$target"); log: $OUT/logs/$suite-$target.log)"
    (
        cd "$dir"
        CLIENT_SUITES_RESULTS="$OUT/$suite/$target.jsonl" PYTHONPATH="$ROOT/scripts/lib" \
            PYTHONDONTWRITEBYTECODE=1 \
            timeout -k 30 "$SUITE_TIMEOUT" "$OUT/venv-$suite/bin/python" -m pytest \
            -o "cache_dir=$OUT/pytest-cache/$suite-$target" "${PYTEST_COMMON[@]}" "$@"
    ) >"$OUT/logs/$suite-$target.log" 2>&1 || rc=$?
    [ "$rc" -eq 124 ] && echo "  stopped after --suite-timeout $SUITE_TIMEOUT s" | tee -a "$OUT/logs/$suite-$target.log"
    tail -n 1 "$OUT/logs/$suite-$target.log"
}

# --- 4a. SQLAlchemy ---------------------------------------------------------------
if wants sqlalchemy; then
    step "SQLAlchemy $SQLALCHEMY_VERSION: sdist and venv ($OUT/venv-sqlalchemy)"
    mkdir -p "$OUT/downloads"
    sdist="$OUT/downloads/sqlalchemy-$SQLALCHEMY_VERSION"
    if ! [ -d "$sdist/test" ]; then
        # The sdist of SQLAlchemy only: pip prepares its metadata in an
        # isolated build environment, and "--no-binary :all:" would build that
        # environment's Cython and setuptools from source too (Cython alone is
        # minutes of compiling on two cores, silent under --quiet).
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary SQLAlchemy \
            -d "$OUT/downloads" "SQLAlchemy==$SQLALCHEMY_VERSION"
        tar -xzf "$OUT/downloads/"[sS][qQ][lL][aA]lchemy-"$SQLALCHEMY_VERSION".tar.gz -C "$OUT/downloads"
        [ -d "$sdist/test" ] || mv "$OUT/downloads/SQLAlchemy-$SQLALCHEMY_VERSION" "$sdist"
    fi
    make_venv sqlalchemy "pytest==$PYTEST_VERSION" "pytest-timeout==$PYTEST_TIMEOUT_VERSION" \
        "psycopg2-binary==$PSYCOPG2_VERSION" typing_extensions greenlet
    DISABLE_SQLALCHEMY_CEXT=1 "$OUT/venv-sqlalchemy/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-deps "$sdist"
    meta sqlalchemy "$SQLALCHEMY_VERSION (PyPI sdist), psycopg2-binary $PSYCOPG2_VERSION, tests: $SQLALCHEMY_TESTS"
    for target in ${TARGETS//,/ }; do
        # shellcheck disable=SC2086 # SQLALCHEMY_TESTS is a list of paths
        run_pytest sqlalchemy "$target" "$sdist" $SQLALCHEMY_TESTS \
            --dburi "postgresql+psycopg2://$SUITE_USER:$SUITE_PASSWORD@127.0.0.1:$(port_of "$target")/sqlalchemy_$target"
    done
fi

# --- 4b. psycopg -------------------------------------------------------------------
if wants psycopg; then
    step "psycopg from $PSYCOPG_SRC: venv ($OUT/venv-psycopg)"
    # Built from a copy: pip builds in the tree it is given.
    mkdir -p "$TMP/psycopg-build"
    cp -r "$PSYCOPG_SRC/psycopg" "$PSYCOPG_SRC/psycopg_pool" "$TMP/psycopg-build/"
    make_venv psycopg "$TMP/psycopg-build/psycopg[test]" "$TMP/psycopg-build/psycopg_pool" \
        "pytest-timeout==$PYTEST_TIMEOUT_VERSION"
    meta psycopg "$(source_commit "$PSYCOPG_SRC") ($("$OUT/venv-psycopg/bin/python" -c 'import psycopg; print(psycopg.__version__, psycopg.pq.__impl__)')), tests: $PSYCOPG_TESTS"
    for target in ${TARGETS//,/ }; do
        # pytest-randomly off: the same order on every target.
        # shellcheck disable=SC2086 # PSYCOPG_TESTS is a list of paths
        PSYCOPG_TEST_DSN="host=127.0.0.1 port=$(port_of "$target") dbname=psycopg_$target user=$SUITE_USER password=$SUITE_PASSWORD" \
            run_pytest psycopg "$target" "$PSYCOPG_SRC" -p no:randomly $PSYCOPG_TESTS
    done
fi

# --- 4c. node-postgres ---------------------------------------------------------------
if wants node; then
    step "node-postgres from $NODE_POSTGRES_SRC: packages/pg copied to $TMP/node-pg, npm install"
    cp -r "$NODE_POSTGRES_SRC/packages/pg" "$TMP/node-pg"
    rm -rf "$TMP/node-pg/node_modules"
    # Only what the integration tests load: the runtime dependencies (from
    # the registry, at the ranges packages/pg asks for) and the test helpers;
    # not the Cloudflare worker tooling the other test groups need.
    python3 - "$TMP/node-pg/package.json" <<'PY'
import json, sys
path = sys.argv[1]
pkg = json.load(open(path))
keep = ("async", "bluebird", "co", "pg-copy-streams")
pkg["devDependencies"] = {k: v for k, v in pkg.get("devDependencies", {}).items() if k in keep}
pkg.pop("optionalDependencies", None)
pkg.pop("peerDependencies", None)
pkg.pop("peerDependenciesMeta", None)
json.dump(pkg, open(path, "w"), indent=2)
PY
    (cd "$TMP/node-pg" && npm install --no-audit --no-fund --loglevel=error) >"$OUT/logs/node-npm.log" 2>&1 ||
        { cat "$OUT/logs/node-npm.log" >&2; die "npm install failed"; }
    deps=$(cd "$TMP/node-pg" && npm ls --depth=0 2>/dev/null | sed -n 's/^[├└]── //p' | tr '\n' ' ')
    meta node-postgres "$(source_commit "$NODE_POSTGRES_SRC") (pg $(node -p "require('$TMP/node-pg/package.json').version"); $deps; node $(node --version))"
    mapfile -t NODE_FILES < <(cd "$TMP/node-pg" && find test/integration -name '*-tests.js' | sort |
        { if [ -n "$NODE_TESTS" ]; then grep -E -- "$NODE_TESTS" || true; else cat; fi; })
    for target in ${TARGETS//,/ }; do
        port=$(port_of "$target")
        mkdir -p "$OUT/node" "$OUT/logs/node-$target"
        rm -f "$OUT/node/$target.jsonl"
        step "node via $target (port $port; ${#NODE_FILES[@]} files; logs: $OUT/logs/node-$target/)"
        start=$SECONDS
        for file in "${NODE_FILES[@]}"; do
            log="$OUT/logs/node-$target/$(echo "$file" | tr / _).log"
            if ((SECONDS - start > SUITE_TIMEOUT)); then break; fi
            rc=0
            # The Makefile's way: one node process per file, exit status is the verdict.
            (cd "$TMP/node-pg" && PGHOST=127.0.0.1 PGPORT=$port PGUSER=$SUITE_USER \
                PGPASSWORD=$SUITE_PASSWORD PGDATABASE=node_$target \
                SCRAM_TEST_PGHOST=127.0.0.1 SCRAM_TEST_PGPORT=$port SCRAM_TEST_PGUSER=$SUITE_USER \
                SCRAM_TEST_PGPASSWORD=$SUITE_PASSWORD SCRAM_TEST_PGDATABASE=node_$target \
                timeout -k 10 "$TEST_TIMEOUT" node "$file" postgres://) >"$log" 2>&1 </dev/null || rc=$?
            if [ "$rc" -eq 0 ]; then outcome=passed; else outcome=failed; fi
            msg=$(grep -v '^\s*$' "$log" | grep -m1 -iE 'error|assert|timed out' | cut -c1-300 || true)
            [ "$rc" -eq 124 ] && msg="timed out after $TEST_TIMEOUT s"
            python3 -c 'import json, sys; print(json.dumps({"id": sys.argv[1], "outcome": sys.argv[2], "when": "call", "message": sys.argv[3]}))' \
                "$file" "$outcome" "exit $rc: $msg" >>"$OUT/node/$target.jsonl"
        done
        echo "$(grep -c '"passed"' "$OUT/node/$target.jsonl" || true) of ${#NODE_FILES[@]} files passed"
    done
fi

# --- 5. comparison ---------------------------------------------------------------------
for s in ${SKIPPED[@]+"${SKIPPED[@]}"}; do meta "skipped ${s%%:*}" "${s#*: }"; done
python3 -c 'import json, sys; print(json.dumps(dict(json.loads(l) for l in open(sys.argv[1])), indent=2))' \
    "$OUT/meta.jsonl" >"$OUT/meta.json"
step "Comparison (OUT: $OUT/summary.md, $OUT/comparison.json)"
python3 "$ROOT/scripts/lib/client_suites.py" compare "$OUT"
exit 0
}
