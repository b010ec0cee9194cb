//! The PgBouncer-style admin console: the `pgvigil` database (alias
//! `pgbouncer`) on the client listener, reached with psql or any driver's
//! simple query protocol.
//!
//! What is pinned here:
//! * who may log in (admin_users, stats_users; 28000 for anybody else, 28P01
//!   for a wrong password, password from `[users.NAME]` else `admin_token`,
//!   `trust` only from loopback);
//! * the exact column names, in order, of every SHOW command (PgBouncer's
//!   where PgBouncer has the command, so its exporters and scripts work);
//! * that the figures are true: SHOW POOLS counts active and waiting
//!   clients per (database, user), SHOW SERVERS/SHOW CLIENTS link a client in
//!   a transaction to the PostgreSQL backend it holds (remote_pid =
//!   pg_backend_pid()), SHOW STATS counts exactly one query per simple query
//!   and one transaction per transaction, summed over users, in
//!   microseconds; SHOW QUERIES/SLOW/N_PLUS_ONE agree with the JSON API;
//! * PAUSE waits for open transactions, closes the server connections (and
//!   keeps them closed despite min_pool_size) and holds new queries until
//!   RESUME (acquire_timeout still bounds the wait);
//! * RELOAD/SIGHUP apply pool settings, server_reset_query, acquire_timeout,
//!   admin/stats users and passwords, warn about settings that need a
//!   restart without applying or showing them, and leave everything as it
//!   was on an invalid file;
//! * SHUTDOWN lets an open transaction finish, does not wait past its grace
//!   period, and exits with status 0;
//! * stats users may only SHOW (42501 otherwise); unknown commands give 42601
//!   and extended-protocol queries an error, and the session stays usable.
//!
//! Command tags (PAUSE, RESUME, RELOAD, SHUTDOWN, SHOW) are invisible to
//! tokio-postgres, so the tests that check them talk to the console with the
//! harness' raw wire client; everything else uses psql or tokio-postgres'
//! `simple_query`.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test console`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::cluster::{APP_DB, APP_USER};
use pgvigil_integration::raw::RawConn;
use pgvigil_integration::serde_json::Value;
use pgvigil_integration::tokio_postgres::{Client, SimpleQueryMessage};
use pgvigil_integration::vigil::{connect_config, run_cli};
use pgvigil_integration::{
    shared_cluster, sqlstate, timed, unique_name, PgCluster, Pgvigil, PgvigilBuilder, PoolMode,
};

const LIMIT: Duration = Duration::from_secs(45);
/// How long console figures may take to show up (counters are published
/// within ~1 s, query statistics merged every 250 ms–1 s).
const SETTLE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

const CONSOLE_DB: &str = "pgvigil";
const ADMIN: &str = "admin";
const STATS: &str = "stats";

const POOLS_COLUMNS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "cl_pinned",
];
/// SHOW CLIENTS and SHOW SERVERS.
const SOCKET_COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
    "pinned",
];
const STATS_COLUMNS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
];
const DATABASES_COLUMNS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "server_lifetime",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
];
const CONFIG_COLUMNS: &[&str] = &["key", "value", "default", "changeable"];
const VERSION_COLUMNS: &[&str] = &["version"];
const USERS_COLUMNS: &[&str] = &[
    "name",
    "pool_mode",
    "max_user_connections",
    "current_connections",
];
const LISTS_COLUMNS: &[&str] = &["list", "items"];
const QUERIES_COLUMNS: &[&str] = &[
    "fingerprint",
    "statement",
    "calls",
    "total_exec_time",
    "mean_exec_time",
    "min_exec_time",
    "max_exec_time",
    "stddev_exec_time",
    "p50_exec_time",
    "p95_exec_time",
    "p99_exec_time",
    "rows",
    "errors",
    "query",
];
const SLOW_COLUMNS: &[&str] = &[
    "at",
    "rule",
    "fingerprint",
    "duration_ms",
    "database",
    "user",
    "application_name",
    "client_addr",
    "query",
];
const N_PLUS_ONE_COLUMNS: &[&str] = &[
    "fingerprint",
    "parent_fingerprint",
    "kind",
    "repeats",
    "occurrences",
    "total_ms",
    "last_seen",
    "database",
    "user",
    "application_name",
    "query",
    "parent_query",
    "suggestion",
];

const HEALTH_COLUMNS: &[&str] = &["database", "check", "subject", "value", "detail"];

/// Every SHOW command with its columns.
const SHOW_COMMANDS: &[(&str, &[&str])] = &[
    ("SHOW POOLS", POOLS_COLUMNS),
    ("SHOW CLIENTS", SOCKET_COLUMNS),
    ("SHOW SERVERS", SOCKET_COLUMNS),
    ("SHOW STATS", STATS_COLUMNS),
    ("SHOW DATABASES", DATABASES_COLUMNS),
    ("SHOW CONFIG", CONFIG_COLUMNS),
    ("SHOW VERSION", VERSION_COLUMNS),
    ("SHOW USERS", USERS_COLUMNS),
    ("SHOW LISTS", LISTS_COLUMNS),
    ("SHOW QUERIES", QUERIES_COLUMNS),
    ("SHOW SLOW", SLOW_COLUMNS),
    ("SHOW N_PLUS_ONE", N_PLUS_ONE_COLUMNS),
    ("SHOW HEALTH", HEALTH_COLUMNS),
];

// ---------------------------------------------------------------- setup

/// pgvigil in front of the shared cluster with `--client-auth trust` (the
/// tests connect from loopback, so console users need no password),
/// `--admin-users admin` and `--stats-users stats`.
fn console_builder(mode: PoolMode, pool_size: u32) -> PgvigilBuilder {
    Pgvigil::builder(shared_cluster())
        .pool_mode(mode)
        .pool_size(pool_size)
        .client_auth("trust")
        .arg("--admin-users")
        .arg(ADMIN)
        .arg("--stats-users")
        .arg(STATS)
}

async fn start_console(mode: PoolMode, pool_size: u32) -> Result<Pgvigil> {
    console_builder(mode, pool_size).spawn().await
}

/// A tokio-postgres session on the console as `user` (trust: no password).
async fn console(vigil: &Pgvigil, user: &str) -> Result<Client> {
    vigil
        .connect(user, "", CONSOLE_DB)
        .await
        .with_context(|| format!("opening the admin console as {user}"))
}

/// An application client (`app` on `appdb`) with `application_name` set.
async fn app_client(vigil: &Pgvigil, application_name: &str) -> Result<Client> {
    let mut cfg = vigil.app_config();
    cfg.application_name(application_name);
    connect_config(&cfg)
        .await
        .with_context(|| format!("connecting app client {application_name}"))
}

/// The first column of the first row of a simple query.
async fn scalar(client: &Client, sql: &str) -> Result<String> {
    let messages = client
        .simple_query(sql)
        .await
        .with_context(|| format!("running {sql:?}"))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
        .with_context(|| format!("{sql:?} returned no value"))
}

/// SQLSTATE and message of a failed query or login.
fn error_of(err: &pgvigil_integration::tokio_postgres::Error) -> (String, String) {
    (
        sqlstate(err).unwrap_or("<none>").to_string(),
        err.as_db_error()
            .map(|e| {
                let mut text = e.message().to_string();
                if let Some(detail) = e.detail() {
                    text.push_str(" / ");
                    text.push_str(detail);
                }
                if let Some(hint) = e.hint() {
                    text.push_str(" / ");
                    text.push_str(hint);
                }
                text
            })
            .unwrap_or_else(|| format!("{err:?}")),
    )
}

/// Connects expecting a refusal; returns (SQLSTATE, message).
async fn refused(
    vigil: &Pgvigil,
    user: &str,
    password: &str,
    db: &str,
) -> Result<(String, String)> {
    match connect_config(&vigil.config(user, password, db)).await {
        Ok(_) => bail!("logging in as {user}@{db} succeeded but should have been refused"),
        Err(e) => Ok(error_of(&e)),
    }
}

/// Runs a console command expecting an ERROR; returns (SQLSTATE, message).
async fn command_error(client: &Client, sql: &str) -> Result<(String, String)> {
    match client.simple_query(sql).await {
        Ok(messages) => bail!(
            "{sql:?} succeeded ({} messages) but should have failed",
            messages.len()
        ),
        Err(e) => Ok(error_of(&e)),
    }
}

// ---------------------------------------------------------------- result sets

/// A console result set.
#[derive(Debug, Clone)]
struct Table {
    what: String,
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

/// One row of a [`Table`].
#[derive(Clone, Copy)]
struct Row<'a> {
    table: &'a Table,
    cells: &'a [Option<String>],
}

impl Table {
    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows
            .iter()
            .map(move |cells| Row { table: self, cells })
    }

    /// Rows whose column `name` equals `value`.
    fn where_eq(&self, name: &str, value: &str) -> Vec<Row<'_>> {
        self.rows()
            .filter(|r| r.get(name).is_ok_and(|v| v == value))
            .collect()
    }

    /// The single row whose column `name` equals `value`.
    fn one(&self, name: &str, value: &str) -> Result<Row<'_>> {
        let found = self.where_eq(name, value);
        if found.len() != 1 {
            bail!(
                "{}: expected exactly one row with {name} = {value:?}, found {}:\n{self}",
                self.what,
                found.len()
            );
        }
        Ok(found[0])
    }

    fn check_columns(&self, expected: &[&str]) -> Result<()> {
        ensure!(
            self.columns == expected,
            "{}: columns are\n  {:?}\nexpected\n  {:?}",
            self.what,
            self.columns,
            expected
        );
        Ok(())
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  {}", self.columns.join(" | "))?;
        for row in &self.rows {
            let cells: Vec<&str> = row
                .iter()
                .map(|c| c.as_deref().unwrap_or("<NULL>"))
                .collect();
            writeln!(f, "  {}", cells.join(" | "))?;
        }
        Ok(())
    }
}

impl<'a> Row<'a> {
    /// The cell of column `name` (NULL reads as "").
    fn get(&self, name: &str) -> Result<&'a str> {
        let idx = self
            .table
            .columns
            .iter()
            .position(|c| c == name)
            .with_context(|| {
                format!(
                    "{}: no column {name:?} in {:?}",
                    self.table.what, self.table.columns
                )
            })?;
        Ok(self.cells.get(idx).and_then(|c| c.as_deref()).unwrap_or(""))
    }

    fn int(&self, name: &str) -> Result<i64> {
        let v = self.get(name)?;
        v.trim().parse().with_context(|| {
            format!(
                "{}: {name} = {v:?} is not an integer in {self}",
                self.table.what
            )
        })
    }

    fn float(&self, name: &str) -> Result<f64> {
        let v = self.get(name)?;
        v.trim().parse().with_context(|| {
            format!(
                "{}: {name} = {v:?} is not a number in {self}",
                self.table.what
            )
        })
    }
}

impl std::fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self
            .table
            .columns
            .iter()
            .zip(self.cells)
            .map(|(c, v)| format!("{c}={}", v.as_deref().unwrap_or("<NULL>")))
            .collect();
        write!(f, "[{}]", pairs.join(", "))
    }
}

/// Runs a console command with `simple_query` and returns its result set.
async fn show(client: &Client, sql: &str) -> Result<Table> {
    let messages = client
        .simple_query(sql)
        .await
        .with_context(|| format!("console command {sql:?}"))?;
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for m in &messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = Some(cols.iter().map(|c| c.name().to_string()).collect());
            }
            SimpleQueryMessage::Row(row) => {
                if columns.is_none() {
                    columns = Some(row.columns().iter().map(|c| c.name().to_string()).collect());
                }
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok(Table {
        what: sql.to_string(),
        columns: columns.with_context(|| format!("{sql:?} returned no row description"))?,
        rows,
    })
}

/// Runs `sql` on the console until `done` holds for its result (within
/// [`SETTLE`]); fails with the last result otherwise.
async fn poll_show(
    client: &Client,
    sql: &str,
    what: &str,
    done: impl Fn(&Table) -> Result<bool>,
) -> Result<Table> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let table = show(client, sql).await?;
        if done(&table)? {
            return Ok(table);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not seen within {SETTLE:?}; last {sql}:\n{table}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SHOW POOLS row of (appdb, app).
fn app_pool(table: &Table) -> Result<Row<'_>> {
    let found: Vec<Row> = table
        .where_eq("database", APP_DB)
        .into_iter()
        .filter(|r| r.get("user").is_ok_and(|u| u == APP_USER))
        .collect();
    ensure!(
        found.len() == 1,
        "SHOW POOLS: expected one row for ({APP_DB}, {APP_USER}), found {}:\n{table}",
        found.len()
    );
    Ok(found[0])
}

/// (cl_active, cl_waiting, sv_active, sv_idle) of the (appdb, app) pool.
fn pool_counts(table: &Table) -> Result<(i64, i64, i64, i64)> {
    let r = app_pool(table)?;
    Ok((
        r.int("cl_active")?,
        r.int("cl_waiting")?,
        r.int("sv_active")?,
        r.int("sv_idle")?,
    ))
}

// ---------------------------------------------------------------- raw console

/// What one console command answered, as seen on the wire.
#[derive(Debug, Default)]
struct Reply {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    /// CommandComplete tag.
    tag: Option<String>,
    /// NoticeResponse fields (severity `S`/`V`, message `M`, ...).
    notices: Vec<HashMap<u8, String>>,
    error: Option<HashMap<u8, String>>,
    /// ReadyForQuery arrived (false: the connection ended first).
    ready: bool,
    /// Why reading stopped, when not at ReadyForQuery.
    closed: Option<String>,
}

impl Reply {
    fn notice_text(&self) -> String {
        self.notices
            .iter()
            .map(|n| {
                format!(
                    "{}: {} {}",
                    n.get(&b'S').map(String::as_str).unwrap_or("?"),
                    n.get(&b'M').map(String::as_str).unwrap_or(""),
                    n.get(&b'D').map(String::as_str).unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn error_text(&self) -> String {
        self.error
            .as_ref()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.get(&b'C').map(String::as_str).unwrap_or("?"),
                    e.get(&b'M').map(String::as_str).unwrap_or(""),
                    e.get(&b'D').map(String::as_str).unwrap_or("")
                )
            })
            .unwrap_or_default()
    }

    /// Fails unless the command completed with `tag` and no error.
    fn expect_tag(&self, sql: &str, tag: &str) -> Result<()> {
        ensure!(
            self.error.is_none() && self.tag.as_deref() == Some(tag) && self.ready,
            "{sql:?}: expected command tag {tag:?} and ReadyForQuery, got tag {:?}, error {:?}, ready {}, closed {:?}",
            self.tag,
            self.error_text(),
            self.ready,
            self.closed
        );
        Ok(())
    }
}

/// A console session over the harness' raw wire client (trust login), to
/// see command tags and notices.
struct RawConsole {
    conn: RawConn,
}

impl RawConsole {
    async fn login(vigil: &Pgvigil, user: &str) -> Result<RawConsole> {
        let conn = RawConn::startup_trust(vigil.port(), user, CONSOLE_DB)
            .await
            .with_context(|| format!("raw console login as {user}"))?;
        Ok(RawConsole { conn })
    }

    /// Sends a simple Query and reads up to ReadyForQuery (or the end of the
    /// connection, which is reported in the reply, not as an error).
    async fn run(&mut self, sql: &str) -> Result<Reply> {
        self.conn.send_query(sql).await?;
        let mut reply = Reply::default();
        loop {
            let msg = match self.conn.read_message().await {
                Ok(msg) => msg,
                Err(e) => {
                    reply.closed = Some(format!("{e:#}"));
                    return Ok(reply);
                }
            };
            match msg.tag {
                b'T' => reply.columns = parse_row_description(&msg.body)?,
                b'D' => reply.rows.push(parse_data_row(&msg.body)?),
                b'C' => reply.tag = Some(cstring(&msg.body)),
                b'N' => reply.notices.push(msg.error_fields()),
                b'E' => reply.error = Some(msg.error_fields()),
                b'Z' => {
                    reply.ready = true;
                    return Ok(reply);
                }
                _ => {}
            }
        }
    }
}

fn cstring(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

fn parse_row_description(body: &[u8]) -> Result<Vec<String>> {
    let n = i16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    let mut names = Vec::new();
    for _ in 0..n {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .context("malformed RowDescription")?;
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = rest
            .get(end + 1 + 18..)
            .context("malformed RowDescription")?;
    }
    Ok(names)
}

fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>> {
    let n = i16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    let mut cells = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes(rest.get(..4).context("malformed DataRow")?.try_into()?);
        rest = &rest[4..];
        if len < 0 {
            cells.push(None);
        } else {
            let len = len as usize;
            cells.push(Some(
                String::from_utf8_lossy(rest.get(..len).context("malformed DataRow")?).into_owned(),
            ));
            rest = &rest[len..];
        }
    }
    Ok(cells)
}

// ================================================================ login

/// psql reaches the console (`psql -h 127.0.0.1 -p PORT -U admin pgvigil`):
/// SHOW VERSION answers `pgvigil <version>`, commands are case-insensitive
/// with an optional semicolon, and SHOW POOLS prints PgBouncer's header and
/// a row for the session-mode pool of a connected client holding its server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reaches_console_and_show_pools_has_pgbouncer_columns() -> Result<()> {
    timed(LIMIT, async {
        let vigil = start_console(PoolMode::Session, 2).await?;
        let app = vigil.connect_app().await?;
        ensure!(scalar(&app, "SELECT 1").await? == "1");

        for sql in ["SHOW VERSION", "show version;"] {
            let out = vigil.psql(ADMIN, "", CONSOLE_DB, &["-c", sql]).await?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success() && stdout.trim().starts_with("pgvigil "),
                "psql -c {sql:?}: exit {}, stdout {stdout:?}, stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // With the header this time: unaligned, '|'-separated, no footer.
        let mut cmd = vigil.libpq_command("/usr/bin/psql", ADMIN, "", CONSOLE_DB);
        cmd.args([
            "-X",
            "-A",
            "-F",
            "|",
            "-P",
            "footer=off",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", "SHOW POOLS"]);
        let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .context("psql SHOW POOLS still running after 20 s")??;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "psql SHOW POOLS: exit {}, stdout {stdout:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = stdout.lines();
        let header = lines.next().unwrap_or_default();
        ensure!(
            header == POOLS_COLUMNS.join("|"),
            "psql SHOW POOLS header is\n  {header}\nexpected\n  {}",
            POOLS_COLUMNS.join("|")
        );
        let table = Table {
            what: "psql SHOW POOLS".into(),
            columns: POOLS_COLUMNS.iter().map(|c| c.to_string()).collect(),
            rows: lines
                .map(|l| l.split('|').map(|c| Some(c.to_string())).collect())
                .collect(),
        };
        let pool = app_pool(&table)?;
        let counts = pool_counts(&table)?;
        ensure!(
            counts == (1, 0, 1, 0) && pool.get("pool_mode")? == "session",
            "one session-mode client after a query: expected cl_active 1, cl_waiting 0, \
             sv_active 1, sv_idle 0, pool_mode session; got {pool}"
        );
        Ok(())
    })
    .await
}

/// Only admin_users and stats_users may open the console: a configured pool
/// user, an unknown user, on `pgvigil` or its `pgbouncer` alias, gets FATAL
/// 28000 whose message mentions admin_users; an admin logs in fine after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_refused_with_28000_for_users_not_listed() -> Result<()> {
    timed(LIMIT, async {
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        for (user, db) in [
            (APP_USER, CONSOLE_DB),
            ("nobody_at_all", CONSOLE_DB),
            (APP_USER, "pgbouncer"),
        ] {
            let err = match connect_config(&vigil.config(user, "secret", db)).await {
                Ok(_) => bail!("{user}@{db}: console login succeeded but should be refused"),
                Err(e) => e,
            };
            let (code, message) = error_of(&err);
            let severity = err.as_db_error().map(|e| e.severity().to_string());
            ensure!(
                code == "28000"
                    && message.contains("admin_users")
                    && severity.as_deref() == Some("FATAL"),
                "{user}@{db}: expected FATAL 28000 mentioning admin_users, got {severity:?} {code}: {message}"
            );
        }
        let admin = console(&vigil, ADMIN).await?;
        show(&admin, "SHOW VERSION")
            .await?
            .check_columns(VERSION_COLUMNS)?;
        let stats = console(&vigil, STATS).await?;
        show(&stats, "SHOW VERSION")
            .await?
            .check_columns(VERSION_COLUMNS)?;
        // The refused logins did not disturb the pool.
        ensure!(scalar(&vigil.connect_app().await?, "SELECT 7").await? == "7");
        Ok(())
    })
    .await
}

/// With a password method (scram-sha-256, md5), a console user configured in
/// `[users.NAME]` logs in with that password, any other with admin_token; a
/// wrong password is 28P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_password_is_the_users_password_else_admin_token() -> Result<()> {
    timed(LIMIT, async {
        for method in ["scram-sha-256", "md5"] {
            let token = unique_name("console_token");
            let vigil = Pgvigil::builder(shared_cluster())
                .pool_mode(PoolMode::Transaction)
                .pool_size(2)
                .client_auth(method)
                .arg("--admin-users")
                .arg(format!("{ADMIN},{APP_USER}"))
                .arg("--admin-token")
                .arg(&token)
                .spawn()
                .await?;
            // admin is not in [users]: admin_token.
            let admin = vigil
                .connect(ADMIN, &token, CONSOLE_DB)
                .await
                .with_context(|| format!("{method}: admin with admin_token"))?;
            show(&admin, "SHOW VERSION").await?;
            // app is in [users] (from --upstream, password `secret`).
            let app_console = vigil
                .connect(APP_USER, "secret", CONSOLE_DB)
                .await
                .with_context(|| {
                    format!(
                        "{method}: app (an admin user configured in [users]) with its own password"
                    )
                })?;
            show(&app_console, "SHOW POOLS").await?;
            for (user, password, what) in [
                (ADMIN, "wrong-password", "admin, wrong password"),
                (ADMIN, "secret", "admin with app's password"),
                (
                    APP_USER,
                    token.as_str(),
                    "app with admin_token instead of its password",
                ),
            ] {
                let (code, message) = refused(&vigil, user, password, CONSOLE_DB).await?;
                ensure!(
                    code == "28P01",
                    "{method}, {what}: expected 28P01, got {code}: {message}"
                );
            }
        }
        Ok(())
    })
    .await
}

/// A non-loopback IPv4 address of this host (the source address of the
/// default route; no packet is sent).
fn non_loopback_address() -> Result<std::net::Ipv4Addr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    socket
        .connect("203.0.113.1:9")
        .context("this host has no route off loopback; the test needs a non-loopback address")?;
    match socket.local_addr()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Ok(ip),
        other => bail!("no non-loopback IPv4 address on this host (got {other})"),
    }
}

/// `trust` admits console users only from loopback: with client_auth trust
/// and pgvigil listening on every address, an admin coming from a
/// non-loopback address is not admitted without a password, while an application client from
/// the same address and the admin from 127.0.0.1 get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_admits_console_users_only_from_loopback() -> Result<()> {
    timed(LIMIT, async {
        let ip = non_loopback_address()?.to_string();
        let vigil = console_builder(PoolMode::Transaction, 2)
            .listen_host("0.0.0.0")
            .spawn()
            .await?;
        // A fresh Config: `host()` adds a host to the list, it does not replace it.
        let remote = |user: &str, db: &str| {
            let mut cfg = pgvigil_integration::tokio_postgres::Config::new();
            cfg.host(&ip)
                .port(vigil.port())
                .user(user)
                .dbname(db)
                .connect_timeout(Duration::from_secs(10));
            cfg
        };
        let app = connect_config(&remote(APP_USER, APP_DB))
            .await
            .with_context(|| format!("app client from {ip} with trust"))?;
        ensure!(scalar(&app, "SELECT 1").await? == "1");
        // The address pgvigil sees really is the non-loopback one.
        let admin = console(&vigil, ADMIN).await?;
        let clients = show(&admin, "SHOW CLIENTS").await?;
        let row = clients.one("database", APP_DB)?;
        ensure!(
            row.get("addr")? == ip,
            "the app client should be seen from {ip}: {row}"
        );
        for db in [CONSOLE_DB, "pgbouncer"] {
            // Refused (28000/28P01) or challenged for a password it does
            // not have: either way not admitted without one. The app client
            // above shows the address itself is reachable.
            if let Ok(c) = connect_config(&remote(ADMIN, db)).await {
                let clients = show(&c, "SHOW CLIENTS").await?;
                bail!(
                    "admin from non-loopback {ip} opened the console ({db}) with trust and no \
                     password; SHOW CLIENTS:\n{clients}"
                )
            }
        }
        show(&admin, "SHOW VERSION").await?;
        Ok(())
    })
    .await
}

/// The console database name `pgbouncer` is an alias of `pgvigil` (so
/// PgBouncer exporters work), unless a real database has that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_alias_opens_console_unless_a_database_has_that_name() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        let alias = vigil
            .connect(ADMIN, "", "pgbouncer")
            .await
            .context("admin on the pgbouncer alias")?;
        let version = show(&alias, "SHOW VERSION").await?;
        version.check_columns(VERSION_COLUMNS)?;
        ensure!(
            version.rows.len() == 1
                && version.rows[0][0].as_deref().is_some_and(|v| v.starts_with("pgvigil ")),
            "SHOW VERSION through the alias:\n{version}"
        );
        show(&alias, "SHOW POOLS").await?.check_columns(POOLS_COLUMNS)?;
        drop(vigil);

        // A configured database named pgbouncer is that database.
        let vigil = Pgvigil::builder(cluster)
            .config_file(format!(
                r#"[pgvigil]
client_auth = "trust"
admin_users = ["{ADMIN}"]

[pool]
pool_mode = "transaction"
pool_size = 2

[databases.pgbouncer]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.app]
password = "secret"
"#,
                port = cluster.port()
            ))
            .spawn()
            .await?;
        let app = vigil
            .connect(APP_USER, "secret", "pgbouncer")
            .await
            .context("app on the configured database pgbouncer")?;
        let db = scalar(&app, "SELECT current_database()").await?;
        ensure!(
            db == APP_DB,
            "database `pgbouncer` should be the configured pool on {APP_DB}, current_database() = {db:?}"
        );
        let admin = console(&vigil, ADMIN).await?;
        show(&admin, "SHOW VERSION").await?;
        Ok(())
    })
    .await
}

/// A configured database named `pgvigil` is a configuration error (exit 2,
/// naming it).
#[test]
fn database_named_pgvigil_is_a_config_error() -> Result<()> {
    let ports = pgvigil_integration::util::free_ports(2)?;
    let listen = format!("127.0.0.1:{}", ports[0]);
    let admin_listen = format!("127.0.0.1:{}", ports[1]);
    let run = run_cli(
        &["--listen", &listen, "--admin-listen", &admin_listen],
        Some(
            r#"[databases.pgvigil]
host = "127.0.0.1"
port = 5432
dbname = "appdb"

[users.app]
password = "secret"
"#,
        ),
        Duration::from_secs(10),
    )?;
    ensure!(
        run.status.and_then(|s| s.code()) == Some(2) && run.stderr.contains("pgvigil"),
        "expected exit 2 naming databases.pgvigil; status {:?}, stderr {:?}",
        run.status,
        run.stderr
    );
    Ok(())
}

// ================================================================ SHOW

/// Every SHOW command answers with its specified columns, in order, even
/// with no rows; SHOW HELP is a NOTICE listing the commands and tag SHOW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_command_has_the_specified_columns() -> Result<()> {
    timed(LIMIT, async {
        let vigil = start_console(PoolMode::Transaction, 3).await?;
        let app = vigil.connect_app().await?;
        scalar(&app, "SELECT 1").await?;
        let admin = console(&vigil, ADMIN).await?;
        let mut wrong = Vec::new();
        for (sql, columns) in SHOW_COMMANDS {
            match show(&admin, sql).await {
                Ok(t) if t.columns == *columns => {}
                Ok(t) => wrong.push(format!(
                    "{sql}: columns\n    {:?}\n  expected\n    {:?}",
                    t.columns, columns
                )),
                Err(e) => wrong.push(format!("{sql}: {e:#}")),
            }
        }
        ensure!(wrong.is_empty(), "{}", wrong.join("\n"));

        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let help = raw.run("SHOW HELP").await?;
        help.expect_tag("SHOW HELP", "SHOW")?;
        let text = help.notice_text();
        ensure!(
            help.notices.len() == 1
                && ["SHOW", "POOLS", "PAUSE", "RESUME", "RELOAD", "SHUTDOWN"]
                    .iter()
                    .all(|w| text.to_uppercase().contains(w)),
            "SHOW HELP should send one NOTICE listing the commands, got {} notices:\n{text}",
            help.notices.len()
        );
        Ok(())
    })
    .await
}

/// SHOW DATABASES, SHOW USERS, SHOW LISTS and SHOW CONFIG describe the
/// running configuration; SHOW CONFIG shows no secret in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_databases_users_lists_config_describe_the_configuration() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let token = unique_name("console_secret_token");
        let vigil = console_builder(PoolMode::Transaction, 4)
            .max_client_conn(37)
            .arg("--admin-token")
            .arg(&token)
            .spawn()
            .await?;
        let app = vigil.connect_app().await?;
        scalar(&app, "SELECT 1").await?;
        let admin = console(&vigil, ADMIN).await?;

        let dbs = show(&admin, "SHOW DATABASES").await?;
        dbs.check_columns(DATABASES_COLUMNS)?;
        let db = dbs.one("name", APP_DB)?;
        let port = cluster.port().to_string();
        ensure!(
            db.get("host")? == "127.0.0.1"
                && db.get("port")? == port
                && db.get("database")? == APP_DB
                && db.int("pool_size")? == 4
                && db.get("pool_mode")? == "transaction"
                && db.int("paused")? == 0
                && db.int("disabled")? == 0,
            "SHOW DATABASES row for {APP_DB}: expected host 127.0.0.1, port {port}, \
             database {APP_DB}, pool_size 4, pool_mode transaction, paused 0, disabled 0; got {db}"
        );

        let users = show(&admin, "SHOW USERS").await?;
        users.check_columns(USERS_COLUMNS)?;
        users.one("name", APP_USER)?;

        let lists = show(&admin, "SHOW LISTS").await?;
        lists.check_columns(LISTS_COLUMNS)?;
        for name in [
            "databases",
            "users",
            "pools",
            "used_clients",
            "used_servers",
            "free_servers",
        ] {
            lists.one("list", name)?.int("items")?;
        }
        ensure!(
            lists.one("list", "databases")?.int("items")? == 1
                && lists.one("list", "pools")?.int("items")? == 1,
            "SHOW LISTS: one database and one pool configured:\n{lists}"
        );

        let config = show(&admin, "SHOW CONFIG").await?;
        config.check_columns(CONFIG_COLUMNS)?;
        let value =
            |key: &str| -> Result<String> { Ok(config.one("key", key)?.get("value")?.to_string()) };
        for key in [
            "listen",
            "admin_listen",
            "client_auth",
            "max_client_conn",
            "pool_mode",
            "pool_size",
            "analytics",
        ] {
            value(key)?;
        }
        let expected = [
            ("listen", format!("127.0.0.1:{}", vigil.port())),
            ("admin_listen", format!("127.0.0.1:{}", vigil.admin_port())),
            ("client_auth", "trust".to_string()),
            ("max_client_conn", "37".to_string()),
            ("pool_mode", "transaction".to_string()),
            ("pool_size", "4".to_string()),
        ];
        for (key, want) in &expected {
            let got = value(key)?;
            ensure!(
                &got == want,
                "SHOW CONFIG {key} = {got:?}, expected {want:?}"
            );
        }
        for (key, default) in [("pool_size", "20"), ("max_client_conn", "100")] {
            let got = config.one("key", key)?.get("default")?;
            ensure!(
                got == default,
                "SHOW CONFIG default of {key} = {got:?}, expected {default:?}"
            );
        }
        for row in config.rows() {
            let changeable = row.get("changeable")?;
            ensure!(
                changeable == "yes" || changeable == "no",
                "SHOW CONFIG changeable must be yes/no: {row}"
            );
            for cell in row.cells.iter().flatten() {
                ensure!(
                    !cell.contains(&token) && !cell.contains("secret"),
                    "SHOW CONFIG shows a secret (admin_token or a password) in clear: {row}"
                );
            }
        }
        Ok(())
    })
    .await
}

/// SHOW POOLS and SHOW CLIENTS count a client waiting for the only server
/// (pool_size 1, transaction mode) as cl_waiting/`waiting`, and as active
/// once the holder commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_and_clients_count_a_waiting_client() -> Result<()> {
    timed(LIMIT, async {
        let vigil = start_console(PoolMode::Transaction, 1).await?;
        let admin = console(&vigil, ADMIN).await?;
        let holder = app_client(&vigil, "console-holder").await?;
        let waiter = app_client(&vigil, "console-waiter").await?;
        holder.batch_execute("BEGIN; SELECT 1").await?;
        let waiting = tokio::spawn(async move {
            let r = scalar(&waiter, "SELECT 2").await;
            (waiter, r)
        });
        let pools = poll_show(
            &admin,
            "SHOW POOLS",
            "the waiter counted in cl_waiting",
            |t| Ok(pool_counts(t)?.1 == 1),
        )
        .await?;
        let counts = pool_counts(&pools)?;
        ensure!(
            counts == (1, 1, 1, 0) && app_pool(&pools)?.get("pool_mode")? == "transaction",
            "holder in a transaction, waiter queued: expected cl_active 1, cl_waiting 1, \
             sv_active 1, sv_idle 0, pool_mode transaction; got {}",
            app_pool(&pools)?
        );
        let clients = show(&admin, "SHOW CLIENTS").await?;
        clients.check_columns(SOCKET_COLUMNS)?;
        let holder_row = clients.one("application_name", "console-holder")?;
        let waiter_row = clients.one("application_name", "console-waiter")?;
        ensure!(
            holder_row.get("state")? == "active" && waiter_row.get("state")? == "waiting",
            "SHOW CLIENTS: holder should be active, waiter waiting:\n{clients}"
        );
        ensure!(
            !waiting.is_finished(),
            "the waiter's query finished while the only server was held"
        );

        holder.batch_execute("COMMIT").await?;
        let (waiter, r) = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .context("waiter still blocked 10 s after the holder committed")??;
        ensure!(r? == "2");
        let pools = poll_show(
            &admin,
            "SHOW POOLS",
            "both clients idle, server idle",
            |t| Ok(pool_counts(t)? == (2, 0, 0, 1)),
        )
        .await?;
        let clients = show(&admin, "SHOW CLIENTS").await?;
        let waiter_row = clients.one("application_name", "console-waiter")?;
        ensure!(
            waiter_row.get("state")? == "active",
            "SHOW CLIENTS: a served client is active, not waiting: {waiter_row}\npools:\n{pools}"
        );
        drop(waiter);
        Ok(())
    })
    .await
}

/// Transaction mode: while a client is inside a transaction, SHOW SERVERS
/// has its server connection `active` with remote_pid = the pg_backend_pid()
/// the client sees and link = the client's id in SHOW CLIENTS, whose link is
/// that server's id. After COMMIT the server is `idle` and both links empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_servers_links_backend_pid_to_the_client_in_a_transaction() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        let mut admin_cfg = vigil.config(ADMIN, "", CONSOLE_DB);
        admin_cfg.application_name("console-self");
        let admin = connect_config(&admin_cfg).await.context("console as admin")?;
        let app = app_client(&vigil, "console-link-probe").await?;
        app.batch_execute("BEGIN").await?;
        let pid = scalar(&app, "SELECT pg_backend_pid()").await?;

        let servers = show(&admin, "SHOW SERVERS").await?;
        servers.check_columns(SOCKET_COLUMNS)?;
        let server = servers.one("remote_pid", &pid)?;
        let server_id = server.get("id")?.to_string();
        let link = server.get("link")?.to_string();
        let port = cluster.port().to_string();
        ensure!(
            server.get("type")? == "S"
                && server.get("state")? == "active"
                && server.get("database")? == APP_DB
                && server.get("user")? == APP_USER
                && server.get("addr")? == "127.0.0.1"
                && server.get("port")? == port
                && !server_id.is_empty()
                && !link.is_empty(),
            "SHOW SERVERS row of backend {pid}: expected type S, state active, {APP_DB}/{APP_USER}, \
             addr 127.0.0.1:{port}, an id and a link; got {server}"
        );

        let clients = show(&admin, "SHOW CLIENTS").await?;
        clients.check_columns(SOCKET_COLUMNS)?;
        let client = clients.one("application_name", "console-link-probe")?;
        ensure!(
            client.get("type")? == "C"
                && client.get("state")? == "active"
                && client.get("database")? == APP_DB
                && client.get("user")? == APP_USER
                && client.get("addr")? == "127.0.0.1"
                && client.get("id")? == link
                && client.get("link")? == server_id,
            "SHOW CLIENTS row of the client in a transaction: expected type C, active, \
             {APP_DB}/{APP_USER}, addr 127.0.0.1, id {link:?} (the server's link) and link \
             {server_id:?} (the server's id); got {client}"
        );
        // The console session itself is listed, as PgBouncer lists its console clients.
        let own: Vec<Row> = clients
            .where_eq("database", CONSOLE_DB)
            .into_iter()
            .filter(|r| r.get("user").is_ok_and(|u| u == ADMIN))
            .collect();
        ensure!(
            own.len() == 1
                && own[0].get("application_name")? == "console-self"
                && own[0].get("type")? == "C",
            "SHOW CLIENTS should list the console session once (type C, database {CONSOLE_DB}, \
             user {ADMIN}, application_name console-self):\n{clients}"
        );

        app.batch_execute("COMMIT").await?;
        let servers = poll_show(&admin, "SHOW SERVERS", "server idle after COMMIT", |t| {
            Ok(t.where_eq("remote_pid", &pid)
                .iter()
                .any(|r| r.get("state").is_ok_and(|s| s == "idle")))
        })
        .await?;
        let server = servers.one("remote_pid", &pid)?;
        ensure!(
            server.get("link")?.is_empty() && server.get("id")? == server_id,
            "after COMMIT the server keeps its id and has no link: {server}"
        );
        let clients = show(&admin, "SHOW CLIENTS").await?;
        let client = clients.one("application_name", "console-link-probe")?;
        ensure!(
            client.get("link")?.is_empty(),
            "after COMMIT (transaction mode) the client holds no server: {client}"
        );
        Ok(())
    })
    .await
}

/// SHOW STATS: 10 separate autocommit simple queries from an app client add
/// exactly 10 to total_query_count and total_xact_count of its database, and
/// nothing more afterwards (console commands are not counted); a transaction
/// sent as BEGIN, SELECT, COMMIT adds 3 queries and 1 transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stats_counts_exactly_one_query_per_simple_query() -> Result<()> {
    timed(LIMIT, async {
        const N: i64 = 10;
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        let admin = console(&vigil, ADMIN).await?;
        let app = vigil.connect_app().await?;
        let figures = |t: &Table| -> Result<(i64, i64, i64, i64)> {
            match t.where_eq("database", APP_DB).first() {
                None => Ok((0, 0, 0, 0)),
                Some(r) => Ok((
                    r.int("total_query_count")?,
                    r.int("total_xact_count")?,
                    r.int("total_received")?,
                    r.int("total_sent")?,
                )),
            }
        };
        let before = show(&admin, "SHOW STATS").await?;
        before.check_columns(STATS_COLUMNS)?;
        let (q0, x0, r0, s0) = figures(&before)?;
        for i in 0..N {
            ensure!(scalar(&app, &format!("SELECT {i}")).await? == i.to_string());
        }
        poll_show(&admin, "SHOW STATS", "10 queries counted", |t| {
            let (q, x, _, _) = figures(t)?;
            Ok(q - q0 >= N && x - x0 >= N)
        })
        .await?;
        // Past one more publishing period: still exactly N.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let after = show(&admin, "SHOW STATS").await?;
        let row = after.one("database", APP_DB)?;
        let (q, x, r, s) = figures(&after)?;
        ensure!(
            q - q0 == N && x - x0 == N,
            "{N} autocommit simple queries: total_query_count +{} and total_xact_count +{}, \
             expected +{N} each; row {row}",
            q - q0,
            x - x0
        );
        ensure!(
            r > r0 && s > s0 && row.int("total_query_time")? > 0,
            "total_received/total_sent/total_query_time should have grown: before {:?}, after {row}",
            (q0, x0, r0, s0)
        );

        // One transaction sent as three simple queries: 3 queries, 1 transaction.
        for sql in ["BEGIN", "SELECT 1", "COMMIT"] {
            app.simple_query(sql).await.with_context(|| sql.to_string())?;
        }
        poll_show(&admin, "SHOW STATS", "the transaction's 3 queries counted", |t| {
            Ok(figures(t)?.0 - q >= 3)
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let last = show(&admin, "SHOW STATS").await?;
        let (q2, x2, _, _) = figures(&last)?;
        ensure!(
            q2 - q == 3 && x2 - x == 1,
            "BEGIN, SELECT 1, COMMIT as three simple queries: total_query_count +{} (expected +3), \
             total_xact_count +{} (expected +1); row {}",
            q2 - q,
            x2 - x,
            last.one("database", APP_DB)?
        );

        // Times are in microseconds: a 0.2 s sleep adds ~200000 to total_query_time.
        let t0 = last.one("database", APP_DB)?.int("total_query_time")?;
        app.simple_query("SELECT pg_sleep(0.2)").await?;
        let slept = poll_show(&admin, "SHOW STATS", "the sleep's query counted", |t| {
            Ok(figures(t)?.0 - q2 >= 1)
        })
        .await?;
        let dt = slept.one("database", APP_DB)?.int("total_query_time")? - t0;
        ensure!(
            (200_000..2_000_000).contains(&dt),
            "SELECT pg_sleep(0.2) added {dt} to total_query_time; expected ~200000 (microseconds)"
        );
        Ok(())
    })
    .await
}

/// Two users on one database: SHOW POOLS has one row per (database, user),
/// each counting its own client; SHOW STATS has one row for the database
/// with both users' queries summed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_per_database_and_user_and_stats_sum_over_users() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .config_file(format!(
                r#"[pgvigil]
client_auth = "trust"
admin_users = ["{ADMIN}"]

[pool]
pool_mode = "transaction"
pool_size = 2

[databases.appdb]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.app]
password = "secret"

[users.trustuser]
password = "trustpass"
"#,
                port = cluster.port()
            ))
            .spawn()
            .await?;
        let admin = console(&vigil, ADMIN).await?;
        let app = vigil.connect(APP_USER, "secret", APP_DB).await?;
        let md5 = vigil.connect("trustuser", "trustpass", APP_DB).await?;
        let other = vigil.connect("trustuser", "trustpass", APP_DB).await?;
        for i in 0..3 {
            scalar(&app, &format!("SELECT {i}")).await?;
            scalar(&md5, &format!("SELECT {i}")).await?;
        }
        ensure!(scalar(&other, "SELECT current_user::text").await? == "trustuser");
        let stats = poll_show(&admin, "SHOW STATS", "7 queries of two users", |t| {
            Ok(t.where_eq("database", APP_DB)
                .first()
                .is_some_and(|r| r.int("total_query_count").is_ok_and(|q| q >= 7)))
        })
        .await?;
        ensure!(
            stats.where_eq("database", APP_DB).len() == 1,
            "SHOW STATS: one row per database, summed over users:\n{stats}"
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let stats = show(&admin, "SHOW STATS").await?;
        let q = stats.one("database", APP_DB)?.int("total_query_count")?;
        ensure!(
            q == 7,
            "SHOW STATS appdb total_query_count = {q}, expected 3 + 4 = 7:\n{stats}"
        );

        let pools = show(&admin, "SHOW POOLS").await?;
        let rows = pools.where_eq("database", APP_DB);
        let by_user = |user: &str| rows.iter().find(|r| r.get("user").is_ok_and(|u| u == user));
        ensure!(
            rows.len() == 2
                && by_user(APP_USER).is_some_and(|r| r.int("cl_active").is_ok_and(|n| n == 1))
                && by_user("trustuser").is_some_and(|r| r.int("cl_active").is_ok_and(|n| n == 2)),
            "SHOW POOLS: expected one row per (appdb, user): app with cl_active 1, trustuser with \
             cl_active 2:\n{pools}"
        );
        Ok(())
    })
    .await
}

/// SHOW QUERIES lists a statement the app ran, with its calls, rows and
/// errors, and the same fingerprint as the JSON API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_queries_lists_the_apps_statement_with_its_calls() -> Result<()> {
    timed(LIMIT, async {
        const CALLS: i64 = 7;
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        let admin = console(&vigil, ADMIN).await?;
        let app = vigil.connect_app().await?;
        for i in 0..CALLS {
            scalar(&app, &format!("SELECT {i} AS console_queries_probe")).await?;
        }
        let probe = |t: &Table| -> Result<Option<i64>> {
            let found: Vec<Row> = t
                .rows()
                .filter(|r| {
                    r.get("query")
                        .is_ok_and(|q| q.contains("console_queries_probe"))
                })
                .collect();
            match found.as_slice() {
                [] => Ok(None),
                [r] => Ok(Some(r.int("calls")?)),
                _ => bail!("several fingerprints for the probe statement:\n{t}"),
            }
        };
        poll_show(
            &admin,
            "SHOW QUERIES",
            "the probe statement's 7 calls",
            |t| Ok(probe(t)?.is_some_and(|c| c >= CALLS)),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let table = show(&admin, "SHOW QUERIES").await?;
        table.check_columns(QUERIES_COLUMNS)?;
        let row = table
            .rows()
            .find(|r| {
                r.get("query")
                    .is_ok_and(|q| q.contains("console_queries_probe"))
            })
            .context("probe statement gone from SHOW QUERIES")?;
        let (total, mean, min, max) = (
            row.float("total_exec_time")?,
            row.float("mean_exec_time")?,
            row.float("min_exec_time")?,
            row.float("max_exec_time")?,
        );
        let p50 = row.float("p50_exec_time")?;
        row.float("stddev_exec_time")?;
        row.float("p95_exec_time")?;
        row.float("p99_exec_time")?;
        ensure!(
            row.int("calls")? == CALLS && row.int("rows")? == CALLS && row.int("errors")? == 0,
            "probe statement: expected calls {CALLS}, rows {CALLS}, errors 0; got {row}"
        );
        ensure!(
            !row.get("query")?.contains("6 AS"),
            "query column should be the normalized statement: {row}"
        );
        ensure!(
            row.get("statement")?.eq_ignore_ascii_case("SELECT"),
            "statement of a SELECT: {row}"
        );
        ensure!(
            total > 0.0
                && (mean * CALLS as f64 - total).abs() <= total * 0.01 + 0.001
                && min <= mean
                && mean <= max
                && min * 0.95 <= p50
                && p50 <= max * 1.05 + 0.001
                && total < 5_000.0,
            "probe statement times (ms) inconsistent: {row}"
        );
        let api = vigil
            .api_get("/api/queries?sort=calls&limit=100000")
            .await?;
        let api_row = api["queries"]
            .as_array()
            .and_then(|rows| {
                rows.iter().find(|r| {
                    r["query"]
                        .as_str()
                        .is_some_and(|q| q.contains("console_queries_probe"))
                })
            })
            .cloned()
            .context("probe statement missing from /api/queries")?;
        ensure!(
            api_row["fingerprint"].as_str() == Some(row.get("fingerprint")?)
                && api_row["query"].as_str() == Some(row.get("query")?),
            "SHOW QUERIES and /api/queries disagree: console {row}, api {api_row}"
        );
        Ok(())
    })
    .await
}

/// SHOW SLOW and SHOW N_PLUS_ONE list what the JSON API lists: a slow
/// execution with its caller, and an N+1 loop inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_slow_and_n_plus_one_match_the_api() -> Result<()> {
    timed(LIMIT, async {
        const APP_NAME: &str = "console-insight-probe";
        let vigil = console_builder(PoolMode::Transaction, 2)
            .arg("--slow-query-ms")
            .arg("100")
            .spawn()
            .await?;
        let app = app_client(&vigil, APP_NAME).await?;
        app.simple_query("SELECT pg_sleep(0.15) AS console_slow_probe")
            .await?;
        // An N+1 loop: a parent SELECT, then one child SELECT per parent row.
        app.batch_execute("BEGIN").await?;
        app.simple_query("SELECT id FROM generate_series(1, 8) AS console_parent(id)")
            .await?;
        for i in 1..=8 {
            app.simple_query(&format!("SELECT {i} * 10 AS console_child_probe"))
                .await?;
        }
        app.batch_execute("COMMIT").await?;

        // Wait for the API to report both, then compare the console with it.
        let deadline = Instant::now() + SETTLE;
        let (slow_api, n1_api) = loop {
            let slow = vigil.api_get("/api/slow?limit=100").await?;
            let n1 = vigil.api_get("/api/n-plus-one").await?;
            let slow_rows = slow["events"].as_array().cloned().unwrap_or_default();
            let n1_rows = n1["detections"].as_array().cloned().unwrap_or_default();
            if !slow_rows.is_empty() && !n1_rows.is_empty() {
                break (slow_rows, n1_rows);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the API did not report the slow query and the N+1 loop: slow {slow}, n+1 {n1}"
                );
            }
            tokio::time::sleep(POLL).await;
        };
        ensure!(
            slow_api.len() == 1 && n1_api.len() == 1,
            "workload should give one slow event and one detection: {slow_api:?} {n1_api:?}"
        );
        let admin = console(&vigil, ADMIN).await?;

        let slow = show(&admin, "SHOW SLOW").await?;
        slow.check_columns(SLOW_COLUMNS)?;
        ensure!(
            slow.rows.len() == 1,
            "SHOW SLOW should have one event:\n{slow}"
        );
        let e = slow.rows().next().context("no row")?;
        let api_e = &slow_api[0];
        ensure!(
            api_e["fingerprint"].as_str() == Some(e.get("fingerprint")?)
                && e.get("database")? == APP_DB
                && e.get("user")? == APP_USER
                && e.get("application_name")? == APP_NAME
                && e.get("client_addr")?.contains("127.0.0.1")
                && e.get("query")?.contains("console_slow_probe")
                && (150.0..2000.0).contains(&e.float("duration_ms")?)
                && !e.get("at")?.is_empty(),
            "SHOW SLOW row should be the pg_sleep(0.15) of {APP_NAME}: {e}\napi: {api_e}"
        );

        // SHOW QUERIES times are in milliseconds.
        // (merged every 250 ms-1 s, so poll)
        let queries = poll_show(&admin, "SHOW QUERIES", "the pg_sleep statement", |t| {
            Ok(t.rows().any(|r| {
                r.get("query")
                    .is_ok_and(|q| q.contains("console_slow_probe"))
            }))
        })
        .await?;
        let sleep = queries
            .rows()
            .find(|r| {
                r.get("query")
                    .is_ok_and(|q| q.contains("console_slow_probe"))
            })
            .with_context(|| {
                format!("the pg_sleep statement is not in SHOW QUERIES:\n{queries}")
            })?;
        let ms = sleep.float("total_exec_time")?;
        ensure!(
            (150.0..2000.0).contains(&ms) && sleep.int("calls")? == 1,
            "SHOW QUERIES: pg_sleep(0.15) once should be ~150 ms total_exec_time: {sleep}"
        );
        ensure!(
            sleep.get("fingerprint")? == e.get("fingerprint")?,
            "SHOW SLOW and SHOW QUERIES fingerprints of the same statement differ: {sleep} / {e}"
        );

        let n1 = show(&admin, "SHOW N_PLUS_ONE").await?;
        n1.check_columns(N_PLUS_ONE_COLUMNS)?;
        ensure!(
            n1.rows.len() == 1,
            "SHOW N_PLUS_ONE should have one detection:\n{n1}"
        );
        let d = n1.rows().next().context("no row")?;
        let api_d: &Value = &n1_api[0];
        ensure!(
            api_d["fingerprint"].as_str() == Some(d.get("fingerprint")?)
                && api_d["parent_fingerprint"].as_str() == Some(d.get("parent_fingerprint")?)
                && api_d["kind"].as_str() == Some(d.get("kind")?)
                && api_d["repeats"].as_i64() == Some(d.int("repeats")?)
                && api_d["occurrences"].as_i64() == Some(d.int("occurrences")?)
                && d.get("query")?.contains("console_child_probe")
                && d.get("parent_query")?.contains("console_parent")
                && d.get("database")? == APP_DB
                && d.get("user")? == APP_USER
                && d.get("application_name")? == APP_NAME
                && !d.get("suggestion")?.is_empty(),
            "SHOW N_PLUS_ONE row disagrees with /api/n-plus-one: {d}\napi: {api_d}"
        );
        Ok(())
    })
    .await
}

// ================================================================ permissions and errors

/// A stats user may run every SHOW, and gets 42501 for PAUSE, RESUME,
/// RELOAD and SHUTDOWN, none of which takes effect; the session stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_user_may_show_but_not_control() -> Result<()> {
    timed(LIMIT, async {
        let mut vigil = start_console(PoolMode::Transaction, 2).await?;
        let app = vigil.connect_app().await?;
        scalar(&app, "SELECT 1").await?;
        let stats = console(&vigil, STATS).await?;
        for (sql, columns) in SHOW_COMMANDS {
            show(&stats, sql)
                .await
                .with_context(|| format!("stats user: {sql}"))?
                .check_columns(columns)?;
        }
        stats
            .simple_query("SHOW HELP")
            .await
            .context("stats user: SHOW HELP")?;
        for sql in ["PAUSE", "PAUSE appdb", "RESUME", "RELOAD", "SHUTDOWN"] {
            let (code, message) = command_error(&stats, sql).await?;
            ensure!(
                code == "42501",
                "stats user {sql:?}: expected 42501, got {code}: {message}"
            );
            show(&stats, "SHOW VERSION")
                .await
                .with_context(|| format!("stats session after the refused {sql:?}"))?;
        }
        ensure!(
            vigil.is_running(),
            "pgvigil exited after a stats user's SHUTDOWN"
        );
        let dbs = show(&stats, "SHOW DATABASES").await?;
        ensure!(
            dbs.one("name", APP_DB)?.int("paused")? == 0,
            "a stats user's PAUSE must not pause:\n{dbs}"
        );
        let v = tokio::time::timeout(Duration::from_secs(5), scalar(&app, "SELECT 2"))
            .await
            .context("app query blocked after a stats user's PAUSE")??;
        ensure!(v == "2");
        Ok(())
    })
    .await
}

/// Unknown commands (and SQL) on the console give ERROR 42601 and the session
/// keeps working; commands are case-insensitive with an optional semicolon;
/// an extended-protocol query gets an error and the session keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_are_42601_and_the_session_survives() -> Result<()> {
    timed(LIMIT, async {
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        let admin = console(&vigil, ADMIN).await?;
        for sql in ["SHOW NONSENSE", "FROBNICATE", "SELECT 1", "PAUSED"] {
            let (code, message) = command_error(&admin, sql).await?;
            ensure!(
                code == "42601",
                "{sql:?}: expected 42601, got {code}: {message}"
            );
            let v = show(&admin, "SHOW VERSION")
                .await
                .with_context(|| format!("console after the unknown command {sql:?}"))?;
            ensure!(v.rows.len() == 1, "SHOW VERSION after {sql:?}:\n{v}");
        }
        for sql in ["show version;", "Show Pools ;", "sHoW sTaTs"] {
            show(&admin, sql)
                .await
                .with_context(|| format!("case-insensitive command {sql:?}"))?;
        }
        match admin.query("SHOW VERSION", &[]).await {
            Ok(rows) => bail!(
                "an extended-protocol query on the console should fail, got {} rows",
                rows.len()
            ),
            Err(e) => ensure!(
                e.as_db_error().is_some(),
                "extended protocol: expected an ERROR from the console, got {e:?}"
            ),
        }
        show(&admin, "SHOW VERSION")
            .await
            .context("console after an extended-protocol query")?;
        Ok(())
    })
    .await
}

// ================================================================ PAUSE / RESUME

/// PAUSE waits while a client holds a transaction and returns (tag PAUSE)
/// after it commits, with the server connection closed and paused = 1; the
/// client's next query then waits, without error, until RESUME (tag RESUME).
/// PAUSE of an unknown database is an ERROR; PAUSE db / RESUME db work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_the_transaction_and_holds_queries_until_resume() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let vigil = start_console(PoolMode::Transaction, 2).await?;
        let admin = console(&vigil, ADMIN).await?;
        let app = vigil.connect_app().await?;
        app.batch_execute("BEGIN").await?;
        let pid: i32 = scalar(&app, "SELECT pg_backend_pid()").await?.parse()?;

        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let pause = tokio::spawn(async move {
            let reply = raw.run("PAUSE").await;
            (raw, reply)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            !pause.is_finished(),
            "PAUSE returned while a client was inside a transaction"
        );
        // Another console session is not blocked by the pending PAUSE.
        let pools = tokio::time::timeout(Duration::from_secs(3), show(&admin, "SHOW POOLS"))
            .await
            .context("SHOW POOLS on another console session blocked by a pending PAUSE")??;
        ensure!(
            pool_counts(&pools)?.2 == 1,
            "SHOW POOLS during a pending PAUSE: the transaction's server is active:\n{pools}"
        );
        // The transaction can go on and finish.
        ensure!(scalar(&app, "SELECT 5").await? == "5");
        app.batch_execute("COMMIT").await?;
        let (mut raw, reply) = tokio::time::timeout(Duration::from_secs(10), pause)
            .await
            .context("PAUSE still waiting 10 s after the transaction committed")??;
        reply?.expect_tag("PAUSE", "PAUSE")?;

        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let row = direct
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await?;
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "PAUSE returned but backend {pid} (the pool's server connection) is still open 3 s later"
            );
            tokio::time::sleep(POLL).await;
        }
        let servers = show(&admin, "SHOW SERVERS").await?;
        ensure!(
            servers.where_eq("database", APP_DB).is_empty(),
            "SHOW SERVERS after PAUSE should list no server connection of {APP_DB}:\n{servers}"
        );
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            dbs.one("name", APP_DB)?.int("paused")? == 1,
            "SHOW DATABASES while paused: paused should be 1:\n{dbs}"
        );

        // A new query waits...
        let held = tokio::spawn(async move {
            let r = scalar(&app, "SELECT 42").await;
            (app, r)
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        if held.is_finished() {
            let (_, r) = held.await?;
            bail!("a query while paused should wait until RESUME, it finished: {r:?}");
        }
        let pools = show(&admin, "SHOW POOLS").await?;
        let counts = pool_counts(&pools)?;
        ensure!(
            counts.1 == 1 && counts.2 == 0,
            "SHOW POOLS while a query is held by PAUSE: expected cl_waiting 1, sv_active 0; got {}",
            app_pool(&pools)?
        );
        // ...until RESUME.
        raw.run("RESUME").await?.expect_tag("RESUME", "RESUME")?;
        let (app, r) = tokio::time::timeout(Duration::from_secs(5), held)
            .await
            .context("the held query did not proceed within 5 s of RESUME")??;
        ensure!(r? == "42", "held query after RESUME");
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            dbs.one("name", APP_DB)?.int("paused")? == 0,
            "SHOW DATABASES after RESUME: paused should be 0:\n{dbs}"
        );

        let reply = raw.run("PAUSE no_such_database").await?;
        ensure!(
            reply.error.is_some() && reply.ready,
            "PAUSE of an unknown database should be an ERROR: tag {:?}, error {:?}",
            reply.tag,
            reply.error_text()
        );
        raw.run("PAUSE appdb").await?.expect_tag("PAUSE appdb", "PAUSE")?;
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            dbs.one("name", APP_DB)?.int("paused")? == 1,
            "PAUSE appdb: paused should be 1:\n{dbs}"
        );
        raw.run("resume appdb;").await?.expect_tag("RESUME appdb", "RESUME")?;
        let v = tokio::time::timeout(Duration::from_secs(5), scalar(&app, "SELECT 43"))
            .await
            .context("query after RESUME appdb blocked")??;
        ensure!(v == "43");
        Ok(())
    })
    .await
}

/// PAUSE closes every server connection of the pool and keeps them closed
/// while paused, even with min_pool_size 1 (counted in pg_stat_activity for
/// a role of the test's own); after RESUME queries run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_server_connections_closed_despite_min_pool_size() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let direct = cluster.connect_direct().await?;
        let role = unique_name("console_pause_role");
        direct
            .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'rolepass'"))
            .await
            .with_context(|| format!("creating role {role}"))?;
        let backends = || {
            let direct = &direct;
            let role = role.clone();
            async move {
                let row = direct
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE usename = $1 AND backend_type = 'client backend'",
                        &[&role],
                    )
                    .await
                    .context("counting backends")?;
                anyhow::Ok(row.get::<_, i64>(0))
            }
        };
        let vigil = console_builder(PoolMode::Transaction, 2)
            .upstream(format!(
                "postgres://{role}:rolepass@127.0.0.1:{}/appdb",
                cluster.port()
            ))
            .arg("--min-pool-size")
            .arg("1")
            .spawn()
            .await?;
        let app = vigil.connect(&role, "", APP_DB).await?;
        scalar(&app, "SELECT 1").await?;
        ensure!(backends().await? >= 1, "min_pool_size 1: no backend open");

        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let reply = tokio::time::timeout(Duration::from_secs(10), raw.run("PAUSE"))
            .await
            .context("PAUSE with no open transaction still waiting after 10 s")??;
        reply.expect_tag("PAUSE", "PAUSE")?;
        // Closed within a moment, and still closed 1.5 s later.
        let deadline = Instant::now() + Duration::from_secs(3);
        while backends().await? > 0 {
            ensure!(
                Instant::now() < deadline,
                "PAUSE returned but {role} still has {} backends 3 s later",
                backends().await?
            );
            tokio::time::sleep(POLL).await;
        }
        let watch_until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < watch_until {
            let n = backends().await?;
            ensure!(
                n == 0,
                "while paused, pgvigil opened {n} server connection(s) again (min_pool_size 1)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        raw.run("RESUME").await?.expect_tag("RESUME", "RESUME")?;
        let v = tokio::time::timeout(Duration::from_secs(5), scalar(&app, "SELECT 9"))
            .await
            .context("query after RESUME blocked")??;
        ensure!(v == "9");
        drop(app);
        drop(vigil);
        let _ = direct
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
            ))
            .await;
        Ok(())
    })
    .await
}

/// While paused, acquire_timeout still bounds a client's wait: the query
/// fails after about acquire_timeout (0.5 s) instead of hanging; after
/// RESUME clients work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_timeout_bounds_the_wait_while_paused() -> Result<()> {
    timed(LIMIT, async {
        let vigil = console_builder(PoolMode::Transaction, 2)
            .arg("--acquire-timeout")
            .arg("0.5")
            .spawn()
            .await?;
        let app = vigil.connect_app().await?;
        scalar(&app, "SELECT 1").await?;
        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let reply = tokio::time::timeout(Duration::from_secs(10), raw.run("PAUSE"))
            .await
            .context("PAUSE with no transaction open still waiting after 10 s")??;
        reply.expect_tag("PAUSE", "PAUSE")?;
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), app.simple_query("SELECT 2"))
            .await
            .context("a query while paused outlived acquire_timeout 0.5 s by 10 s")?;
        let waited = start.elapsed();
        ensure!(
            result.is_err(),
            "a query while paused succeeded before RESUME"
        );
        ensure!(
            waited >= Duration::from_millis(400) && waited <= Duration::from_secs(3),
            "acquire_timeout 0.5 s while paused answered after {waited:?}"
        );
        raw.run("RESUME").await?.expect_tag("RESUME", "RESUME")?;
        let fresh = vigil.connect_app().await?;
        let v = tokio::time::timeout(Duration::from_secs(5), scalar(&fresh, "SELECT 3"))
            .await
            .context("query after RESUME blocked")??;
        ensure!(v == "3");
        Ok(())
    })
    .await
}

// ================================================================ RELOAD

/// A config file for the RELOAD tests: `pgvigil` and `pool` are the bodies
/// of those sections, `extra` more sections; appdb and user app always.
fn reload_config(cluster: &PgCluster, pgvigil: &str, pool: &str, extra: &str) -> String {
    format!(
        r#"[pgvigil]
client_auth = "trust"
{pgvigil}

[pool]
{pool}

[databases.appdb]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.app]
password = "secret"
{extra}
"#,
        port = cluster.port()
    )
}

/// RELOAD re-reads the config file:
/// * new pool settings show in SHOW DATABASES and SHOW CONFIG and take
///   effect (pool_size 1 -> 2: a second concurrent transaction no longer
///   waits); a new admin user and a new stats user may log in;
/// * a pool_mode change, an added database and added/removed users need a
///   restart: a WARNING/NOTICE names them, they are not applied, and SHOW
///   DATABASES/USERS/LISTS/CONFIG keep describing what is in force;
/// * an invalid file (wrong type, unknown key, value out of range) is an
///   ERROR naming the key, and nothing of it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_pool_settings_and_users_and_rejects_invalid_files() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        const BEFORE: &str = r#"admin_users = ["admin"]"#;
        const AFTER: &str = "admin_users = [\"admin\", \"ops\"]\nstats_users = [\"watcher\"]";
        const POOL_AFTER: &str = "pool_mode = \"transaction\"\npool_size = 2\n\
                                  min_pool_size = 1\nserver_lifetime = 1800.0";
        const MD5USER: &str = "\n[users.md5user]\npassword = \"md5pass\"\n";
        let vigil = Pgvigil::builder(cluster)
            .config_file(reload_config(
                cluster,
                BEFORE,
                "pool_mode = \"transaction\"\npool_size = 1",
                MD5USER,
            ))
            .spawn()
            .await?;
        let path = vigil
            .config_path()
            .context("config file path")?
            .to_path_buf();
        let admin = console(&vigil, ADMIN).await?;
        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let db_setting = |t: &Table, key: &str| -> Result<String> {
            Ok(t.one("name", APP_DB)?.get(key)?.to_string())
        };
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            db_setting(&dbs, "pool_size")? == "1" && db_setting(&dbs, "min_pool_size")? == "0",
            "initial pool_size 1, min_pool_size 0:\n{dbs}"
        );
        for user in ["ops", "watcher"] {
            let (code, _) = refused(&vigil, user, "", CONSOLE_DB).await?;
            ensure!(code == "28000", "{user} may not use the console yet: got {code}");
        }

        // pool_size 1: a second transaction waits for the first.
        let a = vigil.connect_app().await?;
        let b = vigil.connect_app().await?;
        a.batch_execute("BEGIN; SELECT 1").await?;
        let waiting = tokio::spawn(async move {
            let r = scalar(&b, "SELECT 2").await;
            (b, r)
        });
        poll_show(&admin, "SHOW POOLS", "second client waiting at pool_size 1", |t| {
            Ok(pool_counts(t)?.1 == 1)
        })
        .await?;
        a.batch_execute("COMMIT").await?;
        let (b, r) = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .context("second client still waiting after COMMIT")??;
        r?;

        // New pool settings, a second admin user, a stats user.
        std::fs::write(&path, reload_config(cluster, AFTER, POOL_AFTER, MD5USER))?;
        raw.run("RELOAD").await?.expect_tag("RELOAD", "RELOAD")?;
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            db_setting(&dbs, "pool_size")? == "2"
                && db_setting(&dbs, "min_pool_size")? == "1"
                && db_setting(&dbs, "server_lifetime")? == "1800",
            "after RELOAD: expected pool_size 2, min_pool_size 1, server_lifetime 1800:\n{dbs}"
        );
        let config = show(&admin, "SHOW CONFIG").await?;
        for (key, want) in [("pool_size", "2"), ("min_pool_size", "1"), ("server_lifetime", "1800")] {
            let got = config.one("key", key)?.get("value")?;
            ensure!(
                got == want,
                "SHOW CONFIG {key} after RELOAD = {got:?}, expected {want:?}"
            );
        }
        a.batch_execute("BEGIN; SELECT 1").await?;
        let v = tokio::time::timeout(Duration::from_secs(3), scalar(&b, "SELECT 3"))
            .await
            .context("after RELOAD to pool_size 2, a second transaction still waits")??;
        ensure!(v == "3");
        a.batch_execute("COMMIT").await?;
        let ops = console(&vigil, "ops")
            .await
            .context("ops added to admin_users by RELOAD")?;
        show(&ops, "SHOW VERSION").await?;
        let watcher = console(&vigil, "watcher")
            .await
            .context("watcher added to stats_users by RELOAD")?;
        show(&watcher, "SHOW POOLS").await?;
        let (code, message) = command_error(&watcher, "PAUSE").await?;
        ensure!(code == "42501", "stats user added by RELOAD: PAUSE gave {code}: {message}");

        // Settings that need a restart: warned about, not applied, and not
        // shown as if they were. Problems are collected so the invalid-file
        // checks below still run.
        let mut problems: Vec<String> = Vec::new();
        std::fs::write(
            &path,
            reload_config(
                cluster,
                AFTER,
                &POOL_AFTER.replace("\"transaction\"", "\"session\""),
                &format!(
                    "\n[databases.console_otherdb]\nhost = \"127.0.0.1\"\nport = {}\n\
                     dbname = \"appdb\"\n\n[users.console_newuser]\npassword = \"newpass\"\n",
                    cluster.port()
                ),
            ),
        )?;
        let reply = raw.run("RELOAD").await?;
        ensure!(
            reply.error.is_none() && reply.ready,
            "RELOAD with settings that need a restart should not fail: {}",
            reply.error_text()
        );
        let notices = reply.notice_text();
        let messages: Vec<&String> = reply.notices.iter().filter_map(|n| n.get(&b'M')).collect();
        // Each warning on its own (appdb's pool_mode warning also contains
        // "databases.").
        let names = |words: &[&str]| {
            messages
                .iter()
                .any(|m| !m.contains("pool_mode") && words.iter().any(|w| m.contains(w)))
        };
        let warned = [
            ("pool_mode", messages.iter().any(|m| m.contains("pool_mode"))),
            ("the added database", names(&["console_otherdb", "databases"])),
            ("the added user", names(&["console_newuser", "users"])),
        ];
        for (what, ok) in warned {
            if !ok {
                problems.push(format!(
                    "RELOAD: no WARNING/NOTICE naming {what} (needs a restart); notices:\n{notices}"
                ));
            }
        }
        let dbs = show(&admin, "SHOW DATABASES").await?;
        if db_setting(&dbs, "pool_mode")? != "transaction" {
            problems.push(format!("SHOW DATABASES shows appdb's pool_mode changed without a restart:\n{dbs}"));
        }
        if !dbs.where_eq("name", "console_otherdb").is_empty() {
            problems.push(format!(
                "SHOW DATABASES lists console_otherdb, which RELOAD did not apply (needs a restart):\n{dbs}"
            ));
        }
        let users = show(&admin, "SHOW USERS").await?;
        if !users.where_eq("name", "console_newuser").is_empty()
            || users.where_eq("name", "md5user").is_empty()
        {
            problems.push(format!(
                "SHOW USERS should still list app and md5user and not console_newuser: users \
                 added/removed by RELOAD need a restart:\n{users}"
            ));
        }
        let lists = show(&admin, "SHOW LISTS").await?;
        let (n_dbs, n_users) = (
            lists.one("list", "databases")?.int("items")?,
            lists.one("list", "users")?.int("items")?,
        );
        if (n_dbs, n_users) != (1, 2) {
            problems.push(format!(
                "SHOW LISTS counts databases {n_dbs}, users {n_users}; pgvigil serves 1 and 2 \
                 (app, md5user) until restarted:\n{lists}"
            ));
        }
        let config = show(&admin, "SHOW CONFIG").await?;
        let mode = config.one("key", "pool_mode")?.get("value")?;
        if mode != "transaction" {
            problems.push(format!("SHOW CONFIG pool_mode = {mode:?} without a restart"));
        }
        let login = |user: &'static str, db: &'static str| {
            let cfg = vigil.config(user, "newpass", db);
            async move {
                match connect_config(&cfg).await {
                    Ok(c) => format!(
                        "login succeeded, current_database() = {:?}",
                        scalar(&c, "SELECT current_database()").await
                    ),
                    Err(e) => {
                        let (code, message) = error_of(&e);
                        format!("{code}: {message}")
                    }
                }
            }
        };
        let other_db = login(APP_USER, "console_otherdb").await;
        if !other_db.starts_with("3D000") {
            problems.push(format!(
                "logging in to console_otherdb (not applied) should give 3D000: {other_db}"
            ));
        }
        // md5user was removed from the file: turned away at once (a removed
        // account must stop working without a restart).
        let removed = login("md5user", APP_DB).await;
        if !removed.starts_with("28000") {
            problems.push(format!(
                "md5user was removed from the file; RELOAD should turn it away with 28000: {removed}"
            ));
        }
        let new_user = login("console_newuser", APP_DB).await;
        if !new_user.starts_with("28000") {
            problems.push(format!(
                "logging in as console_newuser (not applied) should give 28000: {new_user}"
            ));
        }

        // Invalid files: an ERROR naming the key; nothing of them applied
        // (each also sets pool_size 5 and drops ops and watcher).
        for (what, pool, key) in [
            (
                "wrong type",
                "pool_mode = \"transaction\"\npool_size = 5\nmin_pool_size = \"big\"",
                "min_pool_size",
            ),
            (
                "unknown key",
                "pool_mode = \"transaction\"\npool_size = 5\npool_sise = 5",
                "pool_sise",
            ),
            (
                "negative duration",
                "pool_mode = \"transaction\"\npool_size = 5\nserver_lifetime = -1.0",
                "server_lifetime",
            ),
        ] {
            std::fs::write(&path, reload_config(cluster, BEFORE, pool, ""))?;
            let reply = raw.run("RELOAD").await?;
            ensure!(
                reply.ready && reply.tag.is_none() && reply.error_text().contains(key),
                "RELOAD of a file with a {what} should be an ERROR naming {key}: tag {:?}, error {:?}",
                reply.tag,
                reply.error_text()
            );
            let dbs = show(&admin, "SHOW DATABASES").await?;
            ensure!(
                db_setting(&dbs, "pool_size")? == "2"
                    && db_setting(&dbs, "min_pool_size")? == "1"
                    && db_setting(&dbs, "server_lifetime")? == "1800",
                "after a failed RELOAD ({what}) the pool settings should be unchanged \
                 (pool_size 2, min_pool_size 1, server_lifetime 1800):\n{dbs}"
            );
            for user in ["ops", "watcher"] {
                let c = console(&vigil, user).await.with_context(|| {
                    format!("{user} should still be a console user after a failed RELOAD ({what})")
                })?;
                show(&c, "SHOW VERSION").await?;
            }
        }
        raw.run("SHOW VERSION")
            .await?
            .expect_tag("SHOW VERSION after failed RELOADs", "SHOW")?;
        drop(b);
        ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
        Ok(())
    })
    .await
}

/// RELOAD applies changed client passwords: with scram-sha-256, a console
/// user configured in `[users.NAME]` logs in with the new password after
/// RELOAD and the old one is refused with 28P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_changed_passwords() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let config = |ops_password: &str| {
            format!(
                r#"[pgvigil]
client_auth = "scram-sha-256"
admin_users = ["ops"]

[pool]
pool_mode = "transaction"
pool_size = 2

[databases.appdb]
host = "127.0.0.1"
port = {port}
dbname = "appdb"

[users.app]
password = "secret"

[users.ops]
password = "{ops_password}"
"#,
                port = cluster.port()
            )
        };
        let vigil = Pgvigil::builder(cluster)
            .config_file(config("first-pw"))
            .spawn()
            .await?;
        let ops = vigil
            .connect("ops", "first-pw", CONSOLE_DB)
            .await
            .context("ops with its configured password")?;
        std::fs::write(
            vigil.config_path().context("config file path")?,
            config("second-pw"),
        )?;
        ops.simple_query("RELOAD").await.context("RELOAD")?;
        let again = vigil
            .connect("ops", "second-pw", CONSOLE_DB)
            .await
            .context("ops with the password set by RELOAD")?;
        show(&again, "SHOW VERSION").await?;
        let (code, message) = refused(&vigil, "ops", "first-pw", CONSOLE_DB).await?;
        ensure!(
            code == "28P01",
            "the old password after RELOAD: expected 28P01, got {code}: {message}"
        );
        let app = vigil.connect_app().await?;
        ensure!(scalar(&app, "SELECT 1").await? == "1");
        Ok(())
    })
    .await
}

/// RELOAD applies server_reset_query and acquire_timeout (session mode,
/// pool_size 1, so every client gets the same backend): with no reset query
/// a custom setting leaks to the next client; after RELOAD to DISCARD ALL it
/// does not; after RELOAD to acquire_timeout 0.5 a second client gives up
/// after about 0.5 s instead of 30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_server_reset_query_and_acquire_timeout() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let pool = |reset: &str, timeout: &str| {
            format!(
                "pool_mode = \"session\"\npool_size = 1\nserver_reset_query = \"{reset}\"\n\
                 acquire_timeout = {timeout}"
            )
        };
        let vigil = Pgvigil::builder(cluster)
            .config_file(reload_config(
                cluster,
                r#"admin_users = ["admin"]"#,
                &pool("", "30.0"),
                "",
            ))
            .spawn()
            .await?;
        let admin = console(&vigil, ADMIN).await?;
        let released = |what: &'static str| {
            let admin = &admin;
            async move {
                poll_show(admin, "SHOW POOLS", what, |t| {
                    let (cl_active, _, sv_active, sv_idle) = pool_counts(t)?;
                    Ok(cl_active == 0 && sv_active == 0 && sv_idle == 1)
                })
                .await
            }
        };
        // Leaves `value` in the session, disconnects; returns the backend pid.
        let leave = |value: &'static str| {
            let vigil = &vigil;
            async move {
                let c = vigil.connect_app().await?;
                c.batch_execute(&format!("SET console.flag = '{value}'"))
                    .await?;
                let pid = scalar(&c, "SELECT pg_backend_pid()").await?;
                drop(c);
                anyhow::Ok(pid)
            }
        };
        const SEEN: &str =
            "SELECT coalesce(current_setting('console.flag', true), '') || '/' || pg_backend_pid()";

        let pid = leave("leaked").await?;
        released("first client's server released").await?;
        let c = vigil.connect_app().await?;
        let v = scalar(&c, SEEN).await?;
        ensure!(
            v == format!("leaked/{pid}"),
            "baseline with server_reset_query \"\": the next client on backend {pid} should see \
             the setting left behind, saw {v:?}"
        );
        drop(c);
        released("second client's server released").await?;

        std::fs::write(
            vigil.config_path().context("config file path")?,
            reload_config(
                cluster,
                r#"admin_users = ["admin"]"#,
                &pool("DISCARD ALL", "0.5"),
                "",
            ),
        )?;
        admin.simple_query("RELOAD").await.context("RELOAD")?;
        let pid = leave("again").await?;
        released("third client's server released").await?;
        let holder = vigil.connect_app().await?;
        let v = scalar(&holder, SEEN).await?;
        ensure!(
            v == format!("/{pid}"),
            "after RELOAD to server_reset_query DISCARD ALL the next client on backend {pid} \
             should see no leftover setting, saw {v:?}"
        );

        // holder keeps the only server (session mode): the next client waits
        // acquire_timeout, now 0.5 s.
        let start = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(15), async {
            let c = vigil.connect_app().await?;
            c.simple_query("SELECT 1")
                .await
                .map_err(anyhow::Error::from)
        })
        .await;
        let waited = start.elapsed();
        ensure!(
            matches!(outcome, Ok(Err(_))) && waited <= Duration::from_secs(3),
            "after RELOAD to acquire_timeout 0.5, a client waiting for the only server should \
             fail within ~0.5 s; got {:?} after {waited:?}",
            outcome.map(|r| r.map(|m| m.len()))
        );
        drop(holder);
        Ok(())
    })
    .await
}

/// SIGHUP does what RELOAD does: a new pool_size shows in SHOW DATABASES;
/// an invalid file changes nothing (and pgvigil keeps running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let mut vigil = Pgvigil::builder(cluster)
            .config_file(reload_config(
                cluster,
                r#"admin_users = ["admin"]"#,
                "pool_mode = \"transaction\"\npool_size = 1",
                "",
            ))
            .spawn()
            .await?;
        let admin = console(&vigil, ADMIN).await?;
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            dbs.one("name", APP_DB)?.int("pool_size")? == 1,
            "initial:\n{dbs}"
        );
        std::fs::write(
            vigil.config_path().context("config file path")?,
            reload_config(
                cluster,
                r#"admin_users = ["admin"]"#,
                "pool_mode = \"transaction\"\npool_size = 3",
                "",
            ),
        )?;
        // SAFETY: plain syscall on the pid of the pgvigil this test started.
        let rc = unsafe { libc::kill(vigil.pid()? as libc::pid_t, libc::SIGHUP) };
        ensure!(rc == 0, "kill -HUP failed");
        poll_show(&admin, "SHOW DATABASES", "pool_size 3 after SIGHUP", |t| {
            Ok(t.one("name", APP_DB)?.int("pool_size")? == 3)
        })
        .await?;
        ensure!(scalar(&vigil.connect_app().await?, "SELECT 1").await? == "1");

        // An invalid file on SIGHUP changes nothing and does not stop pgvigil;
        // a valid one after it is applied again.
        let path = vigil
            .config_path()
            .context("config file path")?
            .to_path_buf();
        std::fs::write(
            &path,
            reload_config(
                cluster,
                r#"admin_users = ["admin"]"#,
                "pool_mode = \"transaction\"\npool_size = \"many\"",
                "",
            ),
        )?;
        // SAFETY: as above.
        ensure!(unsafe { libc::kill(vigil.pid()? as libc::pid_t, libc::SIGHUP) } == 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            vigil.is_running(),
            "pgvigil exited on SIGHUP with an invalid config file"
        );
        let dbs = show(&admin, "SHOW DATABASES").await?;
        ensure!(
            dbs.one("name", APP_DB)?.int("pool_size")? == 3,
            "after SIGHUP with an invalid file pool_size should still be 3:\n{dbs}"
        );
        std::fs::write(
            &path,
            reload_config(
                cluster,
                r#"admin_users = ["admin"]"#,
                "pool_mode = \"transaction\"\npool_size = 4",
                "",
            ),
        )?;
        // SAFETY: as above.
        ensure!(unsafe { libc::kill(vigil.pid()? as libc::pid_t, libc::SIGHUP) } == 0);
        poll_show(
            &admin,
            "SHOW DATABASES",
            "pool_size 4 after a second SIGHUP",
            |t| Ok(t.one("name", APP_DB)?.int("pool_size")? == 4),
        )
        .await?;
        Ok(())
    })
    .await
}

// ================================================================ SHUTDOWN

/// SHUTDOWN answers tag SHUTDOWN, stops accepting new clients, lets a client
/// inside a transaction finish it, and pgvigil exits with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_open_transaction_finish_and_exits_0() -> Result<()> {
    timed(LIMIT, async {
        let mut vigil = start_console(PoolMode::Transaction, 2).await?;
        let app = vigil.connect_app().await?;
        app.batch_execute("BEGIN").await?;
        ensure!(scalar(&app, "SELECT 1").await? == "1");
        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let shutdown = tokio::spawn(async move { raw.run("SHUTDOWN").await });

        // New clients are turned away.
        let cfg = vigil.app_config();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match connect_config(&cfg).await {
                Err(_) => break,
                Ok(c) => {
                    drop(c);
                    ensure!(
                        Instant::now() < deadline,
                        "pgvigil still accepts new clients 5 s after SHUTDOWN"
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        // The open transaction finishes.
        let v = scalar(&app, "SELECT 2")
            .await
            .context("query inside the open transaction after SHUTDOWN")?;
        ensure!(v == "2");
        app.batch_execute("COMMIT")
            .await
            .context("COMMIT of the open transaction after SHUTDOWN")?;
        drop(app);

        let reply = tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .context("no answer to SHUTDOWN")???;
        ensure!(
            reply.error.is_none() && reply.tag.as_deref() == Some("SHUTDOWN"),
            "SHUTDOWN: expected tag SHUTDOWN, got tag {:?}, error {:?}, closed {:?}",
            reply.tag,
            reply.error_text(),
            reply.closed
        );
        let status = tokio::task::block_in_place(|| vigil.wait_exit(Duration::from_secs(20)))?;
        match status {
            None => bail!("pgvigil still running 20 s after SHUTDOWN with no client left"),
            Some(s) => ensure!(
                s.success(),
                "pgvigil exited with {s} after SHUTDOWN, expected 0"
            ),
        }
        Ok(())
    })
    .await
}

/// SHUTDOWN does not wait forever for clients that stay connected: with an
/// idle app client and another console session left open, pgvigil still
/// exits with status 0 once its grace period is over (and those clients
/// are disconnected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_exits_0_after_the_grace_period_with_clients_still_connected() -> Result<()> {
    timed(LIMIT, async {
        let mut vigil = start_console(PoolMode::Session, 2).await?;
        let app = vigil.connect_app().await?;
        ensure!(scalar(&app, "SELECT 1").await? == "1");
        let watcher = console(&vigil, STATS).await?;
        let admin = console(&vigil, ADMIN).await?;
        // The reply may or may not arrive before the session is closed.
        let _ = tokio::time::timeout(Duration::from_secs(5), admin.simple_query("SHUTDOWN")).await;
        let start = Instant::now();
        let status = tokio::task::block_in_place(|| vigil.wait_exit(Duration::from_secs(30)))?;
        match status {
            None => {
                bail!("pgvigil still running 30 s after SHUTDOWN with an idle client connected")
            }
            Some(s) => ensure!(
                s.success(),
                "pgvigil exited with {s} after SHUTDOWN (grace period over), expected 0"
            ),
        }
        let left = tokio::time::timeout(Duration::from_secs(5), app.simple_query("SELECT 2"))
            .await
            .context("the app client's query hangs after pgvigil exited")?;
        ensure!(
            left.is_err(),
            "the app client still got an answer after pgvigil exited ({:?} after SHUTDOWN)",
            start.elapsed()
        );
        drop(watcher);
        Ok(())
    })
    .await
}

/// An upstream given as a Unix socket directory (libpq's `?host=/dir`)
/// carries queries, transactions and cancel requests over the socket:
/// PostgreSQL sees the backends with no client address (the socket), and
/// SHOW SERVERS says `unix`, as PgBouncer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_upstream_carries_queries_and_cancels() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let upstream = format!(
            "postgres:///{APP_DB}?host={}&port={}&user={APP_USER}&password=secret",
            cluster.socket_dir().display(),
            cluster.port()
        );
        let vigil = console_builder(PoolMode::Transaction, 2)
            .upstream(upstream)
            .spawn()
            .await?;
        let app = app_client(&vigil, "unix-upstream-probe").await?;
        let row = app
            .query_one("SELECT inet_client_addr() IS NULL, pg_backend_pid()", &[])
            .await
            .context("a query through the unix-socket upstream")?;
        let (over_socket, pid): (bool, i32) = (row.get(0), row.get(1));
        ensure!(
            over_socket,
            "PostgreSQL saw backend {pid} connect over TCP, not the unix socket"
        );
        app.batch_execute("BEGIN; SELECT count(*) FROM pg_class; COMMIT")
            .await
            .context("a transaction through the unix-socket upstream")?;

        let token = app.cancel_token();
        let sleeper = tokio::spawn(async move { app.simple_query("SELECT pg_sleep(10)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        token
            .cancel_query(pgvigil_integration::tokio_postgres::NoTls)
            .await
            .context("sending a cancel request through pgvigil")?;
        let result = tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .context("pg_sleep(10) was not cancelled within 5 s")?
            .context("the query task panicked")?;
        match result {
            Err(e) if sqlstate(&e) == Some("57014") => {}
            other => bail!("expected the query to be cancelled (57014), got {other:?}"),
        }

        let admin = console(&vigil, ADMIN).await?;
        let servers = show(&admin, "SHOW SERVERS").await?;
        let server = servers.one("remote_pid", &pid.to_string())?;
        let port = cluster.port().to_string();
        ensure!(
            server.get("addr")? == "unix" && server.get("port")? == port,
            "SHOW SERVERS row of backend {pid}: expected addr unix, port {port}; got {server}"
        );
        Ok(())
    })
    .await
}

/// SHOW CONFIG lists the TLS, leak-guard and auth settings (file paths,
/// never a password read from the environment); RELOAD changes the
/// timeouts and names a changed server_require_auth as needing a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_config_lists_tls_timeout_and_auth_settings_and_reload_changes_timeouts() -> Result<()>
{
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let env_password = unique_name("env_pw_value");
        let section = |require_auth: &str| {
            format!(
                "admin_users = [\"admin\"]\nserver_tls_sslmode = \"disable\"\n\
                 server_tls_ca_file = \"/etc/pgvigil/pg-ca.pem\"\n\
                 client_login_timeout = 5\nserver_require_auth = \"{require_auth}\""
            )
        };
        const ENV_USER: &str = "\n[users.envuser]\npassword_env = \"PGVIGIL_TEST_ENVUSER_PW\"\n";
        let vigil = Pgvigil::builder(cluster)
            .config_file(reload_config(
                cluster,
                &section("!password"),
                "query_timeout = 30",
                ENV_USER,
            ))
            .env("PGVIGIL_TEST_ENVUSER_PW", &env_password)
            .spawn()
            .await?;
        let path = vigil
            .config_path()
            .context("config file path")?
            .to_path_buf();
        let admin = console(&vigil, ADMIN).await?;

        let config = show(&admin, "SHOW CONFIG").await?;
        let expected = [
            ("query_timeout", "30"),
            ("idle_transaction_timeout", "0"),
            ("client_idle_timeout", "0"),
            ("transaction_timeout", "0"),
            ("query_wait_timeout", "120"),
            ("client_login_timeout", "5"),
            ("shutdown_timeout", "10"),
            ("client_tls_sslmode", "disable"),
            ("client_tls_cert_file", ""),
            ("server_tls_sslmode", "disable"),
            ("server_tls_ca_file", "/etc/pgvigil/pg-ca.pem"),
            ("server_require_auth", "!password"),
            ("auth_user", ""),
            (
                "auth_query",
                "SELECT usename, passwd FROM pg_shadow WHERE usename = $1",
            ),
        ];
        for (key, want) in expected {
            let got = config.one("key", key)?.get("value")?;
            ensure!(
                got == want,
                "SHOW CONFIG {key} = {got:?}, expected {want:?}"
            );
        }
        for row in config.rows() {
            for cell in row.cells.iter().flatten() {
                ensure!(
                    !cell.contains(&env_password),
                    "SHOW CONFIG shows a password read from password_env: {row}"
                );
            }
        }

        std::fs::write(
            &path,
            reload_config(
                cluster,
                &section("scram-sha-256"),
                "query_timeout = 7\nidle_transaction_timeout = 2.5",
                ENV_USER,
            ),
        )?;
        let mut raw = RawConsole::login(&vigil, ADMIN).await?;
        let reply = raw.run("RELOAD").await?;
        reply.expect_tag("RELOAD", "RELOAD")?;
        let notices = reply.notice_text();
        ensure!(
            notices.contains("server_require_auth"),
            "RELOAD: no notice that server_require_auth needs a restart:\n{notices}"
        );
        let config = show(&admin, "SHOW CONFIG").await?;
        for (key, want) in [
            ("query_timeout", "7"),
            ("idle_transaction_timeout", "2.5"),
            ("server_require_auth", "!password"),
        ] {
            let got = config.one("key", key)?.get("value")?;
            ensure!(
                got == want,
                "SHOW CONFIG {key} after RELOAD = {got:?}, expected {want:?}"
            );
        }
        Ok(())
    })
    .await
}

/// Each new flag reaches its setting: SHOW CONFIG shows what was given on
/// the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_timeout_and_auth_flags_show_in_show_config() -> Result<()> {
    timed(LIMIT, async {
        let flags: &[(&str, &str, &str)] = &[
            ("--query-timeout", "31", "query_timeout"),
            (
                "--idle-transaction-timeout",
                "32",
                "idle_transaction_timeout",
            ),
            ("--client-idle-timeout", "33", "client_idle_timeout"),
            ("--transaction-timeout", "34", "transaction_timeout"),
            ("--query-wait-timeout", "35", "query_wait_timeout"),
            ("--client-login-timeout", "36", "client_login_timeout"),
            ("--shutdown-timeout", "37", "shutdown_timeout"),
            ("--server-tls-sslmode", "disable", "server_tls_sslmode"),
            (
                "--server-tls-ca-file",
                "/tmp/pg-ca.pem",
                "server_tls_ca_file",
            ),
            (
                "--server-require-auth",
                "scram-sha-256,none",
                "server_require_auth",
            ),
            (
                "--client-tls-ca-file",
                "/tmp/client-ca.pem",
                "client_tls_ca_file",
            ),
            ("--auth-user", APP_USER, "auth_user"),
            ("--auth-query", "SELECT u, p FROM lookup($1)", "auth_query"),
        ];
        let mut builder = console_builder(PoolMode::Session, 2);
        for (flag, value, _) in flags {
            builder = builder.arg(*flag).arg(*value);
        }
        let vigil = builder.spawn().await?;
        let admin = console(&vigil, ADMIN).await?;
        let config = show(&admin, "SHOW CONFIG").await?;
        for (flag, want, key) in flags {
            let got = config.one("key", key)?.get("value")?;
            ensure!(got == *want, "{flag} {want}: SHOW CONFIG {key} = {got:?}");
        }
        ensure!(
            config.one("key", "acquire_timeout")?.get("value")? == "35",
            "--query-wait-timeout sets acquire_timeout too:\n{config}"
        );
        Ok(())
    })
    .await
}
