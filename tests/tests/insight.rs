//! Query insight through the admin JSON API, against the real binary and
//! real clients: exact call, row and error counts (simple and extended
//! protocol, multi-statement strings, pgbench), latency percentiles, slow
//! query events and rules, N+1 detection with a real ORM, analytics off,
//! and the fingerprint cap.
//!
//! Statistics are merged from per-thread buffers every 250 ms, so after a
//! workload each test polls the API until the figures it expects appear,
//! then reads once more after another merge period: a count that keeps
//! growing past the expected value fails the test.
//!
//! The ORM tests need python3 with the packages of
//! `tests/python/requirements.txt` and fail (never skip) without them.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test insight`

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::{stream, StreamExt};
use pgvigil_integration::cluster::{APP_DB, APP_USER};
use pgvigil_integration::python::{
    last_nonblank_line, python3, python_script, require_python_modules, run_python,
};
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::tokio_postgres::{Client, SimpleQueryMessage};
use pgvigil_integration::vigil::connect_config;
use pgvigil_integration::{
    both_modes, shared_cluster, sqlstate, timed, unique_name, PgCluster, Pgvigil, PgvigilBuilder,
    PoolMode,
};
use tokio::sync::{OnceCell, RwLock};

const LIMIT: Duration = Duration::from_secs(90);
/// How long figures may take to show up in the API after a workload.
const SETTLE: Duration = Duration::from_secs(3);
/// One merge period of the per-thread buffers, plus margin.
const MERGE_PERIOD: Duration = Duration::from_millis(350);
const POLL: Duration = Duration::from_millis(50);

/// Timing-sensitive tests (latency, slow thresholds) take this exclusively,
/// so no other test's load skews what they measure; the others share it.
static LOAD: RwLock<()> = RwLock::const_new(());

// ---------------------------------------------------------------- helpers

/// `GET /api/queries` with every fingerprint, as an array.
async fn all_queries(vigil: &Pgvigil) -> Result<Vec<Value>> {
    let body = vigil
        .api_get("/api/queries?sort=calls&limit=100000")
        .await?;
    rows_of(&body, "queries")
}

fn rows_of(body: &Value, key: &str) -> Result<Vec<Value>> {
    body.get(key)
        .and_then(Value::as_array)
        .cloned()
        .with_context(|| format!("no `{key}` array in {body}"))
}

/// The rows whose normalized text contains `needle`.
fn matching<'a>(rows: &'a [Value], needle: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["query"].as_str().is_some_and(|q| q.contains(needle)))
        .collect()
}

/// The one row whose normalized text contains `needle`.
fn one<'a>(rows: &'a [Value], needle: &str) -> Result<&'a Value> {
    let found = matching(rows, needle);
    if found.len() != 1 {
        bail!(
            "expected exactly one fingerprint whose query contains {needle:?}, found {}; all queries:\n{}",
            found.len(),
            summary(rows)
        );
    }
    Ok(found[0])
}

/// Calls of the one row containing `needle`, 0 when absent (or ambiguous).
fn calls_of(rows: &[Value], needle: &str) -> u64 {
    match matching(rows, needle).as_slice() {
        [row] => row["calls"].as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn summary(rows: &[Value]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "  {} calls={} errors={} rows={} {}",
                r["fingerprint"].as_str().unwrap_or("?"),
                r["calls"],
                r["errors"],
                r["rows"],
                r["query"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn uint(row: &Value, key: &str) -> Result<u64> {
    row.get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("`{key}` is not an unsigned integer in {row}"))
}

fn float(row: &Value, key: &str) -> Result<f64> {
    row.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("`{key}` is not a number in {row}"))
}

fn string<'a>(row: &'a Value, key: &str) -> Result<&'a str> {
    row.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("`{key}` is not a string in {row}"))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// Every constant replaced by a `$n` placeholder: each run of digits
/// follows a `$` or is part of an identifier.
fn constants_replaced(query: &str) -> bool {
    let b = query.as_bytes();
    (0..b.len()).all(|i| {
        !b[i].is_ascii_digit()
            || (i > 0 && (b[i - 1] == b'$' || b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
    })
}

/// The shape every `/api/queries` row must have.
fn check_row_shape(row: &Value) -> Result<()> {
    let fp = string(row, "fingerprint")?;
    ensure!(
        fp.len() == 16 && fp.bytes().all(|c| c.is_ascii_hexdigit()),
        "fingerprint {fp:?} is not 16 hex digits"
    );
    for key in ["query", "statement"] {
        string(row, key)?;
    }
    for key in ["calls", "errors", "rows"] {
        uint(row, key)?;
    }
    for key in [
        "total_ms",
        "mean_ms",
        "min_ms",
        "max_ms",
        "stddev_ms",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
    ] {
        float(row, key)?;
    }
    for key in ["first_seen", "last_seen"] {
        let t = string(row, key)?;
        ensure!(is_rfc3339(t), "`{key}` {t:?} is not RFC 3339 in {row}");
    }
    ensure!(
        row["tables"].is_array(),
        "`tables` is not an array in {row}"
    );
    ensure!(row["lint"].is_array(), "`lint` is not an array in {row}");
    Ok(())
}

/// Polls `GET path` until `done` holds (at most [`SETTLE`]), then waits one
/// more merge period and returns a fresh reply, so late over-counting shows.
async fn settled(vigil: &Pgvigil, path: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let body = vigil.api_get(path).await?;
        if done(&body) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(MERGE_PERIOD).await;
    vigil.api_get(path).await
}

/// [`settled`] over the full query list.
async fn settled_queries(vigil: &Pgvigil, done: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
    let body = settled(vigil, "/api/queries?sort=calls&limit=100000", |body| {
        rows_of(body, "queries").is_ok_and(|rows| done(&rows))
    })
    .await?;
    rows_of(&body, "queries")
}

/// Checks that `GET /api/n-plus-one` reports nothing, now and for `span`.
async fn no_detections_for(vigil: &Pgvigil, span: Duration, what: &str) -> Result<()> {
    let deadline = Instant::now() + span;
    loop {
        let rows = rows_of(&vigil.api_get("/api/n-plus-one").await?, "detections")?;
        ensure!(
            rows.is_empty(),
            "{what}: expected no N+1 detections, got {}:\n{:#}",
            rows.len(),
            Value::Array(rows)
        );
        if Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client with `application_name` set, through `vigil`.
async fn connect_as_app(vigil: &Pgvigil, application_name: &str) -> Result<Client> {
    let mut cfg = vigil.app_config();
    cfg.application_name(application_name);
    connect_config(&cfg)
        .await
        .with_context(|| format!("connecting to pgvigil as {application_name}"))
}

fn command_rows(messages: &[SimpleQueryMessage]) -> u64 {
    messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_detail_shows_the_tables_and_lint_of_its_list_row() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let client = vigil.connect_app().await?;
        let table = unique_name("detail_annotated");
        client
            .batch_execute(&format!("CREATE TABLE {table} (id int, note text)"))
            .await
            .context("create table")?;
        // A function on a column in WHERE is a lint finding; the table is a
        // `tables` entry.
        client
            .simple_query(&format!("SELECT id FROM {table} WHERE lower(note) = 'x'"))
            .await
            .context("annotated select")?;
        let needle = format!("FROM {table} WHERE");
        let annotated = |r: &Value| {
            ["tables", "lint"]
                .iter()
                .all(|k| r[*k].as_array().is_some_and(|a| !a.is_empty()))
        };
        let rows = settled_queries(&vigil, |rows| {
            matching(rows, &needle).iter().any(|r| annotated(r))
        })
        .await?;
        let row = one(&rows, &needle)?;
        ensure!(annotated(row), "the list row has no tables or lint: {row}");
        let fp = string(row, "fingerprint")?;
        let detail = vigil.api_get(&format!("/api/queries/{fp}")).await?;
        for key in ["tables", "lint"] {
            ensure!(
                detail[key] == row[key],
                "/api/queries/{fp} `{key}` is {} where /api/queries shows {}",
                detail[key],
                row[key]
            );
        }
        Ok(())
    })
    .await
}

/// An N+1 loop in a request handler repeats on every request: the first
/// detection of a (pattern, parent, child) is logged, the following ones
/// only as a count at most once a minute, never one line per occurrence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_n_plus_one_is_logged_once_not_per_occurrence() -> Result<()> {
    timed(LIMIT, async {
        const LOOPS: u64 = 25;
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let client = vigil.connect_app().await?;
        for _ in 0..LOOPS {
            client.simple_query("BEGIN").await?;
            client
                .simple_query("SELECT g FROM generate_series(1, 6) AS g")
                .await?;
            for g in 1..=6 {
                client
                    .simple_query(&format!("SELECT {g} * 2 AS logged_child"))
                    .await?;
            }
            client.simple_query("COMMIT").await?;
        }
        let body = settled(&vigil, "/api/n-plus-one", |body| {
            rows_of(body, "detections")
                .is_ok_and(|d| d.iter().any(|r| r["occurrences"].as_u64() == Some(LOOPS)))
        })
        .await?;
        let detections = rows_of(&body, "detections")?;
        ensure!(
            detections
                .iter()
                .any(|r| r["occurrences"].as_u64() == Some(LOOPS)),
            "no detection with {LOOPS} occurrences: {body:#}"
        );
        let log = vigil.stderr();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("repeated query pattern"))
            .collect();
        ensure!(
            lines.len() == 1 && lines[0].contains("INFO"),
            "{LOOPS} occurrences of one loop wrote {} log lines (expected one INFO):\n{}",
            lines.len(),
            lines.join("\n")
        );
        Ok(())
    })
    .await
}

// --------------------------------------------------- 1. exact counts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_rows_and_errors_are_counted_exactly_per_statement() -> Result<()> {
    timed(LIMIT, async {
        const N: u64 = 500;
        const M: u64 = 300;
        const R: u64 = 10;
        const DUPLICATES: u64 = 7;
        let _load = LOAD.read().await;
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 4).await?;
        let client = vigil.connect_app().await?;

        // N statements of one shape, each with different literals, simple protocol.
        let mut simple_rows = 0;
        for i in 0..N {
            let k = i % 3 + 1;
            let sql = format!("SELECT g, {i} AS simple_tag FROM generate_series(1, {k}) g");
            let got = command_rows(&client.simple_query(&sql).await?);
            ensure!(got == k, "{sql}: {got} rows");
            simple_rows += k;
        }

        // M executions of one shape through the extended protocol: half
        // prepared per call (Parse each time), half from one prepared statement.
        let ext_sql = "SELECT g, $1::int4 AS ext_tag FROM generate_series(1, $2::int4) g";
        let prepared = client.prepare(ext_sql).await?;
        let mut ext_rows = 0;
        for i in 0..M as i32 {
            let k = i % 4 + 1;
            let rows = if i % 2 == 0 {
                client.query(ext_sql, &[&i, &k]).await?
            } else {
                client.query(&prepared, &[&i, &k]).await?
            };
            ensure!(rows.len() == k as usize, "extended query {i}: {} rows", rows.len());
            ext_rows += k as u64;
        }

        // Multi-statement simple queries: every statement is a call.
        for _ in 0..R {
            client.simple_query("SELECT 1; SELECT 2; SELECT 3").await?;
            client
                .simple_query("SELECT 1 AS multi_a; SELECT 2 AS multi_b, 3 AS multi_c; SELECT 'x' AS multi_d")
                .await?;
            // PostgreSQL stops at the failing statement: the third never runs.
            let err = client
                .simple_query("SELECT 1 AS before_boom; SELECT 1/0 AS boom; SELECT 1 AS after_boom")
                .await
                .err()
                .context("1/0 did not fail")?;
            ensure!(sqlstate(&err) == Some("22012"), "1/0 failed with {err}");
        }

        // A unique violation, DUPLICATES times.
        let table = unique_name("insight_dup");
        client
            .batch_execute(&format!("CREATE TABLE {table} (id int PRIMARY KEY, note text)"))
            .await?;
        let insert = format!("INSERT INTO {table} (id, note) VALUES ($1, $2)");
        let insert_needle = format!("INSERT INTO {table}");
        client.execute(&insert, &[&1i32, &"first"]).await?;
        for _ in 0..DUPLICATES {
            let err = client
                .execute(&insert, &[&1i32, &"again"])
                .await
                .err()
                .context("duplicate insert succeeded")?;
            ensure!(sqlstate(&err) == Some("23505"), "duplicate insert failed with {err}");
        }

        let rows = settled_queries(&vigil, |rows| {
            calls_of(rows, "simple_tag") >= N
                && calls_of(rows, "ext_tag") >= M
                && calls_of(rows, "multi_d") >= R
                && calls_of(rows, "boom") >= R
                && calls_of(rows, &insert_needle) > DUPLICATES
        })
        .await?;
        for row in &rows {
            check_row_shape(row)?;
        }
        let all = summary(&rows);

        let simple = one(&rows, "simple_tag")?;
        ensure!(
            uint(simple, "calls")? == N && uint(simple, "rows")? == simple_rows && uint(simple, "errors")? == 0,
            "simple protocol: expected calls={N} rows={simple_rows} errors=0, got {simple}"
        );
        let text = string(simple, "query")?;
        ensure!(
            constants_replaced(text) && text.contains("$1"),
            "simple protocol: constants not normalized to $n in {text:?}"
        );
        ensure!(string(simple, "statement")? == "SELECT", "statement kind in {simple}");

        let ext = one(&rows, "ext_tag")?;
        ensure!(
            uint(ext, "calls")? == M && uint(ext, "rows")? == ext_rows && uint(ext, "errors")? == 0,
            "extended protocol: expected calls={M} rows={ext_rows} errors=0, got {ext}"
        );

        // `SELECT 1; SELECT 2; SELECT 3` is three calls of `SELECT $1`.
        let plain: Vec<&Value> = rows
            .iter()
            .filter(|r| r["query"].as_str().map(str::trim) == Some("SELECT $1"))
            .collect();
        ensure!(
            plain.len() == 1 && uint(plain[0], "calls")? == 3 * R && uint(plain[0], "rows")? == 3 * R,
            "`SELECT 1; SELECT 2; SELECT 3` x{R}: expected one `SELECT $1` with calls={} rows={}, got:\n{all}",
            3 * R,
            3 * R
        );
        for needle in ["multi_a", "multi_b", "multi_d", "before_boom"] {
            let row = one(&rows, needle)?;
            ensure!(
                uint(row, "calls")? == R && uint(row, "errors")? == 0,
                "{needle}: expected calls={R} errors=0, got {row}"
            );
        }
        let boom = one(&rows, "AS boom")?;
        ensure!(
            uint(boom, "calls")? == R && uint(boom, "errors")? == R && uint(boom, "rows")? == 0,
            "1/0: expected calls={R} errors={R} rows=0, got {boom}"
        );
        ensure!(
            matching(&rows, "after_boom").is_empty(),
            "a statement PostgreSQL skipped after an error was counted:\n{all}"
        );

        // Every execution is a call; failed ones are also errors, by SQLSTATE.
        let dup = one(&rows, &insert_needle)?;
        ensure!(
            string(dup, "statement")? == "INSERT"
                && uint(dup, "calls")? == 1 + DUPLICATES
                && uint(dup, "errors")? == DUPLICATES
                && uint(dup, "rows")? == 1,
            "insert: expected INSERT calls={} errors={DUPLICATES} rows=1, got {dup}",
            1 + DUPLICATES
        );
        let fp = string(dup, "fingerprint")?;
        let detail = vigil.api_get(&format!("/api/queries/{fp}")).await?;
        ensure!(
            detail["errors_by_sqlstate"]["23505"].as_u64() == Some(DUPLICATES),
            "expected errors_by_sqlstate[\"23505\"] == {DUPLICATES} in {detail:#}"
        );
        ensure!(
            detail["errors_by_sqlstate"].as_object().map(|m| m.len()) == Some(1),
            "errors other than 23505 in {detail:#}"
        );
        let histogram_total: u64 = detail["histogram"]
            .as_array()
            .context("no histogram array")?
            .iter()
            .map(|b| b["count"].as_u64().unwrap_or(0))
            .sum();
        ensure!(
            histogram_total == 1 + DUPLICATES,
            "histogram counts sum to {histogram_total}, calls are {}",
            1 + DUPLICATES
        );
        let callers = detail["callers"].as_array().context("no callers array")?;
        ensure!(
            callers.iter().any(|c| c["database"] == APP_DB && c["user"] == APP_USER),
            "callers do not include {APP_USER}@{APP_DB}: {detail:#}"
        );
        for key in ["recent", "slow_events"] {
            ensure!(detail[key].is_array(), "`{key}` is not an array in {detail:#}");
        }
        Ok(())
    })
    .await
}

// ------------------------------------------------------- 2. pgbench counts

/// `pgbench -i -s 1`, once per test binary, itself through pgvigil.
async fn pgbench_cluster() -> Result<&'static PgCluster> {
    static INIT: OnceCell<()> = OnceCell::const_new();
    let cluster = shared_cluster();
    INIT.get_or_try_init(|| async {
        let vigil = Pgvigil::start(cluster, PoolMode::Session, 2).await?;
        let report = vigil
            .pgbench(&["-i", "-s", "1", "-q"], Duration::from_secs(60))
            .await?;
        ensure!(
            report.output.status.success(),
            "pgbench -i -s 1 through pgvigil failed ({}):\n{}\n{}",
            report.output.status,
            report.stdout,
            report.stderr
        );
        Ok(())
    })
    .await?;
    Ok(cluster)
}

const PGBENCH_SELECT: &str = "FROM pgbench_accounts WHERE aid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_prepared_counts_every_transaction_exactly() -> Result<()> {
    timed(LIMIT, async {
        const CLIENTS: u64 = 32;
        const PER_CLIENT: u64 = 200;
        let _load = LOAD.read().await;
        let cluster = pgbench_cluster().await?;
        let vigil = Pgvigil::start(cluster, PoolMode::Transaction, 10).await?;
        let report = vigil
            .pgbench(
                &["-S", "-c", "32", "-j", "2", "-t", "200", "-M", "prepared"],
                Duration::from_secs(60),
            )
            .await?;
        report.assert_clean("pgbench -S -c 32 -j 2 -t 200 -M prepared")?;
        let processed = report.processed.with_context(|| {
            format!("no transaction count in pgbench output:\n{}", report.stdout)
        })?;
        ensure!(
            processed == CLIENTS * PER_CLIENT,
            "pgbench processed {processed} transactions, expected {}",
            CLIENTS * PER_CLIENT
        );
        let rows =
            settled_queries(&vigil, |rows| calls_of(rows, PGBENCH_SELECT) >= processed).await?;
        let select = one(&rows, PGBENCH_SELECT)?;
        ensure!(
            uint(select, "calls")? == processed
                && uint(select, "rows")? == processed
                && uint(select, "errors")? == 0,
            "pgbench reported {processed} transactions; expected its SELECT with calls={processed} \
             rows={processed} errors=0, got {select}"
        );
        ensure!(
            string(select, "statement")? == "SELECT",
            "statement kind in {select}"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------- 3. latency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_percentiles_match_known_sleeps_within_five_percent() -> Result<()> {
    timed(LIMIT, async {
        const TIMES: u64 = 20;
        let _exclusive = LOAD.write().await;
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 4).await?;
        let short = vigil.connect_app().await?;
        let long = vigil.connect_app().await?;
        let statement = short.prepare("SELECT pg_sleep($1)").await?;
        // Warm-up, then a reset: both server connections opened and both
        // statements seen once, so the measured runs time only the statements.
        let (a, b) = tokio::join!(
            short.query(&statement, &[&0.05f64]),
            long.simple_query("SELECT 1 AS latency_probe, pg_sleep(0.2)")
        );
        a?;
        b?;
        vigil.api_post("/api/reset").await?;
        // What the clients saw, round trip included: pgvigil sees a part of it.
        let run_short = async {
            let mut seen = Vec::new();
            for _ in 0..TIMES {
                let start = Instant::now();
                short.query(&statement, &[&0.05f64]).await?;
                seen.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(seen)
        };
        let run_long = async {
            let mut seen = Vec::new();
            for _ in 0..TIMES {
                let start = Instant::now();
                long.simple_query("SELECT 1 AS latency_probe, pg_sleep(0.2)")
                    .await?;
                seen.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(seen)
        };
        let (short_seen, long_seen) = tokio::join!(run_short, run_long);
        let (short_seen, long_seen) = (short_seen?, long_seen?);
        let rows = settled_queries(&vigil, |rows| {
            calls_of(rows, "pg_sleep($1)") >= TIMES && calls_of(rows, "latency_probe") >= TIMES
        })
        .await?;
        let mut problems = Vec::new();
        let mut client_view = Vec::new();
        for (needle, sleep_ms, seen) in [
            ("pg_sleep($1)", 50.0_f64, &short_seen),
            ("latency_probe", 200.0, &long_seen),
        ] {
            let row = one(&rows, needle)?;
            let mut sorted = seen.clone();
            sorted.sort_by(f64::total_cmp);
            let client_max = sorted.last().copied().unwrap_or(0.0);
            let slowest = seen
                .iter()
                .position(|&ms| ms == client_max)
                .unwrap_or(0);
            client_view.push(format!(
                "{needle}: client-side round trips {:.3}..{client_max:.3} ms (slowest: #{} of {TIMES}), median {:.3} ms",
                sorted.first().copied().unwrap_or(0.0),
                slowest + 1,
                sorted[sorted.len() / 2]
            ));
            // pgvigil times each execution inside the client's round trip.
            let max = float(row, "max_ms")?;
            if max > client_max + 0.5 {
                problems.push(format!(
                    "{needle}: max_ms = {max} ms, but no client round trip took more than {client_max:.3} ms"
                ));
            }
            ensure!(uint(row, "calls")? == TIMES, "{needle}: expected {TIMES} calls, got {row}");
            // Each figure is at least the sleep and at most 5% above it. The
            // only excess allowed beyond 5% is one the client itself saw at
            // the same rank (a machine stall is real latency, not a
            // measurement error), plus the histogram's bucket resolution.
            for (key, q) in [("min_ms", 0.0), ("p50_ms", 0.5), ("p99_ms", 0.99)] {
                let got = float(row, key)?;
                let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                let client_at_rank = sorted[rank - 1];
                let limit = (sleep_ms * 1.05).max(client_at_rank * 1.02);
                if got < sleep_ms {
                    problems.push(format!(
                        "{needle}: {key} = {got} ms is below the {sleep_ms} ms every execution slept"
                    ));
                } else if got > limit {
                    problems.push(format!(
                        "{needle}: {key} = {got} ms is {:.1}% above the {sleep_ms} ms sleep \
                         (limit 5%; the client's round trip at that rank took {client_at_rank:.3} ms)",
                        (got - sleep_ms) / sleep_ms * 100.0
                    ));
                }
            }
        }
        ensure!(
            problems.is_empty(),
            "latency figures off:\n  {}\n{}\nrows:\n{}",
            problems.join("\n  "),
            client_view.join("\n"),
            rows.iter()
                .filter(|r| r["query"].as_str().is_some_and(|q| q.contains("pg_sleep")))
                .map(|r| format!("{r}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_lie_within_the_recorded_min_and_max() -> Result<()> {
    timed(LIMIT, async {
        const SINGLES: usize = 5;
        const REPEATS: u64 = 20;
        let _load = LOAD.read().await;
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let client = vigil.connect_app().await?;
        // Statements run once: every percentile of one duration is that duration.
        for i in 0..SINGLES {
            client
                .simple_query(&format!("SELECT pg_sleep(0.01) AS single_{i}"))
                .await?;
        }
        for _ in 0..REPEATS {
            client
                .simple_query("SELECT pg_sleep(0.01) AS repeated")
                .await?;
        }
        let rows = settled_queries(&vigil, |rows| {
            calls_of(rows, "AS repeated") >= REPEATS
                && (0..SINGLES).all(|i| calls_of(rows, &format!("AS single_{i}")) >= 1)
        })
        .await?;
        let ladder = [
            "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms",
        ];
        let mut problems = Vec::new();
        let mut checked = 0;
        for row in matching(&rows, "pg_sleep") {
            checked += 1;
            for pair in ladder.windows(2) {
                let (lo, hi) = (float(row, pair[0])?, float(row, pair[1])?);
                if lo > hi {
                    problems.push(format!(
                        "{}: {} = {lo} ms > {} = {hi} ms",
                        string(row, "query")?,
                        pair[0],
                        pair[1]
                    ));
                }
            }
        }
        ensure!(
            checked == SINGLES + 1,
            "expected {} pg_sleep fingerprints, found {checked}:\n{}",
            SINGLES + 1,
            summary(&rows)
        );
        ensure!(
            problems.is_empty(),
            "percentiles outside the recorded durations ({} violations):\n  {}\nrows:\n{}",
            problems.len(),
            problems.join("\n  "),
            matching(&rows, "pg_sleep")
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    })
    .await
}

// ------------------------------------------------------- 4. slow queries

const SLOW_APP: &str = "insight-slow-app";
const SECRET: &str = "k7-sensitive-marker";

/// 50 fast statements, then one `pg_sleep(0.15)` carrying a string constant;
/// returns the slow statement's fingerprint once the figures settled.
async fn fast_then_slow(vigil: &Pgvigil) -> Result<String> {
    const FAST: u64 = 50;
    let client = connect_as_app(vigil, SLOW_APP).await?;
    for i in 0..FAST {
        client
            .simple_query(&format!("SELECT {i} AS fast_probe"))
            .await?;
    }
    client
        .simple_query(&format!("SELECT pg_sleep(0.15), '{SECRET}' AS note"))
        .await?;
    let rows = settled_queries(vigil, |rows| {
        calls_of(rows, "fast_probe") >= FAST && calls_of(rows, "pg_sleep") >= 1
    })
    .await?;
    let fast = one(&rows, "fast_probe")?;
    ensure!(uint(fast, "calls")? == FAST, "fast statement: {fast}");
    let slow = one(&rows, "pg_sleep")?;
    ensure!(uint(slow, "calls")? == 1, "slow statement: {slow}");
    Ok(string(slow, "fingerprint")?.to_string())
}

/// The one slow event, with the fields every event has checked.
async fn the_slow_event(vigil: &Pgvigil, fingerprint: &str) -> Result<Value> {
    let body = vigil.api_get("/api/slow?limit=100").await?;
    let events = rows_of(&body, "events")?;
    ensure!(
        events.len() == 1,
        "expected exactly one slow event (the pg_sleep), got {}:\n{:#}",
        events.len(),
        Value::Array(events)
    );
    let e = events.into_iter().next().unwrap_or_default();
    ensure!(
        string(&e, "fingerprint")? == fingerprint,
        "event fingerprint: {e:#}"
    );
    let query = string(&e, "query")?;
    ensure!(
        query.contains("pg_sleep") && !query.contains(SECRET) && constants_replaced(query),
        "event query is not the normalized statement: {query:?}"
    );
    let duration = float(&e, "duration_ms")?;
    ensure!(
        (150.0..1000.0).contains(&duration),
        "duration_ms {duration} for a 150 ms sleep"
    );
    ensure!(
        string(&e, "database")? == APP_DB
            && string(&e, "user")? == APP_USER
            && string(&e, "application_name")? == SLOW_APP,
        "event caller: {e:#}"
    );
    ensure!(is_rfc3339(string(&e, "at")?), "`at` is not RFC 3339: {e:#}");
    ensure!(
        string(&e, "client_addr")?.contains("127.0.0.1"),
        "client_addr: {e:#}"
    );
    ensure!(e["tags"].is_object(), "`tags` is not an object: {e:#}");
    let detail = vigil
        .api_get(&format!("/api/queries/{fingerprint}"))
        .await?;
    ensure!(
        detail["slow_events"].as_array().map(Vec::len) == Some(1),
        "the statement's detail should list its one slow event: {detail:#}"
    );
    Ok(e)
}

/// Spawns `builder` in transaction mode, pool size 4, with `--slow-query-ms 100`,
/// runs [`fast_then_slow`] through it and returns [`the_slow_event`].
async fn slow_event_through(builder: PgvigilBuilder) -> Result<Value> {
    let vigil = builder
        .pool_mode(PoolMode::Transaction)
        .pool_size(4)
        .arg("--slow-query-ms")
        .arg("100")
        .spawn()
        .await?;
    let fingerprint = fast_then_slow(&vigil).await?;
    the_slow_event(&vigil, &fingerprint).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_query_event_names_rule_statement_and_caller_but_not_parameters() -> Result<()> {
    timed(LIMIT, async {
        let _exclusive = LOAD.write().await;
        let e = slow_event_through(Pgvigil::builder(shared_cluster())).await?;
        ensure!(string(&e, "rule")? == "slow_query_ms", "rule: {e:#}");
        ensure!(
            e["parameters"].is_null(),
            "parameters must be null without log_parameters: {e:#}"
        );
        ensure!(
            !e.to_string().contains(SECRET),
            "a constant of the statement leaked into the event: {e}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_slow_rule_wins_and_parameters_only_when_opted_in() -> Result<()> {
    timed(LIMIT, async {
        let _exclusive = LOAD.write().await;
        let config = format!(
            "[insight]\n\
             log_parameters = true\n\
             \n\
             [[slow_rules]]\n\
             name = \"reports\"\n\
             database = \"{APP_DB}\"\n\
             threshold_ms = 20\n\
             \n\
             [[slow_rules]]\n\
             name = \"everything\"\n\
             threshold_ms = 10\n"
        );
        let e = slow_event_through(Pgvigil::builder_with_config(shared_cluster(), config)).await?;
        ensure!(
            string(&e, "rule")? == "reports",
            "the first matching rule is \"reports\": {e:#}"
        );
        let parameters = e["parameters"]
            .as_str()
            .with_context(|| format!("log_parameters = true but no parameters: {e:#}"))?;
        ensure!(
            parameters.contains(SECRET),
            "parameters {parameters:?} do not show the statement's constant {SECRET:?}"
        );
        Ok(())
    })
    .await
}

// ------------------------------------------------------- 5. N+1 with an ORM

const ORM_APP: &str = "orm-n-plus-one";
/// How long one run of the ORM script may take.
const ORM_LIMIT: Duration = Duration::from_secs(60);

/// Runs the ORM script in `mode` against `vigil`; returns its JSON summary.
async fn orm(vigil: &Pgvigil, schema: &str, mode: &str) -> Result<Value> {
    let dsn = vigil.app_url();
    let mut cmd = python3();
    cmd.arg(python_script("orm_n_plus_one.py"))
        .arg(&dsn)
        .arg(mode)
        .arg("--schema")
        .arg(schema);
    let what = format!("python3 tests/python/orm_n_plus_one.py {mode}");
    let out = run_python(cmd, &what, ORM_LIMIT).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = last_nonblank_line(&stdout).unwrap_or("");
    pgvigil_integration::serde_json::from_str(last)
        .with_context(|| format!("{what} printed no JSON summary:\n{stdout}\nstderr:\n{stderr}"))
}

async fn check_orm_n_plus_one(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let _load = LOAD.read().await;
        // Fails (never skips) when python3, SQLAlchemy or psycopg is missing.
        require_python_modules(
            "sqlalchemy, psycopg",
            "SQLAlchemy and psycopg are needed for the ORM tests",
        )
        .await?;
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(mode)
            .pool_size(4)
            .spawn()
            .await?;
        let schema = unique_name("orm");
        orm(&vigil, &schema, "setup").await?;

        // The lazy-loading page: 1 authors SELECT, then 20 books SELECTs.
        vigil.api_post("/api/reset").await?;
        let page = orm(&vigil, &schema, "lazy").await?;
        ensure!(
            page["authors"] == 20 && page["books"] == 60,
            "lazy page saw {page}"
        );
        let books_lookup = format!("FROM {schema}.books WHERE");
        let detections = rows_of(
            &settled(&vigil, "/api/n-plus-one", |body| {
                rows_of(body, "detections").is_ok_and(|d| !d.is_empty())
            })
            .await?,
            "detections",
        )?;
        let rows = settled_queries(&vigil, |rows| calls_of(rows, &books_lookup) >= 20).await?;
        ensure!(
            detections.len() == 1,
            "{}: expected exactly one detection for the lazy page, got {}:\n{:#}\nqueries:\n{}",
            mode.as_str(),
            detections.len(),
            Value::Array(detections.clone()),
            summary(&rows)
        );
        let d = &detections[0];
        let books = one(&rows, &books_lookup)?;
        let authors = one(&rows, &format!("FROM {schema}.authors"))?;
        ensure!(
            uint(books, "calls")? == 20,
            "the lazy page ran 20 books lookups: {books}"
        );
        let checks = [
            (string(d, "kind")? == "n_plus_one", "kind is n_plus_one"),
            (uint(d, "repeats")? == 20, "repeats == 20"),
            (
                string(d, "fingerprint")? == string(books, "fingerprint")?,
                "the child is the books SELECT",
            ),
            (
                d["parent_fingerprint"].as_str() == Some(string(authors, "fingerprint")?),
                "the parent is the authors SELECT",
            ),
            (
                d["parent_query"].as_str() == Some(string(authors, "query")?),
                "parent_query is the authors SELECT's text",
            ),
            (
                string(d, "query")? == string(books, "query")?,
                "query is the books SELECT's text",
            ),
            (
                string(d, "database")? == APP_DB && string(d, "user")? == APP_USER,
                "database and user",
            ),
            (
                string(d, "application_name")? == ORM_APP,
                "application_name",
            ),
            (uint(d, "occurrences")? == 1, "occurrences == 1"),
            (float(d, "total_ms")? > 0.0, "total_ms > 0"),
            (!string(d, "suggestion")?.is_empty(), "a suggestion"),
        ];
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, what)| *what)
            .collect();
        ensure!(
            failed.is_empty(),
            "{}: detection wrong ({}):\n{d:#}\nqueries:\n{}",
            mode.as_str(),
            failed.join(", "),
            summary(&rows)
        );

        // The eager-loading twin: 1 authors SELECT, 1 books SELECT for all.
        vigil.api_post("/api/reset").await?;
        let page = orm(&vigil, &schema, "eager").await?;
        ensure!(
            page["authors"] == 20 && page["books"] == 60,
            "eager page saw {page}"
        );
        let rows = settled_queries(&vigil, |rows| {
            calls_of(rows, &format!("FROM {schema}.books")) >= 1
                && calls_of(rows, &format!("FROM {schema}.authors")) >= 1
        })
        .await?;
        let books = one(&rows, &format!("FROM {schema}.books"))?;
        ensure!(
            uint(books, "calls")? == 1,
            "the eager page loads all books in one SELECT: {books}"
        );
        no_detections_for(
            &vigil,
            Duration::from_millis(600),
            &format!("{}: eager loading (selectinload)", mode.as_str()),
        )
        .await
    })
    .await
}

both_modes!(
    orm_lazy_loading_is_one_n_plus_one_and_eager_loading_none,
    check_orm_n_plus_one
);

// ------------------------------------------------ 6. pgbench is not an N+1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tpcb_and_select_only_from_32_clients_raise_no_detection() -> Result<()> {
    timed(LIMIT, async {
        let _load = LOAD.read().await;
        let cluster = pgbench_cluster().await?;
        let vigil = Pgvigil::start(cluster, PoolMode::Transaction, 10).await?;
        let mut processed = 0;
        for args in [
            &["-c", "32", "-j", "2", "-t", "20"][..],
            &["-S", "-c", "32", "-j", "2", "-t", "100"][..],
        ] {
            let report = vigil.pgbench(args, Duration::from_secs(60)).await?;
            report.assert_clean(&format!("pgbench {}", args.join(" ")))?;
            processed += report.processed.unwrap_or(0);
        }
        ensure!(
            processed == 32 * 20 + 32 * 100,
            "pgbench processed {processed}"
        );
        // Both scripts run the same `SELECT abalance ... WHERE aid = ...`.
        let rows =
            settled_queries(&vigil, |rows| calls_of(rows, PGBENCH_SELECT) >= processed).await?;
        let select = one(&rows, PGBENCH_SELECT)?;
        ensure!(
            uint(select, "calls")? == processed,
            "pgbench SELECT: {select}"
        );
        no_detections_for(&vigil, Duration::from_millis(500), "pgbench TPC-B and -S").await
    })
    .await
}

// ------------------------------------------------------- 7. analytics off

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_off_proxies_traffic_and_api_answers_404_json() -> Result<()> {
    timed(LIMIT, async {
        let _load = LOAD.read().await;
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .arg("--analytics")
            .arg("off")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        for i in 0..20i32 {
            let row = client.query_one("SELECT $1::int4 + 1", &[&i]).await?;
            ensure!(
                row.get::<_, i32>(0) == i + 1,
                "wrong result through pgvigil"
            );
        }
        let got = command_rows(&client.simple_query("SELECT 1; SELECT 2").await?);
        ensure!(got == 2, "multi-statement query returned {got} rows");

        let health = vigil.api_request("GET", "/healthz").await?;
        ensure!(
            health.status == 200,
            "the admin listener should still serve /healthz: {} {}",
            health.status,
            health.body
        );
        let reply = vigil.api_request("GET", "/api/queries").await?;
        ensure!(
            reply.status == 404,
            "/api/queries with analytics off: expected 404, got {} {}",
            reply.status,
            reply.body
        );
        ensure!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "404 reply is not JSON: headers {:?}",
            reply.headers
        );
        let body = reply.json()?;
        ensure!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "404 reply has no `error` message: {body}"
        );
        Ok(())
    })
    .await
}

// ------------------------------------------------- 8. fingerprint cap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_table_stays_within_max_fingerprints() -> Result<()> {
    timed(LIMIT, async {
        const DISTINCT: usize = 10_000;
        const CAP: usize = 1000;
        let _load = LOAD.read().await;
        let vigil = Pgvigil::start_with_config(
            shared_cluster(),
            format!("[insight]\nmax_fingerprints = {CAP}\n"),
            PoolMode::Transaction,
            2,
        )
        .await?;
        let client = vigil.connect_app().await?;
        let c = &client;
        // One client, pipelined: 10,000 statements, each its own fingerprint.
        let results: Vec<_> = stream::iter(0..DISTINCT)
            .map(|i| async move {
                let sql = format!("SELECT 1 AS c{i}");
                c.simple_query(&sql).await
            })
            .buffered(64)
            .collect()
            .await;
        for r in results {
            r?;
        }
        // A statement in steady use after the flood is kept and counted.
        const HOT: u64 = 50;
        for i in 0..HOT {
            client
                .simple_query(&format!("SELECT {i} AS hot_after_flood"))
                .await?;
        }

        let deadline = Instant::now() + SETTLE;
        let mut last = usize::MAX;
        loop {
            let rows = all_queries(&vigil).await?;
            ensure!(
                rows.len() <= CAP,
                "/api/queries lists {} fingerprints with max_fingerprints = {CAP}",
                rows.len()
            );
            let settled = rows.len() == last && calls_of(&rows, "hot_after_flood") >= HOT;
            last = rows.len();
            if settled || Instant::now() >= deadline {
                // Eviction drops the least used 5% at a time: a table that
                // took the flood is nearly full, not empty.
                ensure!(
                    rows.len() >= CAP / 2,
                    "only {} fingerprints listed after {DISTINCT} distinct statements \
                     (max_fingerprints = {CAP})",
                    rows.len()
                );
                let hot = one(&rows, "hot_after_flood")?;
                ensure!(uint(hot, "calls")? == HOT, "hot statement: {hot}");
                // Every eviction is counted: what is listed plus what was
                // evicted accounts for every distinct statement.
                let status = vigil.api_get("/api/insight").await?;
                let evicted = status["fingerprint_evictions"].as_u64().unwrap_or(0);
                ensure!(
                    evicted as usize + rows.len() >= DISTINCT,
                    "{evicted} evictions + {} listed < {DISTINCT} distinct statements: {status}",
                    rows.len()
                );
                break;
            }
            tokio::time::sleep(MERGE_PERIOD).await;
        }
        let row = client.query_one("SELECT 41 + 1", &[]).await?;
        ensure!(
            row.get::<_, i32>(0) == 42,
            "pgvigil stopped proxying correctly"
        );
        Ok(())
    })
    .await
}
