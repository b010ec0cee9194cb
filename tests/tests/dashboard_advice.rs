//! The dashboard's advisor panels in a real browser: pgvigil in front of a
//! database of its own with a 100k-row table queried by an unindexed
//! column (no hypopg, so the advice comes from the plan heuristic), a
//! manual marker set through `POST /api/markers` between two runs of the
//! workload, and health sampled every half second. Headless Chromium
//! (`tests/e2e/dashboard_advice.mjs`) loads the page and the test checks
//! that the create_index advice shows its DDL and says it is heuristic,
//! that its Copy button puts exactly that DDL on the clipboard, that the
//! health panel shows the cache hit ratio the API gives, that the marker
//! is a line on the query's percentile chart and its before/after opens
//! when chosen, that the plan section summarizes the sequential scan, and
//! that "Refresh advice" is disabled while the advisor runs. The
//! screenshot goes to `target/dashboard-advice.png`.
//!
//! Needs `/usr/bin/chromium`, node and `tests/e2e/node_modules`
//! (`scripts/ensure-browser.sh` installs them); the test fails, never
//! skips, without them.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test dashboard_advice`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::browser::{require_browser, run_e2e, target_dir};
use pgvigil_integration::orders::OrdersDb;
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::tokio_postgres::Client;
use pgvigil_integration::vigil::tail;
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil};

const LIMIT: Duration = Duration::from_secs(180);
const BROWSER_LIMIT: Duration = Duration::from_secs(120);
/// How long the API may take to show what the workload did.
const SETTLE: Duration = Duration::from_secs(20);
const QUERY: &str = "SELECT id, amount FROM orders WHERE customer_id = $1";
const MARKER: &str = "deploy ui-test";

async fn workload(client: &Client, n: i32) -> Result<()> {
    for i in 0..n {
        client.query(QUERY, &[&(i * 7)]).await?;
    }
    Ok(())
}

/// Polls `GET path` until `ready` holds for its 200 body; fails with the
/// last reply after [`SETTLE`].
async fn api_until(
    vigil: &Pgvigil,
    path: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let reply = vigil.api_request("GET", path).await?;
        if reply.status == 200 {
            let body = reply.json()?;
            if ready(&body) {
                return Ok(body);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "{what}: GET {path} still answers {} {} after {SETTLE:?}",
            reply.status,
            tail(&reply.body, 2000)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the browser script (`mode`: the marker to look for, or
/// `--advisor-off`) and returns what it printed.
async fn browse(url: &str, screenshot: &Path, mode: &str) -> Result<Value> {
    run_e2e(
        "dashboard_advice.mjs",
        &[url.as_ref(), screenshot.as_ref(), mode.as_ref()],
        BROWSER_LIMIT,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_with_copyable_ddl_health_and_a_marker_on_the_chart_in_chromium() -> Result<()> {
    require_browser()?;
    let db = OrdersDb::create("uiadvice")?;
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder_with_config(
            cluster,
            "[advisor]\ninterval_s = 3600\nhealth_interval_s = 0.5\n",
        )
        .upstream(cluster.url(&db.name))
        .client_auth("trust")
        .spawn()
        .await?;
        let client = vigil.connect("app", "secret", &db.name).await?;

        // Before the marker, then after it: the marker has both sides.
        workload(&client, 40).await?;
        let reply = vigil
            .api_post_json("/api/markers", &format!("{{\"name\": \"{MARKER}\"}}"))
            .await?;
        ensure!(reply.status == 201, "POST /api/markers: {} {}", reply.status, reply.body);
        let marker_id = reply.json()?["id"].clone();
        tokio::time::sleep(Duration::from_millis(50)).await;
        workload(&client, 40).await?;

        // The advice the page must show, from the API.
        let advice = vigil.api_post("/api/advice/refresh").await?;
        let create = advice["advice"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|a| a["kind"] == "create_index" && a["table"] == "orders")
            })
            .cloned()
            .with_context(|| format!("no create_index advice on orders: {advice:#}"))?;
        let ddl = create["ddl"].as_str().unwrap_or_default().to_string();
        ensure!(
            ddl.starts_with("CREATE INDEX CONCURRENTLY") && ddl.contains("customer_id"),
            "{create:#}"
        );
        ensure!(create["method"] == "heuristic", "no hypopg here: {create:#}");

        let health = api_until(&vigil, "/api/health", "a cache hit ratio", |b| {
            b["cache_hit_ratio"].is_number()
        })
        .await?;
        let ratio = health["cache_hit_ratio"].as_f64().unwrap_or(-1.0);
        api_until(&vigil, &format!("/api/markers/{marker_id}"), "the marker's after side", |b| {
            b["queries"]
                .as_array()
                .is_some_and(|q| q.iter().any(|q| q["after"]["calls"].as_u64() > Some(0)))
        })
        .await?;

        let screenshot = target_dir()?.join("dashboard-advice.png");
        let _ = std::fs::remove_file(&screenshot);
        let url = format!("http://127.0.0.1:{}/", vigil.admin_port());
        let page = browse(&url, &screenshot, MARKER).await?;
        println!("dashboard screenshot: {}", screenshot.display());
        ensure!(screenshot.is_file(), "no screenshot at {}", screenshot.display());

        // What the page shows for the cache hit ratio, as it formats it
        // (the ratio may move between the API read and the page's).
        let shown_ratio = page["cacheHitRatio"].as_str().unwrap_or_default();
        let shown = shown_ratio.trim_end_matches('%').parse::<f64>().ok();
        let first_advice = page["advice"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["ddl"].as_str() == Some(ddl.as_str())))
            .cloned()
            .unwrap_or(Value::Null);
        let empty = |key: &str| page[key].as_array().is_some_and(|a| a.is_empty());
        let checks: Vec<(&str, bool)> = vec![
            ("no page errors", empty("pageErrors")),
            ("no console errors", empty("consoleErrors")),
            ("no request left this listener", empty("foreignRequests")),
            ("no failed requests", empty("failedRequests")),
            ("the create_index advice shows the API's DDL", page["adviceDdl"].as_str() == Some(ddl.as_str())),
            ("the advice names its table", first_advice["table"] == "orders"),
            (
                "the advice says it is heuristic",
                first_advice["method"].as_str() == Some("heuristic (no hypopg)"),
            ),
            (
                "the advice lists the query it helps",
                first_advice["helps"].as_array().is_some_and(|h| {
                    h.iter().any(|t| t.as_str().is_some_and(|t| t.contains("FROM orders WHERE customer_id")))
                }),
            ),
            ("Copy says so", page["copyLabel"] == "Copied"),
            ("the clipboard holds exactly the DDL", page["clipboard"].as_str() == Some(ddl.as_str())),
            (
                "without the Clipboard API, Copy selects exactly the DDL",
                page["fallbackLabel"] == "Selected: press Ctrl+C"
                    && page["selection"].as_str().map(str::trim) == Some(ddl.as_str()),
            ),
            (
                "the cache hit ratio is shown as the API gives it",
                shown.is_some_and(|s| ratio >= 0.0 && (s - 100.0 * ratio).abs() <= 1.0),
            ),
            (
                "a ratio below 99% is styled as a warning",
                page["cacheHitClass"].as_str().is_some_and(|c| c.contains(if shown.is_some_and(|s| s < 99.0) { "warn" } else { "ok" })),
            ),
            (
                "the marker is a line on the percentile chart, named in its tooltip",
                page["chartMarkers"].as_array().is_some_and(|m| {
                    m.iter().any(|t| t.as_str().is_some_and(|t| t.starts_with(MARKER)))
                }),
            ),
            ("the chosen marker is highlighted on the chart", page["markerSelectedOnChart"].as_u64() == Some(1)),
            (
                "the marker's before/after lists the query",
                page["markerDetail"].as_str().is_some_and(|t| t.contains("FROM orders WHERE customer_id")),
            ),
            (
                "the markers panel lists regressions, none here",
                page["regressions"].as_str().is_some_and(|t| t.starts_with("REGRESSIONS") && t.contains("None")),
            ),
            ("the detail shows the orders query", page["detailQuery"].as_str() == Some(QUERY)),
            (
                "the plan section summarizes the sequential scan the advice came from",
                page["plan"].as_str().is_some_and(|p| p.contains("Sequential scan on orders")),
            ),
            ("Refresh advice is disabled while it runs", page["refreshDisabledWhileRunning"] == true),
            (
                "Refresh advice reports the run",
                page["adviceNote"].as_str().is_some_and(|n| n.starts_with("Advisor ran at")),
            ),
            ("the status says live", page["status"].as_str().is_some_and(|s| s.starts_with("Live"))),
        ];
        let failed: Vec<&str> = checks.iter().filter(|(_, ok)| !ok).map(|(what, _)| *what).collect();
        if !failed.is_empty() {
            bail!(
                "dashboard checks failed: {}\nexpected DDL {ddl:?}, cache hit ratio {ratio}\npage: {page:#}",
                failed.join("; ")
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_advisor_its_panels_say_so_and_the_rest_works_in_chromium() -> Result<()> {
    require_browser()?;
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder_with_config(cluster, "[advisor]\nenabled = false\n")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let alias = unique_name("probe");
        let probe = format!("SELECT $1::int AS {alias}");
        for i in 0..5 {
            client.query(probe.as_str(), &[&i]).await?;
        }
        api_until(&vigil, "/api/queries", "the probe", |b| {
            b["queries"].as_array().is_some_and(|q| {
                q.iter()
                    .any(|q| q["query"].as_str().is_some_and(|t| t.contains(&alias)))
            })
        })
        .await?;
        let reply = vigil.api_request("GET", "/api/advice").await?;
        ensure!(
            reply.status == 404,
            "GET /api/advice with the advisor off: {} {}",
            reply.status,
            reply.body
        );

        let screenshot = target_dir()?.join("dashboard-advisor-off.png");
        let _ = std::fs::remove_file(&screenshot);
        let url = format!("http://127.0.0.1:{}/", vigil.admin_port());
        let page = browse(&url, &screenshot, "--advisor-off").await?;
        let text = |key: &str| page[key].as_str().unwrap_or_default().to_string();
        let empty = |key: &str| page[key].as_array().is_some_and(|a| a.is_empty());
        let checks: Vec<(&str, bool)> = vec![
            ("no page errors", empty("pageErrors")),
            (
                "no console errors but the advisor's 404s",
                empty("consoleErrors"),
            ),
            ("no failed requests", empty("failedRequests")),
            (
                "the advice panel says the advisor is off",
                text("advice").contains("not available")
                    && text("advice").contains("advisor is off"),
            ),
            (
                "the health panel says so too",
                text("health").contains("not available"),
            ),
            (
                "the plan section says there is none",
                text("plan").contains("advisor is off"),
            ),
            (
                "Refresh advice is disabled",
                page["refreshDisabled"] == true,
            ),
            (
                "markers (analytics) still work",
                text("markers").starts_with("No markers yet"),
            ),
            (
                "the top queries still show",
                page["queries"].as_array().is_some_and(|q| {
                    q.iter()
                        .any(|t| t.as_str().is_some_and(|t| t.contains(&alias)))
                }),
            ),
            (
                "the chart still draws",
                page["percentilePoints"].as_u64() >= Some(1),
            ),
            (
                "the status says live, not an error",
                text("status").starts_with("Live"),
            ),
        ];
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(what, _)| *what)
            .collect();
        if !failed.is_empty() {
            bail!(
                "dashboard checks failed: {}\npage: {page:#}",
                failed.join("; ")
            );
        }
        Ok(())
    })
    .await
}
