//! A throwaway PostgreSQL 15 server.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, NoTls};

use crate::spawn::{signal, spawn_tied};
use crate::util::{free_port, wait_child_timeout};

/// Superuser created in every cluster (SCRAM password).
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "secret";
/// Database owned by [`APP_USER`].
pub const APP_DB: &str = "appdb";

/// Where the PostgreSQL 15 binaries live (override with `PG_BINDIR`).
pub fn pg_bindir() -> PathBuf {
    std::env::var_os("PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// How to shut the server down (the `-m` of `pg_ctl stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// SIGINT: abort transactions, disconnect clients, shut down cleanly.
    Fast,
    /// SIGQUIT: kill everything now, crash recovery on next start.
    Immediate,
}

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1:`port()`
/// and on a unix socket in `socket_dir()`.
///
/// Roles: `app`/`secret` (superuser, SCRAM), `md5user`/`md5pass` (stored as MD5,
/// `md5` in pg_hba), `plainuser`/`plainpass` (`password` in pg_hba), `trustuser`
/// (`trust` in pg_hba). Database `appdb` owned by `app`.
pub struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// uid/gid to run the server as (set when the tests run as root).
    owner: Option<(u32, u32)>,
    postmaster: Mutex<Option<Child>>,
}

/// The cluster shared by all tests of one test binary that do not stop or
/// restart it. Torn down when the process exits.
pub fn shared_cluster() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    extern "C" fn teardown_shared() {
        if let Some(cluster) = SHARED.get() {
            cluster.teardown();
        }
    }
    SHARED.get_or_init(|| {
        let cluster = PgCluster::new().expect("starting the shared PostgreSQL cluster");
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(teardown_shared);
        }
        cluster
    })
}

impl PgCluster {
    /// initdb + configure + start + create roles and database. Blocking (a few seconds).
    pub fn new() -> Result<PgCluster> {
        PgCluster::with_settings("")
    }

    /// Like [`PgCluster::new`], with `extra_conf` (postgresql.conf lines, such
    /// as `shared_preload_libraries = 'pg_stat_statements'`) appended after
    /// the harness's own settings, so they take precedence.
    pub fn with_settings(extra_conf: &str) -> Result<PgCluster> {
        PgCluster::build(extra_conf, None)
    }

    /// A cluster that speaks TLS with `cert_pem`/`key_pem` and refuses
    /// every TCP connection that is not TLS (`hostnossl ... reject`), so a
    /// login through it proves the connection was encrypted. Local
    /// (Unix socket) connections stay trusted for the harness's own use.
    /// `extra_conf` as in [`PgCluster::with_settings`].
    pub fn with_tls(cert_pem: &str, key_pem: &str, extra_conf: &str) -> Result<PgCluster> {
        PgCluster::build(extra_conf, Some(TlsFiles { cert_pem, key_pem }))
    }

    fn build(extra_conf: &str, tls: Option<TlsFiles<'_>>) -> Result<PgCluster> {
        sweep_stale_dirs();
        let root = tempfile::Builder::new()
            .prefix(&format!("pgvigil-it-{}-", std::process::id()))
            .tempdir()
            .context("creating the cluster's temporary directory")?
            .keep();
        // SAFETY: plain syscall.
        let owner = if unsafe { libc::geteuid() } == 0 {
            let ids = postgres_ids()?;
            std::os::unix::fs::chown(&root, Some(ids.0), Some(ids.1))
                .with_context(|| format!("chown {} to the postgres user", root.display()))?;
            Some(ids)
        } else {
            None
        };
        let cluster = PgCluster {
            data: root.join("data"),
            log: root.join("postgres.log"),
            port: free_port()?,
            owner,
            postmaster: Mutex::new(None),
            root,
        };
        cluster.initdb()?;
        cluster.configure(extra_conf)?;
        if let Some(tls) = tls {
            cluster.configure_tls(tls)?;
        }
        cluster.start()?;
        cluster.create_roles()?;
        Ok(cluster)
    }

    /// [`PgCluster::new`] off the async runtime's worker threads.
    pub async fn new_async() -> Result<PgCluster> {
        tokio::task::spawn_blocking(PgCluster::new)
            .await
            .context("cluster creation task panicked")?
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// `postgres://app:secret@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The server log so far.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no server log: {e}>"))
    }

    /// Process id of the running postmaster.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|c| c.id())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.postmaster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&self.root).env("LC_ALL", "C");
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let out = self
            .command(pg_bindir().join("initdb"))
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .context("running initdb")?;
        check_output("initdb", &out)
    }

    fn configure(&self, extra_conf: &str) -> Result<()> {
        let mut conf = format!(
            "\n# pgvigil integration tests\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{sock}'\n\
             max_connections = 300\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_wal_size = 1GB\n\
             logging_collector = off\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n",
            port = self.port,
            sock = self.root.display()
        );
        if !extra_conf.is_empty() {
            conf.push_str(extra_conf);
            if !extra_conf.ends_with('\n') {
                conf.push('\n');
            }
        }
        OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .context("appending to postgresql.conf")?;
        let hba = "\
local all all trust
host all trustuser 127.0.0.1/32 trust
host all md5user 127.0.0.1/32 md5
host all plainuser 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
";
        std::fs::write(self.data.join("pg_hba.conf"), hba).context("writing pg_hba.conf")?;
        Ok(())
    }

    /// Writes the server's certificate and key into the data directory
    /// (the key owned by the server's user, mode 0600, or PostgreSQL
    /// refuses it), turns `ssl` on, and replaces pg_hba.conf with one that
    /// rejects unencrypted TCP.
    fn configure_tls(&self, tls: TlsFiles<'_>) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for (name, content, mode) in [
            ("server.crt", tls.cert_pem, 0o644),
            ("server.key", tls.key_pem, 0o600),
        ] {
            let path = self.data.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", path.display()))?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .with_context(|| format!("chown {}", path.display()))?;
            }
        }
        let conf = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n";
        OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .context("appending the TLS settings to postgresql.conf")?;
        let hba = "\
local all all trust
hostnossl all all all reject
hostssl all all all scram-sha-256
";
        std::fs::write(self.data.join("pg_hba.conf"), hba).context("writing pg_hba.conf")
    }

    fn create_roles(&self) -> Result<()> {
        self.psql_admin(
            "postgres",
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE app SUPERUSER LOGIN PASSWORD 'secret';
             CREATE ROLE plainuser LOGIN PASSWORD 'plainpass';
             CREATE ROLE trustuser LOGIN;
             SET password_encryption = 'md5';
             CREATE ROLE md5user LOGIN PASSWORD 'md5pass';",
        )?;
        self.psql_admin("postgres", "CREATE DATABASE appdb OWNER app")?;
        self.psql_admin(APP_DB, "GRANT ALL ON SCHEMA public TO PUBLIC;")?;
        Ok(())
    }

    /// Runs SQL as the `postgres` superuser over the unix socket with psql;
    /// returns unaligned, tuples-only output.
    pub fn psql_admin(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(pg_bindir().join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.root)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        check_output(&format!("psql -c {sql:?}"), &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server and waits until it accepts connections (30 s at most).
    pub fn start(&self) -> Result<()> {
        let mut guard = self.lock();
        if guard.is_some() {
            bail!("cluster already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the server log")?;
        let mut cmd = self.command(pg_bindir().join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating log fd")?)
            .stderr(log);
        let child = spawn_tied(cmd, libc::SIGQUIT).context("spawning postgres")?;
        *guard = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = guard
                .as_mut()
                .map(|c| c.try_wait())
                .transpose()
                .context("checking postgres")?
                .flatten()
            {
                *guard = None;
                bail!(
                    "postgres exited during startup ({status}); log:\n{}",
                    self.log_contents()
                );
            }
            let ready = Command::new(pg_bindir().join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(&self.root)
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres", "-d", "postgres"])
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "postgres not ready after 30 s; log:\n{}",
                    self.log_contents()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate` equivalent) and waits for it to exit.
    pub fn stop(&self, mode: StopMode) -> Result<()> {
        let mut guard = self.lock();
        let Some(mut child) = guard.take() else {
            return Ok(());
        };
        let sig = match mode {
            StopMode::Fast => libc::SIGINT,
            StopMode::Immediate => libc::SIGQUIT,
        };
        let _ = signal(child.id(), sig);
        if wait_child_timeout(&mut child, Duration::from_secs(30))?.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("postgres did not stop within 30 s ({mode:?}); killed it");
        }
        Ok(())
    }

    /// `pg_ctl restart -m fast` equivalent: same port, same data.
    pub fn restart(&self) -> Result<()> {
        self.stop(StopMode::Fast)?;
        self.start()
    }

    /// Sends `sig` to the postmaster (SIGKILL to crash it, SIGSTOP/SIGCONT
    /// to freeze it). After SIGKILL, [`PgCluster::restart_after_kill`].
    pub fn signal_postmaster(&self, sig: libc::c_int) -> Result<()> {
        let pid = self.postmaster_pid().context("postgres is not running")?;
        signal(pid, sig).with_context(|| format!("sending signal {sig} to the postmaster"))
    }

    /// After the postmaster was killed: reaps it and starts the server
    /// again. Its orphaned backends notice the postmaster's death and exit
    /// on their own, but until the last one has, the new postmaster refuses
    /// to start (shared memory still in use), so starting is retried for up
    /// to 30 s. Blocking.
    pub fn restart_after_kill(&self) -> Result<()> {
        if let Some(mut child) = self.lock().take() {
            if wait_child_timeout(&mut child, Duration::from_secs(10))?.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context("restarting PostgreSQL after a crash"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// [`PgCluster::restart`] from async code (multi-thread runtime only):
    /// the worker hands its other tasks off while this blocks.
    pub fn restart_in_place(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.restart())
    }

    /// A superuser connection straight to PostgreSQL (unix socket, `postgres`
    /// role), for assertions such as pg_stat_activity.
    pub async fn connect_direct(&self) -> Result<Client> {
        self.connect_direct_db(APP_DB).await
    }

    /// Like [`PgCluster::connect_direct`] to another database.
    pub async fn connect_direct_db(&self, db: &str) -> Result<Client> {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(&self.root)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect_timeout(Duration::from_secs(5))
            .connect(NoTls)
            .await
            .with_context(|| format!("direct connection to PostgreSQL database {db}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    fn teardown(&self) {
        let _ = self.stop(StopMode::Immediate);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// PEM text of the certificate and key a TLS cluster serves.
struct TlsFiles<'a> {
    cert_pem: &'a str,
    key_pem: &'a str,
}

fn check_output(what: &str, out: &Output) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .context("running `id` to find the postgres user")?;
        check_output(&format!("id {flag} postgres"), &out)
            .context("running as root needs a `postgres` system user")?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("parsing output of `id {flag} postgres`"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Removes temporary directories left by test processes that no longer exist.
pub(crate) fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("pgvigil-it-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
