#!/usr/bin/env python3
"""Python drivers through pgvigil in transaction pool mode, prepared statements on.

* asyncpg always uses named prepared statements (Parse+Describe, then
  Bind/Execute/Sync) and keeps its own statement cache.
* psycopg 3 prepares every statement with prepare_threshold=0, after five
  executions with the default threshold, and on request with prepare=True;
  also in pipeline mode.

Many concurrent clients share a small server pool, so a client's statements
must be re-prepared on whichever server connection its next transaction
lands on. Every scenario runs its clients concurrently and checks every
result, so a statement or portal mixed up between clients or servers shows
as a wrong value, a wrong row shape or an unexpected error.

The expectations are PostgreSQL's own behaviour: run against PostgreSQL
directly (PGVIGIL_POOL_SIZE unset) the script passes too.

Environment:
  PGVIGIL_DSN        postgres://user:password@host:port/dbname of pgvigil (required)
  PGVIGIL_POOL_SIZE  pgvigil's server pool size. When set, also checks that each
                     scenario's statements ran on at most that many server
                     connections and that clients moved between them.
  PGVIGIL_CLIENTS    concurrent client connections per scenario (default 20)
  PGVIGIL_SCENARIOS  only these scenarios: comma-separated numbers as printed
                     (default: all). A scenario that leaves pgvigil's statement
                     bookkeeping wrong can make later ones fail too; run a
                     failing one alone to tell.

Needs: pip install -r tests/python/requirements.txt
Exit status: 0 if every scenario passed, 1 if any failed, 2 on bad setup.
"""

import asyncio
import contextlib
import itertools
import logging
import os
import re
import sys
import time
import traceback
from decimal import Decimal

try:
    import asyncpg
    import psycopg
    from psycopg import errors as pgerrors
except ImportError as exc:
    print(
        f"missing Python driver ({exc}): run `pip install -r tests/python/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(2)

DSN = os.environ.get("PGVIGIL_DSN", "")
POOL_SIZE = int(os.environ["PGVIGIL_POOL_SIZE"]) if os.environ.get("PGVIGIL_POOL_SIZE") else None
CLIENTS = int(os.environ.get("PGVIGIL_CLIENTS", "20"))
ONLY = {int(n) for n in os.environ.get("PGVIGIL_SCENARIOS", "").split(",") if n.strip()}
SCENARIO_TIMEOUT = 20.0
# A hung pgvigil must not hold the run for every scenario's full timeout.
TOTAL_BUDGET = 90.0

PFX = f"pyd_{os.getpid()}"
ITEMS = f"{PFX}_items"
MOOD = f"{PFX}_mood"
MOODS = ["sad", "ok", "happy"]
# Client numbers are unique across scenarios: rows are counted per client.
CLIENT_IDS = itertools.count()

# psycopg logs a warning when leaving a failed pipeline; the error itself is raised.
logging.getLogger("psycopg").setLevel(logging.ERROR)


class Failure(Exception):
    """A check failed."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


@contextlib.contextmanager
def raises(exc_type, what):
    """The block must raise exc_type (as PostgreSQL would make it)."""
    try:
        yield
    except exc_type:
        return
    except Exception as exc:
        raise Failure(
            f"{what}: expected {exc_type.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise Failure(f"{what}: expected {exc_type.__name__}, but it succeeded")


class Step:
    """Remembers what a client was doing, for failure messages."""

    def __init__(self):
        self.what = "connecting"

    def __call__(self, what):
        self.what = what


class ClientError(Exception):
    def __init__(self, client, step, exc):
        first_line = (str(exc).splitlines() or [""])[0]
        super().__init__(f"client {client}, while {step}: {type(exc).__name__}: {first_line}")
        self.client = client
        self.step = step
        self.exc = exc


def asyncpg_sql(sql):
    return re.sub(r"\{(\d)\}", r"$\1", sql).replace("MOOD", MOOD)


def psycopg_sql(sql):
    return re.sub(r"\{\d\}", "%s", sql).replace("MOOD", MOOD)


# Statements every client runs, with distinct result shapes so that a
# statement used in place of another shows. Placeholders {n} appear in
# order. Each entry: (sql, args for round k, rows expected for round k).
QUERIES = [
    (
        "SELECT {1}::int4 * 2, 'double'",
        lambda k: (k,),
        lambda k: [(2 * k, "double")],
    ),
    (
        "SELECT upper({1}::text), {2}::int4 + 1",
        lambda k: (f"x{k}", k),
        lambda k: [(f"X{k}", k + 1)],
    ),
    (
        "SELECT g, g * {1}::int8 FROM generate_series(1, {2}::int4) g",
        lambda k: (k, k % 5 + 1),
        lambda k: [(g, g * k) for g in range(1, k % 5 + 2)],
    ),
    (
        "SELECT {1}::numeric(12,2) + 0.5",
        lambda k: (Decimal(k),),
        lambda k: [(Decimal(k) + Decimal("0.5"),)],
    ),
    (
        "SELECT ARRAY[{1}::int8, {2}::int8]",
        lambda k: (k, -k),
        lambda k: [([k, -k],)],
    ),
    (
        "SELECT {1}::text::MOOD",
        lambda k: (MOODS[k % 3],),
        lambda k: [(MOODS[k % 3],)],
    ),
]

# Returns the server connection it ran on: how the checks see clients move.
PID_SQL = "SELECT {1}::int4 + 1000, pg_backend_pid()"
INSERT_SQL = f"INSERT INTO {ITEMS} (scenario, client, n, note) VALUES ({{1}}, {{2}}, {{3}}, {{4}})"
DIV_SQL = "SELECT 100 / {1}::int4, pg_backend_pid()"


def rotated(seq, by):
    by %= len(seq)
    return seq[by:] + seq[:by]


def check_rows(got, want, what):
    check(got == want, f"{what}: wrong result {got!r}, expected {want!r}")


# ---------------------------------------------------------------- asyncpg


async def apg_connect(**kwargs):
    return await asyncpg.connect(DSN, timeout=10, **kwargs)


async def apg_queries(conn, client, k, step, pids):
    """Every shared statement (order rotated per client) plus the pid one."""
    for sql, args, want in rotated(QUERIES, client + k):
        step(f"round {k}: {sql!r}")
        rows = [tuple(r) for r in await conn.fetch(asyncpg_sql(sql), *args(k))]
        check_rows(rows, want(k), f"round {k}: {sql!r}")
    step(f"round {k}: pid statement")
    v, pid = await conn.fetchrow(asyncpg_sql(PID_SQL), k)
    check(v == k + 1000, f"round {k}: pid statement returned {v}")
    pids.add(pid)


async def apg_items(conn, scenario, client):
    rows = await conn.fetch(
        f"SELECT note, count(*) FROM {ITEMS} WHERE scenario = $1 AND client = $2 GROUP BY note",
        scenario,
        client,
    )
    return {r[0]: r[1] for r in rows}


async def asyncpg_concurrent(client, step, pids, txns=15):
    """Cached statements in and out of transactions, an explicit statement
    whose client-side name every client uses for a different query,
    executemany, and a cursor."""
    conn = await apg_connect()
    try:
        step("preparing the statement named 'pyd_same_name'")
        own = await conn.prepare(
            f"SELECT $1::int4 + {client}, pg_backend_pid()", name="pyd_same_name"
        )
        for k in range(txns):
            step(f"round {k}: transaction")
            async with conn.transaction():
                v, pid = await own.fetchrow(k)
                check(v == k + client, f"round {k}: own statement returned {v}")
                pids.add(pid)
                await apg_queries(conn, client, k, step, pids)
                step(f"round {k}: insert in transaction")
                await conn.execute(asyncpg_sql(INSERT_SQL), "apg", client, k, "tx")
            # Outside a transaction every statement may land on another server.
            step(f"round {k}: own statement outside a transaction")
            v, pid = await own.fetchrow(-k)
            check(v == client - k, f"round {k}: own statement returned {v}")
            pids.add(pid)
            await apg_queries(conn, client, k + 1, step, pids)
        step("executemany")
        await conn.executemany(
            asyncpg_sql(INSERT_SQL), [("apg", client, 1000 + j, "many") for j in range(5)]
        )
        step("cursor in a transaction")
        async with conn.transaction():
            got = [
                r[0]
                async for r in conn.cursor(
                    "SELECT g FROM generate_series(1, $1::int4) g", 50, prefetch=7
                )
            ]
            check(got == list(range(1, 51)), f"cursor returned {got}")
        step("counting rows")
        counts = await apg_items(conn, "apg", client)
        check(counts == {"tx": txns, "many": 5}, f"rows written: {counts}")
    finally:
        await conn.close()


async def asyncpg_pool(client, step, pids, rounds=10):
    """asyncpg.Pool, whose release runs asyncpg's reset query; the pool is
    shared by the coroutines of this 'client'."""
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=2, timeout=10)
    try:

        async def worker(w):
            for k in range(rounds):
                step(f"worker {w} round {k}")
                async with pool.acquire() as conn:
                    async with conn.transaction():
                        await apg_queries(conn, client, k + w, step, pids)
                        await conn.execute(asyncpg_sql(INSERT_SQL), "pool", client, k, "tx")

        await asyncio.gather(*(worker(w) for w in range(3)))
        step("counting rows")
        async with pool.acquire() as conn:
            counts = await apg_items(conn, "pool", client)
        check(counts == {"tx": 3 * rounds}, f"rows written: {counts}")
    finally:
        await pool.close()


async def asyncpg_errors(client, step, pids, rounds=3):
    """Errors inside transactions, rollback, savepoints, statements that fail
    to prepare, and the prepared statements keep working."""
    conn = await apg_connect()
    try:
        step("preparing the division statement")
        div = await conn.prepare(asyncpg_sql(DIV_SQL))
        for k in range(rounds):
            step(f"round {k}: error inside a transaction")
            with raises(asyncpg.DivisionByZeroError, f"round {k}: 100/0 in a transaction"):
                async with conn.transaction():
                    await conn.execute(asyncpg_sql(INSERT_SQL), "apgerr", client, k, "rolled back")
                    await div.fetchrow(0)
            step(f"round {k}: prepared statement after the rollback")
            v, pid = await div.fetchrow(4)
            check(v == 25, f"round {k}: 100/4 returned {v}")
            pids.add(pid)

            step(f"round {k}: statements in an aborted transaction")
            tx = conn.transaction()
            await tx.start()
            with raises(asyncpg.DivisionByZeroError, f"round {k}: 100/0"):
                await div.fetchrow(0)
            fresh = f"SELECT $1::int4 + {100 * k + client}"
            with raises(asyncpg.InFailedSQLTransactionError, f"round {k}: new statement in aborted transaction"):
                await conn.fetchval(fresh, 1)
            with raises(asyncpg.InFailedSQLTransactionError, f"round {k}: prepared statement in aborted transaction"):
                await div.fetchrow(1)
            await tx.rollback()
            step(f"round {k}: the new statement after rollback")
            v = await conn.fetchval(fresh, 1)
            check(v == 100 * k + client + 1, f"round {k}: new statement returned {v}")

            step(f"round {k}: savepoint")
            async with conn.transaction():
                await conn.execute(asyncpg_sql(INSERT_SQL), "apgerr", client, k, "kept")
                with raises(asyncpg.DivisionByZeroError, f"round {k}: 100/0 in a savepoint"):
                    async with conn.transaction():
                        await conn.execute(asyncpg_sql(INSERT_SQL), "apgerr", client, k, "rolled back")
                        await div.fetchrow(0)
                v, _ = await div.fetchrow(2)
                check(v == 50, f"round {k}: 100/2 after rollback to savepoint returned {v}")
                await apg_queries(conn, client, k, step, pids)
                await conn.execute(asyncpg_sql(INSERT_SQL), "apgerr", client, k, "kept")

            step(f"round {k}: statements that fail to prepare")
            with raises(asyncpg.PostgresSyntaxError, f"round {k}: preparing a syntax error"):
                await conn.prepare("SELEC $1::int4")
            with raises(asyncpg.UndefinedTableError, f"round {k}: preparing against a missing table"):
                await conn.fetchval(f"SELECT count(*) FROM {PFX}_missing WHERE $1::int4 = {k}", 1)
            step(f"round {k}: error outside a transaction")
            with raises(asyncpg.DivisionByZeroError, f"round {k}: 100/0 outside a transaction"):
                await div.fetchrow(0)
            v, pid = await div.fetchrow(5)
            check(v == 20, f"round {k}: 100/5 returned {v}")
            pids.add(pid)
            await apg_queries(conn, client, k, step, pids)
        step("counting rows")
        counts = await apg_items(conn, "apgerr", client)
        check(counts == {"kept": 2 * rounds}, f"rows written: {counts}")
    finally:
        await conn.close()


async def asyncpg_deallocate(client, step, pids, rounds=3):
    """DEALLOCATE ALL / DISCARD ALL after preparing: statements prepared
    before are gone (PostgreSQL's error), statements prepared after work,
    and so does asyncpg's cache once told to reload."""
    conn = await apg_connect()
    try:
        for k in range(rounds):
            command = "DEALLOCATE ALL" if (client + k) % 2 == 0 else "DISCARD ALL"
            step(f"round {k}: preparing before {command}")
            before = await conn.prepare(asyncpg_sql(PID_SQL))
            v, pid = await before.fetchrow(k)
            check(v == k + 1000, f"round {k}: statement returned {v}")
            await apg_queries(conn, client, k, step, pids)
            step(f"round {k}: {command}")
            await conn.execute(command)
            step(f"round {k}: statement prepared before {command}")
            with raises(asyncpg.InvalidSQLStatementNameError, f"round {k}: statement prepared before {command}"):
                await before.fetchrow(k)
            step(f"round {k}: statement prepared after {command}")
            after = await conn.prepare(asyncpg_sql(PID_SQL))
            for j in range(3):
                v, pid = await after.fetchrow(j)
                check(v == j + 1000, f"round {k}: statement returned {v}")
                pids.add(pid)
            step(f"round {k}: asyncpg's statement cache after reload_schema_state()")
            await conn.reload_schema_state()
            await apg_queries(conn, client, k, step, pids)
    finally:
        await conn.close()


async def asyncpg_cache_eviction(client, step, pids, rounds=3):
    """A small statement cache: asyncpg closes evicted statements (Close) and
    re-prepares them later under new names."""
    conn = await apg_connect(statement_cache_size=3)
    try:
        for k in range(rounds):
            await apg_queries(conn, client, k, step, pids)
            step(f"round {k}: transaction after evictions")
            async with conn.transaction():
                await apg_queries(conn, client, k + 1, step, pids)
    finally:
        await conn.close()


# ---------------------------------------------------------------- psycopg


async def pg3_connect(**kwargs):
    return await psycopg.AsyncConnection.connect(DSN, connect_timeout=10, **kwargs)


async def pg3_queries(conn, client, k, step, pids, prepare=None):
    for sql, args, want in rotated(QUERIES, client + k):
        step(f"round {k}: {sql!r}")
        cur = await conn.execute(psycopg_sql(sql), args(k), prepare=prepare)
        check_rows(await cur.fetchall(), want(k), f"round {k}: {sql!r}")
    step(f"round {k}: pid statement")
    cur = await conn.execute(psycopg_sql(PID_SQL), (k,), prepare=prepare)
    v, pid = await cur.fetchone()
    check(v == k + 1000, f"round {k}: pid statement returned {v}")
    pids.add(pid)


async def pg3_insert(conn, scenario, client, k, note, prepare=None):
    await conn.execute(psycopg_sql(INSERT_SQL), (scenario, client, k, note), prepare=prepare)


async def pg3_items(conn, scenario, client):
    cur = await conn.execute(
        f"SELECT note, count(*) FROM {ITEMS} WHERE scenario = %s AND client = %s GROUP BY note",
        (scenario, client),
    )
    counts = {note: n for note, n in await cur.fetchall()}
    if not conn.autocommit:
        await conn.commit()
    return counts


def pg3_prepared_count(conn):
    """How many statements psycopg believes it has prepared (internal state,
    pinned psycopg version); None if unavailable."""
    names = getattr(getattr(conn, "_prepared", None), "_names", None)
    return None if names is None else len(names)


async def psycopg_threshold0(client, step, pids, txns=15):
    """prepare_threshold=0: every statement prepared. Half the clients are
    autocommit with explicit transactions, half use implicit transactions."""
    autocommit = client % 2 == 0
    conn = await pg3_connect(prepare_threshold=0, autocommit=autocommit)
    try:
        for k in range(txns):
            step(f"round {k}: transaction")
            if autocommit:
                async with conn.transaction():
                    await pg3_queries(conn, client, k, step, pids)
                    await pg3_insert(conn, "pg3", client, k, "tx")
                # outside any transaction
                await pg3_queries(conn, client, k + 1, step, pids)
            else:
                await pg3_queries(conn, client, k, step, pids)
                await pg3_insert(conn, "pg3", client, k, "tx")
                step(f"round {k}: commit")
                await conn.commit()
            n = pg3_prepared_count(conn)
            check(n is None or n > 0, f"round {k}: psycopg prepared no statement")
        step("executemany")
        async with conn.cursor() as cur:
            await cur.executemany(
                psycopg_sql(INSERT_SQL), [("pg3", client, 1000 + j, "many") for j in range(5)]
            )
        if not autocommit:
            await conn.commit()
        step("counting rows")
        counts = await pg3_items(conn, "pg3", client)
        check(counts == {"tx": txns, "many": 5}, f"rows written: {counts}")
    finally:
        await conn.close()


# Clients of one scenario that begin their transactions together. libpq
# computes SCRAM on the event loop, so connections come up one after
# another; a proxy fast enough can serve one client's whole scenario before
# the next is connected, and then nobody competes for the pool and nobody
# moves between server connections, which is what the scenario is about.
_STARTS = {}


async def start_together(name, count, timeout=10):
    barrier = _STARTS.setdefault(name, asyncio.Barrier(count))
    try:
        await asyncio.wait_for(barrier.wait(), timeout)
    except (asyncio.TimeoutError, asyncio.BrokenBarrierError):
        pass  # a client that failed to connect is reported by the runner


async def psycopg_default_threshold(client, step, pids, txns=12):
    """Default prepare_threshold (5): statements get prepared mid-way."""
    conn = await pg3_connect(autocommit=client % 2 == 0)
    try:
        step("waiting for the other clients to connect")
        await start_together("pg3default", CLIENTS)
        for k in range(txns):
            step(f"round {k}: transaction")
            async with conn.transaction():
                await pg3_queries(conn, client, k, step, pids)
                await pg3_insert(conn, "pg3default", client, k, "tx")
        n = pg3_prepared_count(conn)
        check(n is None or n >= len(QUERIES), f"psycopg prepared only {n} statements")
        counts = await pg3_items(conn, "pg3default", client)
        check(counts == {"tx": txns}, f"rows written: {counts}")
    finally:
        await conn.close()


async def psycopg_prepare_true(client, step, pids, txns=10):
    """conn.execute(..., prepare=True) prepares at once; prepare=False never."""
    conn = await pg3_connect(autocommit=True)
    try:
        for k in range(txns):
            step(f"round {k}: prepare=True outside a transaction")
            await pg3_queries(conn, client, k, step, pids, prepare=True)
            n = pg3_prepared_count(conn)
            check(n is None or n >= len(QUERIES) + 1, f"round {k}: psycopg prepared only {n} statements")
            step(f"round {k}: prepare=True in a transaction")
            async with conn.transaction():
                await pg3_queries(conn, client, k + 1, step, pids, prepare=True)
                await pg3_insert(conn, "pg3true", client, k, "tx", prepare=True)
            step(f"round {k}: prepare=False")
            await pg3_queries(conn, client, k + 2, step, pids, prepare=False)
        counts = await pg3_items(conn, "pg3true", client)
        check(counts == {"tx": txns}, f"rows written: {counts}")
    finally:
        await conn.close()


async def psycopg_errors(client, step, pids, rounds=3):
    """Errors in transactions with prepared statements, rollback (after which
    psycopg itself sends DEALLOCATE ALL), savepoints, a statement that fails
    to prepare; prepared statements keep working."""
    conn = await pg3_connect(prepare_threshold=0)
    div = psycopg_sql(DIV_SQL)
    try:
        for k in range(rounds):
            step(f"round {k}: error inside a transaction")
            cur = await conn.execute(div, (4,))
            check((await cur.fetchone())[0] == 25, f"round {k}: 100/4")
            await pg3_insert(conn, "pg3err", client, k, "rolled back")
            with raises(pgerrors.DivisionByZero, f"round {k}: 100/0 in a transaction"):
                await conn.execute(div, (0,))
            fresh = f"SELECT %s::int4 + {100 * k + client}"
            with raises(pgerrors.InFailedSqlTransaction, f"round {k}: new statement in aborted transaction"):
                await conn.execute(fresh, (1,))
            with raises(pgerrors.InFailedSqlTransaction, f"round {k}: prepared statement in aborted transaction"):
                await conn.execute(div, (1,))
            step(f"round {k}: rollback")
            await conn.rollback()
            step(f"round {k}: prepared statements after rollback")
            cur = await conn.execute(div, (5,))
            v, pid = await cur.fetchone()
            check(v == 20, f"round {k}: 100/5 returned {v}")
            pids.add(pid)
            cur = await conn.execute(fresh, (1,))
            v = (await cur.fetchone())[0]
            check(v == 100 * k + client + 1, f"round {k}: new statement returned {v}")
            await pg3_queries(conn, client, k, step, pids)
            await conn.commit()

            step(f"round {k}: savepoint")
            async with conn.transaction():
                await pg3_insert(conn, "pg3err", client, k, "kept")
                with raises(pgerrors.DivisionByZero, f"round {k}: 100/0 in a savepoint"):
                    async with conn.transaction():
                        await pg3_insert(conn, "pg3err", client, k, "rolled back")
                        await conn.execute(div, (0,))
                cur = await conn.execute(div, (2,))
                check((await cur.fetchone())[0] == 50, f"round {k}: 100/2 after rollback to savepoint")
                await pg3_queries(conn, client, k + 1, step, pids)
                await pg3_insert(conn, "pg3err", client, k, "kept")

            step(f"round {k}: statement that fails to prepare")
            with raises(pgerrors.SyntaxError, f"round {k}: preparing a syntax error"):
                await conn.execute("SELEC %s::int4", (k,), prepare=True)
            await conn.rollback()
            with raises(pgerrors.UndefinedTable, f"round {k}: preparing against a missing table"):
                await conn.execute(f"SELECT count(*) FROM {PFX}_missing WHERE %s::int4 = 1", (k,))
            await conn.rollback()
            await pg3_queries(conn, client, k + 2, step, pids)
            await conn.commit()
        counts = await pg3_items(conn, "pg3err", client)
        check(counts == {"kept": 2 * rounds}, f"rows written: {counts}")
    finally:
        await conn.close()


async def psycopg_deallocate(client, step, pids, rounds=4, prepare=False):
    """DEALLOCATE ALL and DISCARD ALL sent by the application after preparing
    (prepare_threshold=0), as plain SQL (simple query); a tiny prepared_max so
    psycopg also closes evicted statements itself (Close)."""
    conn = await pg3_connect(prepare_threshold=0, autocommit=True)
    conn.prepared_max = 3
    how = "as a prepared statement" if prepare is None else "as plain SQL"
    try:
        for k in range(rounds):
            command = "DEALLOCATE ALL" if (client + k) % 2 == 0 else "DISCARD ALL"
            step(f"round {k}: statements before {command}")
            await pg3_queries(conn, client, k, step, pids)
            step(f"round {k}: {command} {how}")
            await conn.execute(command, prepare=prepare)
            step(f"round {k}: statements after {command}")
            await pg3_queries(conn, client, k + 1, step, pids)
            async with conn.transaction():
                await pg3_queries(conn, client, k + 2, step, pids)
    finally:
        await conn.close()


async def psycopg_deallocate_prepared(client, step, pids):
    """The same, but DEALLOCATE ALL / DISCARD ALL go the way psycopg sends
    them by default with prepare_threshold=0: as prepared statements
    (Parse/Bind/Execute), not as a simple query."""
    await psycopg_deallocate(client, step, pids, prepare=None)


async def psycopg_pipeline(client, step, pids, rounds=10):
    """Pipeline mode with prepare_threshold=0: batches of prepared statements,
    transactions inside a pipeline, and executemany (pipelined by psycopg)."""
    autocommit = client % 2 == 0
    conn = await pg3_connect(prepare_threshold=0, autocommit=autocommit)
    try:
        for k in range(rounds):
            step(f"round {k}: batch")
            async with conn.pipeline() as p:
                batch = []
                for j in range(3):
                    for sql, args, want in rotated(QUERIES, client + k + j):
                        cur = await conn.execute(psycopg_sql(sql), args(k + j))
                        batch.append((cur, want(k + j), sql))
                    pid_cur = await conn.execute(psycopg_sql(PID_SQL), (k,))
                    batch.append((pid_cur, None, PID_SQL))
                await p.sync()
                for cur, want, sql in batch:
                    rows = await cur.fetchall()
                    if want is None:
                        check(rows[0][0] == k + 1000, f"round {k}: pid statement returned {rows}")
                        pids.add(rows[0][1])
                    else:
                        check_rows(rows, want, f"round {k}: pipelined {sql!r}")
            if not autocommit:
                await conn.commit()

            step(f"round {k}: transaction in a pipeline")
            async with conn.pipeline():
                async with conn.transaction():
                    await pg3_insert(conn, "pg3pipe", client, k, "tx")
                    cur = await conn.execute(psycopg_sql(PID_SQL), (k,))
                    await pg3_insert(conn, "pg3pipe", client, k, "tx")
                v, pid = await cur.fetchone()
                check(v == k + 1000, f"round {k}: pid statement returned {v}")
                pids.add(pid)

        step("executemany")
        async with conn.cursor() as cur:
            await cur.executemany(
                psycopg_sql(INSERT_SQL), [("pg3pipe", client, 1000 + j, "many") for j in range(10)]
            )
        if not autocommit:
            await conn.commit()
        counts = await pg3_items(conn, "pg3pipe", client)
        check(counts == {"tx": 2 * rounds, "many": 10}, f"rows written: {counts}")
    finally:
        await conn.close()


async def psycopg_pipeline_error(client, step, pids, rounds=5):
    """An error in the middle of a transaction in a pipeline: the statements
    after it, including new ones, are skipped by the server; psycopg rolls
    back and, as after every ROLLBACK while it has prepared statements, sends
    DEALLOCATE ALL, here inside the pipeline (extended protocol). Prepared
    statements must keep working afterwards."""
    autocommit = client % 2 == 0
    conn = await pg3_connect(prepare_threshold=0, autocommit=autocommit)
    try:
        for k in range(rounds):
            step(f"round {k}: statements before the error")
            await pg3_queries(conn, client, k, step, pids)
            if not autocommit:
                await conn.commit()
            step(f"round {k}: error in a pipeline")
            fresh = f"SELECT %s::int4 + {100 * k + client}, 'fresh'"
            with raises(pgerrors.DivisionByZero, f"round {k}: 100/0 in a pipeline"):
                async with conn.pipeline():
                    async with conn.transaction():
                        await pg3_insert(conn, "pg3pipeerr", client, k, "rolled back")
                        await conn.execute(psycopg_sql(DIV_SQL), (0,))
                        await conn.execute(fresh, (1,))
                        await pg3_insert(conn, "pg3pipeerr", client, k, "rolled back")
            step(f"round {k}: the statement skipped in the failed pipeline, run again")
            cur = await conn.execute(fresh, (1,))
            check(
                await cur.fetchall() == [(100 * k + client + 1, "fresh")],
                f"round {k}: statement skipped in the failed pipeline, run again",
            )
            step(f"round {k}: statements after the failed pipeline")
            await pg3_queries(conn, client, k + 1, step, pids)
            async with conn.pipeline():
                c1 = await conn.execute(fresh, (2,))
                c2 = await conn.execute(psycopg_sql(DIV_SQL), (4,))
            check(await c1.fetchall() == [(100 * k + client + 2, "fresh")], f"round {k}: pipelined fresh statement")
            check((await c2.fetchone())[0] == 25, f"round {k}: pipelined 100/4")
            if not autocommit:
                await conn.commit()
        counts = await pg3_items(conn, "pg3pipeerr", client)
        check(counts == {}, f"rows written by rolled back transactions: {counts}")
    finally:
        await conn.close()


async def schema_change(client, step, pids, per_driver=5):
    """ALTER TABLE changes the result type of a statement that is prepared on
    every server connection. PostgreSQL then fails the old statement with
    "cached plan must not change result type" (0A000); a new Parse of the
    same text must work again: asyncpg re-prepares and retries by itself
    (outside a transaction), psycopg prepares anew after the failed
    transaction's rollback, and new connections prepare it afresh."""
    table = f"{PFX}_shape_{client}"
    sql = f"SELECT * FROM {table} ORDER BY a"
    admin = await pg3_connect(autocommit=True)
    apgs, pg3s = [], []
    try:
        step("creating the table")
        await admin.execute(f"CREATE TABLE {table} (a int)")
        await admin.execute(f"INSERT INTO {table} VALUES (1)")
        apgs = [await apg_connect() for _ in range(per_driver)]
        pg3s = [await pg3_connect(prepare_threshold=0, autocommit=True) for _ in range(per_driver)]

        # Concurrent transactions, so the statement is prepared on every server.
        async def warm_apg(conn):
            async with conn.transaction():
                rows = [tuple(r) for r in await conn.fetch(sql)]
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await asyncio.sleep(0.1)
            check(rows == [(1,)], f"before ALTER: {rows}")
            pids.add(pid)

        async def warm_pg3(conn):
            async with conn.transaction():
                rows = await (await conn.execute(sql)).fetchall()
                pid = (await (await conn.execute("SELECT pg_backend_pid()", prepare=False)).fetchone())[0]
                await asyncio.sleep(0.1)
            check(rows == [(1,)], f"before ALTER: {rows}")
            pids.add(pid)

        step("running the statement before ALTER TABLE")
        await asyncio.gather(*(warm_apg(c) for c in apgs), *(warm_pg3(c) for c in pg3s))
        step("ALTER TABLE")
        await admin.execute(f"ALTER TABLE {table} ADD COLUMN b int DEFAULT 7")
        want = [(1, 7)]
        for i, conn in enumerate(apgs):
            step(f"asyncpg connection {i}: the statement after ALTER TABLE (asyncpg re-prepares)")
            rows = [tuple(r) for r in await conn.fetch(sql)]
            check(rows == want, f"asyncpg connection {i} after ALTER: {rows}")
        for i, conn in enumerate(pg3s):
            step(f"psycopg connection {i}: the statement after ALTER TABLE")
            try:
                async with conn.transaction():
                    rows = await (await conn.execute(sql)).fetchall()
            except pgerrors.FeatureNotSupported:
                # PostgreSQL's answer to the statement prepared before. The
                # ROLLBACK makes psycopg forget its prepared statements.
                step(f"psycopg connection {i}: the statement again after rollback, prepared anew")
                async with conn.transaction():
                    rows = await (await conn.execute(sql)).fetchall()
            check(rows == want, f"psycopg connection {i} after ALTER: {rows}")
        step("a new asyncpg connection")
        fresh = await apg_connect()
        try:
            rows = [tuple(r) for r in await fresh.fetch(sql)]
            check(rows == want, f"new asyncpg connection after ALTER: {rows}")
        finally:
            await fresh.close()
        step("a new psycopg connection")
        async with await pg3_connect(prepare_threshold=0) as fresh:
            rows = await (await fresh.execute(sql)).fetchall()
            check(rows == want, f"new psycopg connection after ALTER: {rows}")
    finally:
        for conn in apgs:
            await conn.close()
        for conn in pg3s:
            await conn.close()
        await admin.execute(f"DROP TABLE IF EXISTS {table}")
        await admin.close()


async def vandal(client, step, pids, rounds=40):
    """Runs DISCARD ALL / DEALLOCATE ALL between other clients' transactions
    (simple query), wiping every statement on whichever server it lands on."""
    conn = await pg3_connect(autocommit=True, prepare_threshold=None)
    try:
        for k in range(rounds):
            command = "DISCARD ALL" if k % 2 else "DEALLOCATE ALL"
            step(f"round {k}: {command}")
            await conn.execute(command)
            cur = await conn.execute("SELECT pg_backend_pid()")
            pids.add((await cur.fetchone())[0])
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


# ---------------------------------------------------------------- runner


async def run_clients(kinds, limit):
    """Runs the (function, count) client kinds concurrently for at most
    `limit` seconds; returns the backend pids each client saw. Raises Failure
    listing what went wrong, or where clients were stuck."""
    jobs = [(next(CLIENT_IDS), fn) for fn, count in kinds for _ in range(count)]
    pids = {c: set() for c, _ in jobs}
    steps = {c: Step() for c, _ in jobs}

    async def one(c, fn):
        try:
            await fn(c, steps[c], pids[c])
        except Exception as exc:
            raise ClientError(c, f"{fn.__name__}: {steps[c].what}", exc) from exc

    tasks = {asyncio.ensure_future(one(c, fn)): (c, fn) for c, fn in jobs}
    _, pending = await asyncio.wait(tasks, timeout=limit)
    if pending:
        stuck = sorted(tasks[t] for t in pending)
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=5)
        lines = [f"did not finish within {limit:.0f} s; {len(stuck)} of {len(jobs)} clients stuck:"]
        lines += [f"  client {c}, {fn.__name__}: {steps[c].what}" for c, fn in stuck[:8]]
        if len(stuck) > 8:
            lines.append(f"  ... and {len(stuck) - 8} more")
        raise Failure("\n".join(lines))
    errors = [t.exception() for t in tasks if t.exception() is not None]
    if errors:
        lines = [f"{len(errors)} of {len(jobs)} clients failed:"]
        for e in errors[:8]:
            lines.append(f"  {e}")
        if len(errors) > 8:
            lines.append(f"  ... and {len(errors) - 8} more")
        first = errors[0]
        detail = first.exc if isinstance(first, ClientError) else first
        lines.append("first failure's traceback:")
        lines.append(
            "".join(traceback.format_exception(type(detail), detail, detail.__traceback__)).rstrip()
        )
        raise Failure("\n".join(lines))
    return pids


def check_pooling(pids):
    """With a pool of POOL_SIZE, all clients shared at most that many server
    connections and clients moved between them, so their statements had to be
    prepared again on another server."""
    every = set().union(*pids.values())
    moved = sum(1 for p in pids.values() if len(p) >= 2)
    summary = f"{len(every)} server connection(s), {moved}/{len(pids)} clients used several"
    if POOL_SIZE is None:
        return summary
    check(
        len(every) <= POOL_SIZE,
        f"{len(pids)} clients ran on {len(every)} server connections, pool size is {POOL_SIZE}",
    )
    if POOL_SIZE >= 2:
        check(moved > 0, f"no client ran on more than one server connection ({summary})")
    return summary


SCENARIOS = [
    ("asyncpg: concurrent transactions with cached and explicit statements", [(asyncpg_concurrent, CLIENTS)]),
    ("asyncpg: Pool", [(asyncpg_pool, max(1, CLIENTS // 4))]),
    ("asyncpg: errors, rollback, savepoints", [(asyncpg_errors, CLIENTS)]),
    ("asyncpg: DEALLOCATE ALL / DISCARD ALL", [(asyncpg_deallocate, CLIENTS)]),
    ("asyncpg: small statement cache (Close)", [(asyncpg_cache_eviction, CLIENTS)]),
    ("psycopg: prepare_threshold=0", [(psycopg_threshold0, CLIENTS)]),
    ("psycopg: default prepare_threshold", [(psycopg_default_threshold, CLIENTS)]),
    ("psycopg: execute(prepare=True)", [(psycopg_prepare_true, CLIENTS)]),
    ("psycopg: errors, rollback, savepoints", [(psycopg_errors, CLIENTS)]),
    ("psycopg: DEALLOCATE ALL / DISCARD ALL as plain SQL, prepared_max eviction", [(psycopg_deallocate, CLIENTS)]),
    ("psycopg: pipeline mode", [(psycopg_pipeline, CLIENTS)]),
    (
        "mixed: asyncpg + psycopg + pipeline, DISCARD ALL / DEALLOCATE ALL in between",
        [
            (asyncpg_concurrent, max(1, CLIENTS // 4)),
            (psycopg_threshold0, max(1, CLIENTS // 4)),
            (psycopg_pipeline, max(1, CLIENTS // 4)),
            (asyncpg_errors, max(1, CLIENTS // 8)),
            (psycopg_errors, max(1, CLIENTS // 8)),
            (vandal, 2),
        ],
    ),
    ("schema change: statements prepared again after ALTER TABLE", [(schema_change, 1)]),
    # These two make the server connections lose statements behind pgvigil's
    # back if it misses the DEALLOCATE ALL / DISCARD ALL, so they come last.
    ("psycopg: error in a pipeline transaction (DEALLOCATE ALL in the pipeline)", [(psycopg_pipeline_error, CLIENTS)]),
    ("psycopg: DEALLOCATE ALL / DISCARD ALL as prepared statements", [(psycopg_deallocate_prepared, CLIENTS)]),
]


async def setup():
    async with await pg3_connect(autocommit=True) as conn:
        await conn.execute(
            f"CREATE TABLE {ITEMS} (scenario text NOT NULL, client int NOT NULL, "
            f"n int NOT NULL, note text NOT NULL)"
        )
        await conn.execute(f"CREATE TYPE {MOOD} AS ENUM ('sad', 'ok', 'happy')")


async def teardown():
    async with await pg3_connect(autocommit=True) as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {ITEMS}")
        await conn.execute(f"DROP TYPE IF EXISTS {MOOD}")


async def main():
    if not DSN:
        print("PGVIGIL_DSN is not set", file=sys.stderr)
        return 2
    print(
        f"asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__} "
        f"(libpq {psycopg.pq.version()}, {psycopg.pq.__impl__}); "
        f"{CLIENTS} clients per scenario; pool size {POOL_SIZE or 'not checked'}",
        flush=True,
    )
    started = time.monotonic()
    try:
        await asyncio.wait_for(setup(), 15)
    except Exception as exc:
        print(f"SETUP FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    failed = []
    ran = 0
    try:
        for number, (label, kinds) in enumerate(SCENARIOS, 1):
            if ONLY and number not in ONLY:
                continue
            ran += 1
            label = f"{number:2}. {label}"
            t0 = time.monotonic()
            limit = min(SCENARIO_TIMEOUT, TOTAL_BUDGET - (t0 - started))
            if limit <= 0:
                failed.append(label)
                print(f"FAIL  {label}: not run, the whole run took over {TOTAL_BUDGET} s", flush=True)
                continue
            try:
                pids = await run_clients(kinds, limit)
                summary = check_pooling(pids)
                print(f"ok    {label} [{time.monotonic() - t0:.1f} s; {summary}]", flush=True)
            except Failure as exc:
                failed.append(label)
                print(f"FAIL  {label} [{time.monotonic() - t0:.1f} s]\n{exc}", flush=True)
            except Exception:
                failed.append(label)
                print(f"FAIL  {label}: unexpected error\n{traceback.format_exc()}", flush=True)
    finally:
        try:
            await asyncio.wait_for(teardown(), 15)
        except Exception as exc:
            print(f"(teardown failed: {type(exc).__name__}: {exc})", flush=True)
    elapsed = time.monotonic() - started
    if failed:
        print(f"\n{len(failed)} of {ran} scenarios FAILED in {elapsed:.1f} s:", flush=True)
        for label in failed:
            print(f"  - {label}", flush=True)
        return 1
    print(f"\nall {ran} scenarios passed in {elapsed:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
