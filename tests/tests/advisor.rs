//! The advisor against workloads whose right answer is known: a 300k-row
//! table queried through pgvigil by an unindexed column gets exactly that
//! index recommended, with hypopg (its cost estimate) and without (the
//! plan heuristic, saying so); the advice goes once the index is created
//! through pgvigil; the plan endpoint summarizes the sequential scan; the
//! advisor keeps to `plans_per_minute`; a refresh stuck behind a lock
//! never holds up clients' queries or puts statement text in the log; it
//! runs on its interval, not at all when disabled, and creates hypopg only
//! when `create_extension` allows.
//!
//! Each test has its own database on the shared cluster, so the advisor's
//! catalog reads and hypopg see only that test's tables. The advisor runs
//! only on `POST /api/advice/refresh` here (the interval is an hour).
//!
//! Needs the `postgresql-15-hypopg` package (`.ci/run` installs it).
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test advisor`

use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use pgvigil_integration::orders::OrdersDb;
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::tokio_postgres::Client;
use pgvigil_integration::{shared_cluster, timed, Pgvigil};

const LIMIT: Duration = Duration::from_secs(120);
const ORDERS_QUERY: &str = "SELECT id, amount FROM orders WHERE customer_id = $1";

/// A database of its own with `orders`: 300k rows, 30k customers, no
/// index but the primary key; statistics up to date; dropped on drop.
fn orders_database(hypopg: bool) -> Result<OrdersDb> {
    let db = OrdersDb::create_with(
        "advisor",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL, \
           status text NOT NULL, amount int NOT NULL); \
         INSERT INTO orders (customer_id, status, amount) \
           SELECT g % 30000, CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'done' END, g % 1000 \
           FROM generate_series(1, 300000) g; \
         ALTER TABLE orders OWNER TO app; \
         ANALYZE orders;",
    )?;
    if hypopg {
        // Not a trusted extension: a superuser creates it, as an operator would.
        shared_cluster().psql_admin(&db.name, "CREATE EXTENSION hypopg")?;
    }
    Ok(db)
}

async fn start(db: &str, advisor: &str) -> Result<Pgvigil> {
    let cluster = shared_cluster();
    // The advisor runs on refresh only, unless a test sets the interval.
    let interval = if advisor.contains("interval_s") {
        ""
    } else {
        "interval_s = 3600\n"
    };
    let toml = format!("[advisor]\n{interval}{advisor}\n");
    Pgvigil::builder_with_config(cluster, toml)
        .upstream(cluster.url(db))
        .client_auth("trust")
        .arg("--admin-users")
        .arg("admin")
        .spawn()
        .await
}

async fn app(vigil: &Pgvigil, db: &str) -> Result<Client> {
    vigil.connect("app", "secret", db).await
}

/// Runs the orders query `n` times (extended protocol) and waits until
/// the statistics list it; returns its fingerprint.
async fn orders_workload(vigil: &Pgvigil, client: &Client, n: i32) -> Result<String> {
    for i in 0..n {
        client.query(ORDERS_QUERY, &[&(i * 7)]).await?;
    }
    fingerprint_of(vigil, "FROM orders WHERE customer_id", n as u64).await
}

/// The fingerprint of the statement whose text contains `needle`, once
/// the statistics show `calls` calls of it.
async fn fingerprint_of(vigil: &Pgvigil, needle: &str, calls: u64) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = vigil.api_get("/api/queries?limit=1000").await?;
        let found = body["queries"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| {
                    r["query"].as_str().is_some_and(|q| q.contains(needle))
                        && r["calls"].as_u64() >= Some(calls)
                })
                .and_then(|r| r["fingerprint"].as_str().map(str::to_string))
        });
        if let Some(fp) = found {
            return Ok(fp);
        }
        ensure!(
            Instant::now() < deadline,
            "no statement with {needle:?} and {calls} calls in /api/queries: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refresh(vigil: &Pgvigil) -> Result<Vec<Value>> {
    let body = vigil.api_post("/api/advice/refresh").await?;
    body["advice"]
        .as_array()
        .cloned()
        .with_context(|| format!("no advice array in {body}"))
}

/// A sample's value in `/metrics` text (first line starting with `series`).
async fn metric(vigil: &Pgvigil, series: &str) -> Result<f64> {
    let text = vigil.http_get("/metrics", &[]).await?.body;
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            // A family without labels is written `name{} value`.
            let rest = rest.strip_prefix("{}").unwrap_or(rest);
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .with_context(|| format!("no {series} in /metrics:\n{text}"))
}

/// `GET path` until `pick` finds what it wants (statistics are merged a
/// few times a second), for up to 10 s.
async fn wait_for(
    vigil: &Pgvigil,
    path: &str,
    pick: impl Fn(&Value) -> Option<Value>,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = vigil.api_get(path).await?;
        if let Some(found) = pick(&body) {
            return Ok(found);
        }
        ensure!(Instant::now() < deadline, "{path} never showed it: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn only_advice(advice: &[Value]) -> Result<&Value> {
    ensure!(
        advice.len() == 1,
        "expected exactly one advice, got {advice:#?}"
    );
    Ok(&advice[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unindexed_filter_gets_exactly_that_index_from_hypopg_and_it_goes_once_created(
) -> Result<()> {
    let orders = orders_database(true)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let vigil = start(db, "plans_per_minute = 100").await?;
        let client = app(&vigil, db).await?;
        let fp = orders_workload(&vigil, &client, 20).await?;

        let advice = refresh(&vigil).await?;
        let a = only_advice(&advice)?;
        ensure!(a["kind"] == "create_index", "{a}");
        ensure!(a["method"] == "hypopg", "{a}");
        ensure!(a["database"] == db.as_str(), "{a}");
        ensure!(a["table"] == "orders", "{a}");
        ensure!(
            a["columns"] == pgvigil_integration::serde_json::json!(["customer_id"]),
            "{a}"
        );
        ensure!(
            a["ddl"] == "CREATE INDEX CONCURRENTLY ON orders (customer_id)",
            "{a}"
        );
        let improvement = a["improvement"].as_f64().context("improvement")?;
        ensure!(improvement >= 0.5, "improvement {improvement}: {a}");
        let (before, after) = (
            a["cost_before"].as_f64().context("cost_before")?,
            a["cost_after"].as_f64().context("cost_after")?,
        );
        ensure!(after < before, "{a}");
        ensure!(
            a["saved_ms_per_hour"].as_f64().is_some_and(|s| s > 0.0),
            "{a}"
        );
        let helped = a["fingerprints"].as_array().context("fingerprints")?;
        ensure!(
            helped.len() == 1 && helped[0]["fingerprint"] == fp.as_str(),
            "{a}"
        );
        ensure!(helped[0]["calls"].as_u64() >= Some(20), "{a}");
        ensure!(
            helped[0]["total_ms"].as_f64().is_some_and(|t| t > 0.0),
            "{a}"
        );
        ensure!(
            a["reason"].as_str().is_some_and(|r| r.contains("hypopg")),
            "{a}"
        );

        // The same list as GET, in the console, and in /metrics.
        let listed = vigil.api_get("/api/advice").await?;
        ensure!(
            listed["advice"].as_array().map(Vec::len) == Some(1),
            "{listed}"
        );
        let console = vigil.connect("admin", "", "pgvigil").await?;
        let rows = console.simple_query("SHOW ADVICE").await?;
        let ddl: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                pgvigil_integration::tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get("ddl").map(str::to_string)
                }
                _ => None,
            })
            .collect();
        ensure!(
            ddl == ["CREATE INDEX CONCURRENTLY ON orders (customer_id)"],
            "SHOW ADVICE: {ddl:?}"
        );
        ensure!(metric(&vigil, "pgvigil_advice{kind=\"create_index\"}").await? == 1.0);

        // The plan the advice came from: generic (no sample kept), with
        // the sequential scan and its filter.
        let plan = vigil.api_get(&format!("/api/queries/{fp}/plan")).await?;
        ensure!(
            plan["generic"] == true && plan["analyze"] == false,
            "{plan}"
        );
        ensure!(
            plan["taken_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{plan}"
        );
        ensure!(plan["plan"][0]["Plan"].is_object(), "{plan}");
        let scans = plan["summary"]["seq_scans"]
            .as_array()
            .context("seq_scans")?;
        ensure!(
            scans.iter().any(|s| s["table"] == "orders"
                && s["filter"]
                    .as_str()
                    .is_some_and(|f| f.contains("customer_id"))),
            "{plan}"
        );

        // The operator runs the DDL through pgvigil; the advice goes.
        client
            .batch_execute("CREATE INDEX CONCURRENTLY ON orders (customer_id)")
            .await?;
        let advice = refresh(&vigil).await?;
        ensure!(
            advice.is_empty(),
            "advice left after CREATE INDEX: {advice:#?}"
        );
        ensure!(metric(&vigil, "pgvigil_advice{kind=\"create_index\"}").await? == 0.0);
        // The DDL set a marker; the same statement, run again, shows the
        // index's effect there: p95 at least ten times lower.
        for i in 0..20 {
            client.query(ORDERS_QUERY, &[&(i * 11)]).await?;
        }
        let marker = wait_for(&vigil, "/api/markers", |b| {
            b["markers"].as_array().and_then(|ms| {
                ms.iter()
                    .find(|m| m["kind"] == "ddl" && m["statement"] == "CREATE INDEX")
                    .cloned()
            })
        })
        .await?;
        let id = marker["id"].as_u64().context("marker id")?;
        let query = wait_for(&vigil, &format!("/api/markers/{id}"), |r| {
            r["queries"].as_array().and_then(|qs| {
                qs.iter()
                    .find(|q| {
                        q["fingerprint"] == fp.as_str() && q["after"]["calls"].as_u64() >= Some(20)
                    })
                    .cloned()
            })
        })
        .await?;
        let (p95_before, p95_after) = (
            query["before"]["p95_ms"].as_f64().context("p95 before")?,
            query["after"]["p95_ms"].as_f64().context("p95 after")?,
        );
        ensure!(
            p95_before >= 10.0 * p95_after,
            "after the advised index, p95 fell only from {p95_before} ms to {p95_after} ms: {query}"
        );
        // Re-planned with the index: no sequential scan of orders.
        let plan = vigil.api_get(&format!("/api/queries/{fp}/plan")).await?;
        ensure!(
            plan["summary"]["seq_scans"]
                .as_array()
                .is_some_and(Vec::is_empty),
            "{plan}"
        );
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hypopg_the_same_index_comes_from_the_plan_heuristic_and_says_so() -> Result<()> {
    let orders = orders_database(false)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let vigil = start(db, "plans_per_minute = 100").await?;
        let client = app(&vigil, db).await?;
        let fp = orders_workload(&vigil, &client, 10).await?;
        // A second statement the same index serves, with a list pgvigil
        // collapses to `IN ($1, ...)` in its normalized text.
        for _ in 0..3 {
            client
                .simple_query("SELECT amount FROM orders WHERE customer_id IN (3, 5, 8)")
                .await?;
        }
        let in_list = fingerprint_of(&vigil, "customer_id IN (", 3).await?;

        let advice = refresh(&vigil).await?;
        let a = only_advice(&advice)?;
        ensure!(
            a["kind"] == "create_index" && a["method"] == "heuristic",
            "{a}"
        );
        ensure!(
            a["columns"] == pgvigil_integration::serde_json::json!(["customer_id"]),
            "{a}"
        );
        ensure!(
            a["ddl"] == "CREATE INDEX CONCURRENTLY ON orders (customer_id)",
            "{a}"
        );
        ensure!(
            a["reason"]
                .as_str()
                .is_some_and(|r| r.contains("hypopg was not available")),
            "{a}"
        );
        ensure!(
            a["cost_after"].is_null() && a["improvement"].is_null(),
            "{a}"
        );
        // One index, two statements: one advice naming both.
        let mut helped: Vec<&str> = a["fingerprints"]
            .as_array()
            .context("fingerprints")?
            .iter()
            .filter_map(|f| f["fingerprint"].as_str())
            .collect();
        helped.sort();
        let mut expected = vec![fp.as_str(), in_list.as_str()];
        expected.sort();
        ensure!(helped == expected, "{a}");

        client
            .batch_execute("CREATE INDEX CONCURRENTLY ON orders (customer_id)")
            .await?;
        let advice = refresh(&vigil).await?;
        ensure!(
            advice.is_empty(),
            "advice left after CREATE INDEX: {advice:#?}"
        );
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisor_never_runs_more_explains_than_plans_per_minute() -> Result<()> {
    let orders = orders_database(true)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let vigil = start(db, "plans_per_minute = 3").await?;
        let client = app(&vigil, db).await?;
        // Six statements worth planning, each with a candidate index.
        for column in ["customer_id", "amount"] {
            for op in ["=", ">", "<"] {
                let sql = format!("SELECT status FROM orders WHERE {column} {op} $1");
                for _ in 0..3 {
                    client.query(&sql, &[&1i32]).await?;
                }
                fingerprint_of(&vigil, &format!("{column} {op} $1"), 3).await?;
            }
        }
        refresh(&vigil).await?;
        refresh(&vigil).await?;
        let taken = metric(&vigil, "pgvigil_advisor_plans_total{result=\"taken\"}").await?;
        let failed = metric(&vigil, "pgvigil_advisor_plans_total{result=\"failed\"}").await?;
        let hypothetical = metric(&vigil, "pgvigil_advisor_hypothetical_plans_total").await?;
        let limited = metric(&vigil, "pgvigil_advisor_plans_total{result=\"rate_limited\"}").await?;
        ensure!(
            taken + failed + hypothetical <= 3.0,
            "{taken} plans + {failed} failed + {hypothetical} hypothetical in under a minute with plans_per_minute = 3"
        );
        ensure!(taken >= 1.0, "nothing planned at all");
        ensure!(limited >= 1.0, "the limit was never reached: {limited}");
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_stuck_behind_a_lock_never_holds_up_clients_nor_logs_statement_text() -> Result<()>
{
    let orders = orders_database(false)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let cluster = shared_cluster();
        cluster.psql_admin(
            db,
            "CREATE TABLE parked (secret_col int); ALTER TABLE parked OWNER TO app;",
        )?;
        let vigil = start(db, "plans_per_minute = 100\nstatement_timeout_ms = 4000").await?;
        let client = app(&vigil, db).await?;
        for _ in 0..5 {
            client
                .query(
                    "SELECT secret_col FROM parked WHERE secret_col = $1",
                    &[&1i32],
                )
                .await?;
        }
        fingerprint_of(&vigil, "parked", 5).await?;

        // Someone holds an exclusive lock: the advisor's EXPLAIN of the
        // parked statement waits for it until its statement_timeout.
        let locker = cluster.connect_direct_db(db).await?;
        locker
            .batch_execute("BEGIN; LOCK TABLE parked IN ACCESS EXCLUSIVE MODE")
            .await?;
        let vigil = Arc::new(vigil);
        let started = Instant::now();
        let refreshing = tokio::spawn({
            let vigil = vigil.clone();
            async move { vigil.api_request("POST", "/api/advice/refresh").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut slowest = Duration::ZERO;
        let mut done = 0;
        while started.elapsed() < Duration::from_millis(2500) {
            let t = Instant::now();
            client
                .query("SELECT count(*) FROM orders WHERE id < $1", &[&100i64])
                .await?;
            slowest = slowest.max(t.elapsed());
            done += 1;
        }
        ensure!(
            !refreshing.is_finished(),
            "the refresh ended before the lock was released: the test measured nothing"
        );
        ensure!(
            done >= 10,
            "only {done} queries completed during the refresh"
        );
        ensure!(
            slowest < Duration::from_millis(1000),
            "a client query took {slowest:?} while the advisor waited"
        );
        let reply = refreshing.await??;
        ensure!(
            reply.status == 200,
            "refresh: {} {}",
            reply.status,
            reply.body
        );
        locker.batch_execute("ROLLBACK").await?;
        let failed = metric(&vigil, "pgvigil_advisor_plans_total{result=\"failed\"}").await?;
        ensure!(failed >= 1.0, "the timed-out EXPLAIN was not counted");
        let log = vigil.stderr();
        ensure!(
            log.contains("EXPLAIN failed") && !log.contains("secret_col"),
            "the log must name the failure by fingerprint, never the statement:\n{log}"
        );
        vigil.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisor_runs_on_its_interval_and_enabled_false_starts_nothing() -> Result<()> {
    let orders = orders_database(false)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let vigil = start(db, "interval_s = 1").await?;
        let client = app(&vigil, db).await?;
        orders_workload(&vigil, &client, 5).await?;
        // No refresh: the interval's run finds it.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = vigil.api_get("/api/advice").await?;
            if body["advice"].as_array().is_some_and(|a| a.len() == 1) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "no advice after 15 s with interval_s = 1: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(client);
        drop(vigil);

        let off = start(db, "enabled = false").await?;
        let client = app(&off, db).await?;
        orders_workload(&off, &client, 5).await?;
        for (method, path) in [("GET", "/api/advice"), ("POST", "/api/advice/refresh")] {
            let reply = off.api_request(method, path).await?;
            ensure!(
                reply.status == 404 && reply.body.contains("enabled = false"),
                "{method} {path} with the advisor off: {} {}",
                reply.status,
                reply.body
            );
        }
        let metrics = off.http_get("/metrics", &[]).await?.body;
        ensure!(
            !metrics.contains("pgvigil_advice"),
            "advice metrics with the advisor off"
        );
        // The first pgvigil's advisor connection may take a moment to go.
        let cluster = shared_cluster();
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'pgvigil-advisor' AND datname = '{db}'"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let advisors = cluster.psql_admin("postgres", &sql)?;
            if advisors.trim() == "0" {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{advisors} advisor connections with the advisor off"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        off.assert_no_panic()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_extension_true_creates_hypopg_where_it_is_available() -> Result<()> {
    let orders = orders_database(false)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let vigil = start(db, "create_extension = true").await?;
        let client = app(&vigil, db).await?;
        orders_workload(&vigil, &client, 5).await?;
        let advice = refresh(&vigil).await?;
        let a = only_advice(&advice)?;
        ensure!(a["method"] == "hypopg", "{a}");
        let installed = shared_cluster().psql_admin(
            db,
            "SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'",
        )?;
        ensure!(installed.trim() == "1", "hypopg not created: {installed}");
        vigil.assert_no_panic()
    })
    .await
}

/// With `capture_parameters`, a statement that matters (here: slower than
/// `plan_p95_ms`) keeps one real sample of its values, in memory, and its
/// plan is taken with them (`explain_analyze`: the statement really runs,
/// rolled back). The sample comes from a simple-protocol text with an
/// inline literal, so the literal becomes the bound value of `$1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_parameter_sample_plans_with_real_values() -> Result<()> {
    let orders = orders_database(false)?;
    let db = &orders.name;
    timed(LIMIT, async {
        let vigil = start(
            db,
            "capture_parameters = true\nexplain_analyze = true\nplan_p95_ms = 1\n",
        )
        .await?;
        let client = app(&vigil, db).await?;
        for id in [77, 78, 79] {
            client
                .simple_query(&format!(
                    "SELECT id, amount FROM orders WHERE customer_id = {id}"
                ))
                .await?;
        }
        let fp = fingerprint_of(&vigil, "FROM orders WHERE customer_id", 3).await?;
        refresh(&vigil).await?;
        let plan = vigil.api_get(&format!("/api/queries/{fp}/plan")).await?;
        ensure!(
            plan["generic"] == false && plan["analyze"] == true,
            "expected a plan with the sample's values, analyzed: {plan}"
        );
        // Actual rows come from a real run with a real customer id (10 of
        // 300k rows each), not from a NULL parameter.
        let actual = plan["plan"][0]["Plan"]["Actual Rows"]
            .as_f64()
            .context("Actual Rows")?;
        ensure!(actual == 10.0, "actual rows {actual}: {plan}");
        // The sample's value never leaves the process.
        let body = plan.to_string();
        ensure!(
            !body.contains("= 77") && !body.contains("'77'"),
            "the sample's value is in the API: {body}"
        );
        vigil.assert_no_panic()
    })
    .await
}
