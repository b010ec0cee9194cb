#!/usr/bin/env bash
# pgvigil demo, self-contained:
#   1. builds pgvigil (release),
#   2. creates a throwaway PostgreSQL 15 cluster on a free port (SCRAM auth,
#      role app/secret owning database appdb),
#   3. starts pgvigil in front of it in transaction mode with 5 server
#      connections,
#   4. runs a short workload through pgvigil: psql, then pgbench with 16
#      clients using prepared statements,
#   5. prints a summary, and removes everything it started or created.
# Installs PostgreSQL 15 with apt-get if it is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# PG_BIN (on PATH), step, plain, as_pg, pg_super, pg_cluster_*, free_ports, stop_process.
. "$ROOT/scripts/lib/pgcluster.sh"

CLIENTS=16
THREADS=2
DURATION=5 # seconds
POOL_SIZE=5
PGVIGIL="$ROOT/target/release/pgvigil"

TMP=""
PGVIGIL_PID=""
BENCH_PID=""

die() {
    printf 'demo FAILED: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$BENCH_PID" ]; then stop_process "$BENCH_PID" 2; fi
    if [ -n "$PGVIGIL_PID" ]; then stop_process "$PGVIGIL_PID" 5; fi
    pg_cluster_stop
    if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 0. prerequisites ------------------------------------------------------
"$ROOT/scripts/ensure-postgres.sh"
for tool in python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# --- 1. build ---------------------------------------------------------------
step "Building pgvigil (cargo build --release -p pgvigil)"
(cd "$ROOT" && cargo build --release -p pgvigil)
[ -x "$PGVIGIL" ] || die "$PGVIGIL was not built"

# --- 2. throwaway PostgreSQL -------------------------------------------------
# Three distinct free loopback ports: PostgreSQL, pgvigil, pgvigil's admin.
read -r PG_PORT PROXY_PORT ADMIN_PORT < <(free_ports 3)
TMP=$(pg_tmpdir pgvigil-demo)

step "Creating a PostgreSQL 15 cluster in $TMP (port $PG_PORT, scram-sha-256)"
pg_cluster_create "$TMP" "$PG_PORT" "pgvigil demo"
echo "PostgreSQL $(pg_super -At -c 'SHOW server_version') up; role app owns database appdb"

# --- 3. pgvigil ---------------------------------------------------------------
step "Starting pgvigil on 127.0.0.1:$PROXY_PORT (transaction mode, pool size $POOL_SIZE)"
UPSTREAM="postgres://app:secret@127.0.0.1:$PG_PORT/appdb"
echo "pgvigil --listen 127.0.0.1:$PROXY_PORT --upstream $UPSTREAM --admin-listen 127.0.0.1:$ADMIN_PORT --admin-users app --pool-mode transaction --pool-size $POOL_SIZE"
"$PGVIGIL" --listen "127.0.0.1:$PROXY_PORT" \
    --upstream "$UPSTREAM" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" \
    --admin-users app \
    --pool-mode transaction \
    --pool-size "$POOL_SIZE" \
    </dev/null >"$TMP/pgvigil.log" 2>&1 &
PGVIGIL_PID=$!
for ((i = 0; i < 300; i++)); do
    grep -q "listening on" "$TMP/pgvigil.log" && break
    if ! kill -0 "$PGVIGIL_PID" 2>/dev/null; then
        plain "$TMP/pgvigil.log" >&2
        die "pgvigil exited before listening"
    fi
    sleep 0.1
done
grep -q "listening on" "$TMP/pgvigil.log" || {
    plain "$TMP/pgvigil.log" >&2
    die "pgvigil did not log 'listening on' within 30 s"
}
grep -m1 "listening on" "$TMP/pgvigil.log" | plain

# Every client below talks to pgvigil, never to PostgreSQL directly.
export PGHOST=127.0.0.1 PGPORT="$PROXY_PORT" PGUSER=app PGPASSWORD=secret PGDATABASE=appdb

# --- 4. workload ---------------------------------------------------------------
step "psql through pgvigil"
psql -X -v ON_ERROR_STOP=1 <<'SQL'
SELECT current_user, current_database(), inet_server_port() AS server_port;
CREATE TABLE demo_orders (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO demo_orders (customer, amount)
SELECT 'customer-' || (i % 20), (i * 37 % 10000) / 100.0
FROM generate_series(1, 500) AS i;
SELECT customer, count(*) AS orders, sum(amount) AS total
FROM demo_orders GROUP BY customer ORDER BY total DESC, customer LIMIT 3;
BEGIN;
UPDATE demo_orders SET amount = amount + 1 WHERE customer = 'customer-1';
SELECT count(*) AS orders_of_customer_1, sum(amount) AS new_total
FROM demo_orders WHERE customer = 'customer-1';
COMMIT;
SQL

step "pgbench -i -s 1 through pgvigil"
pgbench -i -s 1 >"$TMP/pgbench-init.log" 2>&1 || {
    cat "$TMP/pgbench-init.log" >&2
    die "pgbench -i failed"
}
tail -n 1 "$TMP/pgbench-init.log"

step "pgbench -M prepared -c $CLIENTS -j $THREADS -T $DURATION through pgvigil"
pgbench -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION" >"$TMP/pgbench.log" 2>&1 &
BENCH_PID=$!
# Meanwhile, sample the server side: which backends serve database appdb.
: >"$TMP/backends"
peak=0
while kill -0 "$BENCH_PID" 2>/dev/null; do
    pids=$(pg_super -At -c "SELECT pid FROM pg_stat_activity
                            WHERE datname = 'appdb' AND backend_type = 'client backend'") || pids=""
    if [ -n "$pids" ]; then
        printf '%s\n' "$pids" >>"$TMP/backends"
        n=$(printf '%s\n' "$pids" | wc -l)
        if [ "$n" -gt "$peak" ]; then peak=$n; fi
    fi
    sleep 0.2
done
bench_rc=0
wait "$BENCH_PID" || bench_rc=$?
BENCH_PID=""
distinct=$(sort -u "$TMP/backends" | grep -c . || true)
cat "$TMP/pgbench.log"

step "an ORM-style page through pgvigil: 20 customers, then their orders one by one (N+1)"
{
    echo "BEGIN;"
    echo "SELECT DISTINCT customer FROM demo_orders ORDER BY customer LIMIT 20;"
    for i in $(seq 0 19); do
        echo "SELECT id, amount FROM demo_orders WHERE customer = 'customer-$i' ORDER BY id;"
    done
    echo "COMMIT;"
} | psql -X -q -v ON_ERROR_STOP=1 >/dev/null
echo "done"

step "a slow query through pgvigil (slow_query_ms defaults to 500)"
psql -X -q -c "SELECT pg_sleep(0.6)" >/dev/null
echo "done"

step "a lookup by an unindexed column through pgvigil, then the advisor (POST /api/advice/refresh)"
# hypopg lets the advisor try an index before anyone builds it; creating an
# extension is a superuser's job, as it would be in production.
pg_super -d appdb -c "CREATE EXTENSION IF NOT EXISTS hypopg" >/dev/null 2>&1 ||
    echo "(hypopg not available: the advice will come from plan heuristics)"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE demo_events (id bigserial PRIMARY KEY, account int NOT NULL, kind text NOT NULL);
INSERT INTO demo_events (account, kind)
SELECT g % 20000, CASE WHEN g % 7 = 0 THEN 'refund' ELSE 'sale' END FROM generate_series(1, 200000) g;
ANALYZE demo_events;
SQL
for i in $(seq 1 20); do
    echo "SELECT count(*) FROM demo_events WHERE account = $((i * 37));"
done | psql -X -q -v ON_ERROR_STOP=1 >/dev/null
echo "done"

# Statistics are merged from per-thread buffers every 250 ms.
sleep 1

step "the admin console, as PgBouncer's: psql -U app pgvigil -c 'SHOW POOLS' -c 'SHOW STATS_TOTALS'"
console_out=$(psql -X -d pgvigil -c "SHOW POOLS" -c "SHOW STATS_TOTALS" 2>&1) || problems_console="the admin console failed: $console_out"
printf '%s\n' "$console_out"
api() { curl -fsS "http://127.0.0.1:$ADMIN_PORT$1" 2>/dev/null || python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" "http://127.0.0.1:$ADMIN_PORT$1"; }
api "/api/queries?sort=total_time&limit=5" >"$TMP/queries.json" || problems_api="GET /api/queries failed"
api "/api/n-plus-one" >"$TMP/n_plus_one.json" || problems_api="GET /api/n-plus-one failed"
api "/api/slow?limit=5" >"$TMP/slow.json" || problems_api="GET /api/slow failed"
# The advisor runs every advisor.interval_s; a refresh runs it now.
api_post() { curl -fsS -X POST -H 'X-Pgvigil: 1' "http://127.0.0.1:$ADMIN_PORT$1" 2>/dev/null || python3 -c "import sys, urllib.request; r = urllib.request.Request(sys.argv[1], method='POST', headers={'X-Pgvigil': '1'}); sys.stdout.write(urllib.request.urlopen(r).read().decode())" "http://127.0.0.1:$ADMIN_PORT$1"; }
api_post "/api/advice/refresh" >"$TMP/advice.json" || problems_api="POST /api/advice/refresh failed"
insight_report=$(python3 - "$TMP" <<'PY'
import json, sys
d = sys.argv[1]
queries = json.load(open(f"{d}/queries.json"))["queries"]
detections = json.load(open(f"{d}/n_plus_one.json"))["detections"]
slow = json.load(open(f"{d}/slow.json"))["events"]
print("top statements by total time (GET /api/queries):")
print(f"  {'calls':>7} {'total ms':>9} {'mean ms':>8} {'p95 ms':>7}  query")
for q in queries:
    print(f"  {q['calls']:>7} {q['total_ms']:>9.1f} {q['mean_ms']:>8.3f} {q['p95_ms']:>7.3f}  {q['query'][:70]}")
print("N+1 detections (GET /api/n-plus-one):")
for x in detections:
    print(f"  {x['kind']}: {x['repeats']}x  {x['query'][:70]}")
    if x.get("parent_query"):
        print(f"    after parent: {x['parent_query'][:70]}")
    print(f"    suggestion: {x['suggestion'][:150]}...")
print("slow queries (GET /api/slow):")
for e in slow:
    print(f"  {e['duration_ms']:.0f} ms  rule={e['rule']}  {e['query'][:60]}  ({e['application_name']})")
advice = json.load(open(f"{d}/advice.json"))["advice"]
print("index advice (POST /api/advice/refresh):")
for a in advice:
    gain = f", estimated cost -{a['improvement'] * 100:.0f}%" if a.get("improvement") else ""
    print(f"  {a['kind']} ({a['method']}{gain}): {a['ddl']}")
print(f"COUNTS {len(queries)} {len(detections)} {len(slow)} {len(advice)}")
PY
) || problems_api="could not read the API's answers"

# --- 5. summary ------------------------------------------------------------------
pgvigil_rc=0
stop_process "$PGVIGIL_PID" 10 || pgvigil_rc=$?
PGVIGIL_PID=""

field() { sed -n "s/^$1//p" "$TMP/pgbench.log" | head -n 1; }
tps=$(field 'tps = ' | awk '{ printf "%.0f", $1 }')
processed=$(field 'number of transactions actually processed: ')
failed=$(field 'number of failed transactions: ')
latency=$(field 'latency average = ')

problems=()
[ "$bench_rc" -eq 0 ] || problems+=("pgbench exited with code $bench_rc")
[ -n "$tps" ] || problems+=("pgbench reported no tps")
case "$failed" in
    "" | 0\ *) ;;
    *) problems+=("pgbench reported failed transactions: $failed") ;;
esac
[ "$peak" -gt 0 ] || problems+=("no server backend seen on database appdb during the run")
[ "$peak" -le "$POOL_SIZE" ] || problems+=("$peak server backends at once, more than pool size $POOL_SIZE")
[ "$pgvigil_rc" -eq 0 ] || problems+=("pgvigil exited with code $pgvigil_rc on SIGTERM")
[ -z "${problems_api:-}" ] || problems+=("$problems_api")
[ -z "${problems_console:-}" ] || problems+=("$problems_console")
read -r n_queries n_detections n_slow n_advice < <(printf '%s\n' "$insight_report" | sed -n 's/^COUNTS //p')
[ "${n_queries:-0}" -gt 0 ] || problems+=("the query insight API listed no statements")
[ "${n_detections:-0}" -gt 0 ] || problems+=("the N+1 loop was not detected")
[ "${n_slow:-0}" -gt 0 ] || problems+=("the slow query was not recorded")
[ "${n_advice:-0}" -gt 0 ] || problems+=("the advisor gave no index advice for the unindexed lookup")

printf '\n========================= pgvigil demo summary =========================\n'
printf '%-22s %s\n' "workload" "pgbench -M prepared, $CLIENTS clients, $THREADS threads, $DURATION s, scale 1"
printf '%-22s %s\n' "path" "pgbench -> pgvigil :$PROXY_PORT (transaction mode, pool size $POOL_SIZE) -> PostgreSQL :$PG_PORT"
printf '%-22s %s\n' "throughput" "${tps:-?} tps"
printf '%-22s %s\n' "transactions" "${processed:-?} processed, ${failed:-?} failed"
printf '%-22s %s\n' "latency average" "${latency:-?}"
printf '%-22s %s\n' "server backends" "$peak at most at once, $distinct distinct over the run, for $CLIENTS clients (pg_stat_activity)"
printf '%-22s %s\n' "pgvigil shutdown" "SIGTERM -> exit code $pgvigil_rc"
printf -- '--- query insight ---\n'
printf '%s\n' "$insight_report" | grep -v '^COUNTS '
printf -- '--- pgvigil log, last 15 lines ---\n'
tail -n 15 "$TMP/pgvigil.log" | plain
printf '=========================================================================\n'

if [ "${#problems[@]}" -gt 0 ]; then
    printf 'demo FAILED:\n' >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "demo OK: $CLIENTS clients were served by $peak PostgreSQL backends."
