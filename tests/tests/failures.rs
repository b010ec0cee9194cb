//! Things going wrong: clients dying mid-transaction, backends terminated
//! mid-query, PostgreSQL restarting under a running pgvigil.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::future::try_join_all;
use pgvigil_integration::vigil::connect_with_handle;
use pgvigil_integration::{
    both_modes, shared_cluster, sqlstate, timed, unique_name, wait_until, PgCluster, Pgvigil,
    PoolMode,
};
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

const LIMIT: Duration = Duration::from_secs(90);

/// Backends (other than the caller's) whose current or last query contains `marker`,
/// restricted to the given state pattern (SQL LIKE).
async fn backends_with(direct: &Client, marker: &str, state_like: &str) -> Result<Vec<i32>> {
    let rows = direct
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE query LIKE '%' || $1 || '%' AND state LIKE $2 AND pid <> pg_backend_pid()",
            &[&marker, &state_like],
        )
        .await
        .context("querying pg_stat_activity")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Creates a one-row table owned by `app`.
async fn one_row_table(direct: &Client) -> Result<String> {
    let table = unique_name("victim_rows");
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, note text);
             INSERT INTO {table} VALUES (1, '');
             ALTER TABLE {table} OWNER TO app;"
        ))
        .await
        .context("creating table")?;
    Ok(table)
}

/// Waits until PostgreSQL shows a backend idle in transaction with `marker`,
/// runs `kill`, then requires that no such backend remains within 5 s and that
/// the row lock is gone.
async fn assert_transaction_cleaned_up<F, Fut>(
    direct: &Client,
    table: &str,
    marker: &str,
    kill: F,
) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let open = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            Ok(!backends_with(direct, marker, "idle in transaction%")
                .await?
                .is_empty())
        },
    )
    .await?;
    ensure!(
        open,
        "the client's transaction never showed up as idle in transaction"
    );
    kill().await?;
    let gone = wait_until(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            Ok(backends_with(direct, marker, "idle in transaction%")
                .await?
                .is_empty())
        },
    )
    .await?;
    ensure!(
        gone,
        "a backend was still idle in transaction 5 s after its client died: {:?}",
        backends_with(direct, marker, "idle in transaction%").await?
    );
    direct
        .batch_execute(&format!(
            "SET lock_timeout = '2s'; UPDATE {table} SET note = 'after' WHERE id = 1; RESET lock_timeout"
        ))
        .await
        .context("the dead client's row lock is still held")?;
    Ok(())
}

both_modes!(
    psql_killed_mid_transaction_leaves_no_idle_in_transaction_backend,
    psql_killed_mid_transaction_leaves_no_idle_in_transaction_backend
);
async fn psql_killed_mid_transaction_leaves_no_idle_in_transaction_backend(
    mode: PoolMode,
) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let table = one_row_table(&direct).await?;
        let vigil = Pgvigil::start(cluster, mode, 2).await?;
        let marker = unique_name("killed_psql");
        let mut cmd = vigil.libpq_command("/usr/bin/psql", "app", "secret", "appdb");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut psql = cmd.spawn().context("spawning psql")?;
        let mut stdin = psql.stdin.take().context("psql stdin")?;
        stdin
            .write_all(
                format!("BEGIN;\nUPDATE {table} SET note = '{marker}' WHERE id = 1;\n").as_bytes(),
            )
            .await
            .context("writing to psql")?;
        stdin.flush().await.context("flushing psql stdin")?;
        assert_transaction_cleaned_up(&direct, &table, &marker, || async {
            psql.kill().await.context("killing psql")
        })
        .await?;
        drop(stdin);
        let client = vigil.connect_app().await?;
        client
            .batch_execute(&format!(
                "UPDATE {table} SET note = 'via pgvigil' WHERE id = 1"
            ))
            .await
            .context("updating the row through pgvigil afterwards")?;
        Ok(())
    })
    .await
}

both_modes!(
    dropped_socket_mid_transaction_leaves_no_idle_in_transaction_backend,
    dropped_socket_mid_transaction_leaves_no_idle_in_transaction_backend
);
async fn dropped_socket_mid_transaction_leaves_no_idle_in_transaction_backend(
    mode: PoolMode,
) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let table = one_row_table(&direct).await?;
        let vigil = Pgvigil::start(cluster, mode, 2).await?;
        let marker = unique_name("dropped_socket");
        let (client, connection) = connect_with_handle(&vigil.app_config())
            .await
            .context("connecting")?;
        client
            .batch_execute(&format!(
                "BEGIN; UPDATE {table} SET note = '{marker}' WHERE id = 1"
            ))
            .await
            .context("BEGIN; UPDATE")?;
        assert_transaction_cleaned_up(&direct, &table, &marker, || async {
            // Dropping the connection future closes the socket without a Terminate message.
            connection.abort();
            drop(client);
            Ok(())
        })
        .await
    })
    .await
}

both_modes!(
    terminated_backend_errors_only_its_client,
    terminated_backend_errors_only_its_client
);
async fn terminated_backend_errors_only_its_client(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        // Session mode: victim, other and two more clients each need a server.
        let vigil = Pgvigil::start(cluster, mode, 4).await?;
        let victim = vigil.connect_app().await?;
        let other = vigil.connect_app().await?;
        other
            .batch_execute("SELECT 1")
            .await
            .context("other client warm-up")?;
        let marker = unique_name("terminate_me");
        let sql = format!("SELECT pg_sleep(30), '{marker}'");
        let victim_task = tokio::spawn(async move {
            let result = victim.simple_query(&sql).await.map(|_| ());
            (result, victim)
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Some(&pid) = backends_with(&direct, &marker, "active").await?.first() {
                break pid;
            }
            ensure!(
                Instant::now() < deadline,
                "the victim's query never showed up as active"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let terminated: bool = direct
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .context("pg_terminate_backend")?
            .get(0);
        ensure!(terminated, "pg_terminate_backend({pid}) returned false");

        let (result, victim) = tokio::time::timeout(Duration::from_secs(5), victim_task)
            .await
            .context("the victim's query did not return within 5 s of its backend dying")?
            .context("victim task panicked")?;
        let err = match result {
            Ok(()) => bail!("the victim's query succeeded although its backend was terminated"),
            Err(e) => e,
        };
        let code = sqlstate(&err);
        ensure!(
            matches!(code, Some(c) if c.starts_with("08") || c == "57P01"),
            "expected SQLSTATE class 08 or 57P01, got {code:?}: {err:?}"
        );
        drop(victim);

        // Everyone else carries on, including with the whole pool busy.
        other
            .batch_execute("SELECT 1")
            .await
            .context("the other client after the termination")?;
        let mut clients = vec![other];
        for _ in 0..2 {
            clients.push(vigil.connect_app().await?);
        }
        let work = clients.iter().map(|c| async move {
            for i in 0..10i32 {
                let r = c.query_one("SELECT $1::int4", &[&i]).await?;
                ensure!(r.get::<_, i32>(0) == i);
            }
            Ok::<_, anyhow::Error>(())
        });
        try_join_all(work)
            .await
            .context("queries after the termination")?;
        Ok(())
    })
    .await
}

/// Retries `SELECT 1` on fresh connections until one succeeds; returns how long it took.
async fn wait_for_new_connection(vigil: &Pgvigil, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut last_error = String::new();
    while start.elapsed() < limit {
        match vigil.connect_app().await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => return Ok(start.elapsed()),
                Err(e) => last_error = format!("query: {e:?}"),
            },
            Err(e) => last_error = format!("connect: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no successful new connection within {limit:?}; last error: {last_error}")
}

both_modes!(
    postgres_restart_recovers_without_restarting_pgvigil,
    postgres_restart_recovers_without_restarting_pgvigil
);
async fn postgres_restart_recovers_without_restarting_pgvigil(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let cluster = PgCluster::new_async().await?;
        // Session mode: idle, busy and two warm-up clients each hold a server.
        let mut vigil = Pgvigil::start(&cluster, mode, 4).await?;
        let idle = vigil.connect_app().await?;
        let busy = vigil.connect_app().await?;
        // Fill the pool with server connections that the restart will kill.
        let warm: Vec<Client> = try_join_all((0..2).map(|_| vigil.connect_app())).await?;
        try_join_all(warm.iter().map(|c| c.simple_query("SELECT pg_sleep(0.1)")))
            .await
            .context("warming the pool")?;
        idle.batch_execute("SELECT 1")
            .await
            .context("idle client warm-up")?;

        let marker = unique_name("in_flight");
        let sql = format!("SELECT pg_sleep(30), '{marker}'");
        let in_flight = tokio::spawn(async move { busy.simple_query(&sql).await.map(|_| ()) });
        {
            let direct = cluster.connect_direct().await?;
            let running = wait_until(
                Duration::from_secs(5),
                Duration::from_millis(20),
                || async { Ok(!backends_with(&direct, &marker, "active").await?.is_empty()) },
            )
            .await?;
            ensure!(running, "the in-flight query never showed up as active");
        }

        cluster
            .restart_in_place()
            .context("restarting PostgreSQL")?;

        let result = tokio::time::timeout(Duration::from_secs(10), in_flight)
            .await
            .context("the in-flight query did not return within 10 s of the restart")?
            .context("in-flight task panicked")?;
        ensure!(
            result.is_err(),
            "the in-flight query succeeded across a restart"
        );

        let took = wait_for_new_connection(&vigil, Duration::from_secs(15)).await?;
        ensure!(vigil.is_running(), "pgvigil exited:\n{}", vigil.stderr());

        if mode == PoolMode::Transaction {
            // An idle client owns no server: it should not notice the restart for long.
            let start = Instant::now();
            let mut last = None;
            while start.elapsed() < Duration::from_secs(15) {
                ensure!(
                    !idle.is_closed(),
                    "pgvigil closed an idle transaction-mode client because PostgreSQL restarted \
                     (last error {last:?})"
                );
                match idle.simple_query("SELECT 1").await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            ensure!(
                last.is_none(),
                "idle client still failing after 15 s: {last:?}"
            );
        }

        // Once one query works, the pool holds no dead servers: a burst that
        // needs every server succeeds.
        drop(warm);
        let fresh: Vec<Client> = try_join_all((0..3).map(|_| vigil.connect_app())).await?;
        let burst = fresh.iter().map(|c| async move {
            for _ in 0..5 {
                c.simple_query("SELECT pg_sleep(0.02)").await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        });
        try_join_all(burst).await.with_context(|| {
            format!("queries after recovery (first success {took:?} after restart)")
        })?;
        Ok(())
    })
    .await
}
