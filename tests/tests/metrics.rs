//! Prometheus `/metrics` and the health endpoints of the admin listener,
//! against the real binary: `promtool check metrics` on a live scrape, a real
//! Prometheus scraping pgvigil and answering PromQL with exact counts, the
//! per-fingerprint series cap under 10,000 distinct statements, content
//! negotiation (OpenMetrics or the classic text format), and `/readyz` with
//! an unreachable upstream.
//!
//! Needs Debian's `prometheus` package (`/usr/bin/prometheus`,
//! `/usr/bin/promtool`); the tests fail, never skip, without it.
//!
//! Statistics are merged from per-thread buffers every 250 ms, so after a
//! workload each test polls until the figures it expects appear.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test metrics`

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::api::http_get;
use pgvigil_integration::cluster::APP_DB;
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::util::{free_port, spawn_tied};
use pgvigil_integration::vigil::tail;
use pgvigil_integration::{
    shared_cluster, sqlstate, timed, ApiResponse, PgCluster, Pgvigil, PoolMode,
};
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(50);
/// How long figures may take to show up on `/metrics` after a workload.
const SETTLE: Duration = Duration::from_secs(5);
/// One merge period of the per-thread buffers, plus margin.
const MERGE_PERIOD: Duration = Duration::from_millis(350);
const POLL: Duration = Duration::from_millis(50);

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// What Prometheus 2.x sends when scraping.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Every family issue 4 requires, and its type.
const FAMILIES: &[(&str, &str)] = &[
    ("pgvigil_query_duration_seconds", "histogram"),
    ("pgvigil_query_info", "gauge"),
    ("pgvigil_query_errors_total", "counter"),
    ("pgvigil_query_rows_total", "counter"),
    ("pgvigil_slow_queries_total", "counter"),
    ("pgvigil_n_plus_one_total", "counter"),
    ("pgvigil_pool_server_connections", "gauge"),
    ("pgvigil_pool_waiting_clients", "gauge"),
    ("pgvigil_pool_wait_seconds", "histogram"),
    ("pgvigil_pool_utilization_ratio", "gauge"),
    ("pgvigil_client_connections", "gauge"),
    ("pgvigil_pool_paused", "gauge"),
    ("pgvigil_server_connect_errors_total", "counter"),
    ("pgvigil_bytes_total", "counter"),
    ("pgvigil_fingerprints_tracked", "gauge"),
    ("pgvigil_fingerprint_evictions_total", "counter"),
    ("pgvigil_executions_dropped_total", "counter"),
    ("pgvigil_build_info", "gauge"),
    ("pgvigil_timeouts_total", "counter"),
    ("pgvigil_pool_acquire_timeouts_total", "counter"),
];

// ------------------------------------------------------------ exposition

/// One sample line of the text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The sample lines of a text exposition (classic or OpenMetrics); comments
/// are skipped. Label values are unescaped.
fn parse_samples(text: &str) -> Result<Vec<Sample>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).with_context(|| format!("malformed sample line {l:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line
        .find(['{', ' '])
        .context("no value after the metric name")?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            let (start, c) = chars.next().context("unterminated label set")?;
            if c == '}' {
                break start + 1;
            }
            let mut key = String::from(c);
            loop {
                match chars.next().context("unterminated label name")? {
                    (_, '=') => break,
                    (_, c) => key.push(c),
                }
            }
            ensure!(
                matches!(chars.next(), Some((_, '"'))),
                "label {key} has no quoted value"
            );
            let mut value = String::new();
            loop {
                match chars.next().context("unterminated label value")? {
                    (_, '"') => break,
                    (_, '\\') => match chars.next().context("dangling backslash")?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, c) => value.push(c),
                }
            }
            ensure!(
                labels.insert(key.clone(), value).is_none(),
                "label {key} repeated"
            );
        };
        rest = &after[end..];
    }
    let value_text = rest.split_whitespace().next().context("no value")?;
    let value = value_text
        .parse::<f64>()
        .with_context(|| format!("value {value_text:?} is not a number"))?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// A series' identity: sample name and labels.
type SeriesKey = (String, BTreeMap<String, String>);

/// The series of an exposition, without their values.
fn series_keys(text: &str) -> Result<BTreeSet<SeriesKey>> {
    Ok(parse_samples(text)?
        .into_iter()
        .map(|s| (s.name, s.labels))
        .collect())
}

/// `# TYPE` lines: family name to type.
fn types_of(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

fn named<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// Distinct values of `label` over the samples named `name`.
fn label_values(samples: &[Sample], name: &str, label: &str) -> BTreeSet<String> {
    named(samples, name)
        .into_iter()
        .map(|s| s.label(label).to_string())
        .collect()
}

/// The samples named `name`, one per line, for failure messages.
fn show(samples: &[Sample], name: &str) -> String {
    named(samples, name)
        .iter()
        .map(|s| format!("  {} {:?} {}", s.name, s.labels, s.value))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET /metrics` with the given `Accept` header (none when `None`), which
/// must answer 200.
async fn scrape_with(vigil: &Pgvigil, accept: Option<&str>) -> Result<ApiResponse> {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let reply = vigil.http_get("/metrics", &headers).await?;
    ensure!(
        reply.status == 200,
        "GET /metrics (Accept {accept:?}) answered {}: {}",
        reply.status,
        tail(&reply.body, 2000)
    );
    Ok(reply)
}

/// `GET /metrics` in the classic text format: (body, samples).
async fn scrape(vigil: &Pgvigil) -> Result<(String, Vec<Sample>)> {
    let body = scrape_with(vigil, None).await?.body;
    let samples = parse_samples(&body)?;
    Ok((body, samples))
}

/// Polls `/metrics` until `ready` holds (or `SETTLE` passes, then fails with
/// `what` and the last scrape).
async fn scrape_until(
    vigil: &Pgvigil,
    what: &str,
    ready: impl Fn(&[Sample]) -> bool,
) -> Result<(String, Vec<Sample>)> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (body, samples) = scrape(vigil).await?;
        if ready(&samples) {
            return Ok((body, samples));
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: not on /metrics within {SETTLE:?}; last scrape:\n{}",
                tail(&body, 6000)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The fingerprint (16 hex digits) of the one statement on `/api/queries`
/// whose text contains `needle`, once it has `calls` calls.
async fn fingerprint_with_calls(vigil: &Pgvigil, needle: &str, calls: u64) -> Result<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let body = vigil
            .api_get("/api/queries?sort=calls&limit=100000")
            .await?;
        let rows = body["queries"]
            .as_array()
            .with_context(|| format!("no `queries` array in {body}"))?;
        let found: Vec<&Value> = rows
            .iter()
            .filter(|r| r["query"].as_str().is_some_and(|q| q.contains(needle)))
            .collect();
        ensure!(
            found.len() <= 1,
            "several fingerprints contain {needle:?}: {found:?}"
        );
        if let Some(row) = found.first() {
            if row["calls"].as_u64() == Some(calls) {
                return Ok(row["fingerprint"]
                    .as_str()
                    .with_context(|| format!("no fingerprint in {row}"))?
                    .to_string());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no statement containing {needle:?} with {calls} calls on /api/queries: {found:?}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

// ------------------------------------------------------------- workloads

/// A pgvigil (slow threshold 50 ms) after traffic that gives every query
/// family members: plain statements, an error, a slow statement and an N+1
/// loop. Returns once all of them show on `/metrics`.
async fn busy_vigil() -> Result<(Pgvigil, String, Vec<Sample>)> {
    let cluster = shared_cluster();
    let vigil = Pgvigil::builder(cluster)
        .pool_mode(PoolMode::Transaction)
        .pool_size(2)
        .arg("--slow-query-ms")
        .arg("50")
        .spawn()
        .await?;
    let client = vigil.connect_app().await?;
    for i in 0..10 {
        client
            .simple_query(&format!("SELECT {i} AS warm_up"))
            .await?;
    }
    let err = client
        .simple_query("SELECT 1 / 0 AS boom")
        .await
        .err()
        .context("SELECT 1 / 0 succeeded")?;
    ensure!(sqlstate(&err) == Some("22012"), "SELECT 1 / 0: {err}");
    client.simple_query("SELECT pg_sleep(0.1) AS slow").await?;
    // An N+1 loop: a list, then one query per item, in one transaction.
    client.simple_query("BEGIN").await?;
    client
        .simple_query("SELECT g FROM generate_series(1, 6) AS g")
        .await?;
    for g in 1..=6 {
        client
            .simple_query(&format!("SELECT {g} * 2 AS child_of_g"))
            .await?;
    }
    client.simple_query("COMMIT").await?;

    let (body, samples) = scrape_until(&vigil, "an error, a slow query and an N+1", |s| {
        named(s, "pgvigil_query_errors_total")
            .iter()
            .any(|e| e.label("sqlstate_class") == "22" && e.value >= 1.0)
            && named(s, "pgvigil_slow_queries_total")
                .iter()
                .any(|e| e.value >= 1.0)
            && named(s, "pgvigil_n_plus_one_total")
                .iter()
                .any(|e| e.value >= 1.0)
    })
    .await?;
    Ok((vigil, body, samples))
}

/// Pipes `body` into `promtool check metrics` (parse and lint), which must exit 0.
async fn promtool_check_metrics(body: &str) -> Result<()> {
    let mut promtool = tokio::process::Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {PROMTOOL} (apt-get install prometheus)"))?;
    let mut stdin = promtool.stdin.take().context("promtool stdin")?;
    stdin.write_all(body.as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), promtool.wait_with_output())
        .await
        .context("promtool check metrics still running after 20 s")??;
    ensure!(
        out.status.success(),
        "promtool check metrics exited with {}\nstdout:\n{}\nstderr:\n{}\nscrape:\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------- tests

/// `promtool check metrics` (parse and lint) accepts a live scrape in
/// which every required family has members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_scrape_passes_promtool_check_metrics() -> Result<()> {
    timed(LIMIT, async {
        let (_vigil, body, samples) = busy_vigil().await?;
        let types = types_of(&body);
        for (family, kind) in FAMILIES {
            ensure!(
                types.get(*family).map(String::as_str) == Some(*kind),
                "# TYPE of {family} is {:?}, expected {kind}",
                types.get(*family)
            );
            let member = if *kind == "histogram" {
                format!("{family}_count")
            } else {
                family.to_string()
            };
            ensure!(
                !named(&samples, &member).is_empty(),
                "no {member} samples after the workload; scrape:\n{body}"
            );
        }

        promtool_check_metrics(&body).await
    })
    .await
}

/// Counter families whose label sets are known before any event exist at 0
/// on a fresh pgvigil, so `rate()` and `increase()` count the first event: a
/// slow-query series per rule and both N+1 pattern kinds, under "other".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_pgvigil_exports_slow_query_and_n_plus_one_counters_at_zero() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder_with_config(
            shared_cluster(),
            "[[slow_rules]]\nname = \"reports\"\nthreshold_ms = 2000\napplication_name = \"reports\"\n",
        )
        .spawn()
        .await?;
        let (body, samples) = scrape(&vigil).await?;
        let zero = |name: &str, labels: &[(&str, &str)]| {
            named(&samples, name).iter().any(|s| {
                s.value == 0.0
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.label(k) == *v)
            })
        };
        for (name, labels) in [
            (
                "pgvigil_slow_queries_total",
                [("rule", "slow_query_ms"), ("fingerprint", "other")],
            ),
            (
                "pgvigil_slow_queries_total",
                [("rule", "reports"), ("fingerprint", "other")],
            ),
            (
                "pgvigil_n_plus_one_total",
                [("fingerprint", "other"), ("parent_fingerprint", "other")],
            ),
            (
                "pgvigil_n_plus_one_total",
                [("fingerprint", "other"), ("parent_fingerprint", "")],
            ),
        ] {
            ensure!(
                zero(name, &labels),
                "no {name}{labels:?} at 0 on a fresh pgvigil:\n{}",
                show(&samples, name)
            );
        }
        promtool_check_metrics(&body).await
    })
    .await
}

/// Prometheus' `histogram_quantile(q, ...)` over one series' buckets
/// `(le, cumulative count)`, sorted by `le`: linear interpolation inside the
/// bucket that holds rank q * count, from 0 for the first bucket.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, cumulative) in buckets {
        if cumulative >= rank {
            if le.is_infinite() {
                return below.0;
            }
            return below.0 + (le - below.0) * (rank - below.1) / (cumulative - below.1);
        }
        below = (le, cumulative);
    }
    f64::NAN
}

/// The issue's case: a statement with a true p95 near 114 ms once read
/// 242.5 ms from the exported buckets and fired the 200 ms alert. Through the
/// real binary, `histogram_quantile(0.95)` over the default buckets must be
/// within 25% of the p95 the client measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_buckets_put_a_114ms_p95_within_25_percent() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let client = vigil.connect_app().await?;
        let statement = client
            .prepare("SELECT pg_sleep($1::float8) AS p95_probe")
            .await
            .context("prepare")?;
        // 30 calls of 90 ms and 10 of 114 ms: the 38th of 40 is 114 ms.
        let mut measured = Vec::new();
        for i in 0..40 {
            let sleep: f64 = if i % 4 == 0 { 0.114 } else { 0.09 };
            let started = Instant::now();
            client.query(&statement, &[&sleep]).await?;
            measured.push(started.elapsed().as_secs_f64());
        }
        measured.sort_by(f64::total_cmp);
        let truth = measured[37];
        let fp = fingerprint_with_calls(&vigil, "p95_probe", 40).await?;
        let (_body, samples) = scrape_until(&vigil, "40 calls of the probe", |s| {
            named(s, "pgvigil_query_duration_seconds_count")
                .iter()
                .any(|c| c.label("fingerprint") == fp && c.value == 40.0)
        })
        .await?;
        let mut buckets: Vec<(f64, f64)> = named(&samples, "pgvigil_query_duration_seconds_bucket")
            .into_iter()
            .filter(|b| b.label("fingerprint") == fp)
            .map(|b| {
                let le = match b.label("le") {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().unwrap_or(f64::NAN),
                };
                (le, b.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        ensure!(
            buckets.iter().any(|b| b.0 == 0.2),
            "0.2 s (the PgvigilQueryP95High threshold) is not a bucket bound: {buckets:?}"
        );
        let estimate = histogram_quantile(0.95, &buckets);
        let error = (estimate - truth).abs() / truth;
        ensure!(
            error <= 0.25,
            "histogram_quantile(0.95) = {estimate:.4}s, true p95 {truth:.4}s ({:.0}% off); buckets {buckets:?}",
            error * 100.0
        );
        Ok(())
    })
    .await
}

/// Query text in `pgvigil_query_info{query}` is escaped as the exposition
/// formats require (`\"`, `\\`), so statements with quoted identifiers (what
/// ORMs send) do not break the scrape, and the label reads back as the
/// normalized text of `/api/queries`, cut to 200 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_text_label_is_escaped_and_reads_back_as_the_normalized_text() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        // Django and Rails quote every identifier.
        let orm = r#"SELECT "t"."x" AS "orm_quoted" FROM (SELECT 1 AS "x") AS "t""#;
        client.simple_query(orm).await?;
        // Backslashes, and so many of them that the 200-character cut falls
        // inside a run of them.
        let run = "\\".repeat(60);
        let slashes = format!(
            "SELECT 1 AS \"{run}\", 2 AS \"{run}\", 3 AS \"{run}\", 4 AS \"{run}\", 5 AS slashes_marker"
        );
        client.simple_query(&slashes).await?;
        let orm_fp = fingerprint_with_calls(&vigil, "orm_quoted", 1).await?;
        let slashes_fp = fingerprint_with_calls(&vigil, "slashes_marker", 1).await?;

        let body = scrape_with(&vigil, None).await?.body;
        promtool_check_metrics(&body).await?;
        let samples = parse_samples(&body)?;
        // What Prometheus reads: the same series in OpenMetrics.
        let openmetrics = scrape_with(&vigil, Some(PROMETHEUS_ACCEPT)).await?.body;
        ensure!(
            series_keys(&openmetrics)? == series_keys(&body)?,
            "the OpenMetrics and classic scrapes carry different series:\n{openmetrics}"
        );
        for fp in [&orm_fp, &slashes_fp] {
            let detail = vigil.api_get(&format!("/api/queries/{fp}")).await?;
            let text = detail["query"]
                .as_str()
                .with_context(|| format!("no query text in {detail}"))?;
            let info: Vec<&Sample> = named(&samples, "pgvigil_query_info")
                .into_iter()
                .filter(|s| s.label("fingerprint") == fp.as_str())
                .collect();
            ensure!(
                info.len() == 1,
                "expected one pgvigil_query_info for {fp}:\n{}",
                show(&samples, "pgvigil_query_info")
            );
            let label = info[0].label("query");
            let chars = text.chars().count();
            if chars <= 200 {
                ensure!(
                    label == text,
                    "query label {label:?} differs from the normalized text {text:?}"
                );
            } else {
                let head: String = text.chars().take(200).collect();
                ensure!(
                    label.starts_with(&head) && label.chars().count() <= 203,
                    "query label {label:?} is not the first 200 characters of the \
                     {chars}-character normalized text {text:?}"
                );
            }
        }
        Ok(())
    })
    .await
}

/// Every histogram series: cumulative buckets in `le` order, ending with
/// `le="+Inf"`, whose count equals `_count`; `_sum` present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_buckets_are_cumulative_and_inf_bucket_equals_count() -> Result<()> {
    timed(LIMIT, async {
        let (_vigil, _body, samples) = busy_vigil().await?;
        for family in [
            "pgvigil_query_duration_seconds",
            "pgvigil_pool_wait_seconds",
        ] {
            let counts = named(&samples, &format!("{family}_count"));
            ensure!(!counts.is_empty(), "no {family}_count samples");
            for count in counts {
                let key = &count.labels;
                let mut buckets: Vec<(f64, f64)> = named(&samples, &format!("{family}_bucket"))
                    .into_iter()
                    .filter(|b| {
                        let mut labels = b.labels.clone();
                        labels.remove("le");
                        &labels == key
                    })
                    .map(|b| {
                        let le = b.label("le");
                        le.parse::<f64>()
                            .with_context(|| format!("{family}_bucket le={le:?}"))
                            .map(|le| (le, b.value))
                    })
                    .collect::<Result<_>>()?;
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                let what = format!("{family} {key:?}");
                let last = buckets
                    .last()
                    .with_context(|| format!("{what}: no buckets"))?;
                ensure!(
                    last.0 == f64::INFINITY,
                    "{what}: last bucket is le={}, not +Inf",
                    last.0
                );
                ensure!(
                    last.1 == count.value,
                    "{what}: +Inf bucket {} != _count {}",
                    last.1,
                    count.value
                );
                ensure!(
                    buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{what}: buckets are not cumulative: {buckets:?}"
                );
                ensure!(
                    named(&samples, &format!("{family}_sum"))
                        .iter()
                        .any(|s| &s.labels == key),
                    "{what}: no _sum"
                );
            }
        }
        // Buckets span 0.5 ms to 30 s.
        let les = label_values(&samples, "pgvigil_query_duration_seconds_bucket", "le");
        for bound in ["0.0005", "30.0"] {
            ensure!(
                les.iter()
                    .any(|le| le.parse::<f64>().ok() == bound.parse::<f64>().ok()),
                "no le={bound} bucket in pgvigil_query_duration_seconds: {les:?}"
            );
        }
        Ok(())
    })
    .await
}

/// A Prometheus child process, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:target_port/metrics` every second.
    fn start(target_port: u16) -> Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgvigil-it-{}-prometheus-", std::process::id()))
            .tempdir()
            .context("creating Prometheus' temporary directory")?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: pgvigil\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .context("writing prometheus.yml")?;
        let port = free_port()?;
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).context("creating Prometheus' log")?;
        let mut cmd = Command::new(PROMETHEUS);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = spawn_tied(cmd)
            .with_context(|| format!("spawning {PROMETHEUS} (apt-get install prometheus)"))?;
        Ok(Prometheus {
            child,
            port,
            log,
            _dir: dir,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        tail(&text, 3000).to_string()
    }

    /// Waits until `/-/ready` answers 200.
    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited ({status}):\n{}", self.log_tail());
            }
            if let Ok(r) = http_get(self.port, "/-/ready", &[]).await {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("prometheus not ready after {limit:?}:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant PromQL query: the `data.result` vector.
    async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let reply = http_get(self.port, &path, &[]).await?;
        let body = reply.json()?;
        ensure!(
            reply.status == 200 && body["status"] == "success",
            "PromQL {promql:?}: {} {body}",
            reply.status
        );
        body["data"]["result"]
            .as_array()
            .cloned()
            .with_context(|| format!("PromQL {promql:?}: no result vector in {body}"))
    }

    /// The value of a one-element result vector, `None` when empty.
    async fn scalar(&self, promql: &str) -> Result<Option<f64>> {
        let result = self.query(promql).await?;
        match result.as_slice() {
            [] => Ok(None),
            [one] => {
                let text = one["value"][1]
                    .as_str()
                    .with_context(|| format!("PromQL {promql:?}: no value in {one}"))?;
                Ok(Some(text.parse().with_context(|| {
                    format!("PromQL {promql:?}: value {text:?}")
                })?))
            }
            many => bail!(
                "PromQL {promql:?}: {} series, expected one: {many:?}",
                many.len()
            ),
        }
    }

    /// `/api/v1/targets`, for failure messages (lastError of the scrape).
    async fn targets(&self) -> String {
        match http_get(self.port, "/api/v1/targets", &[]).await {
            Ok(r) => r.body,
            Err(e) => format!("<{e:#}>"),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("--- prometheus log (tail) ---\n{}\n---", self.log_tail());
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus scrapes a live pgvigil: PromQL over its API returns
/// the exact number of executions of one statement, the build info and
/// the three pool connection states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrape_counts_every_execution() -> Result<()> {
    timed(LIMIT, async {
        const N: u64 = 137;
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .spawn()
            .await?;
        let mut prometheus = Prometheus::start(vigil.admin_port())?;

        let client = vigil.connect_app().await?;
        for i in 0..N {
            client
                .simple_query(&format!("SELECT {i} AS scraped_by_prometheus"))
                .await?;
        }
        let fp = fingerprint_with_calls(&vigil, "scraped_by_prometheus", N).await?;

        prometheus.wait_ready(Duration::from_secs(15)).await?;
        let promql = format!("sum(pgvigil_query_duration_seconds_count{{fingerprint=\"{fp}\"}})");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = prometheus.scalar(&promql).await?;
            if got == Some(N as f64) {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{promql} is {got:?}, expected {N}, 20 s after Prometheus was ready\n\
                     targets: {}\nprometheus log:\n{}",
                    prometheus.targets().await,
                    prometheus.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        let up = prometheus.scalar("up{job=\"pgvigil\"}").await?;
        ensure!(up == Some(1.0), "up{{job=\"pgvigil\"}} is {up:?}");

        let build = prometheus.query("pgvigil_build_info").await?;
        ensure!(
            build.len() == 1,
            "pgvigil_build_info: expected one series, got {build:?}"
        );
        ensure!(
            build[0]["metric"]["version"] == env!("CARGO_PKG_VERSION")
                && build[0]["value"][1] == "1",
            "pgvigil_build_info: {}",
            build[0]
        );

        let pools = prometheus.query("pgvigil_pool_server_connections").await?;
        let states: BTreeSet<&str> = pools
            .iter()
            .filter(|s| s["metric"]["database"] == APP_DB && s["metric"]["user"] == "app")
            .filter_map(|s| s["metric"]["state"].as_str())
            .collect();
        ensure!(
            states == BTreeSet::from(["active", "idle", "overflow"]),
            "pgvigil_pool_server_connections{{database=\"{APP_DB}\",user=\"app\"}} states \
             {states:?}, expected active, idle and overflow: {pools:?}"
        );
        Ok(())
    })
    .await
}

/// 10,000 distinct fingerprints: at most `max_query_series` fingerprints
/// get their own series, the heaviest by total time among them, the rest
/// are summed under "other", and no execution is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_series_stay_within_max_query_series_plus_other() -> Result<()> {
    timed(LIMIT, async {
        const MAX_SERIES: usize = 20;
        const DISTINCT: usize = 10_000;
        const PER_STRING: usize = 100;
        const HEAVY: usize = 5;
        let vigil = Pgvigil::start_with_config(
            shared_cluster(),
            format!(
                "[metrics]\nmax_query_series = {MAX_SERIES}\n\n[insight]\nmax_fingerprints = 20000\n"
            ),
            PoolMode::Transaction,
            2,
        )
        .await?;
        let client = vigil.connect_app().await?;
        // Statements that take the most total time: each must keep its series.
        for k in 0..HEAVY {
            client
                .simple_query(&format!("SELECT pg_sleep(0.05) AS heavy_{k}"))
                .await?;
        }
        for batch in 0..DISTINCT / PER_STRING {
            let sql: String = (0..PER_STRING)
                .map(|j| format!("SELECT 1 AS c{};", batch * PER_STRING + j))
                .collect();
            client.simple_query(&sql).await?;
        }
        let total = (DISTINCT + HEAVY) as f64;

        let sum_counts = |s: &[Sample]| -> f64 {
            named(s, "pgvigil_query_duration_seconds_count")
                .iter()
                .map(|c| c.value)
                .sum()
        };
        scrape_until(&vigil, "every statement counted", |s| {
            sum_counts(s) >= total
        })
        .await?;
        // One more merge period: nothing is counted twice.
        tokio::time::sleep(MERGE_PERIOD).await;
        let (body, samples) = scrape(&vigil).await?;

        let tracked = named(&samples, "pgvigil_fingerprints_tracked");
        ensure!(
            tracked.len() == 1 && tracked[0].value == total,
            "pgvigil_fingerprints_tracked should be {total} (no eviction below \
             max_fingerprints = 20000):\n{}",
            show(&samples, "pgvigil_fingerprints_tracked")
        );
        let fps = label_values(
            &samples,
            "pgvigil_query_duration_seconds_count",
            "fingerprint",
        );
        ensure!(
            fps.len() <= MAX_SERIES + 1,
            "{} fingerprint values on pgvigil_query_duration_seconds_count with \
             max_query_series = {MAX_SERIES}: {fps:?}",
            fps.len()
        );
        ensure!(
            fps.contains("other"),
            "no fingerprint=\"other\" series after {DISTINCT} distinct statements: {fps:?}"
        );
        ensure!(
            named(&samples, "pgvigil_query_duration_seconds_count").len() == fps.len(),
            "one _count series per fingerprint expected:\n{}",
            show(&samples, "pgvigil_query_duration_seconds_count")
        );
        let counted = sum_counts(&samples);
        ensure!(
            counted == total,
            "the _count series sum to {counted}, but {total} statements ran:\n{}",
            show(&samples, "pgvigil_query_duration_seconds_count")
        );
        // The other per-fingerprint families obey the same cap.
        for family in ["pgvigil_query_info", "pgvigil_query_rows_total"] {
            let values = label_values(&samples, family, "fingerprint");
            ensure!(
                values.len() <= MAX_SERIES + 1,
                "{} fingerprint values on {family}: {values:?}",
                values.len()
            );
        }
        let rows_total: f64 = named(&samples, "pgvigil_query_rows_total")
            .iter()
            .map(|s| s.value)
            .sum();
        ensure!(
            rows_total == total,
            "pgvigil_query_rows_total sums to {rows_total}, but {total} one-row SELECTs ran:\n{}",
            show(&samples, "pgvigil_query_rows_total")
        );
        // 21 histograms (20 fingerprints and "other") of 58 series each
        // (55 default buckets, +Inf, _sum, _count) are 1,218; info, rows
        // and the fixed families add about a hundred. 10,000 statements
        // without the cap would be 580,000.
        let samples_total = samples.len();
        ensure!(
            samples_total < 1500,
            "{samples_total} samples in one scrape with max_query_series = {MAX_SERIES}:\n{}",
            tail(&body, 4000)
        );

        // The heaviest statements by total time have their own series.
        let heavy = vigil.api_get("/api/queries?sort=total_time&limit=100").await?;
        let heavy_fps: Vec<String> = heavy["queries"]
            .as_array()
            .context("no queries array")?
            .iter()
            .filter(|r| r["query"].as_str().is_some_and(|q| q.contains("heavy_")))
            .filter_map(|r| r["fingerprint"].as_str().map(str::to_string))
            .collect();
        ensure!(
            heavy_fps.len() == HEAVY,
            "expected {HEAVY} heavy statements among the top 100 by total time: {heavy}"
        );
        for fp in &heavy_fps {
            ensure!(
                fps.contains(fp),
                "heavy statement {fp} (50 ms each, top by total time) has no series of its \
                 own: {fps:?}"
            );
        }
        Ok(())
    })
    .await
}

/// Without an OpenMetrics `Accept` header the reply is the classic text
/// format 0.0.4 (counters typed as `x_total`, no `# EOF`); with one it is
/// OpenMetrics ending in `# EOF`. Both carry the same series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_format_follows_the_accept_header() -> Result<()> {
    timed(LIMIT, async {
        let (vigil, _, _) = busy_vigil().await?;
        const COUNTERS: &[&str] = &[
            "pgvigil_query_errors",
            "pgvigil_query_rows",
            "pgvigil_slow_queries",
            "pgvigil_n_plus_one",
            "pgvigil_server_connect_errors",
            "pgvigil_bytes",
            "pgvigil_fingerprint_evictions",
        ];

        for accept in [None, Some("text/plain"), Some("*/*")] {
            let reply = scrape_with(&vigil, accept).await?;
            let content_type = reply.header("content-type").unwrap_or_default();
            ensure!(
                content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
                "Accept {accept:?}: content type {content_type:?}, expected text/plain; version=0.0.4"
            );
            let body = &reply.body;
            ensure!(
                !body.lines().any(|l| l == "# EOF" || l.starts_with("# UNIT ")),
                "Accept {accept:?}: classic text format with OpenMetrics-only lines:\n{body}"
            );
            let types = types_of(body);
            for counter in COUNTERS {
                let line = format!("# TYPE {counter}_total counter");
                ensure!(
                    body.lines().any(|l| l == line),
                    "Accept {accept:?}: no `{line}` line:\n{body}"
                );
                ensure!(
                    body.lines().any(|l| l.starts_with(&format!("# HELP {counter}_total "))),
                    "Accept {accept:?}: no `# HELP {counter}_total` line"
                );
            }
            for (name, kind) in &types {
                ensure!(
                    kind != "counter" || name.ends_with("_total"),
                    "Accept {accept:?}: counter typed without _total: # TYPE {name} {kind}"
                );
            }
        }

        let classic = scrape_with(&vigil, None).await?;
        for accept in [
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0",
            PROMETHEUS_ACCEPT,
        ] {
            let reply = scrape_with(&vigil, Some(accept)).await?;
            let content_type = reply.header("content-type").unwrap_or_default();
            ensure!(
                content_type.starts_with("application/openmetrics-text"),
                "Accept {accept:?}: content type {content_type:?}"
            );
            let body = &reply.body;
            ensure!(
                body.ends_with("# EOF\n") || body.ends_with("# EOF"),
                "Accept {accept:?}: OpenMetrics body does not end with # EOF:\n{}",
                tail(body, 500)
            );
            ensure!(
                body.lines().filter(|l| *l == "# EOF").count() == 1,
                "Accept {accept:?}: # EOF more than once"
            );
            for counter in COUNTERS {
                let line = format!("# TYPE {counter} counter");
                ensure!(
                    body.lines().any(|l| l == line),
                    "Accept {accept:?}: no `{line}` line (OpenMetrics names the family \
                     without _total):\n{body}"
                );
            }
            // The same series in both formats (values may move between scrapes).
            let (om, text) = (series_keys(body)?, series_keys(&classic.body)?);
            ensure!(
                om == text,
                "Accept {accept:?}: series differ between formats\nonly OpenMetrics: {:?}\n\
                 only classic: {:?}",
                om.difference(&text).collect::<Vec<_>>(),
                text.difference(&om).collect::<Vec<_>>()
            );
        }
        Ok(())
    })
    .await
}

/// The samples of `pgvigil_upstream_up`, database to value.
fn upstream_up(samples: &[Sample]) -> BTreeMap<String, f64> {
    named(samples, "pgvigil_upstream_up")
        .into_iter()
        .map(|s| (s.label("database").to_string(), s.value))
        .collect()
}

/// `/readyz` is 200 while every configured upstream accepts a login and
/// 503, with a JSON body naming the database, when one does not;
/// `/healthz` is 200 either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_unreachable_database_and_healthz_stays_ok() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let live = Pgvigil::builder(cluster).spawn().await?;
        let ready = live.http_get("/readyz", &[]).await?;
        ensure!(
            ready.status == 200,
            "/readyz with PostgreSQL up: {} {}",
            ready.status,
            ready.body
        );
        let health = live.http_get("/healthz", &[]).await?;
        ensure!(health.status == 200, "/healthz: {} {}", health.status, health.body);

        const DEAD_DB: &str = "archive_offline";
        let dead_port = free_port()?;
        let vigil = Pgvigil::builder(cluster)
            .config_file(format!(
                "[databases.{APP_DB}]\nhost = \"127.0.0.1\"\nport = {live_port}\ndbname = \"{APP_DB}\"\n\n\
                 [databases.{DEAD_DB}]\nhost = \"127.0.0.1\"\nport = {dead_port}\ndbname = \"{APP_DB}\"\n\n\
                 [users.app]\npassword = \"secret\"\n",
                live_port = cluster.port()
            ))
            .spawn()
            .await?;
        let health = vigil.http_get("/healthz", &[]).await?;
        ensure!(
            health.status == 200,
            "/healthz with an upstream down: {} {}",
            health.status,
            health.body
        );
        let started = Instant::now();
        let ready = vigil.http_get("/readyz", &[]).await?;
        ensure!(
            ready.status == 503,
            "/readyz with {DEAD_DB} on closed port {dead_port}: {} {}",
            ready.status,
            ready.body
        );
        ensure!(
            started.elapsed() < Duration::from_secs(7),
            "/readyz took {:?} for a refused connection",
            started.elapsed()
        );
        // An upstream that refuses connections is an operator's problem:
        // logged at WARN, naming the database.
        let log = vigil.stderr();
        ensure!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains("server connection failed")
                && l.contains(DEAD_DB)),
            "no WARN line for the refused server connection to {DEAD_DB}:\n{}",
            tail(&log, 3000)
        );
        let content_type = ready.header("content-type").unwrap_or_default();
        ensure!(
            content_type.starts_with("application/json"),
            "/readyz 503 content type {content_type:?}"
        );
        let body = ready.json()?;
        ensure!(body["ready"] == false, "/readyz body: {body}");
        let problems = body["problems"]
            .as_array()
            .with_context(|| format!("no problems array in {body}"))?;
        ensure!(
            problems.len() == 1
                && problems[0]
                    .as_str()
                    .is_some_and(|p| p.contains(DEAD_DB)),
            "expected one problem naming {DEAD_DB} (and none for the reachable {APP_DB}): {body}"
        );
        let health = vigil.http_get("/healthz", &[]).await?;
        ensure!(health.status == 200, "/healthz after /readyz: {}", health.status);

        // The probe's verdicts are on /metrics too.
        let (_, samples) = scrape(&vigil).await?;
        let up = upstream_up(&samples);
        ensure!(
            up.get(DEAD_DB) == Some(&0.0) && up.get(APP_DB) == Some(&1.0),
            "pgvigil_upstream_up after /readyz: {up:?}, expected {DEAD_DB} 0 and {APP_DB} 1"
        );
        Ok(())
    })
    .await
}

/// The samples of `pgvigil_pool_upstream_up`, (database, user) to value.
fn pool_upstream_up(samples: &[Sample]) -> BTreeMap<(String, String), f64> {
    named(samples, "pgvigil_pool_upstream_up")
        .into_iter()
        .map(|s| {
            (
                (s.label("database").to_string(), s.label("user").to_string()),
                s.value,
            )
        })
        .collect()
}

/// `pgvigil_upstream_up` tells the truth: no series for a database nobody
/// tried to reach (a default of 1 hid outages), 0 for a database whose
/// every login failed, 1 after a successful one; the per-pool series
/// leaves out pools of users who never logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_up_is_absent_until_tried_zero_when_logins_fail_and_one_after_success(
) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        const DEAD_DB: &str = "archive_offline";
        let dead_port = free_port()?;
        let vigil = Pgvigil::builder(cluster)
            .config_file(format!(
                "[pgvigil]\nclient_auth = \"trust\"\n\n\
                 [databases.{APP_DB}]\nhost = \"127.0.0.1\"\nport = {live_port}\ndbname = \"{APP_DB}\"\n\n\
                 [databases.{DEAD_DB}]\nhost = \"127.0.0.1\"\nport = {dead_port}\ndbname = \"{APP_DB}\"\n\n\
                 [users.app]\npassword = \"secret\"\n\n\
                 [users.idle_user]\npassword = \"unused\"\n",
                live_port = cluster.port()
            ))
            .spawn()
            .await?;
        let (_, samples) = scrape(&vigil).await?;
        ensure!(
            upstream_up(&samples).is_empty() && pool_upstream_up(&samples).is_empty(),
            "upstream series before any login:\n{}\n{}",
            show(&samples, "pgvigil_upstream_up"),
            show(&samples, "pgvigil_pool_upstream_up")
        );

        ensure!(
            vigil.connect("app", "", DEAD_DB).await.is_err(),
            "a login to {DEAD_DB} on closed port {dead_port} succeeded"
        );
        let client = vigil.connect("app", "", APP_DB).await?;
        client.simple_query("SELECT 1").await?;

        let (_, samples) = scrape(&vigil).await?;
        let up = upstream_up(&samples);
        ensure!(
            up.get(DEAD_DB) == Some(&0.0) && up.get(APP_DB) == Some(&1.0) && up.len() == 2,
            "pgvigil_upstream_up: {up:?}, expected {DEAD_DB} 0 and {APP_DB} 1"
        );
        let pools = pool_upstream_up(&samples);
        let expected: BTreeMap<(String, String), f64> = [
            ((DEAD_DB.to_string(), "app".to_string()), 0.0),
            ((APP_DB.to_string(), "app".to_string()), 1.0),
        ]
        .into();
        ensure!(
            pools == expected,
            "pgvigil_pool_upstream_up: {pools:?}, expected {expected:?} (no idle_user pools)"
        );
        Ok(())
    })
    .await
}

/// Fifty `/readyz` polls in a row cost PostgreSQL at most a couple of
/// logins: readiness comes from the latest login's outcome while it is
/// recent, not from a new server connection per poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_polls_reuse_a_recent_login_instead_of_opening_one_each() -> Result<()> {
    timed(LIMIT, async {
        let cluster =
            tokio::task::spawn_blocking(|| PgCluster::with_settings("log_connections = on\n"))
                .await??;
        let vigil = Pgvigil::builder(&cluster).spawn().await?;
        let logins = || {
            cluster
                .log_contents()
                .matches("connection authorized")
                .count()
        };
        let before = logins();
        for i in 0..50 {
            let ready = vigil.http_get("/readyz", &[]).await?;
            ensure!(
                ready.status == 200,
                "/readyz poll {i}: {} {}",
                ready.status,
                ready.body
            );
        }
        // The server logs a login as it happens; give the last one a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let new_logins = logins() - before;
        ensure!(
            (1..=2).contains(&new_logins),
            "50 /readyz polls opened {new_logins} server logins (expected 1 or 2); server log:\n{}",
            tail(&cluster.log_contents(), 3000)
        );
        Ok(())
    })
    .await
}

/// The leak-guard timeouts are one family with a series per setting,
/// all present (at 0) from the start, and the pool's acquire timeouts are
/// exported per pool and counted when a client gives up waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_series_exist_from_start_and_acquire_timeouts_are_counted() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--acquire-timeout")
            .arg("1")
            .spawn()
            .await?;
        let (body, samples) = scrape(&vigil).await?;
        let timeouts: BTreeMap<String, f64> = named(&samples, "pgvigil_timeouts_total")
            .into_iter()
            .map(|s| (s.label("timeout").to_string(), s.value))
            .collect();
        let expected: BTreeMap<String, f64> = [
            "client_login_timeout",
            "query_timeout",
            "idle_transaction_timeout",
            "client_idle_timeout",
            "transaction_timeout",
        ]
        .into_iter()
        .map(|t| (t.to_string(), 0.0))
        .collect();
        ensure!(
            timeouts == expected,
            "pgvigil_timeouts_total at start: {timeouts:?}, expected {expected:?}"
        );
        ensure!(
            types_of(&body)
                .get("pgvigil_timeouts_total")
                .map(String::as_str)
                == Some("counter")
                && types_of(&body)
                    .get("pgvigil_pool_acquire_timeouts_total")
                    .map(String::as_str)
                    == Some("counter"),
            "types: {:?}",
            types_of(&body)
        );
        let acquire_timeouts = |samples: &[Sample]| {
            named(samples, "pgvigil_pool_acquire_timeouts_total")
                .into_iter()
                .find(|s| s.label("database") == APP_DB && s.label("user") == "app")
                .map(|s| s.value)
        };
        ensure!(
            acquire_timeouts(&samples) == Some(0.0),
            "pgvigil_pool_acquire_timeouts_total at start:\n{}",
            show(&samples, "pgvigil_pool_acquire_timeouts_total")
        );

        // The only server connection stays in a transaction...
        let holder = vigil.connect_app().await?;
        holder.batch_execute("BEGIN; SELECT 1").await?;
        // ...so another client waits past acquire_timeout and fails.
        let waiter = vigil.connect_app().await?;
        let err = tokio::time::timeout(Duration::from_secs(10), waiter.simple_query("SELECT 2"))
            .await
            .context("a query waiting for the only connection outlived acquire_timeout")?
            .err()
            .context("a query ran while the only server connection was in a transaction")?;
        ensure!(
            sqlstate(&err) == Some("53300"),
            "acquire timeout error: {err}"
        );

        let (_, samples) = scrape(&vigil).await?;
        ensure!(
            acquire_timeouts(&samples) == Some(1.0),
            "pgvigil_pool_acquire_timeouts_total after one timeout:\n{}",
            show(&samples, "pgvigil_pool_acquire_timeouts_total")
        );
        holder.batch_execute("COMMIT").await?;
        Ok(())
    })
    .await
}

#[test]
fn sample_lines_parse_with_escaped_label_values() -> Result<()> {
    let s = parse_sample(r#"x_total{a="1",q="say \"hi\"\\n\n",b=""} 3 1700000000"#)?;
    assert_eq!(s.name, "x_total");
    assert_eq!(s.label("q"), "say \"hi\"\\n\n");
    assert_eq!(s.label("b"), "");
    assert_eq!(s.value, 3.0);
    let s = parse_sample(r#"h_bucket{le="+Inf"} 7"#)?;
    assert_eq!(s.label("le").parse::<f64>()?, f64::INFINITY);
    assert_eq!(parse_sample("g 1.5")?.value, 1.5);
    assert!(parse_sample(r#"g{a="1} 2"#).is_err());
    assert_eq!(
        percent_encode("sum(x{a=\"b\"})"),
        "sum%28x%7Ba%3D%22b%22%7D%29"
    );
    Ok(())
}
