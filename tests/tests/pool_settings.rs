//! Pool settings and protocol edges that need a pgvigil started with
//! particular flags: min_pool_size, max_overflow, acquire_timeout,
//! server_lifetime, server_idle_timeout, server_check_delay, the session-mode
//! reset, max_packet_size, running out of file descriptors, LATIN1 bytes,
//! FunctionCall and startup `options` in transaction mode.
//!
//! Tests that count backends log pgvigil in to PostgreSQL as a role of their
//! own, so pg_stat_activity shows exactly their pool whatever else runs on
//! the shared cluster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::future::try_join_all;
use pgvigil_integration::raw::{Message, RawConn};
use pgvigil_integration::vigil::connect_config;
use pgvigil_integration::{
    both_modes, shared_cluster, sqlstate, timed, unique_name, wait_until, PgCluster, Pgvigil,
    PoolMode,
};
use tokio_postgres::{Client, SimpleQueryMessage};

const LIMIT: Duration = Duration::from_secs(40);
const ROLE_PASSWORD: &str = "rolepass";

/// Creates a login role of its own for one test's pool; returns its name.
async fn pool_role(direct: &Client) -> Result<String> {
    let role = unique_name("pool_role");
    direct
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{ROLE_PASSWORD}'"
        ))
        .await
        .with_context(|| format!("creating role {role}"))?;
    Ok(role)
}

/// `--upstream` for `role` on `appdb`.
fn role_upstream(cluster: &PgCluster, role: &str) -> String {
    format!(
        "postgres://{role}:{ROLE_PASSWORD}@127.0.0.1:{}/appdb",
        cluster.port()
    )
}

/// Client backends PostgreSQL has for `role`, by pid.
async fn backends_of(direct: &Client, role: &str) -> Result<BTreeSet<i32>> {
    let rows = direct
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE usename = $1 AND backend_type = 'client backend'",
            &[&role],
        )
        .await
        .context("querying pg_stat_activity")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether a backend with this pid still exists.
async fn backend_exists(direct: &Client, pid: i32) -> Result<bool> {
    let row = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .context("querying pg_stat_activity")?;
    Ok(row.get::<_, i64>(0) > 0)
}

/// The first column of the first row of a simple query.
async fn scalar(client: &Client, sql: &str) -> Result<Option<String>> {
    let messages = client
        .simple_query(sql)
        .await
        .with_context(|| format!("running {sql:?}"))?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten())
}

async fn backend_pid(client: &Client) -> Result<i32> {
    scalar(client, "SELECT pg_backend_pid()")
        .await?
        .context("pg_backend_pid() returned no row")?
        .parse()
        .context("parsing pg_backend_pid()")
}

// ---------------------------------------------------------------------------
// Raw protocol helpers.

/// Logs in with trust (`--client-auth trust` on pgvigil, or a trust line in
/// pg_hba), with extra startup parameters; returns the connection and the
/// ParameterStatus values it was told.
async fn raw_login(port: u16, params: &[(&str, &str)]) -> Result<(RawConn, Vec<(String, String)>)> {
    let mut conn = RawConn::connect(port).await?;
    conn.send_startup(params).await?;
    let first = conn.read_message().await?;
    if first.auth_code() != Some(0) {
        bail!(
            "expected AuthenticationOk, got tag {:?} code {:?} {:?}",
            first.tag as char,
            first.auth_code(),
            first.error_fields()
        );
    }
    let status = conn
        .read_until_ready()
        .await?
        .iter()
        .filter_map(Message::parameter_status)
        .collect();
    Ok((conn, status))
}

type RawRow = Vec<Option<Vec<u8>>>;

/// Columns of a DataRow message, as raw bytes.
fn data_row(msg: &Message) -> Result<RawRow> {
    ensure!(msg.tag == b'D', "not a DataRow: {:?}", msg.tag as char);
    let body = &msg.body[..];
    let take = |at: usize, n: usize| -> Result<&[u8]> {
        body.get(at..at + n).context("truncated DataRow")
    };
    let count = i16::from_be_bytes(take(0, 2)?.try_into()?);
    let mut at = 2;
    let mut row = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes(take(at, 4)?.try_into()?);
        at += 4;
        if len < 0 {
            row.push(None);
        } else {
            row.push(Some(take(at, len as usize)?.to_vec()));
            at += len as usize;
        }
    }
    Ok(row)
}

/// Sends a simple Query whose text is arbitrary bytes; returns its rows.
async fn raw_query(conn: &mut RawConn, sql: &[u8]) -> Result<Vec<RawRow>> {
    let mut body = sql.to_vec();
    body.push(0);
    conn.send_message(b'Q', &body).await?;
    conn.read_until_ready()
        .await?
        .iter()
        .filter(|m| m.tag == b'D')
        .map(data_row)
        .collect()
}

// ---------------------------------------------------------------------------
// 1. min_pool_size

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_opens_connections_before_any_client_and_keeps_them_idle() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let role = pool_role(&direct).await?;
        let started = Instant::now();
        let _vigil = Pgvigil::builder(cluster)
            .upstream(role_upstream(cluster, &role))
            .pool_mode(PoolMode::Transaction)
            .pool_size(5)
            .arg("--min-pool-size")
            .arg("3")
            .spawn()
            .await?;
        let opened = wait_until(
            Duration::from_secs(3).saturating_sub(started.elapsed()),
            Duration::from_millis(50),
            || async { Ok(backends_of(&direct, &role).await?.len() >= 3) },
        )
        .await?;
        let seen = backends_of(&direct, &role).await?;
        ensure!(
            opened,
            "{} backends 3 s after start with --min-pool-size 3 and no client: {seen:?}",
            seen.len()
        );
        ensure!(
            seen.len() == 3,
            "min_pool_size 3 opened {} backends: {seen:?}",
            seen.len()
        );
        // Idle, with no client: the same three stay (and no more appear).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let later = backends_of(&direct, &role).await?;
        ensure!(
            later == seen,
            "min_pool_size backends changed while idle: {seen:?} then {later:?}"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 2. max_overflow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_overflow_serves_a_burst_then_closes_the_extra_connections() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let role = pool_role(&direct).await?;
        let vigil = Pgvigil::builder(cluster)
            .upstream(role_upstream(cluster, &role))
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .arg("--max-overflow")
            .arg("3")
            .spawn()
            .await?;
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(vigil.connect(&role, ROLE_PASSWORD, "appdb").await?);
        }
        let sampler_direct = cluster.connect_direct().await?;
        let sampler_role = role.clone();
        let sampler = tokio::spawn(async move {
            let mut most = 0;
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                most = most.max(backends_of(&sampler_direct, &sampler_role).await?.len());
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Ok::<_, anyhow::Error>(most)
        });
        let start = Instant::now();
        try_join_all(clients.iter().map(|c| async move {
            c.batch_execute("BEGIN; SELECT pg_sleep(1); COMMIT")
                .await
                .context("transaction holding pg_sleep(1)")
        }))
        .await?;
        let took = start.elapsed();
        ensure!(
            took < Duration::from_millis(1900),
            "5 concurrent 1 s transactions took {took:?} with pool_size 2 + max_overflow 3: \
             they did not all get a server at once"
        );
        let shrunk = wait_until(
            Duration::from_secs(4),
            Duration::from_millis(50),
            || async { Ok(backends_of(&direct, &role).await?.len() <= 2) },
        )
        .await?;
        let now = backends_of(&direct, &role).await?;
        ensure!(
            shrunk,
            "{} backends 4 s after the burst ended; overflow connections should close: {now:?}",
            now.len()
        );
        let most = sampler.await.context("sampler task")??;
        ensure!(
            most == 5,
            "at most {most} backends seen during the burst, expected 5 (2 + 3 overflow)"
        );
        // The pool still serves after shrinking.
        clients[0]
            .batch_execute("SELECT 1")
            .await
            .context("query after the burst")?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 3. acquire_timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_timeout_fails_the_waiting_client_with_53300_and_spares_the_holder() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--acquire-timeout")
            .arg("0.5")
            .spawn()
            .await?;
        let holder = vigil.connect_app().await?;
        let waiter = vigil.connect_app().await?;
        holder
            .batch_execute("BEGIN; SELECT 1")
            .await
            .context("holder opens a transaction")?;
        let start = Instant::now();
        let result = waiter.simple_query("SELECT 1").await;
        let waited = start.elapsed();
        let err = match result {
            Ok(_) => bail!("the query succeeded while the only server was held in a transaction"),
            Err(e) => e,
        };
        let code = sqlstate(&err).map(str::to_string);
        ensure!(
            matches!(code.as_deref(), Some("53300") | Some("57014")),
            "waiting client got SQLSTATE {code:?}, expected 53300 (or 57014): {err:?}"
        );
        let message = err
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        ensure!(
            message.contains("acquire_timeout"),
            "error message does not mention acquire_timeout: {message:?}"
        );
        ensure!(
            waited >= Duration::from_millis(400) && waited <= Duration::from_millis(1500),
            "acquire_timeout 0.5 s answered after {waited:?}"
        );
        // The holder's transaction is untouched.
        let v = scalar(&holder, "SELECT 41 + 1").await?;
        ensure!(
            v.as_deref() == Some("42"),
            "holder's query inside its transaction returned {v:?}"
        );
        holder
            .batch_execute("COMMIT")
            .await
            .context("holder commits")?;
        // The timed-out wait left no slot behind: a new client gets the server.
        let fresh = vigil.connect_app().await?;
        fresh
            .batch_execute("SELECT 1")
            .await
            .context("a new client after the holder committed")?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 4. server_lifetime

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_recycles_connections_between_transactions_never_inside_one() -> Result<()>
{
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--server-lifetime")
            .arg("1")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        // A transaction that outlives the connection's lifetime keeps it.
        client.batch_execute("BEGIN").await.context("BEGIN")?;
        let first = backend_pid(&client).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let still = backend_pid(&client).await?;
        ensure!(
            first == still,
            "the backend changed inside a transaction: pid {first} then {still}"
        );
        client
            .batch_execute("COMMIT")
            .await
            .context("COMMIT of a transaction that outlived server_lifetime")?;
        // Past its lifetime, the connection is not reused for the next transaction.
        let next = backend_pid(&client).await?;
        ensure!(
            next != first,
            "pid {first} still serving after server_lifetime 1 s (transaction spanned 2 s)"
        );
        // The old backend is closed, not leaked.
        let closed = wait_until(
            Duration::from_secs(3),
            Duration::from_millis(50),
            || async { Ok(!backend_exists(&direct, first).await?) },
        )
        .await?;
        ensure!(closed, "recycled backend {first} still exists 3 s later");
        // An idle connection is recycled too once its lifetime passes.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after_idle = backend_pid(&client).await?;
        ensure!(
            after_idle != next,
            "pid {next} still serving 1.5 s later with server_lifetime 1 s"
        );
        Ok(())
    })
    .await
}

/// `server_lifetime = 0` uses each server connection once, as in
/// PgBouncer: in session mode every new client gets a backend of its own
/// and so a pid no earlier client had, as on a direct connection (what
/// connection-pool libraries that check pids after a reconnect expect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_zero_gives_every_session_a_fresh_backend_and_pid() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Session)
            .pool_size(2)
            .arg("--server-lifetime")
            .arg("0")
            .spawn()
            .await?;
        let mut seen = BTreeSet::new();
        for round in 0..4 {
            let client = vigil.connect_app().await?;
            let told = backend_pid(&client).await?;
            ensure!(
                seen.insert(told),
                "session {round} got pid {told}, which an earlier session had"
            );
            drop(client);
            // Its backend is closed, not pooled.
            let closed = wait_until(
                Duration::from_secs(5),
                Duration::from_millis(50),
                || async { Ok(!backend_exists(&direct, told).await?) },
            )
            .await?;
            ensure!(
                closed,
                "backend {told} still exists after its session ended"
            );
        }
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 5. server_idle_timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_idle_timeout_closes_backends_after_traffic_stops() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let role = pool_role(&direct).await?;
        let vigil = Pgvigil::builder(cluster)
            .upstream(role_upstream(cluster, &role))
            .pool_mode(PoolMode::Transaction)
            .pool_size(5)
            .arg("--server-idle-timeout")
            .arg("1")
            .arg("--min-pool-size")
            .arg("0")
            .spawn()
            .await?;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(vigil.connect(&role, ROLE_PASSWORD, "appdb").await?);
        }
        try_join_all(clients.iter().map(|c| async move {
            c.batch_execute("SELECT pg_sleep(0.3)")
                .await
                .context("concurrent query")
        }))
        .await?;
        let stopped = Instant::now();
        let busy = backends_of(&direct, &role).await?;
        ensure!(
            busy.len() >= 2,
            "expected several backends right after concurrent traffic, saw {busy:?}"
        );
        let gone = wait_until(
            Duration::from_millis(3500),
            Duration::from_millis(50),
            || async { Ok(backends_of(&direct, &role).await?.is_empty()) },
        )
        .await?;
        let left = backends_of(&direct, &role).await?;
        ensure!(
            gone,
            "backends {left:?} still open {:?} after traffic stopped (server_idle_timeout 1 s)",
            stopped.elapsed()
        );
        // The (still connected) clients are served by a fresh connection.
        clients[0]
            .batch_execute("SELECT 1")
            .await
            .context("query after idle connections were closed")?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 6. server_check_delay

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_check_delay_zero_replaces_a_terminated_idle_backend_without_client_error(
) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--server-check-delay")
            .arg("0")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let victim = backend_pid(&client).await?;
        // The connection is back in the pool, idle: kill it under pgvigil.
        let killed: bool = direct
            .query_one("SELECT pg_terminate_backend($1)", &[&victim])
            .await
            .context("pg_terminate_backend")?
            .get(0);
        ensure!(killed, "pg_terminate_backend({victim}) returned false");
        let dead = wait_until(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async { Ok(!backend_exists(&direct, victim).await?) },
        )
        .await?;
        ensure!(
            dead,
            "backend {victim} did not exit after pg_terminate_backend"
        );
        for round in 0..3 {
            let pid = backend_pid(&client)
                .await
                .with_context(|| format!("query {round} after the idle backend was terminated"))?;
            ensure!(pid != victim, "served by the terminated backend {victim}");
        }
        let other = vigil.connect_app().await?;
        other
            .batch_execute("SELECT 1")
            .await
            .context("a new client after the terminated backend")?;
        Ok(())
    })
    .await
}

/// Sends SIGCONT to a stopped backend when dropped, whatever the test's outcome.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

/// A backend that hangs without closing its socket (SIGSTOP) looks alive to
/// a readability probe; only the `SELECT 1` that `server_check_delay = 0`
/// runs at checkout finds it out. Own cluster: a stopped backend would hold
/// up barriers (DROP DATABASE) on the shared one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_check_delay_zero_replaces_a_hung_idle_backend() -> Result<()> {
    timed(LIMIT, async {
        let cluster = PgCluster::new_async().await?;
        let vigil = Pgvigil::builder(&cluster)
            .config_file("[pool]\nserver_connect_timeout = 1.0\n")
            .upstream(cluster.url("appdb"))
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--server-check-delay")
            .arg("0")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let victim = backend_pid(&client).await?;
        // SAFETY: plain syscall.
        let rc = unsafe { libc::kill(victim, libc::SIGSTOP) };
        ensure!(
            rc == 0,
            "SIGSTOP to backend {victim}: {}",
            std::io::Error::last_os_error()
        );
        let _resume = Resume(victim);
        let start = Instant::now();
        let pid = tokio::time::timeout(Duration::from_secs(8), backend_pid(&client))
            .await
            .with_context(|| {
                format!("query still waiting 8 s after its idle backend {victim} hung")
            })?
            .context("query after the idle backend hung")?;
        let took = start.elapsed();
        ensure!(pid != victim, "served by the hung backend {victim}");
        ensure!(
            took < Duration::from_secs(5),
            "replacing the hung backend took {took:?} (server_connect_timeout 1 s)"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 7. Session mode reset

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_reset_clears_settings_temp_tables_and_prepared_statements() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        // What a fresh session shows (the role has no per-role settings).
        let default_work_mem = scalar(&direct, "SHOW work_mem")
            .await?
            .context("SHOW work_mem returned no row")?;
        let vigil = Pgvigil::start(cluster, PoolMode::Session, 1).await?;
        let temp = unique_name("reset_temp");
        let stmt = unique_name("reset_stmt");

        let first = vigil.connect_app().await?;
        let first_pid = backend_pid(&first).await?;
        first
            .batch_execute(&format!(
                "SET work_mem = '77MB';
                 CREATE TEMP TABLE {temp} (v int);
                 INSERT INTO {temp} VALUES (1);
                 PREPARE {stmt} AS SELECT 7;"
            ))
            .await
            .context("first client sets up session state")?;
        let work_mem = scalar(&first, "SHOW work_mem").await?;
        ensure!(
            work_mem.as_deref() == Some("77MB"),
            "SET work_mem did not take: {work_mem:?}"
        );
        let executed = scalar(&first, &format!("EXECUTE {stmt}")).await?;
        ensure!(
            executed.as_deref() == Some("7"),
            "EXECUTE returned {executed:?}"
        );
        drop(first);

        let second = vigil.connect_app().await?;
        let second_pid = backend_pid(&second).await?;
        ensure!(
            second_pid == first_pid,
            "with pool_size 1 the next client should reuse backend {first_pid}, got {second_pid}"
        );
        let work_mem = scalar(&second, "SHOW work_mem").await?;
        ensure!(
            work_mem.as_deref() == Some(default_work_mem.as_str()),
            "next client sees work_mem {work_mem:?}, expected the default {default_work_mem:?}"
        );
        let table = scalar(&second, &format!("SELECT to_regclass('{temp}')::text")).await?;
        ensure!(
            table.is_none(),
            "next client still sees the previous client's temp table: {table:?}"
        );
        let prepared = scalar(
            &second,
            &format!("SELECT count(*) FROM pg_prepared_statements WHERE name = '{stmt}'"),
        )
        .await?;
        ensure!(
            prepared.as_deref() == Some("0"),
            "next client still has the previous client's prepared statement ({prepared:?})"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 8. max_packet_size

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_gets_fatal_error_naming_the_limit_and_closes_only_its_client(
) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Session)
            .pool_size(4)
            .arg("--max-packet-size")
            .arg("100000")
            .spawn()
            .await?;
        let bystander = vigil.connect_app().await?;
        bystander
            .batch_execute("BEGIN; SELECT 1")
            .await
            .context("bystander opens a transaction")?;

        let offender = vigil.connect_app().await?;
        let big = format!("SELECT length('{}')", "x".repeat(200_000));
        let err = match offender.simple_query(&big).await {
            Ok(_) => bail!("a 200 kB query passed with --max-packet-size 100000"),
            Err(e) => e,
        };
        let db = err
            .as_db_error()
            .with_context(|| format!("a 200 kB query should get an ErrorResponse, got {err:?}"))?;
        ensure!(
            db.severity() == "FATAL",
            "severity {:?}, expected FATAL: {db:?}",
            db.severity()
        );
        ensure!(
            matches!(db.code().code(), "08P01" | "54000"),
            "SQLSTATE {}, expected 08P01 or 54000: {db:?}",
            db.code().code()
        );
        let message = db.message().to_lowercase();
        ensure!(
            message.contains("100000")
                || message.contains("limit")
                || message.contains("max_packet_size"),
            "message does not mention the size limit: {:?}",
            db.message()
        );
        let closed = wait_until(
            Duration::from_secs(3),
            Duration::from_millis(20),
            || async { Ok(offender.is_closed()) },
        )
        .await?;
        ensure!(closed, "the offending client's connection stayed open");

        // Everyone else carries on, and a 50 kB query is under the limit.
        let v = scalar(&bystander, "SELECT 2").await?;
        ensure!(v.as_deref() == Some("2"), "bystander got {v:?}");
        bystander
            .batch_execute("COMMIT")
            .await
            .context("bystander commits")?;
        let n = scalar(
            &bystander,
            &format!("SELECT length('{}')", "y".repeat(50_000)),
        )
        .await
        .context("50 kB query")?;
        ensure!(n.as_deref() == Some("50000"), "50 kB query returned {n:?}");
        let fresh = vigil.connect_app().await?;
        fresh
            .batch_execute("SELECT 1")
            .await
            .context("a new client after the oversized message")?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 9. Running out of file descriptors

/// User plus system CPU time of a process, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/<pid>/stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()
        .context("parsing utime/stime")?;
    // SAFETY: plain libc call.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / per_second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_and_recovers() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let mut vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(2)
            .max_client_conn(500)
            .spawn()
            .await?;
        let pid = vigil.pid()?;
        let limit = libc::rlimit {
            rlim_cur: 64,
            rlim_max: 64,
        };
        // SAFETY: prlimit on our own child with a valid struct.
        let rc = unsafe {
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                &limit,
                std::ptr::null_mut(),
            )
        };
        ensure!(
            rc == 0,
            "prlimit on pgvigil: {}",
            std::io::Error::last_os_error()
        );

        let mut sockets = Vec::new();
        for _ in 0..100 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(("127.0.0.1", vigil.port())),
            )
            .await
            {
                sockets.push(s);
            }
        }
        // The backlog holds what pgvigil cannot accept; watch it for a while.
        let cpu_before = cpu_time(pid)?;
        let watched = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
        let wall = watched.elapsed();
        ensure!(
            vigil.is_running(),
            "pgvigil exited while out of file descriptors"
        );
        ensure!(
            vigil.stderr().contains("accept failed"),
            "pgvigil never hit the descriptor limit ({} sockets connected)",
            sockets.len()
        );
        ensure!(
            cpu < wall / 3,
            "pgvigil used {cpu:?} CPU in {wall:?} while out of descriptors: the accept loop spins"
        );
        drop(sockets);

        let served = wait_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || async {
                let attempt = tokio::time::timeout(Duration::from_secs(3), async {
                    let client = vigil.connect_app().await?;
                    scalar(&client, "SELECT 40 + 2").await
                })
                .await;
                Ok(matches!(attempt, Ok(Ok(Some(ref v))) if v == "42"))
            },
        )
        .await?;
        ensure!(
            vigil.is_running(),
            "pgvigil exited after running out of file descriptors"
        );
        ensure!(
            served,
            "pgvigil did not serve a query within 10 s after the descriptors were freed"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 10. LATIN1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_bytes_pass_through_unchanged() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let db = unique_name("latin1db");
        direct
            .batch_execute(&format!(
                "CREATE DATABASE {db} ENCODING 'LATIN1' \
                 LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ))
            .await
            .context("creating a LATIN1 database")?;
        let direct_latin = cluster.connect_direct_db(&db).await?;
        direct_latin
            .batch_execute(
                "CREATE TABLE words (id int PRIMARY KEY, v text); GRANT ALL ON words TO PUBLIC;",
            )
            .await
            .context("creating table")?;
        let vigil = Pgvigil::builder(cluster)
            .upstream(cluster.url(&db))
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .client_auth("trust")
            .spawn()
            .await?;

        // "café über" in LATIN1: é = 0xE9, ü = 0xFC.
        let word: &[u8] = b"caf\xe9 \xfcber";
        let hex = "636166e920fc626572";
        let insert = |id: i32| {
            let mut sql = format!("INSERT INTO words VALUES ({id}, '").into_bytes();
            sql.extend_from_slice(word);
            sql.extend_from_slice(b"')");
            sql
        };
        let select: &[u8] =
            b"SELECT id::text, v, encode(convert_to(v, 'LATIN1'), 'hex') FROM words ORDER BY id";

        let params = [
            ("user", "app"),
            ("database", db.as_str()),
            ("client_encoding", "LATIN1"),
        ];
        let (mut through, told) = raw_login(vigil.port(), &params).await?;
        let encoding = told
            .iter()
            .find(|(k, _)| k == "client_encoding")
            .map(|(_, v)| v.as_str());
        ensure!(
            encoding == Some("LATIN1"),
            "pgvigil told client_encoding {encoding:?}"
        );
        raw_query(&mut through, &insert(1))
            .await
            .context("LATIN1 insert through pgvigil")?;

        // A UTF-8 client shares the one server connection: client_encoding
        // must switch back and forth with whoever holds it.
        let utf8 = vigil.connect("app", "", &db).await?;
        let seen = scalar(&utf8, "SELECT v FROM words WHERE id = 1").await?;
        ensure!(
            seen.as_deref() == Some("caf\u{e9} \u{fc}ber"),
            "a UTF-8 client reads the LATIN1 client's row as {seen:?}"
        );
        utf8.batch_execute("INSERT INTO words VALUES (3, 'caf\u{e9} \u{fc}ber')")
            .await
            .context("UTF-8 insert through pgvigil")?;

        let direct_params = [
            ("user", "trustuser"),
            ("database", db.as_str()),
            ("client_encoding", "LATIN1"),
        ];
        let (mut plain, _) = raw_login(cluster.port(), &direct_params).await?;
        raw_query(&mut plain, &insert(2))
            .await
            .context("LATIN1 insert directly")?;

        let via_vigil = raw_query(&mut through, select).await?;
        let via_direct = raw_query(&mut plain, select).await?;
        let expected: Vec<RawRow> = ["1", "2", "3"]
            .iter()
            .map(|id| {
                vec![
                    Some(id.as_bytes().to_vec()),
                    Some(word.to_vec()),
                    Some(hex.as_bytes().to_vec()),
                ]
            })
            .collect();
        ensure!(
            via_direct == expected,
            "direct LATIN1 round trip differs (test setup?): {via_direct:?}"
        );
        ensure!(
            via_vigil == via_direct,
            "LATIN1 bytes through pgvigil {via_vigil:?} differ from direct {via_direct:?}"
        );
        through.send_terminate().await?;
        plain.send_terminate().await?;
        drop(vigil);
        drop(direct_latin);
        let _ = direct
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 11. FunctionCall

both_modes!(function_call_is_forwarded, function_call_is_forwarded);
async fn function_call_is_forwarded(mode: PoolMode) -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::start_trust(cluster, mode, 2).await?;
        let (mut conn, _) =
            raw_login(vigil.port(), &[("user", "app"), ("database", "appdb")]).await?;
        let rows = raw_query(&mut conn, b"SELECT 'int4pl'::regproc::oid::text").await?;
        let oid: u32 = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .context("no OID for int4pl")?
            .parse()
            .context("parsing OID")?;

        // FunctionCall: oid, one format code (binary) for all arguments,
        // two int4 arguments, binary result.
        let mut body = Vec::new();
        body.extend_from_slice(&oid.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        for arg in [40i32, 2] {
            body.extend_from_slice(&4i32.to_be_bytes());
            body.extend_from_slice(&arg.to_be_bytes());
        }
        body.extend_from_slice(&1i16.to_be_bytes());
        conn.send_message(b'F', &body).await?;
        let replies = conn
            .read_until_ready()
            .await
            .context("reply to FunctionCall")?;
        let tags: String = replies.iter().map(|m| m.tag as char).collect();
        let response = replies
            .iter()
            .find(|m| m.tag == b'V')
            .with_context(|| format!("no FunctionCallResponse; got messages {tags:?}"))?;
        let value = response.body.get(4..).unwrap_or_default();
        ensure!(
            response.body.get(..4) == Some(&4i32.to_be_bytes()[..]) && value == 42i32.to_be_bytes(),
            "int4pl(40, 2) returned {:?}",
            response.body
        );
        ensure!(
            tags == "VZ",
            "FunctionCall replies {tags:?}, expected \"VZ\""
        );
        // The connection goes on normally afterwards.
        let rows = raw_query(&mut conn, b"SELECT 'after'").await?;
        ensure!(
            rows == vec![vec![Some(b"after".to_vec())]],
            "query after FunctionCall returned {rows:?}"
        );
        conn.send_terminate().await?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 12. Startup options in transaction mode

/// `pg_sleep(0.5)` must have been cancelled by statement_timeout.
fn expect_timeout(
    what: String,
    result: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>,
) -> Result<()> {
    match result {
        Ok(_) => bail!("{what}: pg_sleep(0.5) finished despite statement_timeout=100"),
        Err(e) if sqlstate(&e) == Some("57014") => Ok(()),
        Err(e) => bail!("{what}: expected 57014, got {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_statement_timeout_cancels_on_every_server_connection() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::start(cluster, PoolMode::Transaction, 2).await?;
        let mut cfg = vigil.app_config();
        cfg.options("-c statement_timeout=100");
        let limited = connect_config(&cfg)
            .await
            .context("connecting with options=-c statement_timeout=100")?;
        let busy = vigil.connect_app().await?;

        let mut pids = BTreeSet::new();
        for round in 0..6 {
            // Every other round the busy client holds a server in a
            // transaction, so the limited client lands on the other one.
            let hold = round % 2 == 0;
            if hold {
                busy.batch_execute("BEGIN; SELECT 1")
                    .await
                    .context("busy client BEGIN")?;
            }
            limited.batch_execute("BEGIN").await.context("BEGIN")?;
            let pid = backend_pid(&limited).await?;
            pids.insert(pid);
            let started = Instant::now();
            expect_timeout(
                format!("round {round}, in a transaction on pid {pid}"),
                limited.simple_query("SELECT pg_sleep(0.5)").await,
            )?;
            ensure!(
                started.elapsed() < Duration::from_millis(450),
                "round {round}: cancelled only after {:?}",
                started.elapsed()
            );
            limited
                .batch_execute("ROLLBACK")
                .await
                .context("ROLLBACK")?;
            expect_timeout(
                format!("round {round}, outside a transaction"),
                limited.simple_query("SELECT pg_sleep(0.5)").await,
            )?;
            // The busy client has no statement_timeout, whichever server it gets.
            busy.batch_execute("SELECT pg_sleep(0.2)")
                .await
                .with_context(|| {
                    format!("round {round}: statement_timeout leaked to another client")
                })?;
            if hold {
                busy.batch_execute("COMMIT")
                    .await
                    .context("busy client COMMIT")?;
            }
        }
        ensure!(
            pids.len() == 2,
            "the limited client used server pids {pids:?}; the test needs both servers of the pool"
        );
        Ok(())
    })
    .await
}

/// max_packet_size guards against clients; a large message from
/// PostgreSQL (here an error quoting 200 kB of input) is the server's
/// answer and reaches the client as a normal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_server_messages_are_not_held_to_the_client_packet_limit() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .pool_mode(PoolMode::Transaction)
            .pool_size(1)
            .arg("--max-packet-size")
            .arg("100000")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let err = match client.simple_query("SELECT repeat('x', 200000)::int").await {
            Ok(_) => bail!("a 200 kB string cast to int succeeded"),
            Err(e) => e,
        };
        let db = err
            .as_db_error()
            .with_context(|| format!("expected PostgreSQL's error, got {err:?}"))?;
        ensure!(
            db.code().code() == "22P02" && db.severity() == "ERROR",
            "expected ERROR 22P02 from PostgreSQL, got {db:?}"
        );
        let row = client.query_one("SELECT 41 + 1", &[]).await?;
        ensure!(row.get::<_, i32>(0) == 42, "the session did not go on");
        Ok(())
    })
    .await
}
