//! The demo's throwaway PostgreSQL: a fresh data directory in a temporary
//! folder, a postmaster that is this process's child, and nothing left
//! behind when the demo ends, however it ends (Ctrl-C, SIGTERM, an error
//! or a panic all drop the [`Cluster`]).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long PostgreSQL may take to accept connections after start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the postmaster is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running throwaway cluster; stopped and deleted on drop.
pub struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// uid/gid the server runs as: initdb and postgres refuse to run as
    /// root, so as root they run as the `postgres` system user.
    owner: Option<(u32, u32)>,
    postmaster: Option<Child>,
}

impl Cluster {
    /// initdb (SCRAM over TCP, trust over the Unix socket in the cluster's
    /// folder), configure for 127.0.0.1:`port`, start, and wait until it
    /// accepts connections. Blocking. Must run on a thread that lives as
    /// long as the cluster (the main thread): the postmaster is told to
    /// quit when the thread that started it goes away.
    pub fn create(bindir: &Path, port: u16) -> Result<Cluster> {
        // SAFETY: plain syscall without arguments.
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_ids()?)
        } else {
            None
        };
        let dir = new_temp_dir()?;
        // From here on, dropping `cluster` removes the folder.
        let mut cluster = Cluster {
            data: dir.join("data"),
            dir,
            bindir: bindir.to_path_buf(),
            port,
            owner,
            postmaster: None,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {} to the postgres user", cluster.dir.display()))?;
        }
        cluster.initdb()?;
        cluster.configure()?;
        cluster.start()?;
        Ok(cluster)
    }

    /// The cluster's folder: data directory, logs, Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        // The postgres user may not be able to enter the caller's
        // working directory. A process group of its own: Ctrl-C in a
        // terminal signals the whole foreground group, and initdb or the
        // server must not die of it while the demo winds down in order
        // (clients, pgvigil, then the cluster).
        cmd.current_dir(&self.dir)
            .env("LC_ALL", "C")
            .process_group(0);
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn configure(&self) -> Result<()> {
        // A throwaway cluster: durability settings off (nothing here must
        // survive a crash), small memory, quiet log.
        let conf = format!(
            "\n# pgvigil demo (throwaway cluster)\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             max_connections = 100\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             logging_collector = off\n\
             log_min_messages = warning\n\
             cluster_name = 'pgvigil-demo'\n",
            port = self.port,
            dir = self.dir.display()
        );
        OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .context("appending to postgresql.conf")
    }

    fn start(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .context("opening the server log")?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure calls only async-signal-safe functions
        // (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                // A demo killed outright (SIGKILL) takes its server along.
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGQUIT as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting postgres")?;
        self.postmaster = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .postmaster
                .as_mut()
                .map(|c| c.try_wait())
                .transpose()
                .context("checking postgres")?
                .flatten()
            {
                self.postmaster = None;
                bail!(
                    "postgres exited during startup ({status}):\n{}",
                    self.log_tail(20)
                );
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "postgres did not accept connections within {START_TIMEOUT:?}:\n{}",
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The postmaster writes its state as the eighth line of
    /// postmaster.pid; `ready` once it accepts connections (what pg_ctl -w
    /// waits for).
    fn ready(&self) -> bool {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .is_ok_and(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
    }

    /// Fast shutdown (clients disconnected, no checkpoint wait beyond
    /// PostgreSQL's own), SIGKILL if it takes too long.
    fn stop(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new private (0700) folder under the system's temporary directory;
/// [`Cluster`]'s drop removes it, after the server has stopped.
fn new_temp_dir() -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("pgvigil-demo-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| format!("creating a folder under {}", std::env::temp_dir().display()))?;
    Ok(dir.keep())
}

/// The `postgres` system user's uid and gid (Debian's packages create it).
fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .context("running `id` to find the postgres user")?;
        if !out.status.success() {
            bail!(
                "running as root needs a `postgres` system user for initdb and postgres \
                 (they refuse to run as root); the PostgreSQL packages create it"
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("reading the output of `id {flag} postgres`"))
    };
    Ok((id("-u")?, id("-g")?))
}
