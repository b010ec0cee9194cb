//! The leak guards that faults.rs does not cover: `client_idle_timeout`
//! and `transaction_timeout` end a session with PostgreSQL's own SQLSTATE,
//! free the server connection, and every guard firing is counted in
//! `pgvigil_timeouts_total{timeout=...}`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::{shared_cluster, sqlstate, timed, Pgvigil, PoolMode};

const LIMIT: Duration = Duration::from_secs(60);

/// The value of `pgvigil_timeouts_total{timeout="<setting>"}`.
async fn timeouts_counted(vigil: &Pgvigil, setting: &str) -> Result<u64> {
    let reply = vigil.http_get("/metrics", &[]).await?;
    let needle = format!("pgvigil_timeouts_total{{timeout=\"{setting}\"}} ");
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .with_context(|| format!("no {needle} series on /metrics"))?
        .trim()
        .parse::<f64>()
        .map(|v| v as u64)
        .context("the series' value")
}

/// Waits for the error a guard sends, which arrives on the next request.
async fn error_after_idle(client: &tokio_postgres::Client, idle: Duration) -> Result<String> {
    tokio::time::sleep(idle).await;
    match client.simple_query("SELECT 1").await {
        Ok(_) => bail!("the client was still served after {idle:?} idle"),
        Err(e) => Ok(sqlstate(&e).unwrap_or("none").to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_ends_an_idle_client_with_57p05_and_counts_it() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Session)
            .pool_size(1)
            .arg("--client-idle-timeout")
            .arg("1")
            .spawn()
            .await?;
        ensure!(timeouts_counted(&vigil, "client_idle_timeout").await? == 0);
        let idle = vigil.connect_app().await?;
        idle.simple_query("SELECT 1").await?;
        let code = error_after_idle(&idle, Duration::from_millis(2500)).await?;
        // The FATAL arrives while the client sleeps; the driver reports it
        // (57P05) or only the closed connection.
        ensure!(
            code == "57P05" || code == "none",
            "idle client got {code}, expected 57P05 or a closed connection"
        );
        // Its server went back to the pool (pool_size 1, session mode).
        let next = vigil.connect_app().await?;
        let started = Instant::now();
        next.simple_query("SELECT 1")
            .await
            .context("a new client after the idle one was closed")?;
        ensure!(started.elapsed() < Duration::from_secs(2));
        ensure!(timeouts_counted(&vigil, "client_idle_timeout").await? >= 1);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_timeout_ends_a_long_transaction_with_25p04_and_rolls_it_back() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--transaction-timeout")
            .arg("2")
            .spawn()
            .await?;
        let table = pgvigil_integration::unique_name("guard_tx");
        let setup = vigil.connect_app().await?;
        setup
            .batch_execute(&format!("CREATE TABLE {table} (v int)"))
            .await?;
        drop(setup);
        let client = vigil.connect_app().await?;
        client.batch_execute("BEGIN").await?;
        client
            .batch_execute(&format!("INSERT INTO {table} VALUES (1)"))
            .await?;
        // Each statement is quick; the transaction as a whole is not.
        let mut ended = None;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = client.simple_query("SELECT 1").await {
                ended = Some(sqlstate(&e).unwrap_or("none").to_string());
                break;
            }
        }
        let Some(code) = ended else {
            bail!("a transaction open for 4 s outlived transaction_timeout = 2");
        };
        ensure!(
            code == "25P04" || code == "none",
            "expected 25P04 or a closed connection, got {code}"
        );
        let after = vigil.connect_app().await?;
        let rows = after
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get::<_, i64>(0);
        ensure!(rows == 0, "the cut transaction's INSERT is visible");
        after.batch_execute(&format!("DROP TABLE {table}")).await?;
        ensure!(timeouts_counted(&vigil, "transaction_timeout").await? >= 1);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_firings_are_counted() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .arg("--query-timeout")
            .arg("1")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let err = client
            .simple_query("SELECT pg_sleep(10)")
            .await
            .err()
            .context("pg_sleep(10) finished despite query_timeout = 1")?;
        ensure!(sqlstate(&err) == Some("57014"));
        ensure!(timeouts_counted(&vigil, "query_timeout").await? == 1);
        client.simple_query("SELECT 1").await?;
        Ok(())
    })
    .await
}
