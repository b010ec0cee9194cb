# shellcheck shell=bash
# Shared by the benchmarks (benches/) and scripts/client-suites.sh (sourced, not run):
# a throwaway PostgreSQL 15 cluster in a temporary folder, run as the
# postgres user when the caller is root, plus the small helpers both use.
#
# The sourcing script defines `die MESSAGE` (print, exit non-zero).
# Globals set by pg_cluster_create:
#   PG_DIR      the cluster's folder: data/, logs, Unix socket
#   PG_DATA     $PG_DIR/data
#   PG_PORT     the cluster's TCP port (127.0.0.1)
#   PG_STARTED  non-empty once `pg_ctl start` was tried (pg_cluster_stop then stops it)

PG_BIN=/usr/lib/postgresql/15/bin
export PATH="$PG_BIN:$PATH"

PG_DIR=""
PG_DATA=""
PG_PORT=""
PG_STARTED=""

step() { printf '\n==> %s\n' "$*"; }
# pgvigil's log may carry terminal colors; show it plain.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }

# free_ports N: N distinct free loopback TCP ports, on one line.
free_ports() {
    python3 -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))' "$1"
}

# pg_tmpdir NAME: prints a new temporary folder NAME.XXXXXX, owned by the
# postgres user when running as root.
pg_tmpdir() {
    local dir
    if [ "$(id -u)" -eq 0 ]; then
        dir=$(mktemp -d "/tmp/$1.XXXXXX") || return
        chown postgres:postgres "$dir" || { rmdir "$dir"; return 1; }
    else
        dir=$(mktemp -d -t "$1.XXXXXX") || return
    fi
    printf '%s\n' "$dir"
}

# initdb, pg_ctl and pgbouncer refuse to run as root: run them as the
# postgres user then, from the cluster's folder.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$PG_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$PG_DIR" && "$@")
    fi
}

# pg_cluster_create DIR PORT TITLE [SETTING...]: initdb in DIR/data (SCRAM over
# TCP, trust over the Unix socket in DIR), listening on 127.0.0.1:PORT with
# fsync off and each SETTING ("name = value") appended, then starts it (logs in
# DIR/initdb.log and DIR/postgres.log) and creates role app/secret owning
# database appdb. TITLE names the cluster in postgresql.conf.
pg_cluster_create() {
    PG_DIR=$1
    PG_PORT=$2
    PG_DATA="$PG_DIR/data"
    local title=$3
    shift 3
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --no-locale -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed"
    }
    # Appended as the invoking user; the file keeps its owner.
    {
        printf '\n# %s (throwaway cluster)\n' "$title"
        printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $PG_PORT" \
            "unix_socket_directories = '$PG_DIR'" "fsync = off"
        if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
    } >>"$PG_DATA/postgresql.conf"
    PG_STARTED=1
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 120 start >/dev/null || {
        cat "$PG_DIR/postgres.log" >&2
        die "PostgreSQL did not start"
    }
    pg_super -c "CREATE ROLE app LOGIN PASSWORD 'secret'" -c "CREATE DATABASE appdb OWNER app"
}

# Immediate shutdown of the cluster, if it was started; prints nothing.
pg_cluster_stop() {
    if [ -n "$PG_STARTED" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
    fi
}

# Superuser session on database postgres over the cluster's Unix socket
# (trust auth, never through a pooler).
pg_super() {
    psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

# stop_process PID GRACE: SIGTERM, up to GRACE seconds, then SIGKILL. Only for
# processes the calling script started. Prints nothing; returns the process's
# exit status.
stop_process() {
    local pid=$1 grace=$2 i
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        if [ "$i" -eq 0 ]; then kill -TERM "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

# wait_listening LOG PID NAME: waits up to 30 s for a pgvigil started by the
# calling script to log "listening on"; the caller's `die` reports a process
# that exited or never listened, with its log.
wait_listening() { # log pid name
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q "listening on" "$1" && return 0
        kill -0 "$2" 2>/dev/null || { plain "$1" >&2; die "$3 exited before listening"; }
        sleep 0.1
    done
    plain "$1" >&2
    die "$3 did not log 'listening on' within 30 s"
}
