//! The web dashboard as a person sees it in a browser window of 1400x900,
//! without scrolling (`tests/e2e/dashboard_layout.mjs` drives Debian's
//! headless Chromium): after a workload with N+1 loops, slow statements and
//! a held server connection, the summary band (latency over time, top N+1
//! patterns, top slow statements, pool use) is above the fold; the header
//! and the N+1 panel count the same thing under the same name; no pool
//! figure is cut; every time on the page is UTC on a 24-hour clock (the
//! browser runs in Los Angeles with the en-US locale); the latency chart's
//! time axis starts at its first sample; and the refresh button is not
//! named like the console's PAUSE and only stops the page's refresh. The
//! screenshot of the window goes to `target/dashboard-1400x900.png`.
//!
//! Needs `/usr/bin/chromium`, node and `tests/e2e/node_modules`
//! (`scripts/ensure-browser.sh` installs them); the test fails, never
//! skips, without them.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test dashboard_layout`

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::books::Books;
use pgvigil_integration::browser::{require_browser, run_e2e, target_dir};
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::vigil::tail;
use pgvigil_integration::{shared_cluster, timed, wait_until, Pgvigil, PoolMode};

const LIMIT: Duration = Duration::from_secs(150);
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
/// The window the layout must work in: a laptop's browser.
const WINDOW_HEIGHT: f64 = 900.0;
/// Runs of the N+1 loop: the header once counted these (loops) where the
/// panel counted patterns.
const LOOPS: u64 = 3;
const CHILDREN: i32 = 12;
const POOL_SIZE: u32 = 10;

/// `HH:MM:SS`, 24-hour.
fn is_clock(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
        && text[0..2].parse::<u8>().is_ok_and(|h| h < 24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_n_plus_one_and_pools_are_above_the_fold_at_1400x900() -> Result<()> {
    require_browser()?;
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(POOL_SIZE)
            .arg("--slow-query-ms")
            .arg("100")
            .spawn()
            .await?;
        let port = vigil.admin_port();

        let mut client = vigil.connect_app().await?;
        let shop = Books::create(&client).await?;
        for _ in 0..LOOPS {
            shop.n_plus_one_loop(&mut client, CHILDREN).await?;
        }
        for _ in 0..2 {
            client.query("SELECT pg_sleep(0.15)", &[]).await?;
        }

        // Pool use: a transaction left open holds one of the ten server
        // connections while the browser looks.
        let holder = vigil.connect_app().await?;
        holder.batch_execute("BEGIN; SELECT 1").await?;

        let child = shop.child_query();
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
            let d = vigil.api_get("/api/n-plus-one").await?;
            let slow = vigil.api_get("/api/slow").await?;
            let loops = d["detections"].as_array().and_then(|a| {
                a.iter()
                    .find(|d| d["query"].as_str() == Some(child.as_str()))
                    .and_then(|d| d["occurrences"].as_u64())
            });
            Ok(loops == Some(LOOPS) && slow["events"].as_array().is_some_and(|e| e.len() >= 2))
        })
        .await?;
        ensure!(
            ready,
            "the API never showed {LOOPS} loops of {child:?} and 2 slow events: {}",
            vigil.api_get("/api/n-plus-one").await?
        );
        let detections = vigil.api_get("/api/n-plus-one").await?;
        let patterns = detections["detections"].as_array().map_or(0, Vec::len) as u64;
        let loops: u64 = detections["detections"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["occurrences"].as_u64()).sum())
            .unwrap_or(0);
        ensure!(
            patterns >= 1 && loops > patterns,
            "the workload should make fewer patterns than loops: {detections}"
        );
        // The chart's data: every statement together, per minute.
        let latency = vigil.api_get("/api/latency").await?;
        let calls: u64 = latency["recent"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["calls"].as_u64()).sum())
            .unwrap_or(0);
        let loop_calls = LOOPS * (CHILDREN as u64 + 1);
        ensure!(
            calls >= loop_calls,
            "/api/latency counts {calls} calls, fewer than the {loop_calls} of the loops alone: {latency}"
        );
        let slow = vigil.api_get("/api/slow").await?;
        let newest_slow_at = slow["events"][0]["at"]
            .as_str()
            .with_context(|| format!("no slow event time in {slow}"))?
            .to_string();

        let screenshot = target_dir()?.join("dashboard-1400x900.png");
        let _ = std::fs::remove_file(&screenshot);
        let url = format!("http://127.0.0.1:{port}/");
        let page = run_e2e("dashboard_layout.mjs", &[url.as_ref(), screenshot.as_ref()], BROWSER_LIMIT)
            .await
            .with_context(|| format!("pgvigil:\n{}", tail(&vigil.stderr(), 2000)))?;
        println!("dashboard screenshot (1400x900, above the fold): {}", screenshot.display());
        ensure!(screenshot.is_file(), "no screenshot at {}", screenshot.display());
        holder.batch_execute("COMMIT").await?;

        let mut problems: Vec<String> = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        check(
            page["pageErrors"].as_array().is_some_and(|a| a.is_empty())
                && page["consoleErrors"].as_array().is_some_and(|a| a.is_empty()),
            "no page or console errors".into(),
        );
        check(
            page["viewport"]["height"].as_f64() == Some(WINDOW_HEIGHT)
                && page["viewport"]["scrollY"].as_f64() == Some(0.0),
            "the window is 900 px high and not scrolled".into(),
        );

        // Above the fold: each summary panel wholly inside the window, drawn.
        for id in ["summary", "summary-latency", "summary-nplus", "summary-slow", "summary-pools"] {
            let p = &page["panels"][id];
            let (top, bottom) = (p["top"].as_f64(), p["bottom"].as_f64());
            check(
                p["visible"] == true
                    && p["width"].as_f64().is_some_and(|w| w > 100.0)
                    && p["height"].as_f64().is_some_and(|h| h > 50.0)
                    && top.is_some_and(|t| (0.0..WINDOW_HEIGHT).contains(&t))
                    && bottom.is_some_and(|b| b <= WINDOW_HEIGHT),
                format!("#{id} is visible and within the first {WINDOW_HEIGHT} px: {p}"),
            );
        }
        check(
            page["panels"]["summary"]["top"].as_f64() < page["panels"]["queries"]["top"].as_f64(),
            "the summary comes before the query table".into(),
        );

        // One quantity, one name: patterns; loops named as loops.
        let n = &page["nplus"];
        let patterns_text = patterns.to_string();
        check(
            n["headerLabel"].as_str().is_some_and(|l| l.eq_ignore_ascii_case("N+1 patterns"))
                && n["panelTitle"] == "N+1 patterns"
                && n["summaryTitle"] == "Top N+1 patterns",
            format!("the header and the panels call them N+1 patterns: {n}"),
        );
        check(
            n["headerValue"].as_str() == Some(patterns_text.as_str())
                && n["panelCount"].as_str() == Some(patterns_text.as_str())
                && n["summaryCount"].as_str() == Some(patterns_text.as_str())
                && n["detections"].as_u64() == Some(patterns),
            format!("header, panel and summary all count {patterns} pattern(s): {n}"),
        );
        let loops_text = format!("{loops} loops");
        check(
            n["panelLoops"].as_str().is_some_and(|t| t.starts_with(&loops_text))
                && n["headerTitle"].as_str().is_some_and(|t| t.starts_with(&loops_text)),
            format!("loops are named loops ({loops_text}) in the panel and the header's tooltip: {n}"),
        );

        // Nothing cut in the pools' figures.
        check(
            page["clipped"].as_array().is_some_and(|a| a.is_empty()),
            format!("no pool figure is cut: {}", page["clipped"]),
        );
        for width in ["1000", "700"] {
            check(
                page["clippedNarrow"][width]
                    .as_array()
                    .is_some_and(|a| a.is_empty()),
                format!(
                    "no pool figure is cut at {width} px: {}",
                    page["clippedNarrow"][width]
                ),
            );
        }
        let held = format!("1 of {POOL_SIZE} active (10%)");
        check(
            page["summaryPools"].as_array().is_some_and(|a| {
                a.iter().any(|p| p.as_str().is_some_and(|t| t.contains(&held)))
            }),
            format!("the summary shows the held connection as {held:?}: {}", page["summaryPools"]),
        );
        check(
            page["poolCells"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|p| p.as_str() == Some(format!("10% of {POOL_SIZE}").as_str()))
            }),
            format!("the pools table shows 10% of {POOL_SIZE}: {}", page["poolCells"]),
        );

        // One clock: UTC, 24-hour.
        let status = page["status"].as_str().unwrap_or_default();
        let clock = status
            .strip_prefix("Live · updated ")
            .and_then(|rest| rest.strip_suffix(" UTC"));
        check(
            clock.is_some_and(is_clock)
                && page["statusSkewSeconds"].as_f64().is_some_and(|s| s <= 10.0),
            format!("the header reads `Live · updated HH:MM:SS UTC` with the UTC time: {status:?}"),
        );
        let slow_times: Vec<&str> = page["slowTimes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        check(
            !slow_times.is_empty()
                && slow_times.iter().all(|t| is_clock(t))
                && slow_times.first().copied() == newest_slow_at.get(11..19),
            format!("slow events at HH:MM:SS UTC, the newest {:?}: {slow_times:?}", newest_slow_at.get(11..19)),
        );
        let ticks: Vec<&str> = page["chartTicks"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let time_ticks: Vec<&&str> = ticks.iter().filter(|t| t.contains(':')).collect();
        check(
            !time_ticks.is_empty()
                && time_ticks.iter().all(|t| t.len() == 5 && is_clock(&format!("{t}:00"))),
            format!("the chart's time ticks are HH:MM: {ticks:?}"),
        );

        // The time axis starts at the first sample, not before.
        let chart = &page["chart"];
        check(
            chart["t0"].as_f64().is_some_and(|t| t > 0.0)
                && chart["t0"] == chart["first"]
                && chart["t1"].as_f64() > chart["t0"].as_f64()
                && chart["firstBarX"].as_f64().is_some_and(|x| (x - 49.0).abs() < 0.01)
                && chart["points"].as_u64() >= Some(3),
            format!("the latency chart's x range begins at its first sample (plot left edge 48): {chart}"),
        );

        // The refresh button stops the page's refresh, and says so.
        let b = &page["refreshButton"];
        check(
            b["before"] == "Stop auto-refresh"
                && b["stopped"]["label"] == "Resume auto-refresh"
                && b["stopped"]["pressed"] == "true"
                && b["resumed"]["label"] == "Stop auto-refresh"
                && b["resumed"]["pressed"] == "false",
            format!("the refresh button reads Stop/Resume auto-refresh: {b}"),
        );
        check(
            !b.to_string().to_lowercase().contains("pause"),
            format!("nothing on the refresh button or status says pause: {b}"),
        );
        check(
            b["stopped"]["status"].as_str().is_some_and(|s| s.starts_with("Frozen · updated "))
                && b["stopped"]["statusLater"] == b["stopped"]["status"]
                && b["resumed"]["status"].as_str().is_some_and(|s| s.starts_with("Live · updated ")),
            format!("stopped, the page is not refreshed until resumed: {b}"),
        );

        if !problems.is_empty() {
            bail!(
                "dashboard layout checks failed:\n  {}\nscreenshot: {}\npage: {page:#}",
                problems.join("\n  "),
                screenshot.display()
            );
        }
        Ok(())
    })
    .await
}
