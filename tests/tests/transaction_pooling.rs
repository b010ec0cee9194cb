//! Session state that must follow a client from server to server in
//! transaction pooling: prepared statements and startup parameters.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures_util::future::try_join_all;
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil, PoolMode};
use tokio_postgres::{Client, SimpleQueryMessage, Statement};

const LIMIT: Duration = Duration::from_secs(90);

/// SQL of the statement the prepared-statement tests reuse.
const DOUBLE_AND_PID: &str = "SELECT $1::int4 * 2, pg_backend_pid()";

/// Executes `stmt` (shaped like [`DOUBLE_AND_PID`]) `rounds` times on `client`,
/// each time inside a transaction while `holder` keeps another server busy in
/// its own transaction. The release order alternates so that, whatever order
/// the pool hands out idle servers in, `client` keeps landing on a server it
/// did not use last time. Also executes once per round outside any
/// transaction. Returns the backend pids `client` saw.
async fn execute_across_servers(
    client: &Client,
    holder: &Client,
    stmt: &Statement,
    rounds: i32,
) -> Result<HashSet<i32>> {
    let mut pids = HashSet::new();
    for i in 0..rounds {
        holder
            .batch_execute("BEGIN; SELECT 1")
            .await
            .context("holder BEGIN")?;
        client
            .batch_execute("BEGIN")
            .await
            .context("client BEGIN")?;
        if i % 2 == 0 {
            holder
                .batch_execute("COMMIT")
                .await
                .context("holder COMMIT")?;
        }
        let row = client
            .query_one(stmt, &[&i])
            .await
            .with_context(|| format!("executing the prepared statement in transaction {i}"))?;
        ensure!(row.get::<_, i32>(0) == i * 2, "round {i}: wrong result");
        pids.insert(row.get::<_, i32>(1));
        client
            .batch_execute("COMMIT")
            .await
            .context("client COMMIT")?;
        if i % 2 == 1 {
            holder
                .batch_execute("COMMIT")
                .await
                .context("holder COMMIT")?;
        }
        let row = client
            .query_one(stmt, &[&(i + 1000)])
            .await
            .with_context(|| {
                format!("executing the prepared statement outside a transaction, round {i}")
            })?;
        ensure!(
            row.get::<_, i32>(0) == (i + 1000) * 2,
            "round {i}: wrong result"
        );
        pids.insert(row.get::<_, i32>(1));
    }
    Ok(pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_server_switches() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let a = vigil.connect_app().await?;
        let b = vigil.connect_app().await?;
        // Both clients name their first statement "s0", with different SQL.
        let a_stmt = a.prepare(DOUBLE_AND_PID).await.context("A prepare")?;
        let b_stmt = b
            .prepare("SELECT $1::text || '-from-b'")
            .await
            .context("B prepare")?;

        let pids = execute_across_servers(&a, &b, &a_stmt, 30).await?;
        ensure!(
            pids.len() >= 2,
            "client A ran on a single backend {pids:?}: no server switch happened, \
             so transaction pooling was not exercised"
        );

        // B's same-named statement still means B's SQL, on any server.
        for i in 0..20 {
            let v = format!("v{i}");
            let (a_params, b_params) = ([&i as _], [&v as _]);
            let (ra, rb) = tokio::try_join!(
                a.query_one(&a_stmt, &a_params),
                b.query_one(&b_stmt, &b_params)
            )
            .context("A and B executing their statements concurrently")?;
            ensure!(ra.get::<_, i32>(0) == i * 2, "A got B's statement?");
            ensure!(
                rb.get::<_, String>(0) == format!("v{i}-from-b"),
                "B got A's statement?"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_statements_and_new_ones_work_across_servers() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let a = vigil.connect_app().await?;
        let holder = vigil.connect_app().await?;
        let first = a.prepare(DOUBLE_AND_PID).await.context("prepare")?;
        execute_across_servers(&a, &holder, &first, 4).await?;
        // Dropping a Statement sends Close.
        drop(first);
        let other = a
            .prepare("SELECT $1::int4 + 1")
            .await
            .context("prepare after Close")?;
        let again = a
            .prepare(DOUBLE_AND_PID)
            .await
            .context("re-prepare the closed statement's SQL")?;
        let pids = execute_across_servers(&a, &holder, &again, 10).await?;
        ensure!(pids.len() >= 2, "no server switch happened: {pids:?}");
        for i in 0..10 {
            let r = a
                .query_one(&other, &[&i])
                .await
                .context("other statement")?;
            ensure!(r.get::<_, i32>(0) == i + 1);
        }
        // Many short-lived statements: prepare, use, close.
        for i in 0..50 {
            let s = a
                .prepare(&format!("SELECT $1::int4 + {i}"))
                .await
                .with_context(|| format!("prepare short-lived statement {i}"))?;
            let r = a
                .query_one(&s, &[&1i32])
                .await
                .context("short-lived statement")?;
            ensure!(r.get::<_, i32>(0) == 1 + i);
        }
        execute_across_servers(&a, &holder, &again, 4).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_and_discard_all_do_not_break_later_statements() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::start(shared_cluster(), PoolMode::Transaction, 2).await?;
        let a = vigil.connect_app().await?;
        let holder = vigil.connect_app().await?;

        let s1 = a.prepare(DOUBLE_AND_PID).await.context("prepare s1")?;
        execute_across_servers(&a, &holder, &s1, 4).await?;

        a.batch_execute("DEALLOCATE ALL")
            .await
            .context("DEALLOCATE ALL")?;
        let s2 = a
            .prepare(DOUBLE_AND_PID)
            .await
            .context("prepare after DEALLOCATE ALL")?;
        execute_across_servers(&a, &holder, &s2, 8)
            .await
            .context("statement prepared after DEALLOCATE ALL")?;

        a.batch_execute("DISCARD ALL")
            .await
            .context("DISCARD ALL")?;
        let s3 = a
            .prepare(DOUBLE_AND_PID)
            .await
            .context("prepare after DISCARD ALL")?;
        execute_across_servers(&a, &holder, &s3, 8)
            .await
            .context("statement prepared after DISCARD ALL")?;

        // SQL-level PREPARE / EXECUTE / DEALLOCATE by name inside one transaction.
        let name = unique_name("sqlplan");
        let msgs = a
            .simple_query(&format!(
                "BEGIN; PREPARE {name} AS SELECT $1::int4 + 1; EXECUTE {name}(41); \
                 DEALLOCATE {name}; COMMIT"
            ))
            .await
            .context("PREPARE/EXECUTE/DEALLOCATE in a transaction")?;
        let values: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        ensure!(values == ["42"], "EXECUTE returned {values:?}");
        // The name is free again on every server.
        for _ in 0..4 {
            a.batch_execute(&format!(
                "BEGIN; PREPARE {name} AS SELECT 1; DEALLOCATE {name}; COMMIT"
            ))
            .await
            .context("re-using the deallocated SQL-level name")?;
        }

        let s4 = a
            .prepare(DOUBLE_AND_PID)
            .await
            .context("prepare after DEALLOCATE name")?;
        execute_across_servers(&a, &holder, &s4, 8).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_hold_in_transaction_mode() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let (schema_x, schema_y) = (unique_name("schema_x"), unique_name("schema_y"));
        for (schema, tag) in [(&schema_x, "x"), (&schema_y, "y")] {
            direct
                .batch_execute(&format!(
                    "CREATE SCHEMA {schema} AUTHORIZATION app;
                     CREATE TABLE {schema}.whoami (v text);
                     INSERT INTO {schema}.whoami VALUES ('{tag}');
                     ALTER TABLE {schema}.whoami OWNER TO app;"
                ))
                .await
                .with_context(|| format!("creating schema {schema}"))?;
        }
        let vigil = Pgvigil::start(cluster, PoolMode::Transaction, 2).await?;

        struct Expect {
            search_path: Option<String>,
            app_name: Option<String>,
            table: Option<&'static str>,
        }
        let mut clients = Vec::new();
        for (schema, app, tag) in [(&schema_x, "app_x", "x"), (&schema_y, "app_y", "y")] {
            let mut cfg = vigil.app_config();
            cfg.application_name(app)
                .options(format!("-c search_path={schema}"));
            let client = pgvigil_integration::vigil::connect_config(&cfg)
                .await
                .with_context(|| format!("connecting with application_name={app}"))?;
            clients.push((
                client,
                Expect {
                    search_path: Some(schema.clone()),
                    app_name: Some(app.to_string()),
                    table: Some(tag),
                },
            ));
        }
        // A client with no startup parameters: server defaults, nobody else's values.
        clients.push((
            vigil.connect_app().await?,
            Expect {
                search_path: Some("\"$user\", public".to_string()),
                app_name: None,
                table: None,
            },
        ));

        let runs = clients.iter().enumerate().map(|(n, (client, expect))| async move {
            for i in 0..40 {
                let in_tx = i % 3 == 0;
                if in_tx {
                    client.batch_execute("BEGIN").await?;
                }
                let shown = client.simple_query("SHOW search_path").await?;
                let shown = shown.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                });
                let row = client
                    .query_one(
                        "SELECT current_setting('search_path'), current_setting('application_name')",
                        &[],
                    )
                    .await?;
                let (path, app): (String, String) = (row.get(0), row.get(1));
                let context = format!("client {n}, round {i} (in transaction: {in_tx})");
                ensure!(
                    shown.as_ref() == Some(&path),
                    "{context}: SHOW search_path {shown:?} vs current_setting {path:?}"
                );
                if let Some(expected) = &expect.search_path {
                    ensure!(&path == expected, "{context}: search_path {path:?}, expected {expected:?}");
                }
                match &expect.app_name {
                    Some(expected) => ensure!(
                        &app == expected,
                        "{context}: application_name {app:?}, expected {expected:?}"
                    ),
                    None => ensure!(
                        app != "app_x" && app != "app_y",
                        "{context}: got another client's application_name {app:?}"
                    ),
                }
                if let Some(tag) = expect.table {
                    let v: String = client
                        .query_one("SELECT v FROM whoami", &[])
                        .await?
                        .get(0);
                    ensure!(v == tag, "{context}: unqualified table resolved to schema of {v:?}");
                }
                if in_tx {
                    client.batch_execute("COMMIT").await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        });
        try_join_all(runs).await?;
        for schema in [&schema_x, &schema_y] {
            direct
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .context("drop schema")?;
        }
        Ok(())
    })
    .await
}
