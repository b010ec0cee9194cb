"""Protocol fidelity with a real driver (psycopg 3), against pgvigil in
session mode (PGVIGIL_SESSION_DSN) and in transaction mode
(PGVIGIL_TRANSACTION_DSN). Each check names the issue-14 cause it pins.
Exits non-zero with the failing checks listed."""

import os
import sys

import psycopg

failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def startup_settings_are_postgresqls_spellings(dsn, mode):
    # Cause 1: the driver is told what PostgreSQL reports, not its own
    # spelling echoed back.
    with psycopg.connect(
        dsn,
        autocommit=True,
        client_encoding="utf-8",
        options="-c DateStyle=iso,dmy -c TimeZone=europe/rome",
    ) as conn:
        told = {k: conn.info.parameter_status(k) for k in ("client_encoding", "DateStyle", "TimeZone")}
        want = {"client_encoding": "UTF8", "DateStyle": "ISO, DMY", "TimeZone": "Europe/Rome"}
        check(f"{mode}: ParameterStatus at login", told == want, f"told {told}")
        shown = conn.execute("SHOW DateStyle").fetchone()[0]
        check(f"{mode}: DateStyle in force", shown == "ISO, DMY", shown)


def session_mode_backend_pid_is_real(dsn):
    # Cause 5: backend_pid is the backend's own.
    with psycopg.connect(dsn, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        check("session: info.backend_pid is pg_backend_pid()", conn.info.backend_pid == pid,
              f"{conn.info.backend_pid} != {pid}")
        conn.execute("LISTEN fidelity_self")
        conn.execute("NOTIFY fidelity_self, 'me'")
        notes = list(conn.notifies(timeout=5, stop_after=1))
        check("session: a self-NOTIFY carries the told pid",
              len(notes) == 1 and notes[0].pid == conn.info.backend_pid, f"{notes}")


def transaction_mode_keeps_session_state(dsn):
    # Cause 6: session state survives across transactions in transaction mode.
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as other:
        conn.execute("SET search_path TO pg_catalog, public")
        other.execute("SELECT 1")
        path = conn.execute("SHOW search_path").fetchone()[0]
        check("transaction: SET search_path follows the client", path == "pg_catalog, public", path)
        conn.execute("CREATE TEMP TABLE fidelity_tmp (x int)")
        conn.execute("INSERT INTO fidelity_tmp VALUES (1), (2)")
        other.execute("SELECT 1")
        n = conn.execute("SELECT count(*) FROM fidelity_tmp").fetchone()[0]
        check("transaction: a temporary table lives across transactions", n == 2, str(n))
        seen = other.execute("SELECT to_regclass('pg_temp.fidelity_tmp')::text").fetchone()[0]
        check("transaction: another client does not see it", seen is None, str(seen))
        conn.execute("SELECT pg_advisory_lock(99)")
        other.execute("SELECT 1")
        held = conn.execute("SELECT pg_advisory_unlock(99)").fetchone()[0]
        check("transaction: a session advisory lock is still held", held is True, str(held))
        conn.execute("PREPARE fidelity_stmt AS SELECT $1::int + 1")
        other.execute("SELECT 1")
        r = conn.execute("EXECUTE fidelity_stmt(41)").fetchone()[0]
        check("transaction: SQL PREPARE survives", r == 42, str(r))
        conn.execute("DEALLOCATE fidelity_stmt")
        conn.execute("DROP TABLE fidelity_tmp")
        # A pinned client's own NOTIFY comes back with the pid it was told.
        conn.execute("LISTEN fidelity_own")
        conn.execute("NOTIFY fidelity_own, 'mine'")
        notes = list(conn.notifies(timeout=5, stop_after=1))
        check("transaction: a self-NOTIFY carries the told pid",
              len(notes) == 1 and notes[0].pid == conn.info.backend_pid,
              f"{[(n.pid, n.payload) for n in notes]} vs told {conn.info.backend_pid}")
        other.execute("NOTIFY fidelity_own, 'theirs'")
        notes = list(conn.notifies(timeout=5, stop_after=1))
        check("transaction: another client's NOTIFY keeps its sender's pid",
              len(notes) == 1 and notes[0].pid != conn.info.backend_pid, f"{notes}")
        conn.execute("UNLISTEN *")


def main():
    session = os.environ["PGVIGIL_SESSION_DSN"]
    transaction = os.environ["PGVIGIL_TRANSACTION_DSN"]
    startup_settings_are_postgresqls_spellings(session, "session")
    startup_settings_are_postgresqls_spellings(transaction, "transaction")
    session_mode_backend_pid_is_real(session)
    transaction_mode_keeps_session_state(transaction)
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)


main()
