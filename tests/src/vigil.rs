//! The real `pgvigil` binary as a subprocess.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::stream::{poll_fn, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::cluster::{PgCluster, APP_DB, APP_PASSWORD, APP_USER};
use crate::spawn::{signal, spawn_tied};
use crate::util::{free_ports, rss_bytes, wait_child_timeout};

/// libpq environment variables that could redirect or alter a client's
/// connection; cleared for the clients the tests run.
pub(crate) const LIBPQ_ENV_TO_CLEAR: [&str; 5] = [
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGPASSFILE",
    "PGAPPNAME",
];

/// `--pool-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// Path of the pgvigil binary: `$PGVIGIL_BIN`, else `target/<profile>/pgvigil`
/// next to the running test executable (`target/<profile>/deps/<test>-<hash>`).
///
/// Panics with instructions when it is missing.
pub fn binary_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("PGVIGIL_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("locating the running test executable");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("pgvigil");
    if !bin.is_file() {
        panic!(
            "pgvigil binary not found at {}: run `cargo build -p pgvigil` first \
             (or point PGVIGIL_BIN at it)",
            bin.display()
        );
    }
    bin
}

/// Builds a `pgvigil` command line and spawns it.
pub struct PgvigilBuilder {
    upstream: Option<String>,
    pool_mode: Option<PoolMode>,
    pool_size: Option<u32>,
    max_client_conn: Option<u32>,
    client_auth: Option<String>,
    config: Option<String>,
    listen_host: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl PgvigilBuilder {
    /// Host part of `--listen` (default `127.0.0.1`), e.g. `0.0.0.0` to accept
    /// clients on a non-loopback address too. Readiness is still probed on
    /// 127.0.0.1, so the host must include loopback.
    pub fn listen_host(mut self, host: &str) -> Self {
        self.listen_host = Some(host.to_string());
        self
    }

    /// Upstream URL; defaults to `postgres://app:secret@127.0.0.1:<cluster port>/appdb`
    /// unless a config file is given.
    pub fn upstream(mut self, url: impl Into<String>) -> Self {
        self.upstream = Some(url.into());
        self
    }

    pub fn pool_mode(mut self, mode: PoolMode) -> Self {
        self.pool_mode = Some(mode);
        self
    }

    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = Some(n);
        self
    }

    pub fn max_client_conn(mut self, n: u32) -> Self {
        self.max_client_conn = Some(n);
        self
    }

    /// `trust`, `md5` or `scram-sha-256`.
    pub fn client_auth(mut self, method: &str) -> Self {
        self.client_auth = Some(method.to_string());
        self
    }

    /// TOML text written to a file and passed with `--config`. Drops the default
    /// `--upstream` (call [`PgvigilBuilder::upstream`] afterwards to add one).
    pub fn config_file(mut self, toml: impl Into<String>) -> Self {
        self.config = Some(toml.into());
        self.upstream = None;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Spawns pgvigil and waits (10 s at most) until its client listener accepts TCP.
    pub async fn spawn(self) -> Result<Pgvigil> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgvigil-it-{}-vigil-", std::process::id()))
            .tempdir()
            .context("creating pgvigil's temporary directory")?;
        let stderr_path = dir.path().join("stderr.log");
        let config_path = self
            .config
            .as_ref()
            .map(|_| dir.path().join("pgvigil.toml"));
        let bin = binary_path();
        let ports = free_ports(2)?;
        let (port, admin_port) = (ports[0], ports[1]);

        let mut cmd = Command::new(&bin);
        cmd.arg("--listen")
            .arg(format!(
                "{}:{port}",
                self.listen_host.as_deref().unwrap_or("127.0.0.1")
            ))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"));
        if let (Some(text), Some(path)) = (&self.config, &config_path) {
            std::fs::write(path, text).context("writing pgvigil config file")?;
            cmd.arg("--config").arg(path);
        }
        if let Some(url) = &self.upstream {
            cmd.arg("--upstream").arg(url);
        }
        if let Some(mode) = self.pool_mode {
            cmd.arg("--pool-mode").arg(mode.as_str());
        }
        if let Some(n) = self.pool_size {
            cmd.arg("--pool-size").arg(n.to_string());
        }
        if let Some(n) = self.max_client_conn {
            cmd.arg("--max-client-conn").arg(n.to_string());
        }
        if let Some(method) = &self.client_auth {
            cmd.arg("--client-auth").arg(method);
        }
        cmd.args(&self.args);
        cmd.env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))
            .context("creating pgvigil stdout file")?;
        let stderr = std::fs::File::create(&stderr_path).context("creating pgvigil stderr file")?;
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = spawn_tied(cmd, libc::SIGKILL)
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut vigil = Pgvigil {
            child: Some(child),
            port,
            admin_port,
            stderr_path,
            config_path,
            _dir: dir,
        };
        vigil.wait_listening(Duration::from_secs(10)).await?;
        Ok(vigil)
    }
}

/// A running pgvigil process; killed on drop.
pub struct Pgvigil {
    child: Option<Child>,
    port: u16,
    admin_port: u16,
    stderr_path: PathBuf,
    /// The `--config` file written from [`PgvigilBuilder::config_file`].
    config_path: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Pgvigil {
    /// A builder in front of `cluster` with the default upstream
    /// `postgres://app:secret@127.0.0.1:<port>/appdb`.
    pub fn builder(cluster: &PgCluster) -> PgvigilBuilder {
        PgvigilBuilder {
            upstream: Some(cluster.url(APP_DB)),
            pool_mode: None,
            pool_size: None,
            max_client_conn: None,
            client_auth: None,
            config: None,
            listen_host: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Shorthand: default upstream, the given pool mode and size.
    pub async fn start(cluster: &PgCluster, mode: PoolMode, pool_size: u32) -> Result<Pgvigil> {
        Pgvigil::builder(cluster)
            .pool_mode(mode)
            .pool_size(pool_size)
            .spawn()
            .await
    }

    /// Shorthand: as [`Pgvigil::start`], with clients let in without a
    /// password (`--client-auth trust`), for the raw wire-protocol tests.
    pub async fn start_trust(
        cluster: &PgCluster,
        mode: PoolMode,
        pool_size: u32,
    ) -> Result<Pgvigil> {
        Pgvigil::builder(cluster)
            .pool_mode(mode)
            .pool_size(pool_size)
            .client_auth("trust")
            .spawn()
            .await
    }

    /// A builder with the config file `toml` (`--config`) and, after it, the
    /// default upstream, which [`PgvigilBuilder::config_file`] alone drops.
    pub fn builder_with_config(cluster: &PgCluster, toml: impl Into<String>) -> PgvigilBuilder {
        Pgvigil::builder(cluster)
            .config_file(toml)
            .upstream(cluster.url(APP_DB))
    }

    /// Shorthand: the config file `toml`, default upstream, the given pool mode and size.
    pub async fn start_with_config(
        cluster: &PgCluster,
        toml: impl Into<String>,
        mode: PoolMode,
        pool_size: u32,
    ) -> Result<Pgvigil> {
        Pgvigil::builder_with_config(cluster, toml)
            .pool_mode(mode)
            .pool_size(pool_size)
            .spawn()
            .await
    }

    async fn wait_listening(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking pgvigil process")? {
                    bail!(
                        "pgvigil exited before listening ({status}); stderr:\n{}",
                        self.stderr()
                    );
                }
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "pgvigil not accepting connections on 127.0.0.1:{} after {limit:?}; stderr:\n{}",
                    self.port,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Client listener port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Admin HTTP listener port (127.0.0.1).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(|c| c.id())
            .context("pgvigil process already reaped")
    }

    /// Current resident set size of the pgvigil process, in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes(self.pid()?)
    }

    /// Everything pgvigil wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("<could not read pgvigil stderr: {e}>"))
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends `sig` (SIGTERM, SIGINT, ...) without waiting for anything.
    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        signal(self.pid()?, sig).with_context(|| format!("sending signal {sig} to pgvigil"))
    }

    /// Fails if pgvigil's log shows a panic (of any task: a panicking
    /// session task does not take the process down, so liveness alone
    /// would not notice).
    pub fn assert_no_panic(&self) -> Result<()> {
        let stderr = self.stderr();
        if stderr.contains("panicked") {
            bail!("pgvigil panicked; stderr:\n{}", tail(&stderr, 4000));
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("no pgvigil process")?;
        signal(child.id(), libc::SIGTERM).context("sending SIGTERM to pgvigil")?;
        wait_child_timeout(child, limit)?
            .with_context(|| format!("pgvigil still running {limit:?} after SIGTERM"))
    }

    /// The `--config` file pgvigil was started with (written from
    /// [`PgvigilBuilder::config_file`]), for tests that rewrite it and reload.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Waits up to `limit` for the process to exit on its own (no signal is
    /// sent); `None` if it is still running. Blocking.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let child = self.child.as_mut().context("no pgvigil process")?;
        wait_child_timeout(child, limit)
    }

    /// Connection settings for a client of this pgvigil (empty password = none).
    pub fn config(&self, user: &str, password: &str, db: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        if !password.is_empty() {
            cfg.password(password);
        }
        cfg
    }

    /// `postgres://app:secret@127.0.0.1:<pgvigil port>/appdb`, for clients that take a URL.
    pub fn app_url(&self) -> String {
        format!(
            "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{APP_DB}",
            self.port
        )
    }

    /// Connection settings for `app`/`secret` on `appdb`.
    pub fn app_config(&self) -> tokio_postgres::Config {
        self.config(APP_USER, APP_PASSWORD, APP_DB)
    }

    /// Connects through pgvigil; the connection task runs in the background.
    pub async fn connect(&self, user: &str, password: &str, db: &str) -> Result<Client> {
        connect_config(&self.config(user, password, db))
            .await
            .with_context(|| format!("connecting to pgvigil on port {} as {user}@{db}", self.port))
    }

    /// Connects as `app`/`secret` to `appdb`.
    pub async fn connect_app(&self) -> Result<Client> {
        self.connect(APP_USER, APP_PASSWORD, APP_DB).await
    }

    /// A `psql`/`pgbench`-style command aimed at this pgvigil through libpq
    /// environment variables (sslmode=disable; killed when dropped).
    pub fn libpq_command(
        &self,
        program: &str,
        user: &str,
        password: &str,
        db: &str,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        for var in LIBPQ_ENV_TO_CLEAR {
            cmd.env_remove(var);
        }
        cmd.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", user)
            .env("PGDATABASE", db)
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `psql -X -A -t -v ON_ERROR_STOP=1 <args>` through pgvigil (60 s limit).
    pub async fn psql(
        &self,
        user: &str,
        password: &str,
        db: &str,
        args: &[&str],
    ) -> Result<Output> {
        let mut cmd = self.libpq_command("/usr/bin/psql", user, password, db);
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args);
        run_output(cmd, "psql", Duration::from_secs(60)).await
    }

    /// Runs `pgbench <args>` through pgvigil as `app` on `appdb`.
    pub async fn pgbench(&self, args: &[&str], limit: Duration) -> Result<PgbenchReport> {
        self.pgbench_env(args, &[], limit).await
    }

    /// [`Pgvigil::pgbench`] with libpq environment variables set or
    /// overridden (`PGSSLMODE=require` to encrypt pgbench's connections).
    pub async fn pgbench_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Result<PgbenchReport> {
        let mut cmd = self.libpq_command("/usr/bin/pgbench", APP_USER, APP_PASSWORD, APP_DB);
        cmd.envs(env.iter().copied());
        cmd.args(args);
        let out = run_output(cmd, "pgbench", limit).await?;
        Ok(PgbenchReport::parse(out))
    }
}

impl Drop for Pgvigil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The test harness shows a test's captured stdout only when it fails.
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        let skip = lines.len().saturating_sub(40);
        println!(
            "--- pgvigil on port {} stderr (last {} of {} lines) ---\n{}\n---",
            self.port,
            lines.len() - skip,
            lines.len(),
            lines[skip..].join("\n")
        );
    }
}

async fn run_output(
    mut cmd: tokio::process::Command,
    what: &str,
    limit: Duration,
) -> Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("spawning {what}"))?;
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{what} still running after {limit:?}"))?
        .with_context(|| format!("waiting for {what}"))
}

/// Connects with `cfg`; the connection task runs in the background.
pub async fn connect_config(cfg: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Connects with `cfg`, returning the connection task's handle so a test can
/// abort it (closing the socket without a Terminate message).
pub async fn connect_with_handle(
    cfg: &tokio_postgres::Config,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let (client, conn) = cfg.connect(NoTls).await?;
    let handle = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, handle))
}

/// Connects with `cfg` and forwards asynchronous messages (notifications,
/// notices) to the returned channel.
pub async fn connect_with_messages(
    cfg: &tokio_postgres::Config,
) -> Result<(Client, mpsc::UnboundedReceiver<AsyncMessage>), tokio_postgres::Error> {
    let (client, mut conn) = cfg.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    Ok((client, rx))
}

/// What a pgbench run printed, with the numbers the tests care about.
#[derive(Debug)]
pub struct PgbenchReport {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
    /// "number of failed transactions: N"
    pub failed: Option<u64>,
    /// "number of transactions actually processed: N"
    pub processed: Option<u64>,
}

impl PgbenchReport {
    fn parse(output: Output) -> PgbenchReport {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let number_after = |label: &str| {
            stdout.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(label)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.split('/').next())
                    .and_then(|n| n.parse().ok())
            })
        };
        let failed = number_after("number of failed transactions:");
        let processed = number_after("number of transactions actually processed:");
        PgbenchReport {
            output,
            stdout,
            stderr,
            failed,
            processed,
        }
    }

    /// Exit status 0 and "number of failed transactions: 0".
    pub fn assert_clean(&self, what: &str) -> Result<()> {
        if !self.output.status.success() || self.failed != Some(0) {
            bail!(
                "{what}: pgbench exit {}, failed transactions {:?}\nstdout:\n{}\nstderr:\n{}",
                self.output.status,
                self.failed,
                self.stdout,
                tail(&self.stderr, 4000)
            );
        }
        Ok(())
    }
}

/// The last `max` bytes of `s` (on a char boundary).
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Result of running the pgvigil binary to completion (CLI tests).
#[derive(Debug)]
pub struct CliRun {
    /// `None`: still running after the time limit (then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `pgvigil <args>` (plus `--config <file>` when `config` is given) with
/// `RUST_LOG` unset, waiting up to `limit` for it to exit.
pub fn run_cli(args: &[&str], config: Option<&str>, limit: Duration) -> Result<CliRun> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("pgvigil-it-{}-cli-", std::process::id()))
        .tempdir()
        .context("creating a temporary directory")?;
    let bin = binary_path();
    let mut cmd = Command::new(&bin);
    cmd.args(args);
    if let Some(text) = config {
        let path = dir.path().join("pgvigil.toml");
        std::fs::write(&path, text).context("writing config file")?;
        cmd.arg("--config").arg(&path);
    }
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    cmd.env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).context("creating stdout file")?)
        .stderr(std::fs::File::create(&err_path).context("creating stderr file")?);
    let mut child =
        spawn_tied(cmd, libc::SIGKILL).with_context(|| format!("spawning {}", bin.display()))?;
    let status = wait_child_timeout(&mut child, limit)?;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(CliRun {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}
