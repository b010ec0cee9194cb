//! Python scripts under `tests/python/` (ORM and driver scenarios), run with
//! the system `python3`.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::vigil::LIBPQ_ENV_TO_CLEAR;

/// How to install what the scripts import.
pub const INSTALL_HINT: &str = "python3 -m pip install -r tests/python/requirements.txt";

/// Path of `tests/python/<name>`.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// The Python the tests run: `PGVIGIL_PYTHON` (scripts/test.sh points it
/// at a virtual environment under target/ with the pinned packages), else
/// `python3` from PATH.
pub fn interpreter() -> std::ffi::OsString {
    std::env::var_os("PGVIGIL_PYTHON").unwrap_or_else(|| "python3".into())
}

/// A python3 command with no libpq settings from the environment that could
/// redirect or alter the drivers' connections; output piped, killed when dropped.
pub fn python3() -> Command {
    let mut cmd = Command::new(interpreter());
    for var in LIBPQ_ENV_TO_CLEAR
        .into_iter()
        .chain(["PGSSLMODE", "PGTARGETSESSIONATTRS"])
    {
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

/// Runs `cmd` (described as `what` in errors) to completion within `limit`.
pub async fn run_python(mut cmd: Command, what: &str, limit: Duration) -> Result<Output> {
    let child = cmd.spawn().with_context(|| format!("spawning {what}"))?;
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{what} still running after {limit:?}"))?
        .with_context(|| format!("waiting for {what}"))
}

/// The last line of `text` that is not blank, if any.
pub fn last_nonblank_line(text: &str) -> Option<&str> {
    text.lines().rfind(|l| !l.trim().is_empty())
}

/// Fails (never skips) when python3 cannot run or cannot import `modules`
/// (e.g. `"sqlalchemy, psycopg"`); `missing` opens the error for the latter.
pub async fn require_python_modules(modules: &str, missing: &str) -> Result<()> {
    let import = format!("import {modules}");
    let mut cmd = python3();
    cmd.args(["-c", &import]);
    let what = format!("python3 -c '{import}'");
    let out = match run_python(cmd, &what, Duration::from_secs(60)).await {
        Ok(out) => out,
        Err(e) => bail!("cannot run python3 ({e:#}): install Python 3, then run `{INSTALL_HINT}`"),
    };
    if !out.status.success() {
        bail!(
            "{missing} (`python3 -c \"{import}\"` failed: {}): run `{INSTALL_HINT}`",
            last_nonblank_line(&String::from_utf8_lossy(&out.stderr))
                .unwrap_or("no error output")
                .trim()
        );
    }
    Ok(())
}
