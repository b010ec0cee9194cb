//! Small helpers shared by the harness and the tests.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The SQLSTATE of a tokio-postgres error, if the error carries one.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<&str> {
    err.code().map(|c| c.code())
}

/// A name that is unique within this test process (tables, schemas, databases, markers).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a test body with a deadline, so a hung proxy fails the test instead of the whole run.
pub async fn timed<F>(limit: Duration, body: F) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    match tokio::time::timeout(limit, body).await {
        Ok(result) => result,
        Err(_) => bail!("test did not finish within {limit:?}"),
    }
}

/// Polls `check` every `every` until it returns `Ok(true)` or `limit` passes.
/// Returns whether the condition was met; errors from `check` are returned at once.
pub async fn wait_until<F, Fut>(limit: Duration, every: Duration, mut check: F) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct TCP ports on 127.0.0.1 that were free a moment ago.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context("binding 127.0.0.1:0 to find a port")
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| {
            Ok(l.local_addr()
                .context("local address of probe listener")?
                .port())
        })
        .collect()
}

/// Waits (blocking) for `child` to exit; `None` if it is still running after `limit`.
pub fn wait_child_timeout(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident set size of a process in bytes, from /proc/<pid>/status.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("no VmRSS line in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("malformed line {line:?}"))?
        .parse()
        .with_context(|| format!("malformed line {line:?}"))?;
    Ok(kib * 1024)
}

/// Spawns `cmd` (a helper server such as Prometheus) so that it gets SIGKILL
/// when the test process dies; the caller still kills it when done.
pub fn spawn_tied(cmd: std::process::Command) -> std::io::Result<Child> {
    crate::spawn::spawn_tied(cmd, libc::SIGKILL)
}

/// Runs a command line as a user would paste it (`sh -c`), with `env` set
/// and no stdin; whether it succeeded, and `$ line` followed by its output
/// (stdout, then stderr) for error messages. libpq clients in it give up
/// connecting after 10 s instead of hanging the test.
pub async fn run_shell_line(line: &str, env: &[(&str, &str)]) -> Result<(bool, String)> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {line}"))?;
    Ok((
        out.status.success(),
        format!(
            "$ {line}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}
