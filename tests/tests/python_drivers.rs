//! Python drivers through pgvigil in transaction mode with prepared
//! statements: asyncpg (named statements, its own statement cache) and
//! psycopg 3 (prepare_threshold=0, the default threshold, prepare=True,
//! pipeline mode), 20 clients at a time on a pool of 2 server connections.
//!
//! The scenarios live in `tests/python/drivers_test.py`; this test starts
//! pgvigil and runs the script against it. It needs `python3` with the
//! pinned drivers: `python3 -m pip install -r tests/python/requirements.txt`.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pgvigil_integration::cluster::{APP_DB, APP_PASSWORD, APP_USER};
use pgvigil_integration::{shared_cluster, Pgvigil, PoolMode};
use tokio::process::Command;

const POOL_SIZE: u32 = 2;
/// The script keeps itself under 90 s even when pgvigil hangs.
const LIMIT: Duration = Duration::from_secs(150);
const INSTALL_HINT: &str = "run `python3 -m pip install -r tests/python/requirements.txt`";

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// A python3 command with no libpq settings from the environment that
/// could redirect or alter the drivers' connections.
fn python3() -> Command {
    let mut cmd = Command::new("python3");
    for var in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGPASSFILE",
        "PGAPPNAME",
        "PGSSLMODE",
        "PGTARGETSESSIONATTRS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, what: &str) -> Result<Output> {
    let child = cmd.spawn().with_context(|| format!("spawning {what}"))?;
    tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .with_context(|| format!("{what} still running after {LIMIT:?}"))?
        .with_context(|| format!("waiting for {what}"))
}

/// Fails (never skips) when python3 or the drivers are missing.
async fn require_drivers() -> Result<()> {
    let mut cmd = python3();
    cmd.args(["-c", "import asyncpg, psycopg"]);
    let out = match run(cmd, "python3 -c 'import asyncpg, psycopg'").await {
        Ok(out) => out,
        Err(e) => bail!("cannot run python3 ({e:#}): install Python 3, then {INSTALL_HINT}"),
    };
    if !out.status.success() {
        bail!(
            "the Python drivers asyncpg and psycopg are not installed \
             (`python3 -c \"import asyncpg, psycopg\"` failed: {}): {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no error output")
                .trim()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_in_transaction_mode() -> Result<()> {
    require_drivers().await?;
    let vigil = Pgvigil::builder(shared_cluster())
        .pool_mode(PoolMode::Transaction)
        .pool_size(POOL_SIZE)
        .max_client_conn(200)
        .spawn()
        .await?;
    let script = python_dir().join("drivers_test.py");
    let dsn = format!(
        "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{APP_DB}",
        vigil.port()
    );
    let mut cmd = python3();
    cmd.arg(&script)
        .env("PGVIGIL_DSN", &dsn)
        .env("PGVIGIL_POOL_SIZE", POOL_SIZE.to_string());
    let out = run(cmd, &format!("python3 {}", script.display())).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("{stdout}{stderr}");
    } else {
        bail!(
            "tests/python/drivers_test.py failed ({}) against pgvigil on port {} \
             (transaction mode, pool size {POOL_SIZE}):\n{stdout}\nstderr:\n{stderr}",
            out.status,
            vigil.port()
        );
    }
    Ok(())
}
