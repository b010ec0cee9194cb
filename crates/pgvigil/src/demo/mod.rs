//! `pgvigil demo`: the product's front door. One command brings up a
//! throwaway PostgreSQL, pgvigil in front of it (in this process, the same
//! server code as `pgvigil` itself) and a shop's worth of clients whose
//! traffic gives every panel of the dashboard something to show; Ctrl-C
//! (or `--duration`) stops it and removes everything it created.
//!
//! * [`locate`]: finding PostgreSQL's programs;
//! * [`cluster`]: the throwaway cluster, removed on drop;
//! * [`workload`]: the shop's schema, data and clients;
//! * [`summary`]: the live line and the final report, from the admin API.

mod cluster;
mod locate;
mod summary;
mod workload;

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pgvigil_config::{Config, FileConfig, Overrides};
use tokio::sync::watch;

use cluster::Cluster;
use summary::{Api, Snapshot};
use workload::Workload;

/// Where the demo listens unless told otherwise: pgvigil's own defaults,
/// so `pgvigil top` and the README's commands work as written.
const DEFAULT_LISTEN_PORT: u16 = 6432;
const DEFAULT_ADMIN_PORT: u16 = 9930;
/// The demo's login. The cluster is on loopback and gone when the demo
/// ends, and the password is printed for the user to connect with.
const APP_USER: &str = "app";
const APP_PASSWORD: &str = "shop";
const APP_DB: &str = "appdb";
/// Transaction pooling: the few hundred clients share this many server
/// connections, which is the point of a pooler.
const POOL_SIZE: usize = 10;
/// How often the advisor plans (pgvigil's default is 300 s; the demo
/// wants advice while someone is watching).
const ADVISOR_INTERVAL_S: u64 = 15;
/// Live line refresh: rewritten in place on a terminal, one line each
/// when the output is a log or a pipe.
const LIVE_EVERY_TTY: Duration = Duration::from_secs(2);
const LIVE_EVERY_LOG: Duration = Duration::from_secs(5);
/// How long clients get to finish their page.
const WORKLOAD_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `pgvigil demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop by itself after this many seconds (for CI and tests); without
    /// it the demo runs until Ctrl-C.
    #[arg(long, value_name = "SECONDS", value_parser = parse_duration)]
    pub duration: Option<f64>,
    /// At the end, print what pgvigil saw: top statements, N+1 loops with
    /// their parent, slow statements, errors, index advice and pools.
    #[arg(long)]
    pub print_summary: bool,
    /// Browsing clients connected through pgvigil (most of them idle
    /// between pages, as web users are).
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub clients: usize,
    /// Client listener [default: 127.0.0.1:6432, or a free port when taken].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listener: dashboard, JSON API, /metrics [default: 127.0.0.1:9930,
    /// or a free port when taken].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory holding PostgreSQL's initdb and postgres [default: the
    /// first on PATH, else the newest /usr/lib/postgresql/*/bin].
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

pub fn run(args: DemoArgs) -> ExitCode {
    match run_demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgvigil demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(args: DemoArgs) -> Result<()> {
    let bindir = match &args.pg_bin {
        Some(dir) if locate::has_programs(dir) => dir.clone(),
        Some(dir) => anyhow::bail!("--pg-bin {}: no initdb and postgres there", dir.display()),
        None => locate::find_bindir(
            std::env::var_os("PATH").as_deref(),
            Path::new("/usr/lib/postgresql"),
        )?,
    };
    let listen = args
        .listen
        .unwrap_or_else(|| default_or_free(DEFAULT_LISTEN_PORT));
    let admin_listen = args
        .admin_listen
        .unwrap_or_else(|| default_or_free(DEFAULT_ADMIN_PORT));
    // Two threads: pgvigil and the clients share them; the rest of a small
    // machine is PostgreSQL's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Before the cluster exists, so a Ctrl-C while it is created still
    // ends in the clean-up below instead of the default action.
    let stop = runtime.block_on(async { stop_on_signals() })?;
    let pg_port = free_port()?;
    say(&format!(
        "==> creating a throwaway PostgreSQL cluster ({}) on 127.0.0.1:{pg_port}",
        bindir.display()
    ));
    // On the main thread, which outlives the cluster (see Cluster::create).
    let cluster = Cluster::create(&bindir, pg_port)?;
    let dir = cluster.dir().to_path_buf();
    let result = init_logging(&dir.join("pgvigil.log"))
        .and_then(|()| runtime.block_on(demo(&args, &cluster, listen, admin_listen, stop)));
    drop(runtime);
    drop(cluster);
    say(&format!(
        "==> stopped; removed the cluster and {}",
        dir.display()
    ));
    result
}

async fn demo(
    args: &DemoArgs,
    cluster: &Cluster,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let hypopg = create_database(cluster).await?;
    if *stop.borrow() {
        return Ok(());
    }
    let config = demo_config(listen, admin_listen, cluster.port(), args.clients)?;
    let (shutdown, shutdown_requests) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let server = crate::serve(config, None, None, shutdown_requests, None, move |l| {
        let _ = ready_tx.send(l);
    });
    let control = async {
        // The server never says it is listening when it could not bind:
        // then its own error is the one to report.
        let Ok(listening) = ready.await else {
            return Ok(());
        };
        let result = show(args, cluster, listening, hypopg, &mut stop).await;
        let _ = shutdown.send(pgvigil_proxy::Shutdown::Safe);
        result
    };
    // Both in this task: the server returns once the control side has
    // asked it to stop and its shutdown_timeout has run its course.
    let (served, shown) = tokio::join!(server, control);
    served.and(shown)
}

/// The part the user sees: where to look, the clients, the live line,
/// and the report at the end.
async fn show(
    args: &DemoArgs,
    cluster: &Cluster,
    listening: crate::Listening,
    hypopg: bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let api = Api::new(listening.admin);
    print_banner(args, cluster, listening, hypopg);
    let mut target = tokio_postgres::Config::new();
    target
        .host(listening.client.ip().to_string())
        .port(listening.client.port())
        .user(APP_USER)
        .password(APP_PASSWORD)
        .dbname(APP_DB);
    // The first live line's rate counts from here.
    let mut previous = Snapshot::take(&api).await.ok().map(|s| (s, Instant::now()));
    let workload = Workload::start(target, args.clients);
    let tty = std::io::stdout().is_terminal();
    let every = if tty { LIVE_EVERY_TTY } else { LIVE_EVERY_LOG };
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    loop {
        let until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => break,
            _ = until_deadline => break,
        }
        let now = Instant::now();
        let mut line = match Snapshot::take(&api).await {
            Ok(snapshot) => {
                let line =
                    summary::live_line(previous.as_ref().map(|(s, t)| (s, *t)), (&snapshot, now));
                previous = Some((snapshot, now));
                line
            }
            Err(e) => format!("admin API: {e:#}"),
        };
        let broken = workload.counters.unexpected_errors.load(Ordering::Relaxed);
        if broken > 0 {
            line.push_str(&format!(" | {broken} client failures"));
        }
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else {
            say(&line);
        }
    }
    if tty {
        println!();
    }
    say("==> stopping the clients");
    let pages = workload.counters.pages.load(Ordering::Relaxed);
    workload.stop(WORKLOAD_STOP_TIMEOUT).await;
    if args.print_summary {
        say(&format!(
            "\n=============== what pgvigil saw ({pages} pages served) ==============="
        ));
        match summary::final_report(&api).await {
            Ok(report) => say(report.trim_end()),
            Err(e) => say(&format!("the admin API did not answer: {e:#}")),
        }
        say("======================================================================");
    }
    say("==> stopping pgvigil");
    Ok(())
}

fn print_banner(args: &DemoArgs, cluster: &Cluster, listening: crate::Listening, hypopg: bool) {
    let client = listening.client;
    let admin = listening.admin;
    let app = format!("postgres://{APP_USER}:{APP_PASSWORD}@{client}/{APP_DB}");
    let console = format!("postgres://{APP_USER}:{APP_PASSWORD}@{client}/pgvigil");
    let top = if on_path("pgvigil") {
        "pgvigil".to_owned()
    } else {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "pgvigil".to_owned())
    };
    let advice = if hypopg {
        "hypopg installed: index advice is measured with hypothetical indexes"
    } else {
        "hypopg not installed: index advice comes from plan heuristics \
         (apt-get install postgresql-15-hypopg for measured advice)"
    };
    let ends = match args.duration {
        Some(s) => format!("The demo stops by itself after {s} s (Ctrl-C stops it sooner)."),
        None => "Ctrl-C stops the demo and removes everything it created.".to_owned(),
    };
    say(&format!(
        "\n\
         pgvigil demo: a shop's web application ({clients} clients) -> pgvigil {client} \
         (transaction mode, {POOL_SIZE} server connections) -> PostgreSQL 127.0.0.1:{pg_port}\n\
         Pages: lazy \"my orders\" (N+1) and its eager twin, a slow monthly report, \
         checkout errors, parcel tracking without an index.\n\
         \n\
         \x20 dashboard       {dashboard}\n\
         \x20 metrics         http://{admin}/metrics\n\
         \x20 the shop's db   psql \"{app}\"\n\
         \x20 admin console   psql \"{console}\" -c \"SHOW POOLS\"\n\
         \x20 terminal view   {top} top --admin {admin}\n\
         \x20 PostgreSQL      data and logs in {dir} (removed at exit)\n\
         \x20 advisor         {advice}\n\
         \n\
         {ends}\n",
        clients = args.clients,
        pg_port = cluster.port(),
        dashboard = crate::dashboard_url(admin),
        dir = cluster.dir().display(),
    ));
}

/// Role, database, hypopg and the shop's data, straight to PostgreSQL over
/// its Unix socket (trusted there). Whether hypopg could be created.
async fn create_database(cluster: &Cluster) -> Result<bool> {
    let superuser = connect_socket(cluster, "postgres", "postgres").await?;
    // One statement per call: CREATE DATABASE refuses to run inside the
    // implicit transaction of a multi-statement query.
    for sql in [
        "SET password_encryption = 'scram-sha-256'".to_owned(),
        format!("CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'"),
        format!("CREATE DATABASE {APP_DB} OWNER {APP_USER}"),
    ] {
        superuser
            .batch_execute(&sql)
            .await
            .context("creating the demo's role and database")?;
    }
    drop(superuser);
    // Creating an extension is a superuser's job, as it would be in
    // production; without the package the advice is heuristic.
    let superuser = connect_socket(cluster, "postgres", APP_DB).await?;
    let hypopg = superuser
        .batch_execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        .await
        .is_ok();
    drop(superuser);
    say("==> creating the shop: 2,000 customers, 20,000 orders, 60,000 items, 100,000 tracking events");
    let owner = connect_socket(cluster, APP_USER, APP_DB).await?;
    workload::create_shop(&owner).await?;
    Ok(hypopg)
}

async fn connect_socket(cluster: &Cluster, user: &str, db: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(cluster.dir())
        .port(cluster.port())
        .user(user)
        .dbname(db)
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL as {user} (database {db})"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// pgvigil's settings for the demo, written as a config file would be
/// and resolved by the same code, so the demo runs what users run.
fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    pg_port: u16,
    clients: usize,
) -> Result<Config> {
    let text = format!(
        r#"[pgvigil]
listen = "{listen}"
admin_listen = "{admin}"
admin_users = ["{APP_USER}"]
max_client_conn = {max_client_conn}
client_auth = "scram-sha-256"
shutdown_timeout = 5.0

[pool]
pool_mode = "transaction"
pool_size = {POOL_SIZE}

[databases.{APP_DB}]
host = "127.0.0.1"
port = {pg_port}

[users.{APP_USER}]
password = "{APP_PASSWORD}"

[advisor]
enabled = true
interval_s = {ADVISOR_INTERVAL_S}
plans_per_minute = 30
health_interval_s = 15
"#,
        // The report and checkout clients, and room for the user's psql.
        max_client_conn = clients + 50,
    );
    let file = FileConfig::from_toml(&text).context("the demo's configuration")?;
    Config::resolve(file, Overrides::default()).context("the demo's configuration")
}

/// `port` on loopback when it is free, else any free port: a second demo,
/// or a pgvigil already running, must not stop this one.
fn default_or_free(port: u16) -> SocketAddr {
    let wanted = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpListener::bind(wanted) {
        Ok(_) => wanted,
        Err(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    }
}

fn free_port() -> Result<u16> {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(probe.local_addr().context("finding a free port")?.port())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(program).is_file()))
}

/// SIGINT (Ctrl-C) or SIGTERM ends the demo in order: clients, pgvigil,
/// then the cluster. Later signals are absorbed, so the clean-up is not
/// cut short.
fn stop_on_signals() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if *tx.borrow() {
                eprintln!("pgvigil demo: still cleaning up, please wait");
            }
            let _ = tx.send(true);
        }
    });
    Ok(rx)
}

/// pgvigil's own log goes to a file in the demo's folder, so it does not
/// tear up the live line; its path is in the banner.
fn init_logging(path: &Path) -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .finish()
        .with(crate::silenced_targets())
        .try_init()
        .context("setting up logging")
}

/// A line on stdout, where the user is looking.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_pools_in_transaction_mode_with_the_advisor_on_and_room_for_its_clients() {
        let listen: SocketAddr = "127.0.0.1:6432".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:9930".parse().unwrap();
        let config = demo_config(listen, admin, 5433, 300).unwrap();
        assert_eq!(config.listen, listen);
        assert_eq!(config.admin_listen, admin);
        assert!(config.max_client_conn >= 302, "{}", config.max_client_conn);
        assert_eq!(config.admin_users, [APP_USER]);
        assert!(config.advisor.enabled);
        assert_eq!(
            config.advisor.interval,
            Duration::from_secs(ADVISOR_INTERVAL_S)
        );
        let db = &config.databases[APP_DB];
        assert_eq!((db.host.as_str(), db.port), ("127.0.0.1", 5433));
        assert_eq!(db.pool.pool_mode, pgvigil_config::PoolMode::Transaction);
        assert_eq!(db.pool.pool_size, POOL_SIZE);
    }
}
