//! The repository's own files and the outside tools the tests run on
//! them, found one way for every test file (so `PROMTOOL` overrides the
//! same binary everywhere).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Runs `promtool <args>` in `dir` and panics, with promtool's output, unless
/// it succeeds. A missing promtool is a failure, not a skip: a check that
/// passes because its tool is absent proves nothing.
pub fn run_promtool(dir: &Path, args: &[&str]) -> Output {
    let bin = promtool();
    let out = match Command::new(&bin).args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{bin}` not found: install it with `apt-get install prometheus` \
             (Debian's package ships promtool), or set PROMTOOL to its path"
        ),
        Err(e) => panic!("could not run `{bin}`: {e}"),
    };
    assert!(
        out.status.success(),
        "`{bin} {}` (in {}) failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}
