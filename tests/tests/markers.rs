//! Before/after markers, regressions and the history file, against the
//! real binary and PostgreSQL: an index created through pgvigil sets a
//! DDL marker whose report shows the query it serves getting at least
//! 10x faster; a manual marker through `POST /api/markers`; a new
//! sqlcommenter `version` sets a version marker; markers and history
//! survive a restart through `advisor.history_file`; a statement that
//! gets slower than its baseline raises a regression.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test markers`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::tokio_postgres::{Client, SimpleQueryMessage};
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil, PoolMode};

const LIMIT: Duration = Duration::from_secs(180);
/// Statistics are merged every 250 ms; the API shows them after that.
const SETTLE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);

fn array<'a>(body: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    body.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("no `{key}` array in {body}"))
}

/// `GET path` until `done` accepts the body or `limit` passes; the last
/// body either way.
async fn poll_get(
    vigil: &Pgvigil,
    path: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<(bool, Value)> {
    let deadline = Instant::now() + limit;
    loop {
        let body = vigil.api_get(path).await?;
        if done(&body) {
            return Ok((true, body));
        }
        if Instant::now() > deadline {
            return Ok((false, body));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the one fingerprint whose text contains `needle` has
/// `calls` calls in the last hour.
async fn wait_calls(vigil: &Pgvigil, needle: &str, calls: u64) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let seen = calls_of(vigil, needle).await?;
        if seen == calls {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{needle}: {seen} calls, expected {calls}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn markers(vigil: &Pgvigil) -> Result<Vec<Value>> {
    Ok(array(&vigil.api_get("/api/markers").await?, "markers")?.clone())
}

/// The first marker (newest first) that `pick` accepts, waiting for it.
async fn wait_marker(vigil: &Pgvigil, pick: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let list = markers(vigil).await?;
        if let Some(m) = list.iter().find(|m| pick(m)) {
            return Ok(m.clone());
        }
        if Instant::now() > deadline {
            bail!("no such marker within {SETTLE:?}; markers: {list:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Calls of the one fingerprint whose text contains `needle`.
async fn calls_of(vigil: &Pgvigil, needle: &str) -> Result<u64> {
    let body = vigil
        .api_get("/api/queries?sort=calls&limit=10000&window=60m")
        .await?;
    Ok(array(&body, "queries")?
        .iter()
        .filter(|q| q["query"].as_str().is_some_and(|t| t.contains(needle)))
        .map(|q| q["calls"].as_u64().unwrap_or(0))
        .sum())
}

async fn run_for(client: &Client, sql: &str, span: Duration) -> Result<u64> {
    let stmt = client.prepare(sql).await?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < span {
        let customer = (n as i32 * 7919) % 10_000;
        client.query_one(&stmt, &[&customer]).await?;
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_created_through_pgvigil_sets_a_marker_showing_p95_fall_tenfold() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let client = vigil.connect_app().await?;
        let table = unique_name("orders");
        let index = format!("{table}_customer_id_idx");
        client
            .batch_execute(&format!(
                "SET max_parallel_workers_per_gather = 0;
                 CREATE TABLE {table} AS
                   SELECT g AS id, g % 10000 AS customer_id, md5(g::text) AS note
                   FROM generate_series(1, 300000) g;
                 ANALYZE {table};"
            ))
            .await?;
        let sql = format!("SELECT count(*) FROM {table} WHERE customer_id = $1");
        let before = run_for(&client, &sql, Duration::from_secs(4)).await?;
        ensure!(before >= 20, "only {before} unindexed queries in 4 s");
        client
            .batch_execute(&format!("CREATE INDEX {index} ON {table} (customer_id)"))
            .await?;
        let after = run_for(&client, &sql, Duration::from_secs(2)).await?;
        ensure!(after > before, "{after} indexed queries vs {before} before");

        let marker = wait_marker(&vigil, |m| {
            m["kind"] == "ddl" && m["objects"][0].as_str() == Some(index.as_str())
        })
        .await?;
        ensure!(
            marker["statement"] == "CREATE INDEX" && marker["objects"][1] == table.as_str(),
            "{marker}"
        );
        // The index's DDL text is not in the marker beyond its names.
        ensure!(!marker.to_string().contains("customer_id)"), "{marker}");
        let id = marker["id"].as_u64().context("marker id")?;
        let (found, report) = poll_get(&vigil, &format!("/api/markers/{id}"), SETTLE, |r| {
            r["queries"].as_array().is_some_and(|qs| {
                qs.iter().any(|q| {
                    q["query"].as_str().is_some_and(|t| t.contains(&table))
                        && q["after"]["calls"].as_u64() == Some(after)
                })
            })
        })
        .await?;
        ensure!(
            found,
            "marker {id} never showed the query's calls after: {report}"
        );
        let q = report["queries"]
            .as_array()
            .and_then(|qs| {
                qs.iter()
                    .find(|q| q["query"].as_str().is_some_and(|t| t.contains(&table)))
            })
            .context("the query in the report")?;
        ensure!(q["before"]["calls"].as_u64() == Some(before), "{q}");
        let (p95_before, p95_after) = (
            q["before"]["p95_ms"].as_f64().context("p95 before")?,
            q["after"]["p95_ms"].as_f64().context("p95 after")?,
        );
        ensure!(
            p95_before >= 10.0 * p95_after,
            "p95 fell only from {p95_before} ms to {p95_after} ms: {report}"
        );
        let summary = report["summary"].as_str().context("summary")?;
        ensure!(
            summary.starts_with(&format!("after CREATE INDEX {index}, p95 of "))
                && summary.contains(" fell from "),
            "{summary}"
        );
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_marker_is_listed_shown_and_bad_requests_are_refused() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Session)
            .pool_size(2)
            .client_auth("trust")
            .arg("--admin-users")
            .arg("admin")
            .spawn()
            .await?;
        let reply = vigil
            .api_post_json("/api/markers", r#"{"name": "release 42"}"#)
            .await?;
        ensure!(reply.status == 201, "{} {}", reply.status, reply.body);
        let created = reply.json()?;
        ensure!(
            created["kind"] == "manual" && created["name"] == "release 42",
            "{created}"
        );
        let id = created["id"].as_u64().context("id")?;
        let list = markers(&vigil).await?;
        ensure!(list.iter().any(|m| m["id"] == id), "{list:?}");
        let detail = vigil.api_get(&format!("/api/markers/{id}")).await?;
        ensure!(
            detail["summary"]
                .as_str()
                .is_some_and(|s| s.contains("release 42")),
            "{detail}"
        );
        for body in ["", "{}", r#"{"name": ""}"#, "not json"] {
            let r = vigil.api_post_json("/api/markers", body).await?;
            ensure!(r.status == 400, "{body:?} answered {} {}", r.status, r.body);
        }
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(201));
        ensure!(vigil.api_post_json("/api/markers", &long).await?.status == 400);
        ensure!(vigil.api_request("GET", "/api/markers/999").await?.status == 404);
        ensure!(vigil.api_request("GET", "/api/markers/x").await?.status == 400);
        // A plain form post (no JSON type, no X-Pgvigil) is refused.
        let form = vigil
            .http_request(
                "POST",
                "/api/markers",
                &[("Content-Type", "application/x-www-form-urlencoded")],
            )
            .await?;
        ensure!(form.status >= 400, "{} {}", form.status, form.body);
        ensure!(markers(&vigil).await?.len() == 1);

        let metrics = vigil
            .http_get("/metrics", &[])
            .await
            .context("GET /metrics")?;
        ensure!(
            metric(&metrics.body, "pgvigil_markers") == Some(1.0)
                && metric(&metrics.body, "pgvigil_regressions_total") == Some(0.0)
                && metric(&metrics.body, "pgvigil_markers_dropped_total") == Some(0.0),
            "{}",
            metrics.body
        );
        let console = vigil.connect("admin", "", "pgvigil").await?;
        let rows: Vec<_> = console
            .simple_query("SHOW MARKERS")
            .await?
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .collect();
        ensure!(rows.len() == 1, "{} rows", rows.len());
        ensure!(rows[0].get("name") == Some("release 42"));
        ensure!(rows[0].get("kind") == Some("manual"));
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_tag_sets_a_version_marker() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Session, 2).await?;
        let client = vigil.connect_app().await?;
        for _ in 0..5 {
            client
                .simple_query("SELECT 1 /*controller='a',version='1'*/")
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            markers(&vigil).await?.is_empty(),
            "the version running at start is no change"
        );
        for _ in 0..5 {
            client
                .simple_query("SELECT 1 /*controller='a',version='2'*/")
                .await?;
        }
        let m = wait_marker(&vigil, |m| m["kind"] == "version").await?;
        ensure!(
            m["tag"]["key"] == "version" && m["tag"]["value"] == "2",
            "{m}"
        );
        ensure!(markers(&vigil).await?.len() == 1);
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_and_history_survive_a_restart_through_the_history_file() -> Result<()> {
    timed(LIMIT, async {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("history.json");
        let config = format!("[advisor]\nhistory_file = {:?}\n", path.to_string_lossy());
        let cluster = shared_cluster();
        let mut vigil = Pgvigil::builder_with_config(cluster, config.clone())
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let marker_sql = unique_name("history_probe");
        for _ in 0..25 {
            client
                .simple_query(&format!("SELECT 1 AS {marker_sql}"))
                .await?;
        }
        wait_calls(&vigil, &marker_sql, 25).await?;
        let reply = vigil
            .api_post_json("/api/markers", r#"{"name": "before restart"}"#)
            .await?;
        ensure!(reply.status == 201, "{}", reply.body);
        drop(client);
        let status = vigil.terminate(Duration::from_secs(30))?;
        ensure!(status.success(), "pgvigil exited with {status}");
        let text = std::fs::read_to_string(&path).context("history file after exit")?;
        ensure!(text.contains(&marker_sql) && text.contains("before restart"));

        let vigil = Pgvigil::builder_with_config(cluster, config)
            .spawn()
            .await?;
        let list = markers(&vigil).await?;
        ensure!(
            list.iter().any(|m| m["name"] == "before restart"),
            "{list:?}"
        );
        let calls = calls_of(&vigil, &marker_sql).await?;
        ensure!(calls == 25, "{calls} calls of the probe after restart");
        ensure!(
            vigil.stderr().contains("history restored"),
            "{}",
            vigil.stderr()
        );
        // A corrupt file is reported and ignored, never fatal.
        drop(vigil);
        std::fs::write(&path, b"{ not json")?;
        let vigil = Pgvigil::builder_with_config(
            cluster,
            format!("[advisor]\nhistory_file = {:?}\n", path.to_string_lossy()),
        )
        .spawn()
        .await?;
        ensure!(markers(&vigil).await?.is_empty());
        ensure!(
            vigil.stderr().contains("history not restored"),
            "{}",
            vigil.stderr()
        );
        vigil.assert_no_panic()
    })
    .await
}

/// The value of a label-less series in a `/metrics` text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix("{}").unwrap_or(rest);
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn ms_to_next_minute() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    60_000 - now % 60_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_slower_than_its_baseline_raises_one_regression() -> Result<()> {
    timed(LIMIT, async {
        let config = "[advisor]\nregression_window_s = 60\nregression_min_calls = 10\n";
        let vigil = Pgvigil::builder_with_config(shared_cluster(), config)
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let probe = unique_name("regress");
        let sql = format!("SELECT pg_sleep($1::float8) AS {probe}");
        let stmt = client.prepare(&sql).await?;
        for _ in 0..20 {
            client.query(&stmt, &[&0.0f64]).await?;
        }
        wait_calls(&vigil, &probe, 20).await?;
        // The window is whole minutes: the slow calls must fall in a
        // minute after the fast ones were merged.
        tokio::time::sleep(Duration::from_millis(ms_to_next_minute() + 300)).await;
        ensure!(
            array(&vigil.api_get("/api/regressions").await?, "regressions")?.is_empty(),
            "a regression before any slow call"
        );
        for _ in 0..12 {
            client.query(&stmt, &[&0.02f64]).await?;
        }
        let (found, body) = poll_get(&vigil, "/api/regressions", Duration::from_secs(15), |b| {
            b["regressions"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await?;
        ensure!(found, "no regression reported: {body}");
        let events = array(&body, "regressions")?;
        ensure!(events.len() == 1, "{body}");
        let e = &events[0];
        ensure!(
            e["query"].as_str().is_some_and(|q| q.contains(&probe)),
            "{e}"
        );
        ensure!(e["factor"].as_f64().is_some_and(|f| f >= 2.0), "{e}");
        // Still slow: not reported again.
        for _ in 0..5 {
            client.query(&stmt, &[&0.02f64]).await?;
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        let again = vigil.api_get("/api/regressions").await?;
        ensure!(array(&again, "regressions")?.len() == 1, "{again}");
        ensure!(again["total"] == 1, "{again}");
        let metrics = vigil.http_get("/metrics", &[]).await?;
        ensure!(
            metric(&metrics.body, "pgvigil_regressions_total") == Some(1.0),
            "{}",
            metrics.body
        );
        // Logged by fingerprint, without the statement's text.
        let log = vigil.stderr();
        ensure!(log.contains("query regression"), "{log}");
        ensure!(!log.contains(&probe), "{log}");
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_marker_settings_says_a_restart_is_needed() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder_with_config(shared_cluster(), "[advisor]\nmax_markers = 5\n")
            .spawn()
            .await?;
        let path = vigil.config_path().context("config path")?.to_path_buf();
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, text.replace("max_markers = 5", "max_markers = 7"))?;
        vigil.signal(libc::SIGHUP)?;
        let deadline = Instant::now() + SETTLE;
        while !vigil.stderr().contains("configuration reloaded") {
            ensure!(Instant::now() < deadline, "no reload: {}", vigil.stderr());
            tokio::time::sleep(POLL).await;
        }
        ensure!(
            vigil
                .stderr()
                .contains("advisor marker, regression or history_file settings changed"),
            "{}",
            vigil.stderr()
        );
        vigil.assert_no_panic()
    })
    .await
}
