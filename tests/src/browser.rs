//! What the browser tests need: Debian's Chromium, node and the e2e
//! scripts' node modules (`scripts/ensure-browser.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

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
