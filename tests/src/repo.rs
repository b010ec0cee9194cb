//! The repository's own files and the outside tools the tests run on
//! them, found one way for every test file (so `PROMTOOL` overrides the
//! same binary everywhere).

use std::path::{Path, PathBuf};

/// The workspace root: tests that check what ships (deploy/, docs/,
/// README.md, Cargo.toml) read it from there, not from the harness's copy.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The promtool to run: `PROMTOOL`, else `promtool` from PATH (Debian's
/// `prometheus` package; scripts/ensure-test-tools.sh installs it).
pub fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string())
}
