#!/usr/bin/env bash
# pgvigil load benchmark: pgbench against direct PostgreSQL, PgBouncer,
# pgvigil (analytics on) and pgvigil (analytics off), side by side.
#
#   benches/load/run.sh [--quick] [--out DIR] [--duration S] [--reps N]
#                       [--clients 8,32,256,1000] [--modes simple,extended,prepared]
#                       [--workloads select-only,tpcb-like,list-100] [--no-tpcb]
#                       [--upstream tcp|unix] [--tls] [--advisor-interval S]
#                       [--many-clients 100,1000,5000,10000] [--rate 2000]
#
# One run:
#   1. builds pgvigil (cargo build --release -p pgvigil),
#   2. creates a throwaway PostgreSQL 15 cluster on a free port
#      (max_connections 1100, shared_buffers 128MB, fsync off, SCRAM auth,
#      role app/secret owning database appdb, pgbench -i -s 10),
#   3. starts PgBouncer (Debian's package, transaction mode, pool 20,
#      max_client_conn 2000), pgvigil with analytics on and pgvigil with
#      --analytics off (transaction mode, pool 20, max-client-conn 2000),
#      each on its own ports,
#   4. fills pgvigil's statistics table with 5000 distinct statements,
#   5. runs the matrix (benches/load/loadbench.py run), interleaving targets,
#   6. prints the table and writes results.json, chart.svg, raw.json and the
#      logs under the output folder (default bench-results/<timestamp>),
#   7. removes everything it started or created (on any exit).
# With --tls every leg is TLS: a throwaway CA and server certificate (openssl)
# in the temporary folder, PostgreSQL with ssl = on, both poolers requiring TLS
# from clients and using it towards PostgreSQL, pgbench with PGSSLMODE=require
# to every target (so "direct" is direct over TLS).
# --workloads many-clients: pgbench -S at a fixed rate (--rate, 2000 tx/s) with
# each of --many-clients connected clients, PgBouncer and both pgvigils --reps
# times each: steady RSS, latency and login time side by side (many-clients.svg).
# It raises the open-files limit it needs (as root) or says why it cannot.
# KEEP_PGBENCH_LOGS=DIR keeps pgbench's per-transaction latency logs there
# (one set per run), to see when in a run a tail came.
# Details and the meaning of each column: benches/README.md, "Load benchmark".
set -euo pipefail
# The whole script is one brace group: bash reads it completely before running
# it, so editing this file during a run cannot change the run.
{
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
# PG_BIN (on PATH), step, plain, as_pg, pg_super, pg_cluster_*, free_ports, stop_process.
. "$ROOT/scripts/lib/pgcluster.sh"
PGVIGIL="$ROOT/target/release/pgvigil"

# --- options ------------------------------------------------------------------
COMMAND="benches/load/run.sh${*:+ $*}"
QUICK=0
OUT=""
DURATION=""
REPS=""
CLIENTS=""
MODES=""
WORKLOADS=select-only,tpcb-like,list-100
UPSTREAM_KIND=tcp
TLS=0
MANY_CLIENTS=100,1000,5000,10000
RATE=2000
usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) OUT=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --reps) REPS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --modes) MODES=$2; shift ;;
        --workloads) WORKLOADS=$2; shift ;;
        --no-tpcb) WORKLOADS=$(echo ",$WORKLOADS," | sed 's/,tpcb-like,/,/; s/^,//; s/,$//') ;;
        --upstream) UPSTREAM_KIND=$2; shift ;;
        --tls) TLS=1 ;;
        --advisor-interval) ADVISOR_INTERVAL=$2; shift ;;
        --many-clients) MANY_CLIENTS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$UPSTREAM_KIND" in
    tcp | unix) ;;
    *) echo "--upstream must be tcp or unix" >&2; exit 2 ;;
esac
# Neither pooler uses TLS over a Unix socket (nor does libpq), so with
# --upstream unix the upstream leg would quietly stay plaintext.
if [ "$TLS" -eq 1 ] && [ "$UPSTREAM_KIND" = unix ]; then
    echo "--tls needs --upstream tcp: no TLS is used over a Unix socket" >&2
    exit 2
fi
if [ "$QUICK" -eq 1 ]; then
    : "${DURATION:=5}" "${REPS:=1}" "${CLIENTS:=32}"
fi
: "${DURATION:=10}" "${REPS:=3}" "${CLIENTS:=8,32,256,1000}" "${MODES:=simple,extended,prepared}"
[ -n "$OUT" ] || OUT="$ROOT/bench-results/$(date +%Y%m%d-%H%M%S)"

POOL_SIZE=20
MAX_CLIENT_CONN=2000
# many-clients: room for its largest client count, and open files for it in
# pgbench, both poolers and this script.
case ",$WORKLOADS," in
    *,many-clients,*)
        MOST=$(echo "$MANY_CLIENTS" | tr ',' '\n' | sort -n | tail -n 1)
        [ "$MOST" -le "$MAX_CLIENT_CONN" ] || MAX_CLIENT_CONN=$((MOST + 100))
        NEED_FILES=$((MAX_CLIENT_CONN + 500))
        if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FILES" ]; then
            ulimit -n "$NEED_FILES" 2>/dev/null || {
                echo "many-clients needs $NEED_FILES open files per process (pgbench and each pooler);" \
                    "the hard limit is $(ulimit -Hn): raise it (e.g. ulimit -Hn as root, or" \
                    "LimitNOFILE) or pass a smaller --many-clients" >&2
                exit 2
            }
        fi
        ;;
esac
PG_MAX_CONNECTIONS=1100
SCALE=10
FILL_FINGERPRINTS=5000
# pgvigil's advisor (plans, index advice, health) runs every interval_s; its
# default (300 s) would leave a short run without a single advisor pass.
# --advisor-interval S makes it run (and sample health) every S seconds, with
# plans_per_minute raised to 60, while the matrix runs.
: "${ADVISOR_INTERVAL:=}"

TMP=""
PGB_STARTED=""
VIGIL_PID=""
NOAN_PID=""

die() {
    printf 'load benchmark FAILED: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$VIGIL_PID" ]; then stop_process "$VIGIL_PID" 5; fi
    if [ -n "$NOAN_PID" ]; then stop_process "$NOAN_PID" 5; fi
    if [ -n "$PGB_STARTED" ] && [ -s "$TMP/pgbouncer.pid" ]; then
        stop_process "$(cat "$TMP/pgbouncer.pid")" 5
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
if ! [ -x /usr/sbin/pgbouncer ]; then
    step "Installing PgBouncer (apt-get install -y pgbouncer)"
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer; }
    else
        sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer
    fi
    # The package may start its own instance; this benchmark starts its own.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop pgbouncer 2>/dev/null || true; fi
fi
TOOLS="python3 cargo pgbench psql"
if [ "$TLS" -eq 1 ]; then TOOLS="$TOOLS openssl"; fi
for tool in $TOOLS; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- 1. build -------------------------------------------------------------------
step "Building pgvigil (cargo build --release -p pgvigil)"
(cd "$ROOT" && cargo build --release -p pgvigil)
[ -x "$PGVIGIL" ] || die "$PGVIGIL was not built"

# --- 2. throwaway PostgreSQL ------------------------------------------------------
# PostgreSQL, PgBouncer, pgvigil + admin, pgvigil (analytics off) + admin.
read -r PG_PORT PGB_PORT VIGIL_PORT VIGIL_ADMIN NOAN_PORT NOAN_ADMIN < <(free_ports 6)
TMP=$(pg_tmpdir pgvigil-load)
chmod 755 "$TMP"

# Both poolers reach PostgreSQL the same way: 127.0.0.1, or with
# --upstream unix the cluster's Unix socket in $TMP. pgbench always
# connects over TCP, to every target.
if [ "$UPSTREAM_KIND" = unix ]; then PG_HOST=$TMP; else PG_HOST=127.0.0.1; fi

# --tls: one throwaway CA and one server certificate (for 127.0.0.1) shared by
# PostgreSQL and both poolers, so that every target does the same TLS work.
# Under $TMP, so they go with it on exit. PostgreSQL wants its key owned by the
# user it runs as and unreadable by others; PgBouncer runs as that user too.
PG_TLS_SETTINGS=()
if [ "$TLS" -eq 1 ]; then
    TLS_DIR="$TMP/tls"
    step "Creating a throwaway CA and server certificate in $TLS_DIR (openssl, ECDSA P-256)"
    mkdir "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout ca.key -out ca.crt -days 2 -subj "/CN=pgvigil load benchmark CA"
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
        printf '%s\n' "subjectAltName = IP:127.0.0.1" "basicConstraints = CA:FALSE" \
            "keyUsage = digitalSignature" "extendedKeyUsage = serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 1 -days 2 \
            -extfile server.ext -out server.crt
    ) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl failed"; }
    chmod 600 "$TLS_DIR"/*.key
    chown -R postgres:postgres "$TLS_DIR" 2>/dev/null || true
    TLS_CERT="$TLS_DIR/server.crt"
    TLS_KEY="$TLS_DIR/server.key"
    PG_TLS_SETTINGS=("ssl = on" "ssl_cert_file = '$TLS_CERT'" "ssl_key_file = '$TLS_KEY'")
fi

step "Creating a PostgreSQL 15 cluster in $TMP (port $PG_PORT)"
pg_cluster_create "$TMP" "$PG_PORT" "pgvigil load benchmark" \
    "max_connections = $PG_MAX_CONNECTIONS" "shared_buffers = 128MB" \
    "synchronous_commit = off" "full_page_writes = off" ${PG_TLS_SETTINGS[@]+"${PG_TLS_SETTINGS[@]}"}
export PGPASSWORD=secret
# With --tls every TCP connection from here on (pgbench -i, the checks, the
# fill, the matrix) must be TLS. libpq ignores sslmode on a Unix socket, which
# only the superuser's maintenance sessions use.
if [ "$TLS" -eq 1 ]; then export PGSSLMODE=require; fi
step "pgbench -i -s $SCALE (direct)"
pgbench -i -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U app appdb >"$TMP/pgbench-init.log" 2>&1 ||
    { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
tail -n 1 "$TMP/pgbench-init.log"
psql -X -q -h "$TMP" -p "$PG_PORT" -U postgres -d appdb -c "VACUUM ANALYZE" -c "CHECKPOINT"

# --- 3. PgBouncer -----------------------------------------------------------------
step "Starting PgBouncer on 127.0.0.1:$PGB_PORT (transaction mode, pool $POOL_SIZE)"
cat >"$TMP/userlist.txt" <<'EOF'
"app" "secret"
EOF
cat >"$TMP/pgbouncer.ini" <<EOF
[databases]
appdb = host=$PG_HOST port=$PG_PORT dbname=appdb

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $TMP/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENT_CONN
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
if [ "$TLS" -eq 1 ]; then
    cat >>"$TMP/pgbouncer.ini" <<EOF
client_tls_sslmode = require
client_tls_cert_file = $TLS_CERT
client_tls_key_file = $TLS_KEY
server_tls_sslmode = require
EOF
fi
chown postgres:postgres "$TMP/userlist.txt" "$TMP/pgbouncer.ini" 2>/dev/null || true
chmod 600 "$TMP/userlist.txt"
PGB_STARTED=1
# runuser's PAM session resets the soft open-files limit (1024 on Debian),
# below what max_client_conn needs: raise it up to the hard limit first.
PGB_NOFILE=$((MAX_CLIENT_CONN + 4 * POOL_SIZE + 100))
as_pg sh -c 'n=$1; h=$(ulimit -Hn); [ "$h" = unlimited ] || [ "$h" -ge "$n" ] || n=$h
    ulimit -n "$n" && exec /usr/sbin/pgbouncer -d "$2"' sh "$PGB_NOFILE" "$TMP/pgbouncer.ini" ||
    die "PgBouncer did not start"
for ((i = 0; i < 100; i++)); do [ -s "$TMP/pgbouncer.pid" ] && break; sleep 0.1; done
[ -s "$TMP/pgbouncer.pid" ] || { cat "$TMP/pgbouncer.log" >&2; die "PgBouncer wrote no pid file"; }
PGB_VERSION=$(/usr/sbin/pgbouncer --version | head -n 1)
PGB_FDS=$(awk '/Max open files/ { print $4 }' "/proc/$(cat "$TMP/pgbouncer.pid")/limits")
echo "PgBouncer's open-files limit: $PGB_FDS"
[ "$PGB_FDS" = unlimited ] || [ "$PGB_FDS" -ge "$MAX_CLIENT_CONN" ] ||
    echo "warning: PgBouncer may open only $PGB_FDS files, fewer than max_client_conn $MAX_CLIENT_CONN" >&2

# --- 4. pgvigil, analytics on and off ----------------------------------------------
if [ "$UPSTREAM_KIND" = unix ]; then
    UPSTREAM="postgres:///appdb?host=$TMP&port=$PG_PORT&user=app&password=secret"
else
    UPSTREAM="postgres://app:secret@127.0.0.1:$PG_PORT/appdb"
fi
VIGIL_ARGS=(--upstream "$UPSTREAM" --pool-mode transaction --pool-size "$POOL_SIZE"
    --max-client-conn "$MAX_CLIENT_CONN")
if [ -n "$ADVISOR_INTERVAL" ]; then
    cat >"$TMP/advisor.toml" <<EOF
[advisor]
interval_s = $ADVISOR_INTERVAL
health_interval_s = $ADVISOR_INTERVAL
plans_per_minute = 60
plan_top_n = 20
EOF
    VIGIL_ARGS+=(--config "$TMP/advisor.toml")
fi
if [ "$TLS" -eq 1 ]; then
    VIGIL_ARGS+=(--client-tls-sslmode require --client-tls-cert-file "$TLS_CERT"
        --client-tls-key-file "$TLS_KEY" --server-tls-sslmode require)
fi
step "Starting pgvigil on 127.0.0.1:$VIGIL_PORT (analytics on) and 127.0.0.1:$NOAN_PORT (analytics off)"
# Each pgvigil runs in a session of its own (setsid), as PgBouncer does
# when it daemonizes (-d) and as any service does: with the kernel's
# autogroup scheduling (sched_autogroup_enabled), processes of one session
# share one CPU share, so a pooler left in the benchmark's session would
# compete with pgbench for it while PgBouncer has a share of its own.
setsid "$PGVIGIL" --listen "127.0.0.1:$VIGIL_PORT" --admin-listen "127.0.0.1:$VIGIL_ADMIN" \
    "${VIGIL_ARGS[@]}" --analytics on </dev/null >"$TMP/pgvigil.log" 2>&1 &
VIGIL_PID=$!
setsid "$PGVIGIL" --listen "127.0.0.1:$NOAN_PORT" --admin-listen "127.0.0.1:$NOAN_ADMIN" \
    "${VIGIL_ARGS[@]}" --analytics off </dev/null >"$TMP/pgvigil-analytics-off.log" 2>&1 &
NOAN_PID=$!
wait_listening "$TMP/pgvigil.log" "$VIGIL_PID" pgvigil
wait_listening "$TMP/pgvigil-analytics-off.log" "$NOAN_PID" "pgvigil (analytics off)"
echo "pgvigil ${VIGIL_ARGS[*]}"
# setsid runs pgvigil in its own process (it forks only when it is a process
# group leader, which a job of this script is not): the pids are pgvigil's.
for pid in "$VIGIL_PID" "$NOAN_PID"; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgvigil ] || die "process $pid is not pgvigil"
done

# Every target answers before the matrix starts.
for port in "$PG_PORT" "$PGB_PORT" "$VIGIL_PORT" "$NOAN_PORT"; do
    psql -X -q -At -h 127.0.0.1 -p "$port" -U app -d appdb -c "SELECT 1" >/dev/null ||
        die "no answer on port $port"
done
# With --tls, PGSSLMODE=require already refuses a plaintext client leg (psql's
# \conninfo shows what was negotiated); the upstream leg is checked from
# PostgreSQL's side (pg_stat_ssl of the backend that answers: the pooler's
# server connection for the poolers).
if [ "$TLS" -eq 1 ]; then
    for port in "$PG_PORT" "$PGB_PORT" "$VIGIL_PORT" "$NOAN_PORT"; do
        legs=$(psql -X -q -At -h 127.0.0.1 -p "$port" -U app -d appdb -c '\conninfo' -c \
            "SELECT ssl, version || ' ' || cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()") ||
            die "no answer on port $port"
        client=$(printf '%s\n' "$legs" | sed -n 's/^SSL connection (\(protocol: [^,]*, cipher: [^,]*\).*/\1/p')
        upstream=$(printf '%s\n' "$legs" | tail -n 1)
        [ -n "$client" ] || die "port $port: the client connection is not TLS ($legs)"
        case "$upstream" in
            't|'*) echo "port $port: client leg $client; PostgreSQL sees ${upstream#t|}" ;;
            *) die "port $port: PostgreSQL's side of the connection is not TLS ($upstream)" ;;
        esac
    done
fi

# --- 5. fill pgvigil's statistics table ---------------------------------------------
# So that peak RSS is measured with max_fingerprints (5000) tracked: 5000
# statements that differ in an identifier normalize to 5000 fingerprints.
step "Sending $FILL_FINGERPRINTS distinct statements through pgvigil (analytics on)"
python3 -c "
for i in range($FILL_FINGERPRINTS):
    print(f'SELECT aid AS fill_{i} FROM pgbench_accounts WHERE aid = {i + 1};')" |
    psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$VIGIL_PORT" -U app -d appdb ||
    die "filling pgvigil's statistics failed"

# --- 6. the matrix ----------------------------------------------------------------------
cat >"$TMP/env.json" <<EOF
{
  "root": "$ROOT",
  "tmp": "$TMP",
  "out": "$OUT",
  "command": "$COMMAND",
  "quick": $QUICK,
  "duration": $DURATION,
  "reps": $REPS,
  "clients": "$CLIENTS",
  "modes": "$MODES",
  "workloads": "$WORKLOADS",
  "upstream": "$UPSTREAM_KIND",
  "tls": $([ "$TLS" -eq 1 ] && echo true || echo false),
  "advisor_interval": "${ADVISOR_INTERVAL:-default}",
  "many_clients": "$MANY_CLIENTS",
  "rate": $RATE,
  "threads": 2,
  "scale": $SCALE,
  "pool_size": $POOL_SIZE,
  "max_client_conn": $MAX_CLIENT_CONN,
  "pg_max_connections": $PG_MAX_CONNECTIONS,
  "pg_socket_dir": "$TMP",
  "pg_pidfile": "$PG_DATA/postmaster.pid",
  "fill_fingerprints": $FILL_FINGERPRINTS,
  "pgbouncer_version": "$PGB_VERSION",
  "pgbouncer_pidfile": "$TMP/pgbouncer.pid",
  "targets": [
    {"name": "direct", "label": "PostgreSQL", "port": $PG_PORT},
    {"name": "pgbouncer", "label": "PgBouncer", "port": $PGB_PORT},
    {"name": "pgvigil", "label": "pgvigil", "port": $VIGIL_PORT, "pid": $VIGIL_PID, "admin": $VIGIL_ADMIN},
    {"name": "pgvigil_off", "label": "pgvigil analytics off", "port": $NOAN_PORT, "pid": $NOAN_PID, "admin": $NOAN_ADMIN}
  ]
}
EOF
step "Running the matrix (output: $OUT)"
python3 "$HERE/loadbench.py" run "$TMP/env.json"

# The advisor's own account of what it did during the run.
if [ -n "$ADVISOR_INTERVAL" ]; then
    python3 - "$VIGIL_ADMIN" >"$OUT/advisor.txt" <<'PY' || true
import json, sys, urllib.request
admin = sys.argv[1]
metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
for line in metrics.splitlines():
    if line.startswith(("pgvigil_advisor_", "pgvigil_advice{", "pgvigil_db_cache_hit_ratio")):
        print(line)
advice = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/advice"))["advice"]
print(f"advice entries: {len(advice)}")
for a in advice[:10]:
    print(f"  {a['kind']} {a['table']} {a['columns']} {a['method']}")
PY
    cat "$OUT/advisor.txt"
fi

# --- 7. logs and report -------------------------------------------------------------------
plain "$TMP/pgvigil.log" >"$OUT/pgvigil.log" || true
plain "$TMP/pgvigil-analytics-off.log" >"$OUT/pgvigil-analytics-off.log" || true
cp "$TMP/pgbouncer.log" "$OUT/pgbouncer.log" 2>/dev/null || true
tail -n 2000 "$TMP/postgres.log" >"$OUT/postgres.log" 2>/dev/null || true
python3 "$HERE/loadbench.py" report "$OUT/raw.json"
exit 0
}
