//! `pgvigil top` in a real terminal: the binary runs inside a detached tmux
//! session (160x45, or 80x24 where the size is the point) watching a live pgvigil; the test reads the screen with
//! `capture-pane` and types with `send-keys`.
//!
//! Needs tmux (`apt-get install -y tmux`); the tests fail, never skip, without it.
//!
//! Run: `cargo build -p pgvigil && cargo test -p pgvigil-integration --test top`

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pgvigil_integration::orders::OrdersDb;
use pgvigil_integration::util::free_port;
use pgvigil_integration::vigil::binary_path;
use pgvigil_integration::{shared_cluster, timed, unique_name, Pgvigil};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "top-test-token";
/// Printed by the pane's shell once `pgvigil top` has exited.
const EXITED: &str = "pgvigil top exited with status";

/// A private tmux server (its own socket in a temporary directory) running
/// one session; the server is killed on drop.
struct Tmux {
    socket: PathBuf,
    session: String,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `pgvigil top <args>` in a new 160x45 session. The pane's shell
    /// prints "pgvigil top exited with status N" afterwards and lingers 3 s so
    /// the screen after exit can be read. `timeout` bounds the run should the
    /// test die without cleaning up.
    fn start(args: &[String]) -> Result<Tmux> {
        Tmux::start_sized(args, 160, 45)
    }

    /// As [`Tmux::start`], in a `width`x`height` terminal.
    fn start_sized(args: &[String], width: u16, height: u16) -> Result<Tmux> {
        require_tmux()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgvigil-it-{}-tmux-", std::process::id()))
            .tempdir()
            .context("creating a temporary directory")?;
        let socket = dir.path().join("tmux.sock");
        let session = unique_name("top");
        let mut command = format!(
            "timeout --foreground 120 {}",
            shell_quote(&binary_path().to_string_lossy())
        );
        command.push_str(" top");
        for arg in args {
            command.push(' ');
            command.push_str(&shell_quote(arg));
        }
        command.push_str(&format!("; echo \"{EXITED} $?\"; sleep 3"));
        let tmux = Tmux {
            socket,
            session,
            _dir: dir,
        };
        let (width, height) = (width.to_string(), height.to_string());
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width,
            "-y",
            &height,
            "-s",
            &tmux.session.clone(),
            &command,
        ])?;
        ensure!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        Command::new("tmux")
            .arg("-u")
            .arg("-f")
            .arg("/dev/null")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running tmux")
    }

    /// The visible screen, one line per row.
    fn screen(&self) -> Result<String> {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session])?;
        ensure!(
            out.status.success(),
            "tmux capture-pane failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn send_key(&self, key: &str) -> Result<()> {
        let out = self.run(&["send-keys", "-t", &self.session, key])?;
        ensure!(
            out.status.success(),
            "tmux send-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn session_exists(&self) -> Result<bool> {
        Ok(self
            .run(&["has-session", "-t", &self.session])?
            .status
            .success())
    }

    /// Polls the screen until `check` accepts it; the last screen either way.
    fn wait_for(&self, limit: Duration, check: impl Fn(&str) -> bool) -> Result<(bool, String)> {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen()?;
            if check(&screen) {
                return Ok((true, screen));
            }
            if Instant::now() >= deadline {
                return Ok((false, screen));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Presses `key` (`q`, or `C-c` for Ctrl-C) and checks that top exits
    /// with status 0 within 2 s and leaves the alternate screen.
    fn quit_with(&self, key: &str) -> Result<()> {
        self.send_key(key)?;
        let pressed = Instant::now();
        let (exited, screen) = self.wait_for(Duration::from_secs(2), |s| s.contains(EXITED))?;
        ensure!(
            exited,
            "pgvigil top still running 2 s after `{key}`; screen:\n{screen}"
        );
        println!("exited {:?} after `{key}`", pressed.elapsed());
        ensure!(
            screen.contains(&format!("{EXITED} 0")),
            "pgvigil top did not exit with status 0; screen:\n{screen}"
        );
        ensure!(
            !screen.contains("Top queries"),
            "the view is still on screen after exit (terminal not restored):\n{screen}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.session_exists()? {
            ensure!(
                Instant::now() < deadline,
                "tmux session still there 10 s after pgvigil top exited"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn require_tmux() -> Result<()> {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "tmux is required for the `pgvigil top` tests and was not found; \
             install it with: apt-get install -y tmux"
        ),
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The screen line showing `needle` (the first one).
fn line_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(needle))
}

/// The calls/s column (the first figure inside the table border) of the
/// line showing `needle`.
fn calls_per_sec(screen: &str, needle: &str) -> Option<f64> {
    let line = line_with(screen, needle)?;
    let inside = line.trim_start().trim_start_matches(['│', '|']);
    inside.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_sorts_and_quits() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .arg("--admin-token")
            .arg(TOKEN)
            .arg("--slow-query-ms")
            .arg("50")
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let table = unique_name("top_probe");
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int PRIMARY KEY, note text);
                 INSERT INTO {table} SELECT g, 'n' || g FROM generate_series(1, 100) g;"
            ))
            .await?;
        let probe = format!("SELECT note FROM {table} WHERE id = $1");
        for id in 1..=20 {
            client.query(probe.as_str(), &[&id]).await?;
        }
        // A slow query and an N+1 loop (a list, then one query per row).
        let other = vigil.connect_app().await?;
        other.batch_execute("SELECT pg_sleep(0.1)").await?;
        other.batch_execute("BEGIN").await?;
        let ids = other
            .query(&format!("SELECT id FROM {table} ORDER BY id LIMIT 8"), &[])
            .await?;
        for row in ids {
            let id: i32 = row.get(0);
            other
                .query(
                    &format!("SELECT note, id FROM {table} WHERE id = $1"),
                    &[&id],
                )
                .await?;
        }
        other.batch_execute("COMMIT").await?;

        // Keeps the probe statement running, so calls/s becomes positive.
        let stop = Arc::new(AtomicBool::new(false));
        let workload = {
            let stop = stop.clone();
            let probe = probe.clone();
            let table = table.clone();
            tokio::spawn(async move {
                let mut id = 0i32;
                while !stop.load(Ordering::Relaxed) {
                    id = id % 100 + 1;
                    client.query(probe.as_str(), &[&id]).await?;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                client.batch_execute(&format!("DROP TABLE {table}")).await?;
                anyhow::Ok(())
            })
        };

        let admin = format!("127.0.0.1:{}", vigil.admin_port());
        let tmux = Tmux::start(&[
            "--admin".into(),
            admin.clone(),
            "--admin-token".into(),
            TOKEN.into(),
        ])?;

        let (seen, screen) = tmux.wait_for(Duration::from_secs(15), |s| {
            s.contains(&probe) && s.contains("(sort: total time)")
        })?;
        ensure!(
            seen,
            "the probe query {probe:?} never appeared, sorted by total time; screen:\n{screen}"
        );
        ensure!(
            screen.contains(&admin) && !screen.contains("cannot reach"),
            "header should name {admin} and be connected; screen:\n{screen}"
        );
        // `/api/pools` may not exist on every pgvigil; then the panel says so.
        ensure!(
            screen.contains("not served by this pgvigil")
                || line_with(&screen, "appdb").is_some_and(|l| l.contains("session")),
            "no pools panel with the appdb pool; screen:\n{screen}"
        );
        let (events, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            s.lines()
                .any(|l| l.contains("appdb/app") && l.contains("pg_sleep"))
                && s.lines().any(|l| l.contains("N+1 ") && l.contains(&table))
        })?;
        ensure!(
            events,
            "the slow pg_sleep and the N+1 loop on {table} are not both on screen:\n{screen}"
        );

        let (rated, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            calls_per_sec(s, &probe).is_some_and(|r| r > 0.0)
        })?;
        ensure!(
            rated,
            "calls/s of the running probe never became positive; line: {:?}\nscreen:\n{screen}",
            line_with(&screen, &probe)
        );

        tmux.send_key("c")?;
        let (sorted, screen) =
            tmux.wait_for(Duration::from_secs(5), |s| s.contains("(sort: calls)"))?;
        ensure!(
            sorted,
            "the sort indicator did not change to calls after `c`; screen:\n{screen}"
        );
        ensure!(
            !screen.contains("(sort: total time)"),
            "both sort indicators on screen:\n{screen}"
        );
        ensure!(
            screen.contains(&probe),
            "the probe vanished after sorting by calls; screen:\n{screen}"
        );
        println!("--- pgvigil top, sorted by calls ---\n{screen}---");

        tmux.quit_with("q")?;
        stop.store(true, Ordering::Relaxed);
        workload.await.context("workload task")??;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_pgvigil_is_shown_and_retried() -> Result<()> {
    timed(LIMIT, async {
        let admin = format!("127.0.0.1:{}", free_port()?);
        let tmux = Tmux::start(&["--admin".into(), admin.clone()])?;
        let (shown, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            s.contains(&format!("cannot reach {admin}")) && s.contains("retrying")
        })?;
        ensure!(shown, "no `cannot reach {admin}` on screen:\n{screen}");
        // Still alive a few refreshes later.
        std::thread::sleep(Duration::from_millis(2500));
        let screen = tmux.screen()?;
        ensure!(
            screen.contains("cannot reach") && !screen.contains(EXITED),
            "pgvigil top should keep retrying; screen:\n{screen}"
        );
        // Ctrl-C arrives as a key in raw mode and quits the same way.
        tmux.quit_with("C-c")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_counts_advice_by_kind_and_regressions() -> Result<()> {
    let db = OrdersDb::create("topadvice")?;
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder_with_config(cluster, "[advisor]\ninterval_s = 3600\n")
            .upstream(cluster.url(&db.name))
            .client_auth("trust")
            .spawn()
            .await?;
        let client = vigil.connect("app", "secret", &db.name).await?;
        for i in 0..40 {
            client
                .query(
                    "SELECT id, amount FROM orders WHERE customer_id = $1",
                    &[&(i * 7)],
                )
                .await?;
        }
        // Statistics are merged a few times a second; the advisor plans
        // what they show, so wait until they show the 40 lookups.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = vigil.api_get("/api/queries?limit=100").await?;
            let seen = body["queries"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["query"]
                        .as_str()
                        .is_some_and(|q| q.contains("FROM orders WHERE customer_id"))
                        && r["calls"].as_u64() >= Some(40)
                })
            });
            if seen {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the lookups never showed in /api/queries: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let advice = vigil.api_post("/api/advice/refresh").await?;
        let creates = advice["advice"].as_array().map_or(0, |a| {
            a.iter().filter(|a| a["kind"] == "create_index").count()
        });
        ensure!(creates == 1, "expected one create_index advice: {advice:#}");
        let total = advice["advice"].as_array().map_or(0, Vec::len);

        let admin = format!("127.0.0.1:{}", vigil.admin_port());
        let tmux = Tmux::start(&["--admin".into(), admin])?;
        let header = format!("advice {total} (1 create");
        let (seen, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            s.lines()
                .next()
                .is_some_and(|l| l.contains(&header) && l.contains("0 regressions"))
        })?;
        ensure!(
            seen,
            "no {header:?} and 0 regressions in the header; screen:\n{screen}"
        );
        tmux.quit_with("q")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_says_advisor_off_when_it_is() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder_with_config(cluster, "[advisor]\nenabled = false\n")
            .spawn()
            .await?;
        vigil.connect_app().await?.query("SELECT 1", &[]).await?;
        let admin = format!("127.0.0.1:{}", vigil.admin_port());
        let tmux = Tmux::start(&["--admin".into(), admin])?;
        let (seen, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            s.lines()
                .next()
                .is_some_and(|l| l.contains("up") && l.contains("advisor off"))
        })?;
        ensure!(seen, "no `advisor off` in the header; screen:\n{screen}");
        ensure!(
            !screen.contains("HTTP 404"),
            "the advisor being off is not an error; screen:\n{screen}"
        );
        tmux.quit_with("q")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_80x24_a_missing_token_is_refused_and_headers_are_whole() -> Result<()> {
    timed(LIMIT, async {
        let cluster = shared_cluster();
        let vigil = Pgvigil::builder(cluster)
            .arg("--admin-token")
            .arg(TOKEN)
            .spawn()
            .await?;
        let client = vigil.connect_app().await?;
        let probe = "SELECT $1::int AS a_statement_long_enough_to_be_cut_somewhere";
        for n in 0..5 {
            client.query(probe, &[&n]).await?;
        }
        let admin = format!("127.0.0.1:{}", vigil.admin_port());

        // No token: pgvigil answers 401, which is not "up".
        let tmux = Tmux::start_sized(&["--admin".into(), admin.clone()], 80, 24)?;
        let (refused, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            s.lines()
                .next()
                .is_some_and(|l| l.contains("refused (HTTP 401)"))
        })?;
        ensure!(
            refused,
            "no `refused (HTTP 401)` in the header; screen:\n{screen}"
        );
        let header = screen.lines().next().unwrap_or("");
        ensure!(!header.contains(" up "), "the header says up: {header:?}");
        ensure!(
            screen.contains("--admin-token"),
            "nothing says how to give the token; screen:\n{screen}"
        );
        tmux.quit_with("q")?;

        // With it: every header whole, and the query has the room.
        let tmux = Tmux::start_sized(
            &[
                "--admin".into(),
                admin,
                "--admin-token".into(),
                TOKEN.into(),
            ],
            80,
            24,
        )?;
        let (seen, screen) = tmux.wait_for(Duration::from_secs(10), |s| {
            s.contains("SELECT $1::int AS a_statement_long_enough")
        })?;
        ensure!(
            seen,
            "the probe is not on screen with 40 characters; screen:\n{screen}"
        );
        let header = line_with(&screen, "query").unwrap_or("");
        for label in ["calls/s", "total ms▼", "mean ms", "p95 ms", "query"] {
            ensure!(
                header.contains(label),
                "{label:?} missing or cut in {header:?}; screen:\n{screen}"
            );
        }
        let pools = line_with(&screen, "database/user").unwrap_or("");
        for label in ["mode", "active", "idle", "waiting", "clients", "util"] {
            ensure!(
                pools.contains(label),
                "{label:?} missing or cut in {pools:?}; screen:\n{screen}"
            );
        }
        ensure!(
            screen.lines().next().is_some_and(|l| l.contains(" up ")),
            "with the token the header says up; screen:\n{screen}"
        );
        tmux.quit_with("q")
    })
    .await
}
