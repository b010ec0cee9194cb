//! Query protocol basics through pgvigil: simple and extended protocol,
//! pipelining, transactions, COPY, LISTEN/NOTIFY and cancel requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures_util::future::{join_all, try_join_all};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use pgvigil_integration::vigil::connect_with_messages;
use pgvigil_integration::{
    both_modes, shared_cluster, sqlstate, timed, unique_name, wait_until, Pgvigil, PoolMode,
};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

const LIMIT: Duration = Duration::from_secs(60);

/// Rows of a simple-query reply, as text.
fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn command_completes(messages: &[SimpleQueryMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count()
}

fn row(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

both_modes!(simple_query_returns_rows, simple_query_returns_rows);
async fn simple_query_returns_rows(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), mode, 2).await?;
        let client = vigil.connect_app().await?;
        let msgs = client
            .simple_query("SELECT 1 AS one, 'two'::text AS two, NULL::int AS three")
            .await
            .context("simple query")?;
        let rows = simple_rows(&msgs);
        ensure!(
            rows == vec![vec![Some("1".into()), Some("two".into()), None]],
            "unexpected rows {rows:?}"
        );
        let msgs = client
            .simple_query("SELECT g FROM generate_series(1, 1000) g")
            .await
            .context("simple query with 1000 rows")?;
        ensure!(simple_rows(&msgs).len() == 1000, "expected 1000 rows");
        Ok(())
    })
    .await
}

both_modes!(multi_statement_simple_query, multi_statement_simple_query);
async fn multi_statement_simple_query(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), mode, 2).await?;
        let client = vigil.connect_app().await?;
        let msgs = client
            .simple_query("SELECT 1; SELECT 2")
            .await
            .context("SELECT 1; SELECT 2")?;
        ensure!(
            simple_rows(&msgs) == vec![row(&["1"]), row(&["2"])],
            "unexpected rows {:?}",
            simple_rows(&msgs)
        );
        ensure!(
            command_completes(&msgs) == 2,
            "expected 2 CommandComplete, got {}",
            command_completes(&msgs)
        );

        let table = unique_name("multi");
        let msgs = client
            .simple_query(&format!(
                "CREATE TABLE {table} (v int); INSERT INTO {table} VALUES (1), (2); \
                 SELECT sum(v) FROM {table}; DROP TABLE {table}"
            ))
            .await
            .context("four-statement simple query")?;
        ensure!(
            simple_rows(&msgs) == vec![row(&["3"])],
            "unexpected rows {:?}",
            simple_rows(&msgs)
        );

        // An error in the middle aborts the rest of the string; the session stays usable.
        let err = client
            .simple_query("SELECT 1; SELECT 1/0; SELECT 3")
            .await
            .err()
            .context("division by zero did not fail")?;
        ensure!(
            sqlstate(&err) == Some("22012"),
            "expected 22012, got {err:?}"
        );
        let msgs = client
            .simple_query("SELECT 'after error'")
            .await
            .context("query after a failed multi-statement string")?;
        ensure!(simple_rows(&msgs) == vec![row(&["after error"])]);
        Ok(())
    })
    .await
}

both_modes!(
    extended_protocol_with_parameters,
    extended_protocol_with_parameters
);
async fn extended_protocol_with_parameters(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), mode, 2).await?;
        let client = vigil.connect_app().await?;
        let r = client
            .query_one(
                "SELECT $1::int4 + $2::int4, $3::text || '!'",
                &[&40i32, &2i32, &"hi"],
            )
            .await
            .context("parameterised query")?;
        ensure!(r.get::<_, i32>(0) == 42 && r.get::<_, String>(1) == "hi!");

        let r = client
            .query_one("SELECT $1::text IS NULL", &[&None::<String>])
            .await
            .context("NULL parameter")?;
        ensure!(r.get::<_, bool>(0), "NULL parameter did not arrive as NULL");

        let rows = client
            .query("SELECT g FROM generate_series(1, $1::int4) g", &[&500i32])
            .await
            .context("multi-row extended query")?;
        ensure!(rows.len() == 500 && rows[499].get::<_, i32>(0) == 500);

        let big = "y".repeat(1 << 20);
        let r = client
            .query_one("SELECT length($1::text)", &[&big])
            .await
            .context("1 MiB parameter")?;
        ensure!(r.get::<_, i32>(0) == 1 << 20);

        let err = client
            .query_one("SELECT $1::int4 / 0", &[&1i32])
            .await
            .err()
            .context("division by zero did not fail")?;
        ensure!(
            sqlstate(&err) == Some("22012"),
            "expected 22012, got {err:?}"
        );
        let r = client
            .query_one("SELECT $1::int8", &[&7i64])
            .await
            .context("query after an extended-protocol error")?;
        ensure!(r.get::<_, i64>(0) == 7);
        Ok(())
    })
    .await
}

both_modes!(
    pipelined_queries_on_one_client,
    pipelined_queries_on_one_client
);
async fn pipelined_queries_on_one_client(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), mode, 2).await?;
        let client = vigil.connect_app().await?;
        let stmt = client
            .prepare("SELECT $1::int8 * 2")
            .await
            .context("prepare")?;

        // Futures polled together: tokio-postgres writes them back to back
        // before reading any reply.
        let unnamed = (0..100i64).map(|i| {
            let client = &client;
            async move {
                let r = client.query_one("SELECT $1::int8 + 1", &[&i]).await?;
                Ok::<_, tokio_postgres::Error>((i, r.get::<_, i64>(0)))
            }
        });
        for (i, got) in try_join_all(unnamed).await.context("pipelined queries")? {
            ensure!(got == i + 1, "query {i} got {got}");
        }
        let prepared = (0..100i64).map(|i| {
            let (client, stmt) = (&client, &stmt);
            async move {
                let r = client.query_one(stmt, &[&i]).await?;
                Ok::<_, tokio_postgres::Error>((i, r.get::<_, i64>(0)))
            }
        });
        for (i, got) in try_join_all(prepared)
            .await
            .context("pipelined prepared-statement executions")?
        {
            ensure!(got == i * 2, "execution {i} got {got}");
        }

        // A failing query in the middle of a pipeline fails alone.
        let mixed = (0..20i32).map(|i| {
            let client = &client;
            async move {
                let divisor = if i == 10 { 0 } else { 1 };
                client
                    .query_one("SELECT $1::int4 / $2::int4", &[&i, &divisor])
                    .await
                    .map(|r| r.get::<_, i32>(0))
            }
        });
        let results = join_all(mixed).await;
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(v) if i != 10 && *v == i as i32 => {}
                Err(e) if i == 10 && sqlstate(e) == Some("22012") => {}
                other => bail!("pipelined query {i}: unexpected result {other:?}"),
            }
        }
        Ok(())
    })
    .await
}

both_modes!(
    transactions_commit_and_rollback,
    transactions_commit_and_rollback
);
async fn transactions_commit_and_rollback(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), mode, 3).await?;
        let mut writer = vigil.connect_app().await?;
        let reader = vigil.connect_app().await?;
        let table = unique_name("tx");
        writer
            .batch_execute(&format!("CREATE TABLE {table} (v int)"))
            .await
            .context("create table")?;
        let select = format!("SELECT coalesce(array_agg(v ORDER BY v), '{{}}') FROM {table}");
        let (reader_ref, select_ref) = (&reader, &select);
        // What another client sees in the table.
        let read = move || async move {
            reader_ref
                .query_one(select_ref, &[])
                .await
                .map(|r| r.get::<_, Vec<i32>>(0))
                .context("reading the table")
        };

        // Simple-protocol BEGIN/INSERT/COMMIT; invisible to others until COMMIT.
        writer
            .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .await
            .context("BEGIN; INSERT")?;
        ensure!(read().await?.is_empty(), "uncommitted row visible");
        writer.batch_execute("COMMIT").await.context("COMMIT")?;
        ensure!(read().await? == vec![1], "committed row not visible");

        // ROLLBACK discards.
        writer
            .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (2); ROLLBACK"))
            .await
            .context("BEGIN; INSERT; ROLLBACK")?;
        ensure!(read().await? == vec![1], "rolled-back row visible");

        // Extended protocol inside tokio-postgres transactions.
        let tx = writer.transaction().await.context("begin")?;
        tx.execute(&*format!("INSERT INTO {table} VALUES ($1)"), &[&3i32])
            .await
            .context("insert 3")?;
        tx.commit().await.context("commit")?;
        let tx = writer.transaction().await.context("begin")?;
        tx.execute(&*format!("INSERT INTO {table} VALUES ($1)"), &[&4i32])
            .await
            .context("insert 4")?;
        tx.rollback().await.context("rollback")?;
        ensure!(read().await? == vec![1, 3], "after commit 3 / rollback 4");

        // An error aborts the transaction; ROLLBACK recovers the session.
        writer
            .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (5)"))
            .await
            .context("BEGIN; INSERT 5")?;
        let err = writer
            .batch_execute("SELECT 1/0")
            .await
            .err()
            .context("1/0 did not fail")?;
        ensure!(sqlstate(&err) == Some("22012"), "expected 22012: {err:?}");
        let err = writer
            .batch_execute("SELECT 1")
            .await
            .err()
            .context("query in an aborted transaction did not fail")?;
        ensure!(sqlstate(&err) == Some("25P02"), "expected 25P02: {err:?}");
        writer.batch_execute("ROLLBACK").await.context("ROLLBACK")?;
        ensure!(read().await? == vec![1, 3], "after aborted transaction");
        writer
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .context("drop table")?;
        Ok(())
    })
    .await
}

both_modes!(
    transaction_stays_on_one_server,
    transaction_stays_on_one_server
);
async fn transaction_stays_on_one_server(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        // Transaction mode: four clients share three servers. Session mode: one each.
        let pool_size = match mode {
            PoolMode::Session => 4,
            PoolMode::Transaction => 3,
        };
        let vigil = Pgvigil::start(shared_cluster(), mode, pool_size).await?;
        // Busy neighbours keep the pool's servers changing hands.
        let stop = Arc::new(AtomicBool::new(false));
        let mut neighbours = Vec::new();
        for _ in 0..3 {
            let client = vigil.connect_app().await?;
            let stop = stop.clone();
            neighbours.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client
                        .query_one("SELECT pg_backend_pid()", &[])
                        .await
                        .context("neighbour query")?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        let mut client = vigil.connect_app().await?;
        for i in 0..30 {
            let tx = client.transaction().await.context("begin")?;
            let first: i32 = tx
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .context("first pid")?
                .get(0);
            tokio::time::sleep(Duration::from_millis(2)).await;
            let second: i32 = tx
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .context("second pid")?
                .get(0);
            let simple = simple_rows(
                &tx.simple_query("SELECT pg_backend_pid()")
                    .await
                    .context("third pid")?,
            );
            tx.commit().await.context("commit")?;
            ensure!(
                first == second && simple == vec![row(&[&first.to_string()])],
                "transaction {i} ran on backends {first}, {second}, {simple:?}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for n in neighbours {
            n.await.context("neighbour task panicked")??;
        }
        Ok(())
    })
    .await
}

/// About 10 MB of COPY text: "id\t<hex>\n" lines from a fixed pseudo-random sequence.
fn copy_payload() -> Vec<u8> {
    let mut out = Vec::with_capacity(10 << 20);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut id = 0u64;
    while out.len() < 10 << 20 {
        id += 1;
        out.extend_from_slice(id.to_string().as_bytes());
        out.push(b'\t');
        for _ in 0..16 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(format!("{state:016x}").as_bytes());
        }
        out.push(b'\n');
    }
    out
}

both_modes!(
    copy_in_and_out_10mb_byte_identical,
    copy_in_and_out_10mb_byte_identical
);
async fn copy_in_and_out_10mb_byte_identical(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), mode, 2).await?;
        let client = vigil.connect_app().await?;
        let table = unique_name("copy");
        client
            .batch_execute(&format!("CREATE TABLE {table} (id int8 PRIMARY KEY, data text)"))
            .await
            .context("create table")?;
        let payload = copy_payload();
        let lines = payload.iter().filter(|&&b| b == b'\n').count() as u64;

        let sink = client
            .copy_in(&*format!("COPY {table} FROM STDIN"))
            .await
            .context("COPY FROM STDIN")?;
        pin_mut!(sink);
        // Chunks that do not line up with rows.
        for chunk in payload.chunks(65_521) {
            sink.send(Bytes::copy_from_slice(chunk))
                .await
                .context("sending COPY data")?;
        }
        let copied = sink.finish().await.context("finishing COPY FROM STDIN")?;
        ensure!(copied == lines, "COPY FROM reported {copied} rows, sent {lines}");

        let stream = client
            .copy_out(&*format!("COPY (SELECT id, data FROM {table} ORDER BY id) TO STDOUT"))
            .await
            .context("COPY TO STDOUT")?;
        pin_mut!(stream);
        let mut received = Vec::with_capacity(payload.len());
        while let Some(chunk) = stream.try_next().await.context("reading COPY data")? {
            received.extend_from_slice(&chunk);
        }
        if received != payload {
            let first_diff = received
                .iter()
                .zip(&payload)
                .position(|(a, b)| a != b)
                .unwrap_or(received.len().min(payload.len()));
            bail!(
                "COPY round trip differs: sent {} bytes, got {} bytes, first difference at byte {first_diff}",
                payload.len(),
                received.len()
            );
        }
        // The session is still in a sane state after both COPYs.
        let n: i64 = client
            .query_one(&*format!("SELECT count(*) FROM {table}"), &[])
            .await
            .context("count after COPY")?
            .get(0);
        ensure!(n as u64 == lines);
        client
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .context("drop table")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_in_session_mode() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let (listener, mut messages) = connect_with_messages(&vigil.app_config())
            .await
            .context("listener connection")?;
        let channel = unique_name("chan");
        listener
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .context("LISTEN")?;
        let notifier = vigil.connect_app().await?;
        notifier
            .execute("SELECT pg_notify($1, $2)", &[&channel, &"first"])
            .await
            .context("pg_notify")?;
        notifier
            .batch_execute(&format!("NOTIFY {channel}, 'second'"))
            .await
            .context("NOTIFY")?;
        let mut payloads = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while payloads.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, messages.recv()).await {
                Ok(Some(AsyncMessage::Notification(n))) => {
                    ensure!(n.channel() == channel, "notification on {}", n.channel());
                    payloads.push(n.payload().to_string());
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("listener connection closed; got {payloads:?}"),
                Err(_) => bail!("no notification within 5 s; got {payloads:?}"),
            }
        }
        ensure!(payloads == ["first", "second"], "payloads {payloads:?}");
        // The listener still answers queries.
        listener
            .batch_execute(&format!("UNLISTEN {channel}"))
            .await
            .context("UNLISTEN")?;
        Ok(())
    })
    .await
}

both_modes!(
    cancel_request_stops_running_query,
    cancel_request_stops_running_query
);
async fn cancel_request_stops_running_query(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let vigil = Pgvigil::start(cluster, mode, 3).await?;
        let victim = vigil.connect_app().await?;
        let bystander = vigil.connect_app().await?;
        let marker = unique_name("cancel_me");
        let token = victim.cancel_token();

        // Another query running at the same time must not be the one cancelled.
        let bystander_task = tokio::spawn(async move {
            bystander
                .simple_query("SELECT pg_sleep(1.5)")
                .await
                .map(|_| ())
        });
        let sql = format!("SELECT pg_sleep(10), '{marker}'");
        let victim_task = tokio::spawn(async move {
            let result = victim.simple_query(&sql).await.map(|_| ());
            (result, Instant::now(), victim)
        });

        let like = format!("%{marker}%");
        let running = wait_until(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async {
                let n: i64 = direct
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                     WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
                        &[&like],
                    )
                    .await?
                    .get(0);
                Ok(n == 1)
            },
        )
        .await?;
        ensure!(
            running,
            "the pg_sleep(10) query never showed up as active on PostgreSQL"
        );

        let sent = Instant::now();
        token
            .cancel_query(NoTls)
            .await
            .context("sending the cancel request through pgvigil")?;
        let (result, finished, victim) = victim_task.await.context("victim task panicked")?;
        let took = finished.saturating_duration_since(sent);
        let err = match result {
            Ok(()) => bail!("pg_sleep(10) was not cancelled (finished after {took:?})"),
            Err(e) => e,
        };
        ensure!(
            sqlstate(&err) == Some("57014"),
            "expected SQLSTATE 57014, got {err:?}"
        );
        ensure!(took < Duration::from_secs(1), "cancel took {took:?}");

        let bystander_result = bystander_task.await.context("bystander task panicked")?;
        ensure!(
            bystander_result.is_ok(),
            "the other client's query was hit: {bystander_result:?}"
        );
        let after = victim
            .simple_query("SELECT 'still here'")
            .await
            .context("query after cancel")?;
        ensure!(simple_rows(&after) == vec![row(&["still here"])]);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_default_sslmode_prefer_connects() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let mut cmd = vigil.libpq_command("/usr/bin/psql", "app", "secret", "appdb");
        // libpq's default: ask for TLS first, fall back to plain text when refused.
        cmd.env("PGSSLMODE", "prefer")
            .args(["-X", "-A", "-t", "-c", "SELECT 40 + 2"]);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .context("psql still running after 30 s")?
            .context("running psql")?;
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "42",
            "psql with sslmode=prefer failed ({}): stdout {:?} stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })
    .await
}
