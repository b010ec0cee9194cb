#!/usr/bin/env bash
# Instructions per transaction of a pooler, counted by callgrind: a figure
# that does not move with the load of a shared machine (BENCHMARKS.md).
#
#   benches/callgrind/per-transaction.sh [--bin PATH] [--modes simple,extended,prepared]
#       [--clients 8] [--targets on,off,pgbouncer] [--tx 2000] [--base-tx 200]
#       [--rows N]
#   KEEP_DUMPS=DIR keeps the callgrind dumps (DIR/TARGET-MODE/cg.*) for
#   callgrind_annotate.
#
# Starts a throwaway PostgreSQL 15 cluster (pgbench -i -s 10), then for
# each target and mode runs the pooler under `valgrind --tool=callgrind`
# (transaction mode, pool 20) and, after a warm-up, drives it with
# `pgbench -n -S -M MODE -c CLIENTS -j 1 -t N` (with --rows N, a SELECT of
# N consecutive pgbench_accounts rows instead of -S's one): counters are zeroed, a run
# of --tx transactions per client is dumped, then a run of --base-tx. The
# difference divided by CLIENTS x (tx - base-tx) is the cost of one
# transaction, without connection setup (SCRAM) or start-up. Targets:
# `on` / `off` are pgvigil with analytics on / off, `pgbouncer` is the
# Debian package (installed by benches/load/run.sh). Run as root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/target/release/pgvigil"
MODES=simple,extended,prepared
CLIENTS=8
TARGETS=on,off,pgbouncer
TX=2000
BASE_TX=200
ROWS=0
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --tx) TX=$2; shift 2 ;;
    --base-tx) BASE_TX=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

die() { echo "error: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/pgcluster.sh
source "$ROOT/scripts/lib/pgcluster.sh"
command -v valgrind >/dev/null || die "valgrind is required"
[ -x "$BIN" ] || die "$BIN not built: cargo build --release -p pgvigil"

VPIDS=()
RUNS=()
cleanup() {
    for p in "${VPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for d in "${RUNS[@]}"; do rm -rf "$d"; done
    pg_cluster_stop
    [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
}
trap cleanup EXIT

read -r PORT PGB_PORT VIGIL_PORT ADMIN_PORT < <(free_ports 4)
pg_cluster_create "$(pg_tmpdir pgvigil-callgrind)" "$PORT" "pgvigil callgrind" \
    "max_connections = 200" "synchronous_commit = off" "full_page_writes = off"
chmod 755 "$PG_DIR"
export PGPASSWORD=secret
pgbench -i -s 10 -h 127.0.0.1 -p "$PORT" -U app appdb >"$PG_DIR/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed"
printf '"app" "secret"\n' >"$PG_DIR/userlist.txt"
cat >"$PG_DIR/pgbouncer.ini" <<EOF
[databases]
appdb = host=127.0.0.1 port=$PORT dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PG_DIR/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
logfile = $PG_DIR/pgbouncer.log
log_connections = 0
log_disconnections = 0
EOF
chown postgres:postgres "$PG_DIR/userlist.txt" "$PG_DIR/pgbouncer.ini"
WORKLOAD=(-S)
ROWS_LABEL=""
if [ "$ROWS" -gt 0 ]; then
    # Per-row costs (forwarding DataRows) show up only with many rows.
    printf '%s\n' "\\set aid random(1, $((1000000 - ROWS)))" \
        "SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + $((ROWS - 1));" \
        >"$PG_DIR/rows.sql"
    WORKLOAD=(-f "$PG_DIR/rows.sql")
    ROWS_LABEL=", $ROWS rows"
fi
chmod 600 "$PG_DIR/userlist.txt"

# total Ir of the dump triggered as LABEL in folder W
dumped() {
    python3 - "$1" "$2" <<'PY'
import os, sys
w, label = sys.argv[1], sys.argv[2]
total = 0
for f in os.listdir(w):
    if not f.startswith("cg."):
        continue
    head = open(os.path.join(w, f), errors="replace").read(4000)
    if "Trigger: dump " + label not in head:
        continue
    for line in head.splitlines():
        if line.startswith("summary:"):
            total += int(line.split()[1])
print(total)
PY
}

measure() { # target mode
    local target=$1 mode=$2 w port ctl vpid
    w=$(mktemp -d /tmp/pgvigil-callgrind-run.XXXXXX)
    RUNS+=("$w")
    chmod 777 "$w"
    if [ "$target" = pgbouncer ]; then
        port=$PGB_PORT
        as_pg valgrind --tool=callgrind --callgrind-out-file="$w/cg.%p" \
            /usr/sbin/pgbouncer "$PG_DIR/pgbouncer.ini" >"$w/log" 2>&1 &
        ctl=(runuser -u postgres -- callgrind_control)
    else
        port=$VIGIL_PORT
        # The advisor and health sampler log in on their own schedule (a
        # SCRAM login is ~55 M instructions): background work, not the
        # forwarding path, so off while instructions are counted. Builds
        # from before [advisor] existed have nothing to turn off.
        local background=()
        if grep -q -a health_interval_s "$BIN"; then
            printf '[advisor]\nenabled = false\n' >"$w/advisor-off.toml"
            background=(--config "$w/advisor-off.toml")
        fi
        valgrind --tool=callgrind --callgrind-out-file="$w/cg.%p" "$BIN" ${background[@]+"${background[@]}"} \
            --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$ADMIN_PORT" \
            --upstream "postgres://app:secret@127.0.0.1:$PORT/appdb" --pool-mode transaction \
            --pool-size 20 --max-client-conn 2000 --analytics "$target" >"$w/log" 2>&1 &
        ctl=(callgrind_control)
    fi
    for _ in $(seq 300); do
        psql -X -q -At -h 127.0.0.1 -p "$port" -U app -d appdb -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    vpid=$(pgrep -f "callgrind-out-file=$w/cg" | while read -r p; do
        [ "$(readlink "/proc/$p/exe")" != /usr/bin/dash ] && [ "$(readlink "/proc/$p/exe")" != /bin/sh ] &&
            [ "$(readlink "/proc/$p/exe")" != /usr/sbin/runuser ] && echo "$p"
    done | tail -n 1)
    VPIDS+=("$vpid")
    # Warm-up: the server connections the runs use are open by then (a
    # server login is a SCRAM exchange, millions of instructions, and
    # PgBouncer's min_pool_size opens them slowly, during the runs).
    pgbench -n "${WORKLOAD[@]}" -M "$mode" -c "$CLIENTS" -j 1 -t 500 -h 127.0.0.1 -p "$port" -U app appdb >/dev/null 2>&1 ||
        echo "warning: warm-up pgbench failed ($target $mode)" >&2
    local label n big small failed=""
    for label in big small; do
        n=$TX
        [ "$label" = small ] && n=$BASE_TX
        "${ctl[@]}" -z "$vpid" >/dev/null
        pgbench -n "${WORKLOAD[@]}" -M "$mode" -c "$CLIENTS" -j 1 -t "$n" -h 127.0.0.1 -p "$port" -U app appdb \
            >"$w/pgbench.$label.log" 2>&1 || failed=1
        sleep 0.3
        "${ctl[@]}" -d "$label" "$vpid" >/dev/null
        sleep 0.5
    done
    big=$(dumped "$w" big)
    small=$(dumped "$w" small)
    if [ -n "$failed" ]; then
        # PgBouncer 1.18 in -M prepared: "prepared statement ... already exists"
        printf '%-10s %-9s %4s clients  aborts (%s)\n' "$target" "$mode" "$CLIENTS" \
            "$(grep -m 1 -i error "$w/pgbench.big.log" || echo "pgbench failed")"
    else
        printf '%-10s %-9s %4s clients  %8d instructions/transaction%s\n' "$target" "$mode" "$CLIENTS" \
            $(((big - small) / (CLIENTS * (TX - BASE_TX)))) "${ROWS_LABEL}"
    fi
    kill "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    sleep 1
    if [ -n "${KEEP_DUMPS:-}" ]; then
        # For callgrind_annotate: KEEP_DUMPS=DIR keeps each target's dumps.
        mkdir -p "$KEEP_DUMPS/$target-$mode"
        cp "$w"/cg.* "$KEEP_DUMPS/$target-$mode/" 2>/dev/null || true
    fi
    rm -rf "$w"
}

for mode in ${MODES//,/ }; do
    for target in ${TARGETS//,/ }; do
        measure "$target" "$mode"
    done
done
