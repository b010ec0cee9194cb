//! The README's quick start works as written: pgvigil started with the
//! shipped `config/pgvigil.toml` (only PostgreSQL's port, and pgvigil's
//! listeners, changed to the test's), and every `psql` line of the quick
//! start and of the admin console section run against it, the console's
//! among them.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test quick_start`

use std::time::Duration;

use anyhow::{ensure, Result};
use pgvigil_integration::repo::repo_root;
use pgvigil_integration::util::run_shell_line;
use pgvigil_integration::{shared_cluster, timed, Pgvigil};

const LIMIT: Duration = Duration::from_secs(60);
/// The password of `app` in the shipped config (and in the test cluster).
const APP_PASSWORD: &str = "secret";

/// The lines of the README's `## title` section that start with `program `,
/// trailing `# comments` dropped.
fn command_lines(readme: &str, title: &str, program: &str) -> Vec<String> {
    let heading = format!("## {title}\n");
    let Some(start) = readme.find(&heading) else {
        return Vec::new();
    };
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter(|l| l.starts_with(&format!("{program} ")))
        .map(|l| l.split("   #").next().unwrap_or(l).trim().to_owned())
        .collect()
}

/// Runs a README command line with the shell, the default client port
/// replaced by the test's; (success, stdout + stderr).
async fn run_line(line: &str, port: u16) -> Result<(bool, String)> {
    let line = line
        .replace("127.0.0.1:6432", &format!("127.0.0.1:{port}"))
        .replace("-p 6432", &format!("-p {port}"));
    // psql asks for the password the README says to give.
    run_shell_line(&line, &[("PGPASSWORD", APP_PASSWORD)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_psql_lines_work_with_the_shipped_config() -> Result<()> {
    timed(LIMIT, async {
        let root = repo_root();
        let readme = std::fs::read_to_string(root.join("README.md"))?;
        let shipped = std::fs::read_to_string(root.join("config/pgvigil.toml"))?;
        let cluster = shared_cluster();
        let config = shipped.replace("port = 5432", &format!("port = {}", cluster.port()));
        ensure!(
            config
                .matches(&format!("port = {}", cluster.port()))
                .count()
                == 2,
            "config/pgvigil.toml no longer has its two databases on port 5432"
        );
        let vigil = Pgvigil::builder(cluster)
            .config_file(config)
            .spawn()
            .await?;

        let quick_start = command_lines(&readme, "Quick start", "psql");
        let console = command_lines(&readme, "Admin console", "psql");
        ensure!(
            quick_start.iter().any(|l| l.contains("/appdb\""))
                && quick_start.iter().any(|l| l.contains("/pgvigil\"")),
            "the quick start has no psql line for appdb and for the console: {quick_start:?}"
        );
        ensure!(
            !console.is_empty(),
            "the admin console section has no psql line"
        );
        for line in quick_start.iter().chain(&console) {
            let (ok, output) = run_line(line, vigil.port()).await?;
            ensure!(
                ok,
                "a README command failed:\n{output}\npgvigil:\n{}",
                vigil.stderr()
            );
            if line.contains("SHOW POOLS") {
                ensure!(
                    output.contains("appdb") && output.contains("reporting"),
                    "SHOW POOLS lists not the shipped config's pools:\n{output}"
                );
            }
        }
        Ok(())
    })
    .await
}
