//! The `pgvigil` binary: flags and config file in, a running proxy out;
//! `pgvigil top` watches a running one; `pgvigil demo` runs one in front of
//! a throwaway PostgreSQL with a workload to watch.

mod demo;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pgvigil_config::{Config, FileConfig, InsightSection, LogFormat, Overrides, PoolSection};
use pgvigil_proxy::Proxy;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread free lists make the hot path's few allocations
/// (buffers, normalized statements) cheaper than glibc malloc; see
/// BENCHMARKS.md. Built without transparent huge pages (`no_thp`): a huge
/// page is resident as a whole once one byte of it is touched, and an idle
/// pgvigil's many small allocations left 6 MiB of them mostly unused
/// (`MIMALLOC_ALLOW_THP=1` turns them back on).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A transparent PostgreSQL proxy that pools server connections and
/// watches every query. Flags override the config file.
#[derive(Debug, Parser)]
#[command(name = "pgvigil", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Without a command, pgvigil runs the proxy.
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (see config/pgvigil.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// postgres://USER:PASSWORD@HOST:PORT/DBNAME: declares one database and user.
    /// A Unix socket directory as libpq writes it:
    /// postgres:///DBNAME?host=/var/run/postgresql&port=5432&user=USER&password=PASSWORD
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Address of the admin HTTP listener [default: 127.0.0.1:9930].
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Bearer token for the admin API; required when --admin-listen is not loopback.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PGVIGIL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// File holding the admin token (a mounted secret), so the token need
    /// not sit in the process environment; surrounding whitespace is
    /// ignored. Used only when no --admin-token / PGVIGIL_ADMIN_TOKEN is given.
    #[arg(long, value_name = "PATH", env = "PGVIGIL_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Host names the admin listener answers to besides its own address
    /// and localhost (host or host:port), comma-separated.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    admin_allowed_hosts: Option<Vec<String>>,
    /// Users who may use the admin console (`psql ... pgvigil`), comma-separated.
    #[arg(long, value_name = "USERS", value_delimiter = ',')]
    admin_users: Option<Vec<String>>,
    /// Users who may run the console's SHOW commands, comma-separated.
    #[arg(long, value_name = "USERS", value_delimiter = ',')]
    stats_users: Option<Vec<String>>,
    /// session or transaction [default: session].
    #[arg(long, value_name = "MODE")]
    pool_mode: Option<String>,
    /// Server connections per (database, user) pool [default: 20].
    #[arg(long, value_name = "N")]
    pool_size: Option<usize>,
    /// Server connections opened at start and kept [default: 0].
    #[arg(long, value_name = "N")]
    min_pool_size: Option<usize>,
    /// Extra connections allowed under load, closed again when idle [default: 0].
    #[arg(long, value_name = "N")]
    max_overflow: Option<usize>,
    /// Most clients connected at once [default: 100].
    #[arg(long, value_name = "N")]
    max_client_conn: Option<usize>,
    /// trust, md5 or scram-sha-256 [default: scram-sha-256].
    #[arg(long, value_name = "METHOD")]
    client_auth: Option<String>,
    /// Seconds a client waits for a server connection [default: 120].
    #[arg(long, value_name = "SECONDS")]
    acquire_timeout: Option<f64>,
    /// Seconds after which a server connection is closed and replaced [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    server_lifetime: Option<f64>,
    /// Seconds an unused server connection stays open [default: 600].
    #[arg(long, value_name = "SECONDS")]
    server_idle_timeout: Option<f64>,
    /// Seconds idle before a server connection is health-checked on checkout [default: 30].
    #[arg(long, value_name = "SECONDS")]
    server_check_delay: Option<f64>,
    /// Largest message a client may send, in bytes [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    max_packet_size: Option<usize>,
    /// text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Threads serving connections; 0 = one per CPU core [default: 1].
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
    /// on or off: normalize, time and analyse every statement [default: on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    analytics: Option<bool>,
    /// Executions at least this long are slow-query events [default: 500].
    #[arg(long, value_name = "MS")]
    slow_query_ms: Option<f64>,
    /// Most fingerprints kept; the least used are evicted [default: 5000].
    #[arg(long, value_name = "N")]
    max_fingerprints: Option<usize>,
    /// TLS towards clients: disable, allow, prefer, require, verify-ca or verify-full [default: disable].
    #[arg(long, value_name = "MODE")]
    client_tls_sslmode: Option<String>,
    /// PEM certificate (chain) pgvigil presents to clients.
    #[arg(long, value_name = "FILE")]
    client_tls_cert_file: Option<PathBuf>,
    /// PEM private key of --client-tls-cert-file.
    #[arg(long, value_name = "FILE")]
    client_tls_key_file: Option<PathBuf>,
    /// PEM CA certificates client certificates must chain to (verify-ca, verify-full).
    #[arg(long, value_name = "FILE")]
    client_tls_ca_file: Option<PathBuf>,
    /// TLS towards PostgreSQL: disable, allow, prefer, require, verify-ca or verify-full [default: prefer].
    #[arg(long, value_name = "MODE")]
    server_tls_sslmode: Option<String>,
    /// PEM CA certificates the server's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    server_tls_ca_file: Option<PathBuf>,
    /// Authentication methods accepted from PostgreSQL, as libpq's require_auth
    /// (e.g. scram-sha-256,none or !password) [default: SCRAM only unless the leg is TLS].
    #[arg(long, value_name = "METHODS")]
    server_require_auth: Option<String>,
    /// Seconds a statement may run before it is cancelled; 0 = off [default: 0].
    #[arg(long, value_name = "SECONDS")]
    query_timeout: Option<f64>,
    /// Seconds a client may sit idle in a transaction before it is closed; 0 = off [default: 0].
    #[arg(long, value_name = "SECONDS")]
    idle_transaction_timeout: Option<f64>,
    /// Seconds a client may sit idle before it is closed; 0 = off [default: 0].
    #[arg(long, value_name = "SECONDS")]
    client_idle_timeout: Option<f64>,
    /// Seconds a transaction may stay open before its client is closed; 0 = off [default: 0].
    #[arg(long, value_name = "SECONDS")]
    transaction_timeout: Option<f64>,
    /// PgBouncer's name for --acquire-timeout.
    #[arg(long, value_name = "SECONDS")]
    query_wait_timeout: Option<f64>,
    /// Seconds a client has to finish logging in [default: 60].
    #[arg(long, value_name = "SECONDS")]
    client_login_timeout: Option<f64>,
    /// Seconds SIGTERM waits for sessions to finish [default: 10].
    #[arg(long, value_name = "SECONDS")]
    shutdown_timeout: Option<f64>,
    /// User pgvigil logs in as to look up passwords of users not in the config.
    #[arg(long, value_name = "USER")]
    auth_user: Option<String>,
    /// Query returning (usename, passwd) for $1 [default: SELECT usename, passwd FROM pg_shadow WHERE usename = $1].
    #[arg(long, value_name = "SQL")]
    auth_query: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Live terminal view of a running pgvigil (top queries, pools, slow and N+1 events).
    Top(top::TopArgs),
    /// A throwaway PostgreSQL, pgvigil in front of it and a shop's workload,
    /// with the dashboard to watch; Ctrl-C removes everything.
    Demo(demo::DemoArgs),
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("`{other}` is not on or off")),
    }
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            admin_listen: self.admin_listen.clone(),
            admin_token: self.admin_token.clone(),
            admin_allowed_hosts: self.admin_allowed_hosts.clone(),
            admin_users: self.admin_users.clone(),
            stats_users: self.stats_users.clone(),
            upstream: self.upstream.clone(),
            client_auth: self.client_auth.clone(),
            max_client_conn: self.max_client_conn,
            max_packet_size: self.max_packet_size,
            log_format: self.log_format.clone(),
            worker_threads: self.worker_threads,
            client_tls_sslmode: self.client_tls_sslmode.clone(),
            client_tls_cert_file: self.client_tls_cert_file.clone(),
            client_tls_key_file: self.client_tls_key_file.clone(),
            client_tls_ca_file: self.client_tls_ca_file.clone(),
            server_tls_sslmode: self.server_tls_sslmode.clone(),
            server_tls_ca_file: self.server_tls_ca_file.clone(),
            server_require_auth: self.server_require_auth.clone(),
            client_login_timeout: self.client_login_timeout,
            shutdown_timeout: self.shutdown_timeout,
            auth_user: self.auth_user.clone(),
            auth_query: self.auth_query.clone(),
            pool: PoolSection {
                pool_mode: self.pool_mode.clone(),
                pool_size: self.pool_size,
                min_pool_size: self.min_pool_size,
                max_overflow: self.max_overflow,
                acquire_timeout: self.acquire_timeout,
                server_lifetime: self.server_lifetime,
                server_idle_timeout: self.server_idle_timeout,
                server_check_delay: self.server_check_delay,
                query_wait_timeout: self.query_wait_timeout,
                query_timeout: self.query_timeout,
                idle_transaction_timeout: self.idle_transaction_timeout,
                client_idle_timeout: self.client_idle_timeout,
                transaction_timeout: self.transaction_timeout,
                ..PoolSection::default()
            },
            insight: InsightSection {
                analytics: self.analytics,
                slow_query_ms: self.slow_query_ms,
                max_fingerprints: self.max_fingerprints,
                ..InsightSection::default()
            },
        }
    }
}

/// Exit code for unusable flags or config, as clap uses for bad flags.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::Top(args)) => return top::run(args),
        Some(Command::Demo(args)) => return demo::run(args),
        None => {}
    }
    if let Err(e) = read_admin_token_file(&mut cli) {
        eprintln!("pgvigil: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgvigil: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(config.log_format);
    match run(config, cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Container orchestrators hand secrets over as files; reading it here
/// keeps it as one more source for the same setting. The error names the
/// file, never its content.
fn read_admin_token_file(cli: &mut Cli) -> Result<(), String> {
    let Some(path) = &cli.admin_token_file else {
        return Ok(());
    };
    if cli.admin_token.is_some() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("admin_token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "admin_token_file {}: the file is empty",
            path.display()
        ));
    }
    cli.admin_token = Some(token.to_owned());
    Ok(())
}

fn load_config(cli: &Cli) -> Result<Config, pgvigil_config::ConfigError> {
    let file = match &cli.config {
        Some(path) => FileConfig::from_path(path)?,
        None => FileConfig::default(),
    };
    Config::resolve(file, cli.overrides())
}

/// Dependencies whose debug and trace output carries statement text (or
/// could, being wire-protocol code): sqlparser logs every text it parses,
/// `ALTER ROLE ... PASSWORD '...'` included. They stay silent whatever
/// RUST_LOG asks for, since an operator turning on debug logging to chase
/// a pool problem has not agreed to write passwords and query literals to
/// the log.
const SILENCED_TARGETS: [&str; 2] = ["sqlparser", "pgwire"];

/// A filter in front of RUST_LOG's: a more specific RUST_LOG directive
/// (`sqlparser::parser=debug`) cannot re-enable what this turns off.
fn silenced_targets() -> Targets {
    SILENCED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, name| t.with_target(*name, LevelFilter::OFF),
    )
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.finish().with(silenced_targets()).init(),
        LogFormat::Json => builder.json().finish().with(silenced_targets()).init(),
    }
}

fn run(config: Config, cli: Cli) -> anyhow::Result<()> {
    // One thread by default, as PgBouncer: on a small host PostgreSQL and
    // the clients need the other cores, and a single-threaded scheduler
    // spends no cycles on work stealing or cross-thread wake-ups
    // (BENCHMARKS.md). Large hosts can ask for more.
    let runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("starting the async runtime")?;
    // What forwards nothing (admin API and metrics, advisor, health
    // samples, history saves) on a thread of its own: a scrape
    // or an advisor pass ranks every fingerprint, milliseconds of work
    // that on the forwarding thread would hold every client's bytes.
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pgvigil-background")
        .enable_all()
        .build()
        .context("starting the background runtime")?;
    let background_handle = background.handle().clone();
    let result = runtime.block_on(async move {
        // Handlers exist before the listener does: a signal that arrives
        // as soon as clients can connect must not meet its default
        // action (which ends the process).
        let signals = Signals::register();
        let (requests, shutdown_requests) = tokio::sync::mpsc::unbounded_channel();
        let signals_task = tokio::spawn(shutdown_signals(signals.shutdown, requests));
        let reloader: pgvigil_proxy::Reloader =
            Box::new(move || load_config(&cli).map_err(|e| e.to_string()));
        let result = serve(
            config,
            Some(reloader),
            signals.hangup,
            shutdown_requests,
            Some(background_handle),
            |_| {},
        )
        .await;
        signals_task.abort();
        result
    });
    // An advisor statement still running must not hold the exit.
    background.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Where a started server can be reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listening {
    pub client: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
}

/// The dashboard's address as a browser on this host reaches it: a
/// listener on every address (0.0.0.0, [::]) is not a place to browse to.
pub(crate) fn dashboard_url(admin: std::net::SocketAddr) -> String {
    let ip = match admin.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}/", std::net::SocketAddr::new(ip, admin.port()))
}

/// The server itself, shared by the plain command and `pgvigil demo` (which
/// runs it in-process, in front of its throwaway cluster): binds both
/// listeners, calls `ready` once clients can connect, and returns after a
/// request on `shutdown` has run its course.
pub(crate) async fn serve(
    config: Config,
    reloader: Option<pgvigil_proxy::Reloader>,
    hangup: Option<tokio::signal::unix::Signal>,
    shutdown: tokio::sync::mpsc::UnboundedReceiver<pgvigil_proxy::Shutdown>,
    background: Option<tokio::runtime::Handle>,
    ready: impl FnOnce(Listening),
) -> anyhow::Result<()> {
    let listen = config.listen;
    let admin_listen = config.admin_listen;
    let max_query_series = config.metrics.max_query_series;
    let duration_buckets: std::sync::Arc<[f64]> = config.metrics.duration_buckets.clone().into();
    let admin_token = config.admin_token.clone();
    let metrics_require_token = config.metrics_require_token;
    let admin_allowed_hosts = config.admin_allowed_hosts.clone();
    let background = background.unwrap_or_else(tokio::runtime::Handle::current);
    let proxy = Proxy::bind(config)
        .await
        .with_context(|| format!("binding the client listener on {listen}"))?
        .with_background(background.clone());
    // Bound here, so a taken port fails the start, but registered with the
    // background runtime, whose thread serves it.
    let admin = std::net::TcpListener::bind(admin_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("binding the admin listener on {admin_listen}"))?;
    if let Some(reloader) = reloader {
        proxy.set_reloader(reloader);
    }
    let reload_on_hangup = tokio::spawn(reload_on_sighup(hangup, proxy.control()));
    let addr = proxy.local_addr()?;
    let admin_addr = admin.local_addr()?;
    // The dashboard is what a newcomer wants to open: the line names it
    // as a URL, not only as the listener's address.
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        admin = %admin_addr,
        "listening on {addr}, dashboard {}",
        dashboard_url(admin_addr)
    );
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let state = pgvigil_admin::AdminState {
        insight: proxy.insight(),
        pools: {
            let control = proxy.control();
            std::sync::Arc::new(move || control.pools())
        },
        max_query_series,
        duration_buckets,
        token: admin_token.map(|t| t.0.into()),
        metrics_require_token,
        listen: admin_addr,
        allowed_hosts: admin_allowed_hosts.into(),
        health: proxy.health(),
        advisor: proxy.advisor(),
    };
    let admin_task = background.spawn(async move {
        let admin = tokio::net::TcpListener::from_std(admin)?;
        pgvigil_admin::serve(admin, state, async {
            let _ = admin_stopped.await;
        })
        .await
    });
    ready(Listening {
        client: addr,
        admin: admin_addr,
    });
    proxy.run(shutdown).await;
    reload_on_hangup.abort();
    let _ = stop_admin.send(());
    match admin_task.await {
        Ok(Err(e)) => tracing::warn!("admin listener: {e}"),
        Err(e) => tracing::warn!("admin listener task: {e}"),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// The signals pgvigil acts on, registered in one place.
struct Signals {
    hangup: Option<tokio::signal::unix::Signal>,
    /// SIGTERM, SIGINT, SIGQUIT.
    shutdown: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    fn register() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let hangup = signal(SignalKind::hangup()).ok();
        if hangup.is_none() {
            tracing::warn!("cannot listen for SIGHUP: reload with RELOAD in the admin console");
        }
        let shutdown = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) {
            (Ok(term), Ok(int), Ok(quit)) => Some([term, int, quit]),
            _ => {
                tracing::warn!("cannot listen for SIGTERM/SIGINT/SIGQUIT");
                None
            }
        };
        Signals { hangup, shutdown }
    }
}

/// SIGHUP re-reads the configuration, as RELOAD in the console does.
async fn reload_on_sighup(
    hangup: Option<tokio::signal::unix::Signal>,
    control: pgvigil_proxy::ProxyControl,
) {
    let Some(mut hangup) = hangup else {
        return;
    };
    while hangup.recv().await.is_some() {
        if let Err(e) = control.reload() {
            tracing::error!("reload failed, nothing changed: {e}");
        }
    }
}

/// PgBouncer's signals: SIGTERM waits for clients to leave, SIGINT for
/// transactions to end, SIGQUIT ends everything now; a second SIGTERM or
/// SIGINT hurries the first along.
async fn shutdown_signals(
    signals: Option<[tokio::signal::unix::Signal; 3]>,
    requests: tokio::sync::mpsc::UnboundedSender<pgvigil_proxy::Shutdown>,
) {
    use pgvigil_proxy::Shutdown;
    let Some([mut term, mut int, mut quit]) = signals else {
        return;
    };
    loop {
        let mode = tokio::select! {
            _ = term.recv() => Shutdown::Smart,
            _ = int.recv() => Shutdown::Safe,
            _ = quit.recv() => Shutdown::Immediate,
        };
        tracing::info!("shutdown requested: {mode:?}");
        if requests.send(mode).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dashboard_url;

    #[test]
    fn the_dashboard_url_of_a_listener_on_every_address_is_loopback() {
        let url = |addr: &str| dashboard_url(addr.parse().unwrap());
        assert_eq!(url("127.0.0.1:9930"), "http://127.0.0.1:9930/");
        assert_eq!(url("10.1.2.3:9930"), "http://10.1.2.3:9930/");
        assert_eq!(url("0.0.0.0:9930"), "http://127.0.0.1:9930/");
        assert_eq!(url("[::]:9930"), "http://[::1]:9930/");
    }
}
