//! Database health and index hygiene against a real PostgreSQL, through
//! the real binary: the sampler's findings on `GET /api/health`, the
//! console's SHOW HEALTH (psql) and `/metrics`, for workloads whose right
//! answer is known (80% of a table's rows deleted with autovacuum off, a
//! lock one session holds and another waits for, an index never used, a
//! duplicate, an invalid index, a foreign key without an index).
//!
//! Each test has a database of its own in the shared cluster, so what the
//! sampler sees there is only the test's doing, and samples every 0.3 s.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test health`

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::tokio_postgres::Client;
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil, PoolMode};

const LIMIT: Duration = Duration::from_secs(90);
/// Several sample periods, and PostgreSQL's statistics flush (up to a
/// second after a transaction ends).
const SETTLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);
const ADMIN: &str = "admin";

/// A literal the workload sends that must never come back out of any
/// health surface (pg_stat_activity.query carries it).
const LITERAL: &str = "do-not-leak-4f1c";

/// A database of its own (owned by `app`), dropped when the test ends.
struct OwnDb {
    name: String,
}

impl OwnDb {
    async fn create(prefix: &str) -> Result<OwnDb> {
        let name = unique_name(prefix);
        let direct = shared_cluster().connect_direct().await?;
        direct
            .batch_execute(&format!("CREATE DATABASE {name} OWNER app"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(OwnDb { name })
    }

    async fn drop_now(self) -> Result<()> {
        let direct = shared_cluster().connect_direct().await?;
        direct
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .context("dropping the test database")
    }
}

/// pgvigil in front of `db` (session pooling, trust, console user
/// `admin`), sampling health every 0.3 s, indexes unused from the first
/// sample on, transactions long after 1 s.
async fn start(db: &OwnDb) -> Result<Pgvigil> {
    start_with(db, 0.3, 5).await
}

async fn start_with(db: &OwnDb, interval_s: f64, pool_size: u32) -> Result<Pgvigil> {
    let cluster = shared_cluster();
    Pgvigil::builder(cluster)
        .config_file(format!(
            "[advisor]\n\
             health_interval_s = {interval_s}\n\
             unused_index_min_age_s = 0\n\
             long_transaction_s = 1\n"
        ))
        .upstream(cluster.url(&db.name))
        .pool_mode(PoolMode::Session)
        .pool_size(pool_size)
        .client_auth("trust")
        .arg("--admin-users")
        .arg(ADMIN)
        .spawn()
        .await
}

async fn connect(vigil: &Pgvigil, db: &OwnDb) -> Result<Client> {
    vigil.connect("app", "secret", &db.name).await
}

async fn backend_pid(client: &Client) -> Result<i64> {
    let row = client.query_one("SELECT pg_backend_pid()", &[]).await?;
    Ok(i64::from(row.get::<_, i32>(0)))
}

/// Polls `GET /api/health` until `ready` holds for the body, or fails
/// with `what` and the last body after `SETTLE`.
async fn health_until(
    vigil: &Pgvigil,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let reply = vigil.api_request("GET", "/api/health").await?;
        let body = if reply.status == 200 {
            Some(reply.json()?)
        } else {
            None
        };
        if let Some(body) = &body {
            if ready(body) {
                return Ok(body.clone());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: not on /api/health within {SETTLE:?}; last answer {} {}",
                reply.status,
                reply.body
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn array<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn table<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    array(body, "tables")
        .iter()
        .find(|t| t["table"].as_str() == Some(name))
}

fn hygiene<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    array(body, "hygiene")
        .iter()
        .filter(|a| a["kind"].as_str() == Some(kind))
        .collect()
}

fn ddls(advice: &[&Value]) -> Vec<String> {
    advice
        .iter()
        .filter_map(|a| a["ddl"].as_str().map(str::to_string))
        .collect()
}

/// SHOW HEALTH on the console through psql: `database|check|subject|value|detail` lines.
async fn show_health(vigil: &Pgvigil) -> Result<String> {
    let out = vigil
        .psql(ADMIN, "", "pgvigil", &["-F", "|", "-c", "SHOW HEALTH"])
        .await?;
    ensure!(
        out.status.success(),
        "psql SHOW HEALTH failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the one `/metrics` line that starts with `series` (name and labels).
async fn metric(vigil: &Pgvigil, series: &str) -> Result<Option<f64>> {
    let reply = vigil.http_get("/metrics", &[]).await?;
    ensure!(reply.status == 200, "GET /metrics: {}", reply.status);
    Ok(reply.body.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.trim().parse::<f64>().ok()
    }))
}

/// A table with 80% of its rows deleted and autovacuum off shows its dead
/// tuples and bloat; a session holding a lock shows as the blocker of the
/// one waiting for it, and as a long transaction idle in transaction;
/// none of it carries the statements' text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tuples_lock_waits_and_long_transactions_show_in_health() -> Result<()> {
    timed(LIMIT, async {
        let db = OwnDb::create("health_dead").await?;
        let vigil = start(&db).await?;
        let app = connect(&vigil, &db).await?;
        app.batch_execute(
            "CREATE TABLE bloated (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)",
        )
        .await?;
        app.batch_execute(&format!(
            "INSERT INTO bloated SELECT g, '{LITERAL}' FROM generate_series(1, 1000) g"
        ))
        .await?;
        app.batch_execute("DELETE FROM bloated WHERE id > 200")
            .await?;
        // Statistics reach the shared view when the session next idles.
        app.batch_execute("SELECT pg_stat_force_next_flush()")
            .await?;

        let body = health_until(&vigil, "800 dead tuples in `bloated`", |b| {
            table(b, "bloated").is_some_and(|t| t["dead_tuples"] == 800)
        })
        .await?;
        let t = table(&body, "bloated").context("bloated")?;
        ensure!(t["live_tuples"] == 200, "live tuples: {t}");
        ensure!(t["bloat_ratio"].as_f64() == Some(0.8), "bloat ratio: {t}");
        ensure!(t["last_autovacuum"].is_null(), "autovacuum is off: {t}");
        ensure!(t["autovacuum_enabled"] == false, "{t}");
        ensure!(
            body["database"].as_str() == Some(db.name.as_str()),
            "{body}"
        );
        ensure!(body["sampled_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')));
        ensure!(body["database_size_bytes"].as_u64().is_some_and(|n| n > 0));
        ensure!(body["databases"][&db.name]["tables"].is_array(), "{body}");
        ensure!(
            body["errors"].as_array().is_some_and(Vec::is_empty),
            "sample errors: {body}"
        );

        // The holder takes a row lock and stays idle in its transaction;
        // the waiter's UPDATE of the same row blocks behind it.
        let holder = connect(&vigil, &db).await?;
        let waiter = connect(&vigil, &db).await?;
        let holder_pid = backend_pid(&holder).await?;
        let waiter_pid = backend_pid(&waiter).await?;
        holder
            .batch_execute(&format!(
                "BEGIN; UPDATE bloated SET v = '{LITERAL}' WHERE id = 1"
            ))
            .await?;
        let blocked = tokio::spawn(async move {
            waiter
                .batch_execute(&format!(
                    "UPDATE bloated SET v = '{LITERAL}-2' WHERE id = 1"
                ))
                .await
        });

        let body = health_until(&vigil, "the waiter blocked by the holder", |b| {
            array(b, "blocked").iter().any(|s| {
                s["pid"] == waiter_pid
                    && s["blocked_by"]
                        .as_array()
                        .is_some_and(|by| by.iter().any(|p| *p == holder_pid))
            })
        })
        .await?;
        let waiting = array(&body, "blocked")
            .iter()
            .find(|s| s["pid"] == waiter_pid)
            .context("waiter")?;
        ensure!(waiting["wait_event_type"] == "Lock", "{waiting}");
        ensure!(waiting["user"] == "app", "{waiting}");

        let body = health_until(&vigil, "the holder as a long transaction", |b| {
            array(b, "long_transactions")
                .iter()
                .any(|s| s["pid"] == holder_pid && s["state"] == "idle in transaction")
        })
        .await?;
        ensure!(
            body["connections"]["idle in transaction"].as_u64() >= Some(1),
            "connections by state: {}",
            body["connections"]
        );
        ensure!(
            body["connections"]["active"].as_u64() >= Some(1),
            "the waiter is active: {}",
            body["connections"]
        );
        let text = body.to_string();
        ensure!(
            !text.contains(LITERAL) && !text.contains("\"query\""),
            "statement text in /api/health: {text}"
        );

        // The same findings on the console and on /metrics.
        let shown = show_health(&vigil).await?;
        ensure!(
            shown.lines().any(
                |l| l.starts_with(&format!("{}|blocked|{waiter_pid}|", db.name))
                    && l.contains(&format!("blocked_by={holder_pid}"))
            ),
            "SHOW HEALTH:\n{shown}"
        );
        ensure!(
            shown.lines().any(|l| {
                let f: Vec<&str> = l.split('|').collect();
                f.len() == 5
                    && f[..3] == [db.name.as_str(), "dead_tuples", "bloated"]
                    && f[3].parse::<f64>().ok() == Some(800.0)
            }),
            "SHOW HEALTH:\n{shown}"
        );
        ensure!(!shown.contains(LITERAL), "SHOW HEALTH:\n{shown}");
        let name = &db.name;
        ensure!(
            metric(
                &vigil,
                &format!("pgvigil_db_dead_tuples{{database=\"{name}\",table=\"bloated\"}}")
            )
            .await?
                == Some(800.0)
        );
        ensure!(
            metric(
                &vigil,
                &format!("pgvigil_db_blocked_sessions{{database=\"{name}\"}}")
            )
            .await?
                >= Some(1.0)
        );
        ensure!(
            metric(
                &vigil,
                &format!("pgvigil_db_long_transactions{{database=\"{name}\"}}")
            )
            .await?
                >= Some(1.0)
        );
        ensure!(metric(
            &vigil,
            &format!("pgvigil_db_cache_hit_ratio{{database=\"{name}\"}}")
        )
        .await?
        .is_some_and(|r| (0.0..=1.0).contains(&r)));
        ensure!(metric(
            &vigil,
            &format!("pgvigil_db_size_bytes{{database=\"{name}\"}}")
        )
        .await?
        .is_some_and(|n| n > 0.0));

        holder.batch_execute("ROLLBACK").await?;
        blocked.await.context("waiter task")??;
        health_until(&vigil, "no blocked session after the holder ended", |b| {
            array(b, "blocked").is_empty()
        })
        .await?;
        vigil.assert_no_panic()?;
        drop((app, holder, vigil));
        db.drop_now().await
    })
    .await
}

/// A never-scanned index is reported unused, the younger of two identical
/// indexes a duplicate, a failed CREATE UNIQUE INDEX CONCURRENTLY invalid,
/// a foreign key without an index gets a ready CREATE INDEX; primary keys
/// never are reported. Running the recommended DDL through pgvigil makes
/// its advice go away. Sampling never shows in the pool statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_hygiene_reports_unused_duplicate_invalid_and_unindexed_foreign_keys() -> Result<()> {
    timed(LIMIT, async {
        let db = OwnDb::create("health_idx").await?;
        let vigil = start(&db).await?;

        // Samples are taken with no client at all: pgvigil's own
        // connection is not a pool's.
        health_until(&vigil, "a first sample", |b| b["sampled_at"].is_string()).await?;
        let pools = vigil.api_get("/api/pools").await?;
        for p in array(&pools, "pools") {
            ensure!(
                p["active"] == 0 && p["idle"] == 0,
                "the sampler shows in pool statistics: {p}"
            );
        }

        let app = connect(&vigil, &db).await?;
        app.batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY);
             CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers,
                                  note text, code int);
             INSERT INTO orders SELECT g, NULL, 'n', g % 10 FROM generate_series(1, 100) g;
             CREATE INDEX orders_code_idx ON orders (code);
             CREATE INDEX orders_note_idx ON orders (note);
             CREATE INDEX orders_note_copy_idx ON orders (note);",
        )
        .await?;
        // code has duplicates, so the unique build fails and leaves an
        // invalid index behind.
        let failed = app
            .simple_query("CREATE UNIQUE INDEX CONCURRENTLY orders_code_key ON orders (code)")
            .await;
        ensure!(failed.is_err(), "the unique index on duplicates was built");

        let body = health_until(&vigil, "the four kinds of hygiene advice", |b| {
            [
                "unused_index",
                "duplicate_index",
                "invalid_index",
                "fk_without_index",
            ]
            .iter()
            .all(|k| !hygiene(b, k).is_empty())
        })
        .await?;
        let unused = ddls(&hygiene(&body, "unused_index"));
        ensure!(
            unused.contains(&"DROP INDEX CONCURRENTLY public.orders_code_idx".to_string())
                && unused.contains(&"DROP INDEX CONCURRENTLY public.orders_note_idx".to_string()),
            "unused: {unused:?}"
        );
        ensure!(
            ddls(&hygiene(&body, "duplicate_index"))
                == ["DROP INDEX CONCURRENTLY public.orders_note_copy_idx"],
            "duplicates: {:?}",
            hygiene(&body, "duplicate_index")
        );
        ensure!(
            ddls(&hygiene(&body, "invalid_index"))
                == ["DROP INDEX CONCURRENTLY public.orders_code_key"],
            "invalid: {:?}",
            hygiene(&body, "invalid_index")
        );
        let fk = hygiene(&body, "fk_without_index");
        ensure!(
            ddls(&fk) == ["CREATE INDEX CONCURRENTLY ON public.orders (customer_id)"],
            "fk: {fk:?}"
        );
        ensure!(fk[0]["table"] == "orders" && fk[0]["columns"][0] == "customer_id");
        ensure!(fk[0]["method"] == "heuristic" && fk[0]["reason"].is_string());
        let all = body["hygiene"].to_string();
        ensure!(!all.contains("_pkey"), "a primary key was reported: {all}");

        let shown = show_health(&vigil).await?;
        ensure!(
            shown.lines().any(|l| l
                == format!(
                    "{}|invalid_index|orders||DROP INDEX CONCURRENTLY public.orders_code_key",
                    db.name
                )),
            "SHOW HEALTH:\n{shown}"
        );

        // The advice's own DDL, run through pgvigil, ends it.
        app.simple_query(&ddls(&fk)[0]).await?;
        app.simple_query("DROP INDEX CONCURRENTLY public.orders_code_key")
            .await?;
        let body = health_until(&vigil, "no fk and no invalid advice after the DDL", |b| {
            b["hygiene"].is_array()
                && hygiene(b, "fk_without_index").is_empty()
                && hygiene(b, "invalid_index").is_empty()
        })
        .await?;
        // The new index is never scanned either: reported, as unused.
        ensure!(
            hygiene(&body, "unused_index")
                .iter()
                .any(|a| a["columns"][0] == "customer_id"),
            "{}",
            body["hygiene"]
        );
        vigil.assert_no_panic()?;
        drop((app, vigil));
        db.drop_now().await
    })
    .await
}

/// `sampled_at` of the latest sample, None before the first.
async fn sampled_at(vigil: &Pgvigil) -> Result<Option<String>> {
    let reply = vigil.api_request("GET", "/api/health").await?;
    if reply.status == 503 {
        return Ok(None);
    }
    ensure!(
        reply.status == 200,
        "GET /api/health: {} {}",
        reply.status,
        reply.body
    );
    Ok(reply.json()?["sampled_at"].as_str().map(str::to_string))
}

/// The sampler opens no connection while every server of the database's
/// pool is taken (it would compete with the clients for PostgreSQL's
/// slots) until the pool has been free for a second or one interval has
/// passed; nor while the database is paused from the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_keeps_out_of_the_way_of_a_full_pool_and_of_a_paused_database() -> Result<()> {
    timed(LIMIT, async {
        let db = OwnDb::create("health_quiet").await?;
        // One server, and an interval long enough not to end during the test.
        let vigil = start_with(&db, 60.0, 1).await?;
        let holder = connect(&vigil, &db).await?;
        holder.batch_execute("SELECT 1").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            sampled_at(&vigil).await?.is_none(),
            "sampled while the only server was taken"
        );
        drop(holder);
        health_until(&vigil, "a sample once the pool is free", |b| {
            b["sampled_at"].is_string()
        })
        .await?;
        drop(vigil);

        let vigil = start(&db).await?;
        let first = health_until(&vigil, "a first sample", |b| b["sampled_at"].is_string()).await?
            ["sampled_at"]
            .clone();
        let pause = vigil
            .psql(ADMIN, "", "pgvigil", &["-c", &format!("PAUSE {}", db.name)])
            .await?;
        ensure!(pause.status.success(), "PAUSE: {pause:?}");
        // A sample already under way when PAUSE came may still land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let paused_at = sampled_at(&vigil).await?;
        ensure!(paused_at.is_some(), "the first sample ({first}) is gone");
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            sampled_at(&vigil).await? == paused_at,
            "sampled while paused"
        );
        let resume = vigil
            .psql(
                ADMIN,
                "",
                "pgvigil",
                &["-c", &format!("RESUME {}", db.name)],
            )
            .await?;
        ensure!(resume.status.success(), "RESUME: {resume:?}");
        health_until(&vigil, "a new sample after RESUME", |b| {
            b["sampled_at"].as_str() != paused_at.as_deref()
        })
        .await?;
        vigil.assert_no_panic()?;
        drop(vigil);
        db.drop_now().await
    })
    .await
}

/// A sample that cannot log in is still recorded, with the reason (and no
/// password), and counted on /metrics; clients are not affected by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sample_reports_its_error_and_is_counted() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let missing = unique_name("health_missing");
        let vigil = Pgvigil::builder(cluster)
            .config_file("[advisor]\nhealth_interval_s = 0.3\n")
            .upstream(cluster.url(&missing))
            .client_auth("trust")
            .spawn()
            .await?;
        let body = health_until(&vigil, "the failed sample", |b| {
            array(b, "errors")
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("connect: ")))
        })
        .await?;
        let text = body.to_string();
        ensure!(text.contains("3D000"), "not PostgreSQL's reason: {text}");
        ensure!(
            !text.contains("secret"),
            "a password in /api/health: {text}"
        );
        ensure!(body["cache_hit_ratio"].is_null() && array(&body, "tables").is_empty());
        ensure!(
            metric(
                &vigil,
                &format!("pgvigil_db_health_errors_total{{database=\"{missing}\"}}")
            )
            .await?
            .is_some_and(|n| n >= 1.0),
            "no error counted on /metrics"
        );
        ensure!(!vigil.stderr().contains("secret"), "a password in the log");
        vigil.assert_no_panic()
    })
    .await
}
