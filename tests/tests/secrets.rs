//! Literals a client sends (passwords in `ALTER ROLE`, values inside DO
//! blocks, plain constants) never reach pgvigil's log, even at
//! RUST_LOG=trace, nor its statistics surfaces (`/metrics`,
//! `/api/queries`, `SHOW QUERIES`).
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test secrets`

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::cluster::APP_DB;
use pgvigil_integration::tokio_postgres::{Client, SimpleQueryMessage};
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil, PoolMode};

const LIMIT: Duration = Duration::from_secs(45);
/// How long statistics may take to show up after a workload.
const SETTLE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// Polls `/api/queries` until a statement's text contains `needle`;
/// returns the whole reply body.
async fn queries_once_listed(vigil: &Pgvigil, needle: &str) -> Result<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let reply = vigil.api_request("GET", "/api/queries?limit=10000").await?;
        ensure!(
            reply.status == 200,
            "/api/queries: {} {}",
            reply.status,
            reply.body
        );
        let body = reply.json()?;
        let listed = body["queries"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["query"].as_str().is_some_and(|q| q.contains(needle)))
        });
        if listed {
            return Ok(reply.body);
        }
        if Instant::now() >= deadline {
            bail!("no statement containing {needle:?} on /api/queries: {body}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// At RUST_LOG=trace, neither a password in `ALTER ROLE` nor a SELECT's
/// literal appears in the log: sqlparser (which logs every text it
/// parses) is silenced and the linter only sees normalized text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_carry_no_password_or_query_literal() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .env("RUST_LOG", "trace,sqlparser::parser=trace")
            .spawn()
            .await?;
        let password = unique_name("hunter2-secret");
        let literal = unique_name("select-literal");
        let role = unique_name("no_such_role");
        let client = vigil.connect_app().await?;
        // The role does not exist: PostgreSQL refuses, the text still
        // passes through the normalizer and the linter.
        let refused = client
            .simple_query(&format!("ALTER ROLE {role} PASSWORD '{password}'"))
            .await;
        ensure!(refused.is_err(), "ALTER ROLE of a missing role succeeded");
        let rows = client
            .simple_query(&format!("SELECT '{literal}' AS secret_marker"))
            .await?;
        ensure!(
            rows.iter().any(
                |m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some(literal.as_str()))
            ),
            "SELECT did not return its literal"
        );
        // Both statements are listed (so analysed, and linted: the lint
        // worker runs as a statement is first listed) before the log is read.
        queries_once_listed(&vigil, "secret_marker").await?;
        queries_once_listed(&vigil, "ALTER ROLE").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;

        let log = vigil.stderr();
        ensure!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "pgvigil did not log at debug/trace with RUST_LOG=trace:\n{log}"
        );
        for secret in [&password, &literal] {
            if let Some(at) = log.find(secret.as_str()) {
                let line = log[..at].rsplit('\n').next().unwrap_or_default();
                bail!("{secret:?} is in pgvigil's log, on a line starting {line:?}");
            }
        }
        Ok(())
    })
    .await
}

/// Every row of a console SHOW command, values joined, one line per row.
async fn show_rows(console: &Client, command: &str) -> Result<String> {
    let messages = console
        .simple_query(command)
        .await
        .with_context(|| format!("console command {command:?}"))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Literals inside DO blocks, in each way of writing one, are replaced in
/// the statement text: `/metrics`, `/api/queries` and `SHOW QUERIES`
/// list the blocks without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_block_literals_stay_off_metrics_api_and_show_queries() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .client_auth("trust")
            .arg("--admin-users")
            .arg("admin")
            .spawn()
            .await?;
        let client = vigil.connect("app", "", APP_DB).await?;
        let secrets: Vec<String> = (0..3).map(|_| unique_name("do-secret")).collect();
        client
            .batch_execute(&format!(
                "DO $$ BEGIN PERFORM length('{}') AS do_plain_marker; END $$",
                secrets[0]
            ))
            .await?;
        client
            .batch_execute(&format!(
                "DO $tag$ BEGIN PERFORM length('{}') AS do_tagged_marker; END $tag$",
                secrets[1]
            ))
            .await?;
        client
            .batch_execute(&format!(
                "DO LANGUAGE plpgsql $$ BEGIN PERFORM length('{}') AS do_language_marker; END $$",
                secrets[2]
            ))
            .await?;
        let mut api = String::new();
        for marker in ["do_plain_marker", "do_tagged_marker", "do_language_marker"] {
            api = queries_once_listed(&vigil, marker).await?;
        }
        let metrics = vigil.http_get("/metrics", &[]).await?;
        ensure!(metrics.status == 200, "/metrics: {}", metrics.status);
        ensure!(
            metrics.body.contains("do_plain_marker"),
            "the DO block is not on /metrics at all:\n{}",
            metrics.body
        );
        let console = vigil.connect("admin", "", "pgvigil").await?;
        let show = show_rows(&console, "SHOW QUERIES").await?;
        ensure!(
            show.contains("do_plain_marker"),
            "the DO block is not in SHOW QUERIES:\n{show}"
        );
        for (surface, text) in [
            ("/api/queries", &api),
            ("/metrics", &metrics.body),
            ("SHOW QUERIES", &show),
        ] {
            for secret in &secrets {
                ensure!(
                    !text.contains(secret.as_str()),
                    "{secret:?} is on {surface}:\n{text}"
                );
            }
        }
        Ok(())
    })
    .await
}
