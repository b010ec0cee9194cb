//! The web dashboard (`GET /` on the admin listener) in a real browser:
//! pgvigil with an admin token runs a workload containing an N+1 loop, a
//! slow statement and some other queries; headless Chromium (Debian's
//! `chromium`, driven by `tests/e2e/dashboard.mjs` with playwright-core)
//! loads the page with `?token=`, and the test checks that the N+1
//! detection with its suggestion, the top query, the charts and the pool
//! are on screen. The screenshot goes to `target/dashboard.png`.
//!
//! Needs `/usr/bin/chromium`, node and `tests/e2e/node_modules`
//! (`scripts/ensure-browser.sh` installs them); the test fails, never
//! skips, without them.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test dashboard`

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::books::Books;
use pgvigil_integration::browser::{require_browser, run_e2e, target_dir};
use pgvigil_integration::serde_json::{self, Value};
use pgvigil_integration::vigil::tail;
use pgvigil_integration::{shared_cluster, timed, wait_until, Pgvigil, PoolMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(120);
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "dashboard-test-token";
/// Child queries per N+1 loop.
const CHILDREN: i32 = 20;

/// `GET path` on the admin listener with an optional bearer token:
/// (status, content type, body).
async fn get(port: u16, path: &str, token: Option<&str>) -> Result<(u16, String, String)> {
    // pgvigil may bind the admin listener just after the client listener.
    let mut attempts = 0;
    let mut stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => break stream,
            Err(e) if attempts < 100 && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to the admin listener on port {port}"))
            }
        }
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("reply is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed reply to GET {path}: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked reply to GET {path}"
    );
    Ok((status, content_type, body.to_string()))
}

async fn get_json(port: u16, path: &str) -> Result<Value> {
    let (status, _, body) = get(port, path, Some(TOKEN)).await?;
    ensure!(status == 200, "GET {path}: {status} {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_n_plus_one_top_query_and_pools_in_chromium() -> Result<()> {
    require_browser()?;
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(4)
            .arg("--admin-token")
            .arg(TOKEN)
            .arg("--slow-query-ms")
            .arg("150")
            .spawn()
            .await?;
        let port = vigil.admin_port();

        // The page is served without a token (it holds no data), with a
        // strict CSP; the API behind it needs the token.
        let (status, content_type, html) = get(port, "/", None).await?;
        ensure!(status == 200, "GET /: {status}");
        ensure!(content_type.starts_with("text/html"), "GET /: {content_type}");
        ensure!(html.contains("dashboard/app.js"), "GET /: {}", tail(&html, 500));
        for asset in ["/dashboard/app.js", "/dashboard/style.css"] {
            let (status, _, body) = get(port, asset, None).await?;
            ensure!(status == 200 && !body.is_empty(), "GET {asset}: {status}");
        }
        let (status, _, _) = get(port, "/api/pools", None).await?;
        ensure!(status == 401, "GET /api/pools without the token: {status}");

        // The workload.
        let mut client = vigil.connect_app().await?;
        let shop = Books::create(&client).await?;
        let books = &shop.books;
        for _ in 0..2 {
            shop.n_plus_one_loop(&mut client, CHILDREN).await?;
        }
        for _ in 0..3 {
            client.query("SELECT pg_sleep(0.25)", &[]).await?;
        }
        // DDL through pgvigil sets a marker, drawn on the latency chart.
        client
            .batch_execute(&format!("CREATE INDEX ON {books} (author_id)"))
            .await?;
        for n in 0..30 {
            client
                .query(
                    &format!("SELECT count(*) FROM {books} WHERE title LIKE $1"),
                    &[&format!("book {n}%")],
                )
                .await?;
        }

        // Wait until the API has the detection and the slow events.
        let child = shop.child_query();
        let found = wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
            let d = get_json(port, "/api/n-plus-one").await?;
            let slow = get_json(port, "/api/slow").await?;
            let has_detection = d["detections"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d["query"].as_str() == Some(child.as_str())));
            Ok(has_detection && slow["events"].as_array().is_some_and(|e| e.len() >= 3))
        })
        .await?;
        ensure!(
            found,
            "no N+1 detection for {child:?} in the API: {}",
            get_json(port, "/api/n-plus-one").await?
        );
        let detections = get_json(port, "/api/n-plus-one").await?;
        let detection = detections["detections"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["query"].as_str() == Some(child.as_str())))
            .cloned()
            .context("detection vanished")?;
        let suggestion = detection["suggestion"].as_str().unwrap_or_default().to_string();
        ensure!(!suggestion.is_empty(), "detection without a suggestion: {detection}");
        let top = get_json(port, "/api/queries?sort=total_time&limit=1").await?;
        let top_query = top["queries"][0]["query"]
            .as_str()
            .with_context(|| format!("no top query in {top}"))?
            .to_string();

        // /api/pools.
        let pools = get_json(port, "/api/pools").await?;
        let pool = pools["pools"]
            .as_array()
            .and_then(|a| a.first())
            .with_context(|| format!("no pool in {pools}"))?;
        for key in [
            "database", "user", "pool_mode", "pool_size", "active", "idle", "overflow", "waiting",
            "clients", "utilization",
        ] {
            ensure!(pool.get(key).is_some(), "pool without `{key}`: {pool}");
        }
        ensure!(pool["pool_mode"] == "transaction" && pool["pool_size"] == 4, "{pool}");
        ensure!(pool["clients"].as_u64() >= Some(1), "{pool}");

        // The page in Chromium.
        let screenshot = target_dir()?.join("dashboard.png");
        let _ = std::fs::remove_file(&screenshot);
        let url = format!("http://127.0.0.1:{port}/?token={TOKEN}");
        let page = run_e2e("dashboard.mjs", &[url.as_ref(), screenshot.as_ref()], BROWSER_LIMIT)
            .await
            .with_context(|| format!("pgvigil:\n{}", tail(&vigil.stderr(), 2000)))?;
        println!("dashboard screenshot: {}", screenshot.display());
        ensure!(screenshot.is_file(), "no screenshot at {}", screenshot.display());

        let body = page["bodyText"].as_str().unwrap_or_default();
        let problems: Vec<(&str, bool)> = vec![
            ("no page errors", page["pageErrors"].as_array().is_some_and(|a| a.is_empty())),
            ("no console errors", page["consoleErrors"].as_array().is_some_and(|a| a.is_empty())),
            ("no request left this listener", page["foreignRequests"].as_array().is_some_and(|a| a.is_empty())),
            ("no failed requests", page["failedRequests"].as_array().is_some_and(|a| a.is_empty())),
            ("the N+1 detection is visible", page["nplusVisible"] == true),
            ("the index's marker is on the latency chart", page["markerLines"].as_u64() >= Some(1)),
            (
                "the detection shows its child query",
                page["detections"].as_array().is_some_and(|a| {
                    a.iter().any(|d| d["query"].as_str() == Some(child.as_str()))
                }),
            ),
            (
                "the detection shows its suggestion",
                page["detections"].as_array().is_some_and(|a| {
                    a.iter().any(|d| {
                        d["suggestion"].as_str().is_some_and(|s| {
                            // The page shows `quoted` parts as code, without the backticks.
                            s.contains("Suggestion") && s.contains(&suggestion.replace('`', ""))
                        })
                    })
                }),
            ),
            ("the top query is visible", page["topQueryVisible"] == true),
            ("the top query is the first row", page["queries"][0].as_str() == Some(top_query.as_str())),
            ("sorted by total time", page["sortedBy"] == "total_time"),
            ("the top query's detail is shown", page["detailQuery"].as_str() == Some(top_query.as_str())),
            ("a histogram is drawn", page["histogramBars"].as_u64() >= Some(1)),
            ("percentiles are drawn", page["percentilePoints"].as_u64() >= Some(3)),
            ("slow events are listed", page["slowEvents"].as_u64() >= Some(3)),
            (
                "the pool is listed with its utilization",
                page["pools"].as_array().is_some_and(|a| {
                    a.iter().any(|p| {
                        p.as_str().is_some_and(|t| t.contains("transaction") && t.contains("% of 4"))
                    })
                }),
            ),
            ("the status says live", page["status"].as_str().is_some_and(|s| s.starts_with("Live"))),
            ("the child query text is on screen", body.contains(child.as_str())),
        ];
        let failed: Vec<&str> = problems.iter().filter(|(_, ok)| !ok).map(|(what, _)| *what).collect();
        if !failed.is_empty() {
            let mut shown = page.clone();
            if let Some(o) = shown.as_object_mut() {
                o.remove("bodyText");
            }
            bail!(
                "dashboard checks failed: {}\nexpected top query {top_query:?}, child {child:?}\npage: {shown:#}\nbody text:\n{}",
                failed.join("; "),
                tail(body, 3000)
            );
        }
        Ok(())
    })
    .await
}
