//! Load and memory: many clients over a small pool, and a client that stops
//! reading a huge result.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::raw::RawConn;
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil, PoolMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_over_pool_of_ten() -> Result<()> {
    timed(Duration::from_secs(180), async {
        const CLIENTS: usize = 500;
        const POOL: i64 = 10;
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        // A database of its own, so its backends can be counted.
        let db = unique_name("load");
        direct
            .batch_execute(&format!("CREATE DATABASE {db} OWNER app"))
            .await
            .context("create database")?;
        let vigil = Pgvigil::builder(cluster)
            .upstream(cluster.url(&db))
            .pool_mode(PoolMode::Transaction)
            .pool_size(POOL as u32)
            .max_client_conn(1000)
            .client_auth("md5")
            .spawn()
            .await?;

        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicI64::new(0));
        let sampler = {
            let (stop, peak, db) = (stop.clone(), peak.clone(), db.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n: i64 = direct
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                            &[&db],
                        )
                        .await
                        .context("counting server connections")?
                        .get(0);
                    peak.fetch_max(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok::<_, anyhow::Error>(direct)
            })
        };

        let mut tasks = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS as i32 {
            let cfg = vigil.config("app", "secret", &db);
            tasks.push(tokio::spawn(async move {
                let client = pgvigil_integration::vigil::connect_config(&cfg)
                    .await
                    .context("connect")?;
                let r = client
                    .query_one("SELECT $1::int4", &[&i])
                    .await
                    .context("extended query")?;
                ensure!(r.get::<_, i32>(0) == i, "wrong answer");
                client
                    .simple_query("SELECT pg_sleep(0.01)")
                    .await
                    .context("simple query")?;
                client
                    .batch_execute("BEGIN; SELECT 1; SELECT 2; COMMIT")
                    .await
                    .context("transaction")?;
                Ok::<_, anyhow::Error>(())
            }));
        }
        let mut failures = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("client {i}: {e:#}")),
                Err(e) => failures.push(format!("client {i}: task panicked: {e}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let direct = sampler.await.context("sampler panicked")??;
        ensure!(
            failures.is_empty(),
            "{} of {CLIENTS} clients failed; first ones:\n{}",
            failures.len(),
            failures
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let peak = peak.load(Ordering::Relaxed);
        ensure!(
            (1..=POOL).contains(&peak),
            "PostgreSQL saw {peak} connections to {db} at once; pool size is {POOL}"
        );
        drop(vigil);
        direct
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .await
            .context("drop database")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_does_not_grow_pgvigil_memory() -> Result<()> {
    timed(Duration::from_secs(60), async {
        const ALLOWED_GROWTH: u64 = 64 << 20;
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Session)
            .pool_size(2)
            .client_auth("trust")
            .spawn()
            .await?;
        let mut raw = RawConn::startup_trust(vigil.port(), "app", "appdb").await?;
        raw.send_query("SELECT 1").await?;
        raw.read_until_ready().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline = vigil.rss_bytes()?;

        // ~2 GB of rows; read the first one, then stop reading.
        let marker = unique_name("backpressure");
        raw.send_query(&format!(
            "SELECT repeat('x', 1000) AS {marker} FROM generate_series(1, 2000000)"
        ))
        .await?;
        loop {
            let msg = raw
                .read_message()
                .await
                .context("waiting for the first row")?;
            match msg.tag {
                b'D' => break,
                b'E' => bail!("query failed: {:?}", msg.error_fields()),
                _ => {}
            }
        }

        let mut peak = baseline;
        let mut saw_client_write = false;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak = peak.max(vigil.rss_bytes()?);
            let waits = direct
                .query(
                    "SELECT wait_event FROM pg_stat_activity \
                     WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                    &[&marker],
                )
                .await
                .context("pg_stat_activity")?;
            saw_client_write |= waits
                .iter()
                .any(|r| r.get::<_, Option<String>>(0).as_deref() == Some("ClientWrite"));
        }
        // Let the server go before judging, so a failure does not leave it streaming.
        direct
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                &[&marker],
            )
            .await
            .context("terminating the streaming backend")?;
        drop(raw);

        ensure!(
            peak < baseline + ALLOWED_GROWTH,
            "pgvigil RSS grew from {} MiB to {} MiB while a client was not reading",
            baseline >> 20,
            peak >> 20
        );
        ensure!(
            saw_client_write,
            "PostgreSQL never waited on ClientWrite: pgvigil kept reading the result \
             although its client did not (RSS {} -> {} MiB)",
            baseline >> 20,
            peak >> 20
        );
        // pgvigil still serves new clients.
        let client = vigil.connect("app", "", "appdb").await?;
        client
            .simple_query("SELECT 1")
            .await
            .context("query after the backpressure test")?;
        Ok(())
    })
    .await
}
