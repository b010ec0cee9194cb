//! `pgvigil demo`, through the README's first command (`scripts/demo.sh`,
//! which installs PostgreSQL if needed and runs the subcommand; here with
//! `PGVIGIL_BIN` pointing at the binary under test instead of a release
//! build): it creates its own throwaway PostgreSQL, serves the dashboard
//! and `/metrics` while its workload runs, reports an N+1 loop, a slow
//! statement and errors at the end, and removes its cluster when it stops,
//! by `--duration` or by a signal. The summary also carries the advisor's
//! index for the lookup without one.
//!
//! The demo runs with fewer clients than its default (the test machine has
//! two cores shared with the rest of the suite); every page type still
//! runs many times within the test's 25 seconds.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test demo`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::api::http_get;
use pgvigil_integration::repo::repo_root;
use pgvigil_integration::timed;
use pgvigil_integration::util::{run_shell_line, spawn_tied, wait_child_timeout};
use pgvigil_integration::vigil::binary_path;

/// How long the demo may take to print where its dashboard is: initdb,
/// the shop's data, pgvigil's start.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How long it may take to stop after its duration or a signal: clients
/// finish their page, the advisor is asked for advice, pgvigil and
/// PostgreSQL shut down.
const STOP_LIMIT: Duration = Duration::from_secs(90);

/// What the README's first line runs.
const README_FIRST_COMMAND: &str = "scripts/demo.sh";

#[test]
fn the_readme_starts_with_the_demo() -> Result<()> {
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    let first = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.lines().next())
        .context("the README has no sh block")?;
    ensure!(
        first.split_whitespace().next() == Some(README_FIRST_COMMAND),
        "the README's first command is not {README_FIRST_COMMAND}: {first}"
    );
    Ok(())
}

/// A `pgvigil demo` process (started by the README's first command) with
/// its output in files.
struct Demo {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start(args: &[&str]) -> Result<Demo> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgvigil-it-{}-demo-", std::process::id()))
            .tempdir()
            .context("creating the test's temporary directory")?;
        let stdout = std::fs::File::create(dir.path().join("stdout"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr"))?;
        let mut cmd = Command::new(repo_root().join(README_FIRST_COMMAND));
        cmd.env("PGVIGIL_BIN", binary_path())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = spawn_tied(cmd).context("spawning pgvigil demo")?;
        Ok(Demo {
            child: Some(child),
            dir,
        })
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn output(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{stderr}", self.stdout())
    }

    /// The text after `label` on the first banner line that has it.
    async fn banner_field(&mut self, label: &str) -> Result<String> {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            if let Some(value) = self
                .stdout()
                .lines()
                .find_map(|l| l.trim_start().strip_prefix(label))
            {
                return Ok(value.trim().to_owned());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the demo exited ({status}) before printing `{label}`:\n{}",
                        self.output()
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "the demo printed no `{label}` line within {STARTUP_LIMIT:?}:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Where the cluster lives, from the banner's "PostgreSQL" line.
    async fn cluster_dir(&mut self) -> Result<PathBuf> {
        let line = self.banner_field("PostgreSQL ").await?;
        let dir = line
            .strip_prefix("data and logs in ")
            .and_then(|rest| rest.split(" (removed").next())
            .with_context(|| format!("unexpected PostgreSQL line: {line}"))?;
        Ok(PathBuf::from(dir))
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self.child.as_ref().context("the demo is gone")?.id();
        // SAFETY: plain syscall on our own child.
        ensure!(
            unsafe { libc::kill(pid as libc::pid_t, sig) } == 0,
            "kill failed"
        );
        Ok(())
    }

    async fn wait(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the demo is gone")?;
        let (status, child) = tokio::task::spawn_blocking(move || {
            let status = wait_child_timeout(&mut child, STOP_LIMIT);
            (status, child)
        })
        .await?;
        self.child = Some(child);
        match status? {
            Some(status) => Ok(status),
            None => bail!(
                "the demo did not stop within {STOP_LIMIT:?}:\n{}",
                self.output()
            ),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs a command line the demo printed (a psql command); its output,
/// prefixed with the line. Fails when the command does.
async fn run_printed(line: &str) -> Result<String> {
    ensure!(line.starts_with("psql "), "not a psql line: {line}");
    let (ok, text) = run_shell_line(line, &[]).await?;
    ensure!(ok, "a command the demo printed failed:\n{text}");
    Ok(text)
}

/// The admin port of a `http://127.0.0.1:PORT/` URL.
fn port_of(url: &str) -> Result<u16> {
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("not a loopback dashboard URL: {url}"))
}

fn ensure_removed(dir: &Path, demo: &Demo) -> Result<()> {
    ensure!(
        !dir.exists(),
        "the cluster's folder {} is still there after the demo ended:\n{}",
        dir.display(),
        demo.output()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_dashboard_reports_what_it_saw_and_removes_its_cluster() -> Result<()> {
    timed(
        STARTUP_LIMIT + STOP_LIMIT + Duration::from_secs(60),
        async {
            let mut demo =
                Demo::start(&["--duration", "25", "--print-summary", "--clients", "100"])?;
            let dashboard = demo.banner_field("dashboard ").await?;
            let cluster_dir = demo.cluster_dir().await?;
            ensure!(
                cluster_dir.is_dir(),
                "{} does not exist while the demo runs",
                cluster_dir.display()
            );
            let port = port_of(&dashboard)?;

            let page = http_get(port, "/", &[]).await?;
            ensure!(
                page.status == 200,
                "GET {dashboard} answered {}",
                page.status
            );
            ensure!(
                page.header("content-type")
                    .is_some_and(|t| t.starts_with("text/html")),
                "GET {dashboard} is not HTML: {:?}",
                page.header("content-type")
            );
            ensure!(
                page.body.to_ascii_lowercase().contains("<html"),
                "GET {dashboard} has no <html>"
            );
            let metrics_url = demo.banner_field("metrics ").await?;
            ensure!(
                metrics_url == format!("{}metrics", dashboard),
                "metrics line: {metrics_url}"
            );
            let metrics = http_get(port, "/metrics", &[]).await?;
            ensure!(
                metrics.status == 200,
                "GET /metrics answered {}",
                metrics.status
            );
            ensure!(
                metrics.body.contains("pgvigil_build_info"),
                "/metrics lacks pgvigil_build_info"
            );

            // The command lines it prints work as printed. stdin is empty:
            // psql logs in, reads the end of its input and exits 0.
            let app = demo.banner_field("the shop's db ").await?;
            run_printed(&app).await?;
            let console = demo.banner_field("admin console ").await?;
            let pools = run_printed(&console).await?;
            ensure!(
                pools.contains("appdb"),
                "{console} printed no pool of appdb:\n{pools}"
            );
            let top = demo.banner_field("terminal view ").await?;
            ensure!(
                top.ends_with(&format!(" top --admin 127.0.0.1:{port}")),
                "the terminal view line does not watch this demo: {top}"
            );

            let status = demo.wait().await?;
            ensure!(
                status.code() == Some(0),
                "the demo exited {status}:\n{}",
                demo.output()
            );
            let out = demo.stdout();
            let report = out
                .split("what pgvigil saw")
                .nth(1)
                .with_context(|| format!("no summary printed:\n{}", demo.output()))?;
            // The lazy page's item lookups, with the orders query as parent.
            ensure!(
                report.contains("n_plus_one: ")
                    && report.contains("FROM order_items WHERE order_id = $1")
                    && report.contains("after parent: SELECT id, placed_at, status FROM orders"),
                "the summary names no N+1 loop with its parent:\n{report}"
            );
            ensure!(
                report.contains("rule=slow_query_ms") && report.contains("(shop-reports)"),
                "the summary names no slow statement of the report:\n{report}"
            );
            ensure!(
                report
                    .lines()
                    .any(|l| l.contains(" errors in ") && l.contains("INSERT INTO customers")),
                "the summary names no failing statement:\n{report}"
            );
            // The tracking page's lookup has no index: the advisor says so.
            ensure!(
                report.contains("CREATE INDEX CONCURRENTLY ON shipment_events (tracking_code)"),
                "the summary has no index advice for the unindexed lookup:\n{report}"
            );
            ensure_removed(&cluster_dir, &demo)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_demo_and_removes_its_cluster() -> Result<()> {
    timed(STARTUP_LIMIT + STOP_LIMIT, async {
        let mut demo = Demo::start(&["--clients", "10"])?;
        let cluster_dir = demo.cluster_dir().await?;
        // Up and serving: the dashboard answers.
        let port = port_of(&demo.banner_field("dashboard ").await?)?;
        let started = Instant::now();
        let page = http_get(port, "/healthz", &[]).await?;
        ensure!(page.status == 200, "/healthz answered {}", page.status);
        demo.signal(libc::SIGTERM)?;
        let status = demo.wait().await?;
        ensure!(
            status.code() == Some(0),
            "the demo exited {status}:\n{}",
            demo.output()
        );
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the demo took {:?} to stop",
            started.elapsed()
        );
        ensure!(
            demo.stdout().contains("stopped; removed the cluster"),
            "no goodbye line:\n{}",
            demo.output()
        );
        ensure_removed(&cluster_dir, &demo)
    })
    .await
}
