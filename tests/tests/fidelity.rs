//! Protocol fidelity: what a client sees through pgvigil is what it sees
//! on a direct connection, down to the details drivers check strictly.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test fidelity`

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::raw::{Message, RawConn};
use pgvigil_integration::{both_modes, shared_cluster, timed, Pgvigil, PoolMode};
use tokio::io::AsyncReadExt;

const LIMIT: Duration = Duration::from_secs(60);

/// Logs in with trust and these startup parameters; returns the
/// ParameterStatus values told, or the FATAL's (SQLSTATE, message).
async fn login(
    port: u16,
    params: &[(&str, &str)],
) -> Result<Result<Vec<(String, String)>, (String, String)>> {
    let mut conn = RawConn::connect(port).await?;
    conn.send_startup(params).await?;
    let first = conn.read_message().await?;
    if first.tag == b'E' {
        return Ok(Err(code_and_message(&first)));
    }
    if first.auth_code() != Some(0) {
        bail!("expected AuthenticationOk, got {:?}", first.tag as char);
    }
    let mut told = Vec::new();
    loop {
        let msg = conn.read_message().await?;
        match msg.tag {
            b'E' => return Ok(Err(code_and_message(&msg))),
            b'S' => told.extend(msg.parameter_status()),
            b'Z' => break,
            _ => {}
        }
    }
    conn.send_terminate().await?;
    told.sort();
    Ok(Ok(told))
}

/// An ErrorResponse's SQLSTATE and message.
fn code_and_message(error: &Message) -> (String, String) {
    let mut f = error.error_fields();
    (
        f.remove(&b'C').unwrap_or_default(),
        f.remove(&b'M').unwrap_or_default(),
    )
}

fn value<'a>(told: &'a [(String, String)], name: &str) -> Option<&'a str> {
    told.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Cause 1 of issue 14: the values a driver is told at login are
/// PostgreSQL's own spellings, not an echo of the startup packet.
async fn startup_settings_are_reported_as_postgresql_spells_them(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::start_trust(cluster, mode, 2).await?;
        let asked = [
            ("client_encoding", "utf-8"),
            ("DateStyle", "iso, dmy"),
            ("TimeZone", "europe/rome"),
            ("IntervalStyle", "SQL_STANDARD"),
            ("application_name", "fidelity"),
        ];
        let with = |user: &'static str| {
            let mut p = vec![("user", user), ("database", "appdb")];
            p.extend_from_slice(&asked);
            p
        };
        let direct = login(cluster.port(), &with("trustuser"))
            .await?
            .map_err(|e| anyhow::anyhow!("direct login failed: {e:?}"))?;
        for (name, expected) in [
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, DMY"),
            ("TimeZone", "Europe/Rome"),
            ("IntervalStyle", "sql_standard"),
        ] {
            if value(&direct, name) != Some(expected) {
                bail!(
                    "test setup: PostgreSQL reports {name} = {:?}",
                    value(&direct, name)
                );
            }
        }
        // Twice: the first login learns the spellings, the second is
        // answered from what the pool learnt.
        for round in 1..=2 {
            let through = login(vigil.port(), &with("app"))
                .await?
                .map_err(|e| anyhow::anyhow!("login through pgvigil failed: {e:?}"))?;
            for (name, _) in asked {
                let (d, v) = (value(&direct, name), value(&through, name));
                if d != v {
                    bail!("login {round}: {name} is {v:?} through pgvigil, {d:?} directly");
                }
            }
        }
        Ok(())
    })
    .await
}

both_modes!(
    startup_settings_are_reported_as_postgresql_spells_them,
    startup_settings_are_reported_as_postgresql_spells_them
);

/// An invalid value at startup fails the login, as PostgreSQL does, with
/// its SQLSTATE and words, and the pool's connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_startup_setting_fails_the_login_as_postgresql_does() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::start_trust(cluster, PoolMode::Transaction, 1).await?;
        let bad = |user: &'static str| {
            vec![
                ("user", user),
                ("database", "appdb"),
                ("DateStyle", "nonsense"),
            ]
        };
        let direct = login(cluster.port(), &bad("trustuser")).await?;
        let through = login(vigil.port(), &bad("app")).await?;
        let Err((code, message)) = &direct else {
            bail!("test setup: PostgreSQL accepted DateStyle=nonsense");
        };
        match &through {
            Err((c, m)) if c == code && m == message => {}
            other => bail!("through pgvigil: {other:?}; directly: {code} {message}"),
        }
        let ok = login(vigil.port(), &[("user", "app"), ("database", "appdb")])
            .await?
            .map_err(|e| anyhow::anyhow!("a valid login after the invalid one failed: {e:?}"))?;
        if value(&ok, "DateStyle") != Some("ISO, MDY") {
            bail!(
                "the next client was told DateStyle {:?}",
                value(&ok, "DateStyle")
            );
        }
        Ok(())
    })
    .await
}

/// A startup packet built by hand: length, version code, parameters.
fn startup_packet(code: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// What a server does with these first bytes: "closed" without a word,
/// the SQLSTATE of the error it sends, or "login" when it goes on to
/// authentication.
async fn reaction(port: u16, bytes: &[u8]) -> Result<String> {
    let mut c = RawConn::connect(port).await?;
    let _ = c.send_bytes(bytes).await;
    // After an SSLRequest, the one-byte answer ('N' here: no TLS) first.
    if bytes.get(4..8) == Some(&[0x04, 0xd2, 0x16, 0x2f][..]) {
        let mut answer = [0u8; 1];
        c.stream_mut().read_exact(&mut answer).await?;
        ensure!(
            answer[0] == b'N',
            "SSLRequest answered {:?}",
            answer[0] as char
        );
    }
    let first = tokio::time::timeout(Duration::from_secs(10), c.read_message())
        .await
        .context("neither a reply nor a close within 10 s")?;
    Ok(match first {
        Err(_) => "closed".to_string(),
        Ok(m) if m.tag == b'E' => m.sqlstate().unwrap_or_default(),
        Ok(m) if m.tag == b'R' => "login".to_string(),
        Ok(m) => format!("message {:?}", m.tag as char),
    })
}

/// Cause 4 of issue 14: bytes that cannot be a startup packet get what
/// PostgreSQL gives them (a silent close for a length no startup packet
/// has, an error for a packet that is one but is malformed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_startup_bytes_meet_what_postgresql_does_with_them() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::start_trust(cluster, PoolMode::Transaction, 1).await?;
        let good = startup_packet(196_608, &[("user", "app"), ("database", "appdb")]);
        // The last value's NUL and the list's terminator cut off.
        let mut unterminated = good.clone();
        unterminated.truncate(good.len() - 2);
        unterminated[3] -= 2;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "an HTTP request",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            ("length 4", vec![0, 0, 0, 4, 0, 3, 0, 0]),
            ("length 7", vec![0, 0, 0, 7, 0, 3, 0, 0]),
            ("length 1 MiB", vec![0, 0x10, 0, 0, 0, 3, 0, 0]),
            (
                "a cancel request of 12 bytes",
                vec![0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1],
            ),
            ("no terminating NUL", unterminated),
            (
                "protocol 9.9",
                startup_packet(0x0009_0009, &[("user", "app")]),
            ),
        ];
        let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let mut cases = cases;
        for (what, after) in [
            (
                "a TLS ClientHello after N",
                &[0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01][..],
            ),
            ("garbage after N", b"\xde\xad\xbe\xef\xde\xad\xbe\xef"),
        ] {
            let mut bytes = ssl_request.to_vec();
            bytes.extend_from_slice(after);
            cases.push((what, bytes));
        }
        let mut differences = Vec::new();
        for (what, bytes) in &cases {
            let direct = reaction(cluster.port(), bytes)
                .await
                .with_context(|| format!("{what}, directly"))?;
            let through = reaction(vigil.port(), bytes)
                .await
                .with_context(|| format!("{what}, through pgvigil"))?;
            if direct != through {
                differences.push(format!("{what}: PostgreSQL {direct}, pgvigil {through}"));
            }
        }
        if !differences.is_empty() {
            bail!("{}", differences.join("; "));
        }
        Ok(())
    })
    .await
}

/// Logs in with trust; returns the connection and the process id of
/// its BackendKeyData.
async fn login_with_pid(port: u16) -> Result<(RawConn, i32)> {
    let mut conn = RawConn::connect(port).await?;
    conn.send_startup(&[("user", "app"), ("database", "appdb")])
        .await?;
    let mut pid = None;
    loop {
        let msg = conn.read_message().await?;
        match msg.tag {
            b'K' => pid = Some(i32::from_be_bytes(msg.body[0..4].try_into()?)),
            b'E' => bail!("login failed: {:?}", msg.error_fields()),
            b'Z' => break,
            _ => {}
        }
    }
    Ok((conn, pid.context("no BackendKeyData")?))
}

/// The first column of each DataRow, and the pids of NotificationResponses.
async fn query(conn: &mut RawConn, sql: &str) -> Result<(Vec<String>, Vec<i32>)> {
    conn.send_query(sql).await?;
    let (mut values, mut notified) = (Vec::new(), Vec::new());
    for msg in conn.read_until_ready().await? {
        match msg.tag {
            b'D' => {
                let len = i32::from_be_bytes(msg.body[2..6].try_into()?) as usize;
                values.push(String::from_utf8_lossy(&msg.body[6..6 + len]).into_owned());
            }
            b'A' => notified.push(i32::from_be_bytes(msg.body[0..4].try_into()?)),
            _ => {}
        }
    }
    Ok((values, notified))
}

/// Cause 5 of issue 14: in session mode a client owns its backend, so it
/// is told that backend's real pid: `pg_backend_pid()`, NOTIFY's pid and
/// `pg_terminate_backend` agree with it. Transaction mode keeps a pid of
/// pgvigil's own, above any real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_clients_are_told_their_backends_real_pid() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let session = Pgvigil::start_trust(cluster, PoolMode::Session, 2).await?;
        let (mut conn, told) = login_with_pid(session.port()).await?;
        let (pids, _) = query(&mut conn, "SELECT pg_backend_pid()::text").await?;
        ensure!(
            pids == [told.to_string()],
            "told pid {told}, pg_backend_pid() says {pids:?}"
        );
        let (_, notified) =
            query(&mut conn, "LISTEN fidelity_pid; NOTIFY fidelity_pid, 'x'").await?;
        ensure!(
            notified == [told],
            "NOTIFY from itself came with pids {notified:?}, told {told}"
        );
        // A second client gets another backend, and another pid.
        let (_, other) = login_with_pid(session.port()).await?;
        ensure!(other != told, "two session clients were told pid {told}");
        // Terminating the told pid ends this client's backend.
        let direct = cluster.connect_direct().await?;
        direct
            .simple_query(&format!("SELECT pg_terminate_backend({told})"))
            .await?;
        match conn
            .read_until_error_or_close(Duration::from_secs(10))
            .await?
        {
            Some(e) => ensure!(
                e.sqlstate().as_deref() == Some("57P01"),
                "after pg_terminate_backend: {:?}",
                e.error_fields()
            ),
            None => bail!("the connection closed without PostgreSQL's 57P01"),
        }

        let transaction = Pgvigil::start_trust(cluster, PoolMode::Transaction, 2).await?;
        let (_, synthetic) = login_with_pid(transaction.port()).await?;
        ensure!(
            synthetic >= 1 << 22,
            "transaction mode told pid {synthetic}, which a real backend could have"
        );
        Ok(())
    })
    .await
}

/// The causes above with a real driver: psycopg 3 against pgvigil in
/// session mode and in transaction mode (`tests/python/fidelity_test.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_sees_what_it_would_see_on_a_direct_connection() -> Result<()> {
    use pgvigil_integration::python::{python3, python_script, require_python_modules, run_python};
    require_python_modules("psycopg", "the Python driver psycopg is not installed").await?;
    let cluster = shared_cluster();
    let session = Pgvigil::builder(cluster)
        .pool_mode(PoolMode::Session)
        .pool_size(4)
        .spawn()
        .await?;
    let transaction = Pgvigil::builder(cluster)
        .pool_mode(PoolMode::Transaction)
        .pool_size(2)
        .spawn()
        .await?;
    let script = python_script("fidelity_test.py");
    let mut cmd = python3();
    cmd.arg(&script)
        .env("PGVIGIL_SESSION_DSN", session.app_url())
        .env("PGVIGIL_TRANSACTION_DSN", transaction.app_url());
    let out = run_python(cmd, &format!("python3 {}", script.display()), LIMIT).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "tests/python/fidelity_test.py failed ({}):\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    println!("{stdout}");
    Ok(())
}
