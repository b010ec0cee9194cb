//! Transaction mode keeps session semantics (issue 14, cause 6): settings
//! a client SETs follow it from one server connection to the next; state
//! a shared connection cannot carry (temporary tables, session advisory
//! locks, LISTEN, held cursors, SQL PREPARE) pins the client to its
//! connection until the state is gone; no connection reaches another
//! client carrying someone's state.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test session_state`

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::raw::RawConn;
use pgvigil_integration::{shared_cluster, timed, Pgvigil, PoolMode};
use tokio_postgres::{Client, SimpleQueryMessage};

const LIMIT: Duration = Duration::from_secs(90);

async fn transaction_pool(pool_size: u32, extra: &str) -> Result<Pgvigil> {
    let cluster = shared_cluster();
    Pgvigil::builder_with_config(cluster, format!("[pool]\n{extra}\n"))
        .pool_mode(PoolMode::Transaction)
        .pool_size(pool_size)
        .client_auth("trust")
        .spawn()
        .await
}

/// The first column of the first row.
async fn one(client: &Client, sql: &str) -> Result<String> {
    for m in client
        .simple_query(sql)
        .await
        .with_context(|| sql.to_string())?
    {
        if let SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or("NULL").to_string());
        }
    }
    bail!("no row from {sql}")
}

/// (cl_pinned of the pool, pinned reasons of every client) from the API
/// and the console's SHOW CLIENTS.
async fn pinned(vigil: &Pgvigil) -> Result<u64> {
    let pools = vigil.api_get("/api/pools").await?;
    pools["pools"][0]["pinned_clients"]
        .as_u64()
        .context("pinned_clients in /api/pools")
}

async fn wait_pinned(vigil: &Pgvigil, want: u64) -> Result<()> {
    for _ in 0..50 {
        if pinned(vigil).await? == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "pinned clients stayed {} (wanted {want})",
        pinned(vigil).await?
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_a_client_sets_follow_it_and_reach_no_one_else() -> Result<()> {
    timed(LIMIT, async {
        // One server connection: both clients share it, turn by turn.
        let vigil = transaction_pool(1, "").await?;
        let a = vigil.connect_app().await?;
        let b = vigil.connect_app().await?;
        let default_path = one(&b, "SHOW search_path").await?;
        a.simple_query("SET search_path TO pg_catalog, public")
            .await?;
        a.simple_query("SET TIME ZONE 'Asia/Tokyo'").await?;
        ensure!(
            one(&b, "SHOW search_path").await? == default_path,
            "the other client inherited search_path"
        );
        ensure!(
            one(&b, "SHOW TimeZone").await? != "Asia/Tokyo",
            "the other client inherited TimeZone"
        );
        ensure!(
            one(&a, "SHOW search_path").await? == "pg_catalog, public",
            "search_path did not follow its client"
        );
        ensure!(
            one(&a, "SHOW TimeZone").await? == "Asia/Tokyo",
            "TimeZone did not follow its client"
        );
        // SET LOCAL ends with its transaction, as on a direct connection.
        a.batch_execute("BEGIN; SET LOCAL search_path TO public; COMMIT")
            .await?;
        ensure!(one(&a, "SHOW search_path").await? == "pg_catalog, public");
        a.simple_query("RESET search_path").await?;
        ensure!(
            one(&a, "SHOW search_path").await? == default_path,
            "RESET did not hold"
        );
        a.simple_query("RESET ALL").await?;
        ensure!(
            one(&a, "SHOW TimeZone").await? != "Asia/Tokyo",
            "RESET ALL did not hold"
        );
        // set_config(..., false) from a SELECT is a session-level SET too.
        a.simple_query("SELECT set_config('search_path', 'pg_catalog', false)")
            .await?;
        ensure!(
            one(&b, "SHOW search_path").await? == default_path,
            "the other client inherited set_config's search_path"
        );
        ensure!(one(&a, "SHOW search_path").await? == "pg_catalog");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_and_advisory_locks_pin_until_released() -> Result<()> {
    timed(LIMIT, async {
        let vigil = transaction_pool(2, "").await?;
        let a = vigil.connect_app().await?;
        let b = vigil.connect_app().await?;
        a.simple_query("CREATE TEMP TABLE pinned_t (x int)").await?;
        wait_pinned(&vigil, 1).await?;
        // Later transactions of the same client see its table.
        a.simple_query("INSERT INTO pinned_t VALUES (1)").await?;
        ensure!(one(&a, "SELECT count(*) FROM pinned_t").await? == "1");
        ensure!(
            one(
                &b,
                "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
            )
            .await?
                == "0",
            "another client sees the temporary table"
        );
        let console = vigil.connect("admin", "secret", "pgvigil").await;
        if let Ok(console) = console {
            let rows = console.simple_query("SHOW CLIENTS").await?;
            let reasons: Vec<String> = rows
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get("pinned").map(str::to_string),
                    _ => None,
                })
                .collect();
            ensure!(
                reasons.iter().any(|r| r == "temporary tables"),
                "SHOW CLIENTS pinned: {reasons:?}"
            );
        }
        a.simple_query("DROP TABLE pinned_t").await?;
        wait_pinned(&vigil, 0).await?;

        a.simple_query("SELECT pg_advisory_lock(4242)").await?;
        wait_pinned(&vigil, 1).await?;
        // The lock is held by the client's own backend across transactions.
        ensure!(one(&a, "SELECT pg_advisory_unlock(4242)::text").await? == "true");
        wait_pinned(&vigil, 0).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_works_in_transaction_mode_and_notifications_arrive() -> Result<()> {
    timed(LIMIT, async {
        let vigil = transaction_pool(2, "").await?;
        let mut listener = RawConn::startup_trust(vigil.port(), "app", "appdb").await?;
        listener.send_query("LISTEN session_state_jobs").await?;
        listener.read_until_ready().await?;
        wait_pinned(&vigil, 1).await?;
        let other = vigil.connect_app().await?;
        other
            .simple_query("NOTIFY session_state_jobs, 'hello'")
            .await?;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let m = listener.read_message().await?;
                if m.tag == b'A' {
                    return anyhow::Ok(m);
                }
            }
        })
        .await
        .context("no NotificationResponse within 10 s")??;
        ensure!(
            got.body.windows(5).any(|w| w == b"hello"),
            "notification without its payload"
        );
        listener.send_query("UNLISTEN *").await?;
        listener.read_until_ready().await?;
        wait_pinned(&vigil, 0).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_pinned_clients_the_client_gets_53300_and_its_state_is_shared_with_no_one(
) -> Result<()> {
    timed(LIMIT, async {
        let vigil = transaction_pool(2, "max_pinned_clients = 1").await?;
        let a = vigil.connect_app().await?;
        let b = vigil.connect_app().await?;
        a.simple_query("CREATE TEMP TABLE first_pin (x int)")
            .await?;
        wait_pinned(&vigil, 1).await?;
        // The statement itself succeeds on the server; keeping its state
        // is what is refused, and the session ends with the reason.
        let _ = b.simple_query("CREATE TEMP TABLE second_pin (x int)").await;
        let err = b
            .simple_query("SELECT 1")
            .await
            .err()
            .context("the refused client went on")?;
        let text = format!("{err:?}");
        ensure!(
            text.contains("max_pinned_clients") || b.is_closed(),
            "unexpected: {text}"
        );
        let c = vigil.connect_app().await?;
        ensure!(
            one(
                &c,
                "SELECT count(*) FROM pg_class WHERE relname = 'second_pin'"
            )
            .await?
                == "0",
            "the refused client's temporary table reached another client"
        );
        ensure!(one(&a, "SELECT count(*) FROM first_pin").await? == "0");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_client_leaving_leaves_nothing_for_the_next() -> Result<()> {
    timed(LIMIT, async {
        let vigil = transaction_pool(1, "").await?;
        let a = vigil.connect_app().await?;
        a.simple_query("CREATE TEMP TABLE leaving_t (x int)")
            .await?;
        a.simple_query("SELECT pg_advisory_lock(777)").await?;
        wait_pinned(&vigil, 1).await?;
        drop(a);
        wait_pinned(&vigil, 0).await?;
        let b = vigil.connect_app().await?;
        ensure!(
            one(
                &b,
                "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
            )
            .await?
                == "0",
            "the next client inherited a temporary table"
        );
        ensure!(
            one(
                &b,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            )
            .await?
                == "0",
            "an advisory lock outlived its client"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_session_state_false_refuses_listen_and_never_shares_state() -> Result<()> {
    timed(LIMIT, async {
        let vigil = transaction_pool(1, "pin_session_state = false").await?;
        let a = vigil.connect_app().await?;
        let err = a
            .simple_query("LISTEN refused")
            .await
            .err()
            .context("LISTEN was accepted with pin_session_state = false")?;
        ensure!(
            err.code().map(|c| c.code()) == Some("0A000"),
            "LISTEN refused with {err:?}"
        );
        a.simple_query("CREATE TEMP TABLE not_kept (x int)").await?;
        ensure!(pinned(&vigil).await? == 0, "a client was pinned");
        let b = vigil.connect_app().await?;
        ensure!(
            one(
                &b,
                "SELECT count(*) FROM pg_class WHERE relname = 'not_kept'"
            )
            .await?
                == "0",
            "the temporary table reached another client"
        );
        Ok(())
    })
    .await
}
