//! Protocol version negotiation: a client asking for 3.2 (libpq 18 with
//! `max_protocol_version=3.2`) or sending `_pq_.` options is told, with
//! NegotiateProtocolVersion, that it gets 3.0 without them, and goes on.

use std::time::Duration;

use anyhow::{ensure, Result};
use pgvigil_integration::raw::{Message, RawConn};
use pgvigil_integration::{shared_cluster, timed, Pgvigil, PoolMode};

const LIMIT: Duration = Duration::from_secs(60);

/// NegotiateProtocolVersion as PostgreSQL sends it: the whole version code
/// of 3.0, then the unrecognised options.
fn negotiate_3_0(options: &[&str]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    body.extend_from_slice(&(options.len() as i32).to_be_bytes());
    for o in options {
        body.extend_from_slice(o.as_bytes());
        body.push(0);
    }
    body
}

/// Asks `port` for 3.2 with an option as `user` (let in without a
/// password); returns the first two messages.
async fn ask_for_3_2(port: u16, user: &str) -> Result<(Message, Message)> {
    let mut conn = RawConn::connect(port).await?;
    conn.send_startup_version(
        (3 << 16) | 2,
        &[
            ("user", user),
            ("database", "appdb"),
            ("_pq_.pgvigil_test", "on"),
        ],
    )
    .await?;
    Ok((conn.read_message().await?, conn.read_message().await?))
}

/// Pins the reply pgvigil must copy to what PostgreSQL itself sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_negotiates_3_2_down_to_3_0_and_reports_the_option() -> Result<()> {
    timed(LIMIT, async {
        let (first, second) = ask_for_3_2(shared_cluster().port(), "trustuser").await?;
        ensure!(
            first.tag == b'v' && first.body[..] == negotiate_3_0(&["_pq_.pgvigil_test"])[..],
            "PostgreSQL's first reply: tag {:?} body {:?}",
            first.tag as char,
            first.body
        );
        ensure!(second.auth_code() == Some(0), "then trustuser is let in");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvigil_negotiates_3_2_down_to_3_0_like_postgresql() -> Result<()> {
    timed(LIMIT, async {
        let vigil = Pgvigil::builder(shared_cluster())
            .pool_mode(PoolMode::Session)
            .client_auth("trust")
            .spawn()
            .await?;
        let (first, second) = ask_for_3_2(vigil.port(), "app").await?;
        ensure!(
            first.tag == b'v' && first.body[..] == negotiate_3_0(&["_pq_.pgvigil_test"])[..],
            "pgvigil's first reply: tag {:?} body {:?} {:?}",
            first.tag as char,
            first.body,
            first.error_fields()
        );
        ensure!(
            second.auth_code() == Some(0),
            "then the login goes on: {:?}",
            second.error_fields()
        );
        Ok(())
    })
    .await
}
