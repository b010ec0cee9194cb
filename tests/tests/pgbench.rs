//! pgbench through pgvigil in transaction mode with a pool of 5: no failed
//! transactions in any query mode, including with 32 clients.

use std::time::Duration;

use anyhow::{ensure, Result};
use pgvigil_integration::{shared_cluster, timed, PgCluster, Pgvigil, PoolMode};
use tokio::sync::OnceCell;

const LIMIT: Duration = Duration::from_secs(120);

/// `pgbench -i -s 1`, once per test binary, itself through pgvigil.
async fn initialized_cluster() -> Result<&'static PgCluster> {
    static INIT: OnceCell<()> = OnceCell::const_new();
    let cluster = shared_cluster();
    INIT.get_or_try_init(|| async {
        let vigil = Pgvigil::start(cluster, PoolMode::Transaction, 5).await?;
        let report = vigil
            .pgbench(&["-i", "-s", "1", "-q"], Duration::from_secs(90))
            .await?;
        ensure!(
            report.output.status.success(),
            "pgbench -i -s 1 through pgvigil failed ({}):\nstdout:\n{}\nstderr:\n{}\npgvigil stderr:\n{}",
            report.output.status,
            report.stdout,
            report.stderr,
            vigil.stderr()
        );
        Ok(())
    })
    .await?;
    Ok(cluster)
}

async fn run_pgbench(args: &[&str]) -> Result<()> {
    let cluster = initialized_cluster().await?;
    let vigil = Pgvigil::start(cluster, PoolMode::Transaction, 5).await?;
    let report = vigil.pgbench(args, Duration::from_secs(60)).await?;
    report.assert_clean(&format!("pgbench {}", args.join(" ")))?;
    ensure!(
        report.processed.unwrap_or(0) > 0,
        "pgbench processed no transactions:\n{}",
        report.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_protocol_no_failed_transactions() -> Result<()> {
    timed(
        LIMIT,
        run_pgbench(&["-M", "simple", "-c", "8", "-j", "2", "-T", "3"]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_extended_protocol_no_failed_transactions() -> Result<()> {
    timed(
        LIMIT,
        run_pgbench(&["-M", "extended", "-c", "8", "-j", "2", "-T", "3"]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_statements_no_failed_transactions() -> Result<()> {
    timed(
        LIMIT,
        run_pgbench(&["-M", "prepared", "-c", "8", "-j", "2", "-T", "3"]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_32_clients_over_pool_of_5_no_failed_transactions() -> Result<()> {
    timed(
        LIMIT,
        run_pgbench(&["-M", "prepared", "-c", "32", "-j", "2", "-T", "5"]),
    )
    .await
}

/// `--worker-threads 2` serves connections on a multi-threaded runtime
/// (sessions, pools and per-thread statistics shared across threads): the
/// same prepared workload runs clean and the query counts add up across
/// threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_on_two_worker_threads_no_failed_transactions() -> Result<()> {
    timed(LIMIT, async {
        let cluster = initialized_cluster().await?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(5)
            .arg("--worker-threads")
            .arg("2")
            .spawn()
            .await?;
        let report = vigil
            .pgbench(
                &["-M", "prepared", "-c", "16", "-j", "2", "-t", "200"],
                Duration::from_secs(60),
            )
            .await?;
        report.assert_clean("pgbench -M prepared -c 16 -t 200 on two worker threads")?;
        ensure!(
            report.processed == Some(16 * 200),
            "expected 3200 transactions:\n{}",
            report.stdout
        );
        Ok(())
    })
    .await
}
