//! What the browser tests need: Debian's Chromium, node and the e2e
//! scripts' node modules (`scripts/ensure-browser.sh` installs them).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::vigil::tail;

pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

pub fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

/// `target/` of this build (`target/<profile>/deps/<test>` is running).
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .context("the test executable is not under target/<profile>/deps")
}

/// Fails with the commands that install what the browser test needs.
pub fn require_browser() -> Result<()> {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!(
            "{} (install: apt-get install -y chromium)",
            chromium().display()
        ));
    }
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        missing.push("node (install: apt-get install -y nodejs npm)".to_string());
    }
    if !e2e_dir().join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "{}/node_modules/playwright-core (install: npm ci --prefix tests/e2e)",
            e2e_dir().display()
        ));
    }
    if !missing.is_empty() {
        bail!(
            "the dashboard browser test needs:\n  {}\nscripts/ensure-browser.sh installs all of it",
            missing.join("\n  ")
        );
    }
    Ok(())
}

/// Runs `tests/e2e/<script>` under node with `args` (the page's URL and
/// the screenshot's path first), Chromium named in `CHROMIUM_BIN`, for at
/// most `limit`: the JSON object the script printed, once it says `ok`.
/// A failure carries the script's error, the page's text and node's
/// stderr.
pub async fn run_e2e(script: &str, args: &[&OsStr], limit: Duration) -> Result<Value> {
    let script = e2e_dir().join(script);
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args(args)
        .env("CHROMIUM_BIN", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .with_context(|| format!("node {} did not finish within {limit:?}", script.display()))?
        .with_context(|| format!("running node {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let page: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "node {} printed no JSON ({}); stdout:\n{}\nstderr:\n{}",
            script.display(),
            out.status,
            tail(&stdout, 4000),
            tail(&stderr, 4000)
        )
    })?;
    ensure!(
        out.status.success() && page["ok"] == true,
        "the browser run failed ({}): {}\nbody text:\n{}\nstderr:\n{}",
        out.status,
        page["error"].as_str().unwrap_or("?"),
        tail(page["bodyText"].as_str().unwrap_or(""), 3000),
        tail(&stderr, 4000)
    );
    Ok(page)
}
