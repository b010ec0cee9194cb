//! Layering: defaults, then the file, then command-line flags; then checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::file::{
    AdvisorSection, FileConfig, InsightSection, NPlusOneSection, PoolSection, ProxySection,
    SlowRuleSection, UserSection,
};
use crate::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A client keeps one server connection from login to logout.
    Session,
    /// A client holds a server connection only while a transaction is open.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Trust,
    Md5,
    ScramSha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// TLS towards clients, with PgBouncer's `client_tls_sslmode` meanings:
/// pgvigil is the TLS server here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSslMode {
    /// SSLRequest is answered `N`.
    Disable,
    /// TLS is offered; plain connections are accepted too.
    Allow,
    /// As `Allow` (PgBouncer makes no difference on the server side).
    Prefer,
    /// Plain connections are refused.
    Require,
    /// TLS with a client certificate signed by `client_tls_ca_file`.
    VerifyCa,
    /// As `VerifyCa`; PgBouncer also names the mode this way.
    VerifyFull,
}

impl ClientSslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSslMode::Disable => "disable",
            ClientSslMode::Allow => "allow",
            ClientSslMode::Prefer => "prefer",
            ClientSslMode::Require => "require",
            ClientSslMode::VerifyCa => "verify-ca",
            ClientSslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a client certificate is asked for and checked.
    pub fn verifies_client(self) -> bool {
        matches!(self, ClientSslMode::VerifyCa | ClientSslMode::VerifyFull)
    }

    /// Whether a client that does not ask for TLS is turned away.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            ClientSslMode::Require | ClientSslMode::VerifyCa | ClientSslMode::VerifyFull
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    pub sslmode: ClientSslMode,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// TLS towards PostgreSQL, with libpq's `sslmode` meanings: pgvigil is
/// the TLS client here. libpq's `allow` is read as `Prefer`: pgvigil does
/// not retry in plain text after the server answers the SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSslMode {
    Disable,
    /// TLS if the server offers it, certificate not checked.
    Prefer,
    /// TLS or no connection, certificate not checked.
    Require,
    /// The certificate chain must lead to `server_tls_ca_file`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl ServerSslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerSslMode::Disable => "disable",
            ServerSslMode::Prefer => "prefer",
            ServerSslMode::Require => "require",
            ServerSslMode::VerifyCa => "verify-ca",
            ServerSslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a server that answers the SSLRequest with `N` is refused.
    pub fn requires_tls(self) -> bool {
        !matches!(self, ServerSslMode::Disable | ServerSslMode::Prefer)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    pub sslmode: ServerSslMode,
    pub ca_file: Option<PathBuf>,
}

impl Default for ServerTlsSettings {
    fn default() -> Self {
        // libpq's and PgBouncer's default: encrypt when the server can.
        ServerTlsSettings {
            sslmode: ServerSslMode::Prefer,
            ca_file: None,
        }
    }
}

/// An authentication method PostgreSQL may ask pgvigil for on the server
/// leg, as libpq's `require_auth` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerAuthMethod {
    /// Cleartext password (AuthenticationCleartextPassword).
    Password,
    Md5,
    ScramSha256,
    /// The server asked for nothing (trust).
    None,
}

impl ServerAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerAuthMethod::Password => "password",
            ServerAuthMethod::Md5 => "md5",
            ServerAuthMethod::ScramSha256 => "scram-sha-256",
            ServerAuthMethod::None => "none",
        }
    }

    fn parse(text: &str) -> Option<ServerAuthMethod> {
        Some(match text {
            "password" => ServerAuthMethod::Password,
            "md5" => ServerAuthMethod::Md5,
            "scram-sha-256" => ServerAuthMethod::ScramSha256,
            "none" => ServerAuthMethod::None,
            _ => return None,
        })
    }
}

/// `server_require_auth`: which methods pgvigil accepts from PostgreSQL
/// before it answers with a credential, so a server (or whatever sits on
/// the path) cannot make it hand out a password in a weaker form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerRequireAuth {
    /// Not set: SCRAM only over plain TCP, where md5 hashes and cleartext
    /// can be replayed or read; anything once the leg is encrypted.
    #[default]
    Default,
    /// `scram-sha-256,none`: only these.
    Only(Vec<ServerAuthMethod>),
    /// `!password,!md5`: anything but these.
    Except(Vec<ServerAuthMethod>),
}

impl ServerRequireAuth {
    pub fn allows(&self, method: ServerAuthMethod, leg_is_tls: bool) -> bool {
        match self {
            ServerRequireAuth::Default => leg_is_tls || method == ServerAuthMethod::ScramSha256,
            ServerRequireAuth::Only(list) => list.contains(&method),
            ServerRequireAuth::Except(list) => !list.contains(&method),
        }
    }

    /// The setting as written (SHOW CONFIG); empty for the default.
    pub fn to_setting(&self) -> String {
        let join = |list: &[ServerAuthMethod], bang: &str| {
            list.iter()
                .map(|m| format!("{bang}{}", m.as_str()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            ServerRequireAuth::Default => String::new(),
            ServerRequireAuth::Only(list) => join(list, ""),
            ServerRequireAuth::Except(list) => join(list, "!"),
        }
    }

    /// libpq's rules: a comma list, either all negated or none, each
    /// method once.
    pub fn parse(text: &str) -> Result<ServerRequireAuth, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(ServerRequireAuth::Default);
        }
        let mut negated = None;
        let mut methods = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let (bang, name) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            if *negated.get_or_insert(bang) != bang {
                return Err("negative and positive methods cannot be mixed".into());
            }
            let method = ServerAuthMethod::parse(name).ok_or_else(|| {
                format!("`{name}` is not one of password, md5, scram-sha-256, none")
            })?;
            if methods.contains(&method) {
                return Err(format!("`{name}` is given more than once"));
            }
            methods.push(method);
        }
        Ok(if negated == Some(true) {
            ServerRequireAuth::Except(methods)
        } else {
            ServerRequireAuth::Only(methods)
        })
    }
}

/// What a configured password is, read the way PostgreSQL reads
/// pg_authid.rolpassword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    /// Usable both to check clients and to log in to PostgreSQL.
    Plain,
    /// `md5` + 32 hex digits: checks md5 clients only; cannot log in.
    Md5Hash,
    /// `SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey`: checks SCRAM
    /// clients only; cannot log in on its own.
    ScramSecret,
}

impl PasswordKind {
    /// PostgreSQL's rule: a value shaped like a hash is a hash.
    pub fn of(password: &str) -> PasswordKind {
        if password.starts_with("SCRAM-SHA-256$") {
            PasswordKind::ScramSecret
        } else if password.len() == 35
            && password.starts_with("md5")
            && password[3..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            PasswordKind::Md5Hash
        } else {
            PasswordKind::Plain
        }
    }
}

/// Checks the shape of a SCRAM secret; the reason never quotes the value.
fn check_scram_secret(secret: &str) -> Result<(), &'static str> {
    let shape = "is not SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
    let rest = secret.strip_prefix("SCRAM-SHA-256$").ok_or(shape)?;
    let (params, keys) = rest.split_once('$').ok_or(shape)?;
    let (iterations, salt) = params.split_once(':').ok_or(shape)?;
    let (stored, server) = keys.split_once(':').ok_or(shape)?;
    match iterations.parse::<u32>() {
        Ok(n) if n > 0 => {}
        _ => return Err("has an iteration count that is not a positive number"),
    }
    let base64 = |s: &str| {
        !s.is_empty()
            && s.len() & 3 == 0
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    };
    if !base64(salt) || !base64(stored) || !base64(server) {
        return Err("has a salt or key that is not base64");
    }
    // SHA-256 keys are 32 bytes: 44 base64 characters.
    if stored.len() != 44 || server.len() != 44 {
        return Err("has a StoredKey or ServerKey that is not 32 bytes");
    }
    Ok(())
}

/// Everything that can be given on the command line. `None` means "not
/// given", so the file's value (or the default) stands.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    pub admin_allowed_hosts: Option<Vec<String>>,
    pub admin_users: Option<Vec<String>>,
    pub stats_users: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub client_auth: Option<String>,
    pub max_client_conn: Option<usize>,
    pub max_packet_size: Option<usize>,
    pub log_format: Option<String>,
    pub worker_threads: Option<usize>,
    pub client_tls_sslmode: Option<String>,
    pub client_tls_cert_file: Option<PathBuf>,
    pub client_tls_key_file: Option<PathBuf>,
    pub client_tls_ca_file: Option<PathBuf>,
    pub server_tls_sslmode: Option<String>,
    pub server_tls_ca_file: Option<PathBuf>,
    pub server_require_auth: Option<String>,
    pub client_login_timeout: Option<f64>,
    pub shutdown_timeout: Option<f64>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub pool: PoolSection,
    pub insight: InsightSection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub pool_mode: PoolMode,
    pub pool_size: usize,
    pub min_pool_size: usize,
    pub max_overflow: usize,
    pub acquire_timeout: Duration,
    pub server_lifetime: Duration,
    pub server_idle_timeout: Duration,
    pub server_check_delay: Duration,
    pub server_connect_timeout: Duration,
    /// Empty means "no reset".
    pub server_reset_query: String,
    pub max_prepared_statements: usize,
    /// Transaction mode: a client whose session holds state a shared
    /// connection cannot carry (temporary tables, session advisory locks,
    /// LISTEN, WITH HOLD cursors, SQL PREPARE) keeps its server connection
    /// until that state is gone; at most this many clients per pool at once.
    pub max_pinned_clients: usize,
    /// Off: such state is never kept; the connection holding it is closed
    /// instead of being shared (and LISTEN is refused).
    pub pin_session_state: bool,
    /// Leak guards, PgBouncer's; zero means off. A statement running longer
    /// than `query_timeout` is cancelled...
    pub query_timeout: Duration,
    /// ...a client idle inside a transaction longer than this is closed,
    /// since it holds a server connection and its locks...
    pub idle_transaction_timeout: Duration,
    /// ...a client idle (outside a transaction) longer than this is closed...
    pub client_idle_timeout: Duration,
    /// ...and a transaction open longer than this is ended by closing the
    /// client.
    pub transaction_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pool_mode: PoolMode::Session,
            pool_size: 20,
            min_pool_size: 0,
            max_overflow: 0,
            acquire_timeout: Duration::from_secs(120),
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            server_check_delay: Duration::from_secs(30),
            server_connect_timeout: Duration::from_secs(15),
            server_reset_query: "DISCARD ALL".to_string(),
            max_prepared_statements: 200,
            max_pinned_clients: 10,
            pin_session_state: true,
            query_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            transaction_timeout: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The name clients ask for in their startup message.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The name on the PostgreSQL server.
    pub dbname: String,
    pub pool: PoolSettings,
    pub server_tls: ServerTlsSettings,
    /// The user pgvigil logs in as to look up passwords of users that are
    /// not in `[users]` (PgBouncer's auth_user); `None`: no look-up.
    pub auth_user: Option<String>,
    pub auth_query: String,
}

/// A credential that must never reach a log line, `{:?}` included.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, PartialEq)]
pub struct UserConfig {
    pub name: String,
    pub password: Option<String>,
}

impl UserConfig {
    /// Whether `password` is plain text or a hash (SCRAM secret, md5), which
    /// decides what it can be used for.
    pub fn password_kind(&self) -> Option<PasswordKind> {
        self.password.as_deref().map(PasswordKind::of)
    }
}

// Passwords must never reach a log line, including a `{:?}` of the config.
impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InsightSettings {
    /// Off: pgvigil only pools; nothing is normalized, timed or detected.
    pub analytics: bool,
    pub max_fingerprints: usize,
    pub slow_query: Duration,
    pub log_parameters: bool,
    pub max_slow_events: usize,
    pub max_detections: usize,
    pub n_plus_one: NPlusOneSettings,
    pub slow_rules: Vec<SlowRuleSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NPlusOneSettings {
    pub enabled: bool,
    pub min_repeats: usize,
    pub max_gap: Duration,
    pub max_unit_statements: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlowRuleSettings {
    pub name: String,
    pub threshold: Duration,
    pub fingerprint: Option<u64>,
    pub statement: Option<String>,
    pub table: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    /// Checked to compile when the config is loaded.
    pub query_regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Required as `Authorization: Bearer <token>` on `/api/*` (and on
    /// `/metrics` with `metrics_require_token`). Mandatory when the admin
    /// listener is not on a loopback address.
    pub admin_token: Option<Secret>,
    /// Host names (optionally `name:port`) the admin listener answers to,
    /// besides its own address and the loopback names; anything else is
    /// refused, which stops DNS-rebinding pages from reading the API.
    pub admin_allowed_hosts: Vec<String>,
    pub metrics_require_token: bool,
    /// Users who may run every admin console command.
    pub admin_users: Vec<String>,
    /// Users who may run the console's SHOW commands.
    pub stats_users: Vec<String>,
    pub client_auth: ClientAuth,
    pub max_client_conn: usize,
    pub max_packet_size: usize,
    /// Threads serving connections: 1 runs everything on one thread, as
    /// PgBouncer does; 0 means one per CPU core.
    pub worker_threads: usize,
    pub log_format: LogFormat,
    pub pool_defaults: PoolSettings,
    pub databases: BTreeMap<String, DatabaseConfig>,
    pub users: BTreeMap<String, UserConfig>,
    pub insight: InsightSettings,
    pub metrics: MetricsSettings,
    pub advisor: AdvisorSettings,
    pub client_tls: ClientTlsSettings,
    /// `[pgvigil]`'s server TLS; each database has its own resolved copy.
    pub server_tls: ServerTlsSettings,
    pub server_require_auth: ServerRequireAuth,
    /// A client that has not finished logging in by then is disconnected,
    /// so half-open connections cannot hold client slots.
    pub client_login_timeout: Duration,
    /// On SIGTERM, sessions are given this long to finish before they are
    /// closed.
    pub shutdown_timeout: Duration,
    pub auth_user: Option<String>,
    pub auth_query: String,
}

/// PgBouncer's default auth_query.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1";

/// `[advisor]`: what pgvigil does off the hot path with its own server
/// connections (plans, index advice and hygiene, database health) and
/// what it keeps to compare before and after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvisorSettings {
    /// Off: no plans, advice or health sampling; no connection of its own.
    pub enabled: bool,
    /// How often the advisor looks for plans to take and advice to give.
    pub interval: Duration,
    /// Every statement the advisor runs is bounded by this.
    pub statement_timeout: Duration,
    /// Keep one real parameter sample per planned fingerprint, in memory
    /// only, to plan with real values instead of a generic plan.
    pub capture_parameters: bool,
    /// EXPLAIN ANALYZE (the statement really runs; inside BEGIN ...
    /// ROLLBACK unless it is a SELECT).
    pub explain_analyze: bool,
    /// CREATE EXTENSION hypopg where it is available but not installed.
    pub create_extension: bool,
    /// Fraction by which an index must cut a plan's estimated cost.
    pub min_improvement: f64,
    /// Fingerprints planned by total time.
    pub plan_top_n: usize,
    /// Fingerprints whose p95 is over this are planned too.
    pub plan_p95: Duration,
    pub plans_per_minute: u32,
    pub max_plans: usize,
    pub max_plan_bytes: usize,
    pub max_advice: usize,
    /// An index younger than this is never called unused.
    pub unused_index_min_age: Duration,
    pub health_interval: Duration,
    /// A fingerprint whose recent p95 is this many times its baseline's
    /// is a regression.
    pub regression_factor: f64,
    /// The recent window a regression is judged on.
    pub regression_window: Duration,
    /// Calls needed in both the window and the baseline.
    pub regression_min_calls: u64,
    pub max_markers: usize,
    /// Where hourly history is saved, so a restart keeps the baseline.
    pub history_file: Option<std::path::PathBuf>,
    /// Health lists a transaction open longer than this (idle in
    /// transaction or not): it holds locks and keeps VACUUM from removing
    /// the row versions it might still see.
    pub long_transaction: Duration,
    /// Tables in each health sample (most dead tuples first) and in
    /// `pgvigil_db_dead_tuples`; bounds the label set.
    pub health_max_tables: usize,
    /// Long transactions and blocked sessions listed per sample, each.
    pub health_max_sessions: usize,
}

impl Default for AdvisorSettings {
    fn default() -> Self {
        AdvisorSettings {
            enabled: true,
            interval: Duration::from_secs(300),
            statement_timeout: Duration::from_secs(5),
            capture_parameters: false,
            explain_analyze: false,
            create_extension: false,
            min_improvement: 0.5,
            plan_top_n: 10,
            plan_p95: Duration::from_millis(100),
            plans_per_minute: 10,
            max_plans: 200,
            max_plan_bytes: 8 * 1024 * 1024,
            max_advice: 100,
            unused_index_min_age: Duration::from_secs(7 * 86_400),
            health_interval: Duration::from_secs(60),
            regression_factor: 2.0,
            regression_window: Duration::from_secs(300),
            regression_min_calls: 20,
            max_markers: 100,
            history_file: None,
            long_transaction: Duration::from_secs(60),
            health_max_tables: 20,
            health_max_sessions: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Fingerprints with their own series on /metrics; the rest are
    /// summed under fingerprint="other".
    pub max_query_series: usize,
    /// Upper bounds (seconds) of `pgvigil_query_duration_seconds` buckets.
    pub duration_buckets: Vec<f64>,
}

/// Default `metrics.duration_buckets`, seconds. `histogram_quantile`
/// interpolates linearly inside a bucket, so its answer can be off by up to
/// the ratio between a bucket's bounds: no neighbouring bounds here are more
/// than 1.25 apart from 1 ms to 10 s, which keeps a p95 read from Prometheus
/// within 25% of the true one (wider buckets once put a 114 ms p95 at
/// 242 ms). 0.2 s is a bound because the shipped `PgvigilQueryP95High`
/// alert compares against it; a threshold between bounds would be judged on
/// an interpolated guess.
pub const DEFAULT_DURATION_BUCKETS: [f64; 55] = [
    0.0005, 0.001, 0.00125, 0.0015, 0.0018, 0.002, 0.0025, 0.003, 0.0035, 0.004, 0.005, 0.006,
    0.007, 0.008, 0.01, 0.0125, 0.015, 0.018, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06, 0.07,
    0.08, 0.1, 0.125, 0.15, 0.18, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5,
    1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 30.0,
];

/// Bucket bounds must be usable as Prometheus `le` labels: finite, above
/// zero (pgvigil measures in microseconds, so at least 1 µs) and strictly
/// increasing, or `histogram_quantile` returns nonsense.
fn duration_buckets(v: Option<Vec<f64>>) -> Result<Vec<f64>, ConfigError> {
    const KEY: &str = "metrics.duration_buckets";
    let Some(v) = v else {
        return Ok(DEFAULT_DURATION_BUCKETS.to_vec());
    };
    if v.is_empty() {
        return Err(ConfigError::invalid(KEY, "must list at least one bound"));
    }
    for (i, b) in v.iter().enumerate() {
        if !b.is_finite() || *b < 0.000_001 {
            return Err(ConfigError::invalid(
                KEY,
                format!("{b} is not a positive number of seconds (at least 0.000001)"),
            ));
        }
        if i > 0 && *b <= v[i - 1] {
            return Err(ConfigError::invalid(
                KEY,
                format!("bounds must be strictly increasing ({} then {b})", v[i - 1]),
            ));
        }
    }
    Ok(v)
}

/// The database name that opens the admin console instead of a pool.
pub const CONSOLE_DATABASE: &str = "pgvigil";

/// PostgreSQL's own limit on a message is 1 GB; a smaller default keeps a
/// misbehaving client from making pgvigil buffer that much.
const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024 * 1024;

impl Config {
    pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Config, ConfigError> {
        let p = &file.pgvigil;
        let listen = parse_addr(
            "listen",
            flags.listen.as_deref().or(p.listen.as_deref()),
            "127.0.0.1:6432",
        )?;
        let admin_listen = parse_addr(
            "admin_listen",
            flags.admin_listen.as_deref().or(p.admin_listen.as_deref()),
            "127.0.0.1:9930",
        )?;
        let admin_token = flags
            .admin_token
            .clone()
            .or(p.admin_token.clone())
            .filter(|t| !t.is_empty())
            .map(Secret);
        if !admin_listen.ip().is_loopback() && admin_token.is_none() {
            return Err(ConfigError::invalid(
                "admin_token",
                format!(
                    "admin_listen {admin_listen} is reachable from other hosts: set admin_token to protect the API"
                ),
            ));
        }
        let admin_allowed_hosts = flags
            .admin_allowed_hosts
            .clone()
            .or(p.admin_allowed_hosts.clone())
            .unwrap_or_default();
        if let Some(bad) = admin_allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/'))
        {
            return Err(ConfigError::invalid(
                "admin_allowed_hosts",
                format!("`{bad}` is not a host name (host or host:port)"),
            ));
        }
        let metrics_require_token = p.metrics_require_token.unwrap_or(false);
        let admin_users = flags
            .admin_users
            .clone()
            .or(p.admin_users.clone())
            .unwrap_or_default();
        let stats_users = flags
            .stats_users
            .clone()
            .or(p.stats_users.clone())
            .unwrap_or_default();
        for (key, names) in [("admin_users", &admin_users), ("stats_users", &stats_users)] {
            if let Some(bad) = names.iter().find(|n| n.is_empty()) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{bad}` is not a user name"),
                ));
            }
        }
        let client_auth = match flags
            .client_auth
            .as_deref()
            .or(p.client_auth.as_deref())
            .unwrap_or("scram-sha-256")
        {
            "trust" => ClientAuth::Trust,
            "md5" => ClientAuth::Md5,
            "scram-sha-256" => ClientAuth::ScramSha256,
            other => {
                return Err(ConfigError::invalid(
                    "client_auth",
                    format!("`{other}` is not one of trust, md5, scram-sha-256"),
                ))
            }
        };
        let log_format = match flags
            .log_format
            .as_deref()
            .or(p.log_format.as_deref())
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log_format",
                    format!("`{other}` is not one of text, json"),
                ))
            }
        };
        let max_client_conn = flags.max_client_conn.or(p.max_client_conn).unwrap_or(100);
        if max_client_conn == 0 {
            return Err(ConfigError::invalid(
                "max_client_conn",
                "must be at least 1",
            ));
        }
        let max_packet_size = flags
            .max_packet_size
            .or(p.max_packet_size)
            .unwrap_or(DEFAULT_MAX_PACKET_SIZE);
        if max_packet_size < 1024 {
            return Err(ConfigError::invalid(
                "max_packet_size",
                "must be at least 1024 bytes",
            ));
        }

        let worker_threads = flags.worker_threads.or(p.worker_threads).unwrap_or(1);
        if worker_threads > 1024 {
            return Err(ConfigError::invalid(
                "worker_threads",
                format!("`{worker_threads}` threads is more than 1024"),
            ));
        }

        let client_tls = resolve_client_tls(p, &flags)?;
        // Server TLS and auth_user layer like the pool settings: [pgvigil],
        // then the database's section, then the flags.
        let server_tls = layer_server_tls(
            ServerTlsSettings::default(),
            p.server_tls_sslmode.as_deref(),
            p.server_tls_ca_file.as_deref(),
            "",
        )?;
        let server_tls_flags = |tls: ServerTlsSettings| {
            layer_server_tls(
                tls,
                flags.server_tls_sslmode.as_deref(),
                flags.server_tls_ca_file.as_deref(),
                "",
            )
        };
        let server_tls = server_tls_flags(server_tls)?;
        check_server_tls(&server_tls, "")?;
        let server_require_auth = match flags
            .server_require_auth
            .as_deref()
            .or(p.server_require_auth.as_deref())
        {
            Some(text) => ServerRequireAuth::parse(text)
                .map_err(|reason| ConfigError::invalid("server_require_auth", reason))?,
            None => ServerRequireAuth::Default,
        };
        let client_login_timeout = seconds(
            "client_login_timeout",
            flags.client_login_timeout.or(p.client_login_timeout),
        )?
        .unwrap_or(Duration::from_secs(60));
        let shutdown_timeout = seconds(
            "shutdown_timeout",
            flags.shutdown_timeout.or(p.shutdown_timeout),
        )?
        .unwrap_or(Duration::from_secs(10));
        let auth_user = non_empty(
            "auth_user",
            flags.auth_user.as_deref().or(p.auth_user.as_deref()),
        )?;
        let auth_query = non_empty(
            "auth_query",
            flags.auth_query.as_deref().or(p.auth_query.as_deref()),
        )?
        .unwrap_or_else(|| DEFAULT_AUTH_QUERY.to_string());

        // Flags override the file's [pool] defaults and every database's
        // own overrides: a flag is the operator's last word.
        let pool_defaults = apply_pool(PoolSettings::default(), &file.pool, "pool")?;
        let pool_defaults = apply_pool(pool_defaults, &flags.pool, "pool")?;

        let mut databases = BTreeMap::new();
        for (name, section) in &file.databases {
            let key = format!("databases.{name}");
            let pool = apply_pool(pool_defaults.clone(), &section.pool_overrides(), &key)?;
            let pool = apply_pool(pool, &flags.pool, "pool")?;
            let tls = layer_server_tls(
                server_tls.clone(),
                section.server_tls_sslmode.as_deref(),
                section.server_tls_ca_file.as_deref(),
                &key,
            )?;
            let tls = server_tls_flags(tls)?;
            check_server_tls(&tls, &key)?;
            let db_auth_user = non_empty(
                &format!("{key}.auth_user"),
                flags.auth_user.as_deref().or(section.auth_user.as_deref()),
            )?
            .or(auth_user.clone());
            let db_auth_query = non_empty(
                &format!("{key}.auth_query"),
                flags
                    .auth_query
                    .as_deref()
                    .or(section.auth_query.as_deref()),
            )?
            .unwrap_or_else(|| auth_query.clone());
            databases.insert(
                name.clone(),
                DatabaseConfig {
                    name: name.clone(),
                    host: section.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                    port: section.port.unwrap_or(5432),
                    dbname: section.dbname.clone().unwrap_or_else(|| name.clone()),
                    pool,
                    server_tls: tls,
                    auth_user: db_auth_user,
                    auth_query: db_auth_query,
                },
            );
        }
        let mut users = BTreeMap::new();
        for (name, section) in &file.users {
            users.insert(
                name.clone(),
                UserConfig {
                    name: name.clone(),
                    password: resolve_password(name, section)?,
                },
            );
        }

        if let Some(url) = flags.upstream.as_deref() {
            let up = parse_upstream(url)?;
            let pool = match file.databases.get(&up.dbname) {
                Some(section) => {
                    let key = format!("databases.{}", up.dbname);
                    let pool = apply_pool(pool_defaults.clone(), &section.pool_overrides(), &key)?;
                    apply_pool(pool, &flags.pool, "pool")?
                }
                None => pool_defaults.clone(),
            };
            // The URL's own sslmode/sslrootcert are the most specific word
            // on this database, as they would be for libpq.
            let (tls, db_auth_user, db_auth_query) = match databases.get(&up.dbname) {
                Some(db) => (
                    db.server_tls.clone(),
                    db.auth_user.clone(),
                    db.auth_query.clone(),
                ),
                None => (server_tls.clone(), auth_user.clone(), auth_query.clone()),
            };
            let tls = layer_server_tls(
                tls,
                up.sslmode.as_deref(),
                up.sslrootcert.as_deref().map(Path::new),
                "upstream",
            )?;
            check_server_tls(&tls, "upstream")?;
            databases.insert(
                up.dbname.clone(),
                DatabaseConfig {
                    name: up.dbname.clone(),
                    host: up.host,
                    port: up.port,
                    dbname: up.dbname,
                    pool,
                    server_tls: tls,
                    auth_user: db_auth_user,
                    auth_query: db_auth_query,
                },
            );
            users.insert(
                up.user.clone(),
                UserConfig {
                    name: up.user,
                    password: up.password,
                },
            );
        }

        if databases.is_empty() {
            return Err(ConfigError::invalid(
                "databases",
                "no database configured: give --upstream or a [databases.NAME] section",
            ));
        }
        if databases.contains_key(CONSOLE_DATABASE) {
            return Err(ConfigError::invalid(
                format!("databases.{CONSOLE_DATABASE}"),
                format!("\"{CONSOLE_DATABASE}\" is the admin console's database name; give the database another name (dbname may still be \"{CONSOLE_DATABASE}\")"),
            ));
        }
        if users.is_empty() {
            return Err(ConfigError::invalid(
                "users",
                "no user configured: give --upstream with a user or a [users.NAME] section",
            ));
        }
        if client_auth != ClientAuth::Trust {
            if let Some(user) = users.values().find(|u| u.password.is_none()) {
                return Err(ConfigError::invalid(
                    format!("users.{}.password", user.name),
                    "a password is required unless client_auth = \"trust\"",
                ));
            }
        }

        for db in databases.values() {
            let Some(name) = &db.auth_user else { continue };
            let key = if file
                .databases
                .get(&db.name)
                .is_some_and(|d| d.auth_user.is_some())
                && flags.auth_user.is_none()
            {
                format!("databases.{}.auth_user", db.name)
            } else {
                "auth_user".to_string()
            };
            match users.get(name) {
                Some(UserConfig {
                    password: Some(pw), ..
                }) if PasswordKind::of(pw) == PasswordKind::Plain => {}
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "user `{name}` needs a [users.{name}] section with a plain-text password: pgvigil logs in with it to run auth_query"
                        ),
                    ))
                }
            }
        }

        let insight = resolve_insight(
            &file.insight,
            &flags.insight,
            &file.n_plus_one,
            &file.slow_rules,
        )?;

        let metrics = MetricsSettings {
            max_query_series: file.metrics.max_query_series.unwrap_or(100),
            duration_buckets: duration_buckets(file.metrics.duration_buckets.clone())?,
        };
        let advisor = resolve_advisor(&file.advisor)?;

        Ok(Config {
            metrics,
            advisor,
            insight,
            listen,
            admin_listen,
            admin_token,
            admin_allowed_hosts,
            metrics_require_token,
            admin_users,
            stats_users,
            client_auth,
            max_client_conn,
            max_packet_size,
            worker_threads,
            log_format,
            pool_defaults,
            databases,
            users,
            client_tls,
            server_tls,
            server_require_auth,
            client_login_timeout,
            shutdown_timeout,
            auth_user,
            auth_query,
        })
    }
}

fn seconds(key: &str, v: Option<f64>) -> Result<Option<Duration>, ConfigError> {
    match v {
        Some(v) if !v.is_finite() || v < 0.0 => Err(ConfigError::invalid(
            key,
            format!("`{v}` is not a number of seconds >= 0"),
        )),
        Some(v) => Ok(Some(Duration::from_secs_f64(v))),
        None => Ok(None),
    }
}

fn non_empty(key: &str, v: Option<&str>) -> Result<Option<String>, ConfigError> {
    match v {
        Some("") => Err(ConfigError::invalid(key, "must not be empty")),
        other => Ok(other.map(str::to_string)),
    }
}

fn resolve_client_tls(
    p: &ProxySection,
    flags: &Overrides,
) -> Result<ClientTlsSettings, ConfigError> {
    let sslmode = match flags
        .client_tls_sslmode
        .as_deref()
        .or(p.client_tls_sslmode.as_deref())
        .unwrap_or("disable")
    {
        "disable" => ClientSslMode::Disable,
        "allow" => ClientSslMode::Allow,
        "prefer" => ClientSslMode::Prefer,
        "require" => ClientSslMode::Require,
        "verify-ca" => ClientSslMode::VerifyCa,
        "verify-full" => ClientSslMode::VerifyFull,
        other => {
            return Err(ConfigError::invalid(
                "client_tls_sslmode",
                format!(
                "`{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
            ))
        }
    };
    let path = |flag: &Option<PathBuf>, file: &Option<PathBuf>| {
        flag.clone()
            .or(file.clone())
            .filter(|p| !p.as_os_str().is_empty())
    };
    let tls = ClientTlsSettings {
        sslmode,
        cert_file: path(&flags.client_tls_cert_file, &p.client_tls_cert_file),
        key_file: path(&flags.client_tls_key_file, &p.client_tls_key_file),
        ca_file: path(&flags.client_tls_ca_file, &p.client_tls_ca_file),
    };
    if sslmode != ClientSslMode::Disable {
        let needs = |key: &str| {
            ConfigError::invalid(
                key,
                format!(
                    "client_tls_sslmode {} needs a certificate and its key",
                    sslmode.as_str()
                ),
            )
        };
        if tls.cert_file.is_none() {
            return Err(needs("client_tls_cert_file"));
        }
        if tls.key_file.is_none() {
            return Err(needs("client_tls_key_file"));
        }
    }
    if sslmode.verifies_client() && tls.ca_file.is_none() {
        return Err(ConfigError::invalid(
            "client_tls_ca_file",
            format!(
                "client_tls_sslmode {} checks client certificates against this CA file; give one",
                sslmode.as_str()
            ),
        ));
    }
    Ok(tls)
}

/// One layer of server TLS settings; `prefix` is the section for the
/// error ("" for `[pgvigil]` and flags, "databases.NAME", "upstream").
fn layer_server_tls(
    mut tls: ServerTlsSettings,
    sslmode: Option<&str>,
    ca_file: Option<&Path>,
    prefix: &str,
) -> Result<ServerTlsSettings, ConfigError> {
    let key = |k: &str| match prefix {
        "" => k.to_string(),
        "upstream" => format!(
            "upstream ({})",
            if k == "server_tls_sslmode" {
                "sslmode"
            } else {
                "sslrootcert"
            }
        ),
        _ => format!("{prefix}.{k}"),
    };
    if let Some(mode) = sslmode {
        tls.sslmode = match mode {
            "disable" => ServerSslMode::Disable,
            // libpq's allow tries plain text first; pgvigil asks for TLS
            // first instead, which never encrypts less.
            "allow" | "prefer" => ServerSslMode::Prefer,
            "require" => ServerSslMode::Require,
            "verify-ca" => ServerSslMode::VerifyCa,
            "verify-full" => ServerSslMode::VerifyFull,
            other => {
                return Err(ConfigError::invalid(
                    key("server_tls_sslmode"),
                    format!(
                        "`{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ),
                ))
            }
        };
    }
    if let Some(ca) = ca_file {
        if ca == Path::new("system") {
            return Err(ConfigError::invalid(
                key("server_tls_ca_file"),
                "the system certificate store is not supported: give a CA file",
            ));
        }
        tls.ca_file = (!ca.as_os_str().is_empty()).then(|| ca.to_path_buf());
    }
    Ok(tls)
}

fn check_server_tls(tls: &ServerTlsSettings, prefix: &str) -> Result<(), ConfigError> {
    if matches!(
        tls.sslmode,
        ServerSslMode::VerifyCa | ServerSslMode::VerifyFull
    ) && tls.ca_file.is_none()
    {
        let key = match prefix {
            "" => "server_tls_ca_file".to_string(),
            "upstream" => "upstream (sslrootcert)".to_string(),
            _ => format!("{prefix}.server_tls_ca_file"),
        };
        return Err(ConfigError::invalid(
            key,
            format!(
                "server_tls_sslmode {} needs a CA file to check the server against (libpq's ~/.postgresql/root.crt is not read)",
                tls.sslmode.as_str()
            ),
        ));
    }
    Ok(())
}

/// Reads a user's password from wherever the file puts it. Errors name
/// the key and never the value.
fn resolve_password(name: &str, section: &UserSection) -> Result<Option<String>, ConfigError> {
    let key = |k: &str| format!("users.{name}.{k}");
    let given: Vec<&str> = [
        ("password", section.password.is_some()),
        ("password_env", section.password_env.is_some()),
        ("password_file", section.password_file.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    if given.len() > 1 {
        return Err(ConfigError::invalid(
            key(given[1]),
            format!("give only one of {}", given.join(", ")),
        ));
    }
    let (password, origin) = if let Some(var) = &section.password_env {
        let value = std::env::var(var).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set",
                std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
            };
            ConfigError::invalid(
                key("password_env"),
                format!("environment variable `{var}` {why}"),
            )
        })?;
        (value, key("password_env"))
    } else if let Some(path) = &section.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                key("password_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text)
            .to_string();
        (text, key("password_file"))
    } else if let Some(pw) = &section.password {
        (pw.clone(), key("password"))
    } else {
        return Ok(None);
    };
    if password.is_empty() && section.password.is_none() {
        return Err(ConfigError::invalid(origin, "the password is empty"));
    }
    if PasswordKind::of(&password) == PasswordKind::ScramSecret {
        check_scram_secret(&password)
            .map_err(|why| ConfigError::invalid(origin, format!("the SCRAM secret {why}")))?;
    }
    Ok(Some(password))
}

fn millis(key: &str, v: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || v < 0.0 {
        return Err(ConfigError::invalid(
            key,
            format!("`{v}` is not a number of milliseconds >= 0"),
        ));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

fn resolve_advisor(a: &AdvisorSection) -> Result<AdvisorSettings, ConfigError> {
    let d = AdvisorSettings::default();
    let positive =
        |key: &str, v: Option<f64>, default: Duration| -> Result<Duration, ConfigError> {
            match seconds(key, v)? {
                Some(x) if x.is_zero() => Err(ConfigError::invalid(key, "must be more than 0")),
                Some(x) => Ok(x),
                None => Ok(default),
            }
        };
    let min_improvement = a.min_improvement.unwrap_or(d.min_improvement);
    if !(min_improvement > 0.0 && min_improvement < 1.0) {
        return Err(ConfigError::invalid(
            "advisor.min_improvement",
            "must be between 0 and 1 (0.5 = the index halves the estimated cost)",
        ));
    }
    let regression_factor = a.regression_factor.unwrap_or(d.regression_factor);
    if !(regression_factor > 1.0 && regression_factor.is_finite()) {
        return Err(ConfigError::invalid(
            "advisor.regression_factor",
            "must be more than 1",
        ));
    }
    Ok(AdvisorSettings {
        enabled: a.enabled.unwrap_or(d.enabled),
        interval: positive("advisor.interval_s", a.interval_s, d.interval)?,
        statement_timeout: match a.statement_timeout_ms {
            Some(ms) if ms > 0.0 => millis("advisor.statement_timeout_ms", ms)?,
            Some(_) => {
                return Err(ConfigError::invalid(
                    "advisor.statement_timeout_ms",
                    "must be more than 0",
                ))
            }
            None => d.statement_timeout,
        },
        capture_parameters: a.capture_parameters.unwrap_or(d.capture_parameters),
        explain_analyze: a.explain_analyze.unwrap_or(d.explain_analyze),
        create_extension: a.create_extension.unwrap_or(d.create_extension),
        min_improvement,
        plan_top_n: a.plan_top_n.unwrap_or(d.plan_top_n),
        plan_p95: match a.plan_p95_ms {
            Some(ms) => millis("advisor.plan_p95_ms", ms)?,
            None => d.plan_p95,
        },
        plans_per_minute: a.plans_per_minute.unwrap_or(d.plans_per_minute),
        max_plans: a.max_plans.unwrap_or(d.max_plans),
        max_plan_bytes: a.max_plan_bytes.unwrap_or(d.max_plan_bytes),
        max_advice: a.max_advice.unwrap_or(d.max_advice),
        unused_index_min_age: seconds("advisor.unused_index_min_age_s", a.unused_index_min_age_s)?
            .unwrap_or(d.unused_index_min_age),
        health_interval: positive(
            "advisor.health_interval_s",
            a.health_interval_s,
            d.health_interval,
        )?,
        regression_factor,
        regression_window: positive(
            "advisor.regression_window_s",
            a.regression_window_s,
            d.regression_window,
        )?,
        regression_min_calls: a.regression_min_calls.unwrap_or(d.regression_min_calls),
        max_markers: a.max_markers.unwrap_or(d.max_markers).max(1),
        history_file: a.history_file.clone(),
        long_transaction: positive(
            "advisor.long_transaction_s",
            a.long_transaction_s,
            d.long_transaction,
        )?,
        health_max_tables: a.health_max_tables.unwrap_or(d.health_max_tables),
        health_max_sessions: a.health_max_sessions.unwrap_or(d.health_max_sessions),
    })
}

fn resolve_insight(
    file: &InsightSection,
    flags: &InsightSection,
    n1: &NPlusOneSection,
    rules: &[SlowRuleSection],
) -> Result<InsightSettings, ConfigError> {
    let max_fingerprints = flags
        .max_fingerprints
        .or(file.max_fingerprints)
        .unwrap_or(5000);
    if max_fingerprints == 0 {
        return Err(ConfigError::invalid(
            "insight.max_fingerprints",
            "must be at least 1",
        ));
    }
    let slow_query = millis(
        "insight.slow_query_ms",
        flags.slow_query_ms.or(file.slow_query_ms).unwrap_or(500.0),
    )?;
    let min_repeats = n1.min_repeats.unwrap_or(5);
    if min_repeats < 2 {
        return Err(ConfigError::invalid(
            "n_plus_one.min_repeats",
            "must be at least 2",
        ));
    }
    let n_plus_one = NPlusOneSettings {
        enabled: n1.enabled.unwrap_or(true),
        min_repeats,
        max_gap: millis("n_plus_one.max_gap_ms", n1.max_gap_ms.unwrap_or(100.0))?,
        max_unit_statements: n1.max_unit_statements.unwrap_or(512).max(min_repeats),
    };
    let mut slow_rules = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let key = |k: &str| format!("slow_rules[{i}].{k}");
        if r.name.is_empty() {
            return Err(ConfigError::invalid(key("name"), "must not be empty"));
        }
        let fingerprint =
            match &r.fingerprint {
                Some(f) if f.len() == 16 => Some(u64::from_str_radix(f, 16).map_err(|_| {
                    ConfigError::invalid(key("fingerprint"), "must be 16 hex digits")
                })?),
                Some(_) => {
                    return Err(ConfigError::invalid(
                        key("fingerprint"),
                        "must be 16 hex digits",
                    ))
                }
                None => None,
            };
        if let Some(re) = &r.query_regex {
            regex::Regex::new(re).map_err(|e| {
                ConfigError::invalid(key("query_regex"), e.to_string().replace('\n', " "))
            })?;
        }
        slow_rules.push(SlowRuleSettings {
            name: r.name.clone(),
            threshold: millis(&key("threshold_ms"), r.threshold_ms)?,
            fingerprint,
            statement: r.statement.clone(),
            table: r.table.clone(),
            database: r.database.clone(),
            user: r.user.clone(),
            application_name: r.application_name.clone(),
            query_regex: r.query_regex.clone(),
        });
    }
    Ok(InsightSettings {
        analytics: flags.analytics.or(file.analytics).unwrap_or(true),
        max_fingerprints,
        slow_query,
        log_parameters: flags
            .log_parameters
            .or(file.log_parameters)
            .unwrap_or(false),
        max_slow_events: file.max_slow_events.unwrap_or(1000).max(1),
        max_detections: file.max_detections.unwrap_or(1000).max(1),
        n_plus_one,
        slow_rules,
    })
}

fn parse_addr(key: &str, value: Option<&str>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or(default);
    text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{text}` is not an address like 127.0.0.1:6432"),
        )
    })
}

fn apply_pool(
    mut pool: PoolSettings,
    section: &PoolSection,
    prefix: &str,
) -> Result<PoolSettings, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    if let Some(mode) = section.pool_mode.as_deref() {
        pool.pool_mode = match mode {
            "session" => PoolMode::Session,
            "transaction" => PoolMode::Transaction,
            other => {
                return Err(ConfigError::invalid(
                    key("pool_mode"),
                    format!("`{other}` is not one of session, transaction"),
                ))
            }
        };
    }
    if let Some(v) = section.pool_size {
        pool.pool_size = v;
    }
    if let Some(v) = section.min_pool_size {
        pool.min_pool_size = v;
    }
    if let Some(v) = section.max_overflow {
        pool.max_overflow = v;
    }
    if let Some(v) = section.max_prepared_statements {
        pool.max_prepared_statements = v;
    }
    if let Some(v) = section.max_pinned_clients {
        pool.max_pinned_clients = v;
    }
    if let Some(v) = section.pin_session_state {
        pool.pin_session_state = v;
    }
    if let Some(v) = &section.server_reset_query {
        pool.server_reset_query = v.clone();
    }
    let seconds = |name: &str, v: Option<f64>, slot: &mut Duration| -> Result<(), ConfigError> {
        if let Some(v) = v {
            if !v.is_finite() || v < 0.0 {
                return Err(ConfigError::invalid(
                    key(name),
                    format!("`{v}` is not a number of seconds >= 0"),
                ));
            }
            *slot = Duration::from_secs_f64(v);
        }
        Ok(())
    };
    // query_wait_timeout is PgBouncer's name for acquire_timeout.
    if let (Some(a), Some(q)) = (section.acquire_timeout, section.query_wait_timeout) {
        if a != q {
            return Err(ConfigError::invalid(
                key("query_wait_timeout"),
                format!(
                    "{q} differs from {} ({a}): they name the same setting, give one",
                    key("acquire_timeout")
                ),
            ));
        }
    }
    seconds(
        "query_wait_timeout",
        section.query_wait_timeout,
        &mut pool.acquire_timeout,
    )?;
    seconds(
        "acquire_timeout",
        section.acquire_timeout,
        &mut pool.acquire_timeout,
    )?;
    seconds(
        "query_timeout",
        section.query_timeout,
        &mut pool.query_timeout,
    )?;
    seconds(
        "idle_transaction_timeout",
        section.idle_transaction_timeout,
        &mut pool.idle_transaction_timeout,
    )?;
    seconds(
        "client_idle_timeout",
        section.client_idle_timeout,
        &mut pool.client_idle_timeout,
    )?;
    seconds(
        "transaction_timeout",
        section.transaction_timeout,
        &mut pool.transaction_timeout,
    )?;
    seconds(
        "server_lifetime",
        section.server_lifetime,
        &mut pool.server_lifetime,
    )?;
    seconds(
        "server_idle_timeout",
        section.server_idle_timeout,
        &mut pool.server_idle_timeout,
    )?;
    seconds(
        "server_check_delay",
        section.server_check_delay,
        &mut pool.server_check_delay,
    )?;
    seconds(
        "server_connect_timeout",
        section.server_connect_timeout,
        &mut pool.server_connect_timeout,
    )?;
    if pool.server_connect_timeout.is_zero() {
        return Err(ConfigError::invalid(
            key("server_connect_timeout"),
            "must be more than 0: every server connection and cancel would give up at once",
        ));
    }
    if pool.pool_size == 0 {
        return Err(ConfigError::invalid(key("pool_size"), "must be at least 1"));
    }
    if pool.min_pool_size > pool.pool_size {
        return Err(ConfigError::invalid(
            key("min_pool_size"),
            format!(
                "{} is larger than pool_size ({})",
                pool.min_pool_size, pool.pool_size
            ),
        ));
    }
    Ok(pool)
}

struct Upstream {
    host: String,
    port: u16,
    dbname: String,
    user: String,
    password: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn parse_upstream(text: &str) -> Result<Upstream, ConfigError> {
    let bad = |reason: &str| ConfigError::invalid("upstream", reason.to_string());
    let url = url::Url::parse(text).map_err(|e| {
        bad(&format!(
            "not a postgres://user:password@host:port/db URL ({e})"
        ))
    })?;
    if url.scheme() != "postgres" && url.scheme() != "postgresql" {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    // A Unix socket directory, as libpq spells it: `?host=/dir`, or the
    // host part percent-encoded (`%2Fvar%2Frun%2Fpostgresql`).
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let query_host = param("host");
    let host = match query_host {
        Some(h) => h,
        None => percent_decode(
            url.host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']'),
        ),
    };
    if host.is_empty() {
        return Err(bad(
            "the URL has no host (a Unix socket directory goes in ?host=/path)",
        ));
    }
    let port = match param("port") {
        Some(p) => p
            .parse()
            .map_err(|_| bad(&format!("port {p:?} is not a port number")))?,
        None => url.port().unwrap_or(5432),
    };
    let user = param("user").unwrap_or_else(|| percent_decode(url.username()));
    if user.is_empty() {
        return Err(bad("the URL has no user name"));
    }
    let dbname = percent_decode(url.path().trim_start_matches('/'));
    let dbname = if dbname.is_empty() {
        user.clone()
    } else {
        dbname
    };
    Ok(Upstream {
        host,
        port,
        dbname,
        password: param("password").or_else(|| url.password().map(percent_decode)),
        user,
        sslmode: param("sslmode"),
        sslrootcert: param("sslrootcert"),
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_with_upstream(url: &str) -> Overrides {
        Overrides {
            upstream: Some(url.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_url_declares_database_and_user() {
        let cfg = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://app:s%40cret@127.0.0.1:5433/appdb"),
        )
        .unwrap();
        let db = &cfg.databases["appdb"];
        assert_eq!((db.host.as_str(), db.port), ("127.0.0.1", 5433));
        assert_eq!(cfg.users["app"].password.as_deref(), Some("s@cret"));
    }

    #[test]
    fn upstream_url_names_a_unix_socket_directory_as_libpq_does() {
        for url in [
            "postgres:///appdb?host=/var/run/postgresql&port=5432&user=app&password=pw",
            "postgres://app:pw@%2Fvar%2Frun%2Fpostgresql/appdb",
        ] {
            let cfg = Config::resolve(FileConfig::default(), flags_with_upstream(url)).unwrap();
            let db = &cfg.databases["appdb"];
            assert_eq!(
                (db.host.as_str(), db.port),
                ("/var/run/postgresql", 5432),
                "{url}"
            );
        }
        let cfg = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://app:pw@localhost:6543/appdb?host=/tmp"),
        )
        .unwrap();
        let db = &cfg.databases["appdb"];
        assert_eq!((db.host.as_str(), db.port), ("/tmp", 6543));
        let err = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres:///appdb?user=app"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("?host=/path"), "{err}");
    }

    #[test]
    fn flags_override_file_and_database_settings() {
        let file = FileConfig::from_toml(
            "[pool]\npool_size = 7\n[databases.a]\npool_size = 3\n[users.u]\npassword = \"p\"\n",
        )
        .unwrap();
        let mut flags = Overrides::default();
        let cfg = Config::resolve(file.clone(), flags.clone()).unwrap();
        assert_eq!(cfg.databases["a"].pool.pool_size, 3);
        assert_eq!(cfg.pool_defaults.pool_size, 7);
        flags.pool.pool_size = Some(9);
        let cfg = Config::resolve(file, flags).unwrap();
        assert_eq!(cfg.databases["a"].pool.pool_size, 9);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let file = FileConfig::from_toml(
            "[databases.a]\npool_mode = \"statement\"\n[users.u]\npassword = \"p\"\n",
        )
        .unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("databases.a.pool_mode"), "{err}");

        let err = Config::resolve(
            FileConfig::default(),
            Overrides {
                listen: Some("nowhere".into()),
                ..flags_with_upstream("postgres://a:b@h/d")
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("`listen`"), "{err}");
    }

    #[test]
    fn the_console_database_name_is_reserved_and_admin_users_are_read() {
        let file = FileConfig::from_toml(
            "[pgvigil]\nadmin_users = [\"ops\"]\nstats_users = [\"mon\"]\n[users.u]\npassword = \"p\"\n[databases.d]\n",
        )
        .unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(config.admin_users, ["ops"]);
        assert_eq!(config.stats_users, ["mon"]);

        let file =
            FileConfig::from_toml("[users.u]\npassword = \"p\"\n[databases.pgvigil]\n").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("databases.pgvigil"), "{err}");
    }

    #[test]
    fn slow_rules_are_checked_and_named_by_position() {
        let file = FileConfig::from_toml(
            "[[slow_rules]]\nname = \"r\"\nthreshold_ms = 5\nquery_regex = \"(\"\n[users.u]\npassword = \"p\"\n[databases.d]\n",
        )
        .unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("slow_rules[0].query_regex"),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    #[test]
    fn insight_defaults_follow_pg_stat_statements_and_the_issue() {
        let cfg = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://a:b@h/d"),
        )
        .unwrap();
        assert!(cfg.insight.analytics);
        assert_eq!(cfg.insight.max_fingerprints, 5000);
        assert_eq!(cfg.insight.slow_query, Duration::from_millis(500));
        assert_eq!(cfg.insight.n_plus_one.min_repeats, 5);
        assert_eq!(cfg.insight.n_plus_one.max_gap, Duration::from_millis(100));
    }

    #[test]
    fn an_admin_listener_beyond_loopback_needs_a_token() {
        let mut flags = flags_with_upstream("postgres://a:b@h/d");
        flags.admin_listen = Some("0.0.0.0:9930".into());
        let err = Config::resolve(FileConfig::default(), flags.clone()).unwrap_err();
        assert!(err.to_string().contains("admin_token"), "{err}");
        flags.admin_token = Some("s3cret".into());
        assert!(Config::resolve(FileConfig::default(), flags).is_ok());
    }

    #[test]
    fn passwords_are_redacted_in_debug_output() {
        let cfg = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://app:hunter2@h/d"),
        )
        .unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    fn resolve_toml(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(FileConfig::from_toml(text).unwrap(), Overrides::default())
    }

    const BASE: &str = "[users.u]\npassword = \"p\"\n[databases.d]\n";

    fn temp_file(name: &str, content: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("pgvigil-config-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn client_tls_is_off_by_default_and_each_mode_needs_its_files() {
        let cfg = resolve_toml(BASE).unwrap();
        assert_eq!(cfg.client_tls.sslmode, ClientSslMode::Disable);

        let err = resolve_toml(&format!(
            "[pgvigil]\nclient_tls_sslmode = \"require\"\n{BASE}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("`client_tls_cert_file`"), "{err}");
        let err = resolve_toml(&format!(
            "[pgvigil]\nclient_tls_sslmode = \"require\"\nclient_tls_cert_file = \"/c\"\n{BASE}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("`client_tls_key_file`"), "{err}");
        let with_pair = "client_tls_cert_file = \"/c\"\nclient_tls_key_file = \"/k\"\n";
        let cfg = resolve_toml(&format!(
            "[pgvigil]\nclient_tls_sslmode = \"require\"\n{with_pair}{BASE}"
        ))
        .unwrap();
        assert_eq!(cfg.client_tls.sslmode, ClientSslMode::Require);
        assert_eq!(cfg.client_tls.key_file, Some(PathBuf::from("/k")));
        let err = resolve_toml(&format!(
            "[pgvigil]\nclient_tls_sslmode = \"verify-full\"\n{with_pair}{BASE}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("`client_tls_ca_file`"), "{err}");
        let err =
            resolve_toml(&format!("[pgvigil]\nclient_tls_sslmode = \"on\"\n{BASE}")).unwrap_err();
        assert!(err.to_string().contains("`client_tls_sslmode`"), "{err}");

        let mut flags = Overrides {
            client_tls_sslmode: Some("verify-ca".into()),
            client_tls_cert_file: Some("/c".into()),
            client_tls_key_file: Some("/k".into()),
            client_tls_ca_file: Some("/ca".into()),
            ..Overrides::default()
        };
        let cfg = Config::resolve(FileConfig::from_toml(BASE).unwrap(), flags.clone()).unwrap();
        assert_eq!(cfg.client_tls.sslmode, ClientSslMode::VerifyCa);
        assert_eq!(cfg.client_tls.ca_file, Some(PathBuf::from("/ca")));
        flags.client_tls_ca_file = None;
        assert!(Config::resolve(FileConfig::from_toml(BASE).unwrap(), flags).is_err());
    }

    #[test]
    fn server_tls_prefers_by_default_and_layers_per_database() {
        let cfg = resolve_toml(&format!(
            "[pgvigil]\nserver_tls_sslmode = \"require\"\n{BASE}[databases.strict]\nserver_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = \"/ca.pem\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.server_tls.sslmode, ServerSslMode::Require);
        assert_eq!(
            cfg.databases["d"].server_tls.sslmode,
            ServerSslMode::Require
        );
        let strict = &cfg.databases["strict"].server_tls;
        assert_eq!(strict.sslmode, ServerSslMode::VerifyFull);
        assert_eq!(strict.ca_file, Some(PathBuf::from("/ca.pem")));

        let cfg = resolve_toml(BASE).unwrap();
        assert_eq!(cfg.databases["d"].server_tls, ServerTlsSettings::default());
        assert_eq!(cfg.server_tls.sslmode, ServerSslMode::Prefer);

        let err = resolve_toml(&format!(
            "{BASE}[databases.strict]\nserver_tls_sslmode = \"verify-ca\"\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("databases.strict.server_tls_ca_file"),
            "{err}"
        );

        let flags = Overrides {
            server_tls_sslmode: Some("disable".into()),
            ..Overrides::default()
        };
        let file = FileConfig::from_toml(&format!(
            "{BASE}[databases.strict]\nserver_tls_sslmode = \"verify-full\"\n"
        ))
        .unwrap();
        let cfg = Config::resolve(file, flags).unwrap();
        assert_eq!(
            cfg.databases["strict"].server_tls.sslmode,
            ServerSslMode::Disable
        );
    }

    #[test]
    fn upstream_url_sslmode_and_sslrootcert_apply_as_libpq_reads_them() {
        let cfg = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://a:b@h/d?sslmode=verify-full&sslrootcert=/ca.pem"),
        )
        .unwrap();
        let tls = &cfg.databases["d"].server_tls;
        assert_eq!(tls.sslmode, ServerSslMode::VerifyFull);
        assert_eq!(tls.ca_file, Some(PathBuf::from("/ca.pem")));

        let cfg = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://a:b@h/d?sslmode=allow"),
        )
        .unwrap();
        assert_eq!(cfg.databases["d"].server_tls.sslmode, ServerSslMode::Prefer);

        let err = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://a:b@h/d?sslmode=verify-ca"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
        let err = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://a:b@h/d?sslmode=strict"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("upstream"), "{err}");
    }

    #[test]
    fn server_require_auth_reads_libpq_lists() {
        use ServerAuthMethod::*;
        let unset = ServerRequireAuth::Default;
        assert!(unset.allows(ScramSha256, false));
        assert!(!unset.allows(Md5, false));
        assert!(!unset.allows(Password, false));
        assert!(!unset.allows(None, false));
        assert!(unset.allows(Md5, true) && unset.allows(Password, true));

        let only = ServerRequireAuth::parse("scram-sha-256, none").unwrap();
        assert!(only.allows(None, false) && only.allows(ScramSha256, false));
        assert!(!only.allows(Md5, true));
        assert_eq!(only.to_setting(), "scram-sha-256,none");

        let except = ServerRequireAuth::parse("!password,!md5").unwrap();
        assert!(!except.allows(Password, true) && !except.allows(Md5, false));
        assert!(except.allows(None, false) && except.allows(ScramSha256, false));

        for bad in ["md5,!password", "md5,md5", "gss", "scram"] {
            assert!(ServerRequireAuth::parse(bad).is_err(), "{bad}");
        }
        let err = resolve_toml(&format!(
            "[pgvigil]\nserver_require_auth = \"md5,!none\"\n{BASE}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("`server_require_auth`"), "{err}");
        let cfg = Config::resolve(
            FileConfig::from_toml(BASE).unwrap(),
            Overrides {
                server_require_auth: Some("!password".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            cfg.server_require_auth,
            ServerRequireAuth::Except(vec![Password])
        );
    }

    #[test]
    fn leak_guard_timeouts_are_off_by_default_and_layer_like_pool_settings() {
        let cfg = resolve_toml(BASE).unwrap();
        let pool = &cfg.databases["d"].pool;
        assert_eq!(pool.query_timeout, Duration::ZERO);
        assert_eq!(pool.idle_transaction_timeout, Duration::ZERO);
        assert_eq!(pool.client_idle_timeout, Duration::ZERO);
        assert_eq!(pool.transaction_timeout, Duration::ZERO);
        assert_eq!(cfg.client_login_timeout, Duration::from_secs(60));
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(10));

        let cfg = resolve_toml(&format!(
            "[pgvigil]\nclient_login_timeout = 5\nshutdown_timeout = 0.5\n[pool]\nquery_timeout = 30\nidle_transaction_timeout = 10\nquery_wait_timeout = 7\n{BASE}[databases.e]\nquery_timeout = 2\nclient_idle_timeout = 600\ntransaction_timeout = 60\n"
        ))
        .unwrap();
        assert_eq!(cfg.client_login_timeout, Duration::from_secs(5));
        assert_eq!(cfg.shutdown_timeout, Duration::from_millis(500));
        let d = &cfg.databases["d"].pool;
        assert_eq!(d.query_timeout, Duration::from_secs(30));
        assert_eq!(d.idle_transaction_timeout, Duration::from_secs(10));
        assert_eq!(d.acquire_timeout, Duration::from_secs(7));
        let e = &cfg.databases["e"].pool;
        assert_eq!(e.query_timeout, Duration::from_secs(2));
        assert_eq!(e.client_idle_timeout, Duration::from_secs(600));
        assert_eq!(e.transaction_timeout, Duration::from_secs(60));
        assert_eq!(e.idle_transaction_timeout, Duration::from_secs(10));

        let mut flags = Overrides::default();
        flags.pool.query_wait_timeout = Some(3.0);
        flags.pool.transaction_timeout = Some(1.0);
        let cfg = Config::resolve(FileConfig::from_toml(BASE).unwrap(), flags).unwrap();
        assert_eq!(
            cfg.databases["d"].pool.acquire_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(
            cfg.databases["d"].pool.transaction_timeout,
            Duration::from_secs(1)
        );

        let err = resolve_toml(&format!("[pool]\nquery_timeout = -1\n{BASE}")).unwrap_err();
        assert!(err.to_string().contains("pool.query_timeout"), "{err}");
        let err = resolve_toml(&format!("[pgvigil]\nshutdown_timeout = -1\n{BASE}")).unwrap_err();
        assert!(err.to_string().contains("`shutdown_timeout`"), "{err}");
    }

    #[test]
    fn query_wait_timeout_is_acquire_timeout_and_both_must_agree() {
        let cfg = resolve_toml(&format!(
            "[pool]\nacquire_timeout = 9\nquery_wait_timeout = 9\n{BASE}"
        ))
        .unwrap();
        assert_eq!(cfg.pool_defaults.acquire_timeout, Duration::from_secs(9));
        let err = resolve_toml(&format!(
            "{BASE}[databases.e]\nacquire_timeout = 9\nquery_wait_timeout = 8\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("databases.e.query_wait_timeout"), "{err}");
        assert!(err.contains("databases.e.acquire_timeout"), "{err}");
    }

    #[test]
    fn passwords_come_from_exactly_one_of_password_env_and_file() {
        std::env::set_var("PGVIGIL_TEST_PW_ENV", "from-env");
        let file = temp_file("pw", "from-file\n");
        let cfg = resolve_toml(&format!(
            "[databases.d]\n[users.e]\npassword_env = \"PGVIGIL_TEST_PW_ENV\"\n[users.f]\npassword_file = \"{}\"\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(cfg.users["e"].password.as_deref(), Some("from-env"));
        assert_eq!(cfg.users["f"].password.as_deref(), Some("from-file"));

        let err = resolve_toml(
            "[databases.d]\n[users.e]\npassword = \"x\"\npassword_env = \"PGVIGIL_TEST_PW_ENV\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("users.e.password_env"), "{err}");
        assert!(!err.contains("from-env"), "{err}");

        let err = resolve_toml(
            "[databases.d]\n[users.e]\npassword_env = \"PGVIGIL_TEST_PW_UNSET_VAR\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("users.e.password_env"), "{err}");
        assert!(err.contains("PGVIGIL_TEST_PW_UNSET_VAR"), "{err}");

        let err = resolve_toml("[databases.d]\n[users.f]\npassword_file = \"/nonexistent/pw\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("users.f.password_file"), "{err}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn scram_secrets_and_md5_hashes_are_recognised_as_pg_authid_stores_them() {
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$q4Kjp3vsc8zcZCF4F2sOVBxXjXVbnPDWJa9J6PdlWGo=:RlS9GlqN3/C7dmXqlhMqtq7rzSh5T6r5SGZNtYFVh3M=";
        let cfg = resolve_toml(&format!(
            "[databases.d]\n[users.s]\npassword = \"{scram}\"\n[users.m]\npassword = \"md5d41d8cd98f00b204e9800998ecf8427e\"\n[users.p]\npassword = \"md5 but plain\"\n"
        ))
        .unwrap();
        let kind = |u: &str| cfg.users[u].password_kind().unwrap();
        assert_eq!(kind("s"), PasswordKind::ScramSecret);
        assert_eq!(kind("m"), PasswordKind::Md5Hash);
        assert_eq!(kind("p"), PasswordKind::Plain);

        let broken = "SCRAM-SHA-256$4096:c2FsdA==$short:keys";
        let err = resolve_toml(&format!(
            "[databases.d]\n[users.s]\npassword = \"{broken}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("users.s.password"), "{err}");
        assert!(!err.contains("short"), "{err}");
    }

    #[test]
    fn auth_user_must_be_a_user_pgvigil_can_log_in_as() {
        let cfg = resolve_toml(&format!(
            "[pgvigil]\nauth_user = \"u\"\n{BASE}[databases.e]\nauth_query = \"SELECT * FROM pgvigil.lookup($1)\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.auth_user.as_deref(), Some("u"));
        assert_eq!(cfg.databases["d"].auth_user.as_deref(), Some("u"));
        assert_eq!(cfg.databases["d"].auth_query, DEFAULT_AUTH_QUERY);
        assert_eq!(
            cfg.databases["e"].auth_query,
            "SELECT * FROM pgvigil.lookup($1)"
        );

        let err = resolve_toml(&format!("[pgvigil]\nauth_user = \"nobody\"\n{BASE}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`auth_user`") && err.contains("nobody"),
            "{err}"
        );
        let err = resolve_toml(&format!(
            "{BASE}[databases.e]\nauth_user = \"m\"\n[users.m]\npassword = \"md5d41d8cd98f00b204e9800998ecf8427e\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("databases.e.auth_user"), "{err}");
        assert!(!err.contains("d41d8cd9"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_secret_of_any_kind() {
        std::env::set_var("PGVIGIL_TEST_DEBUG_PW", "env-secret-1");
        let file = temp_file("debug-pw", "file-secret-2\n");
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$q4Kjp3vsc8zcZCF4F2sOVBxXjXVbnPDWJa9J6PdlWGo=:RlS9GlqN3/C7dmXqlhMqtq7rzSh5T6r5SGZNtYFVh3M=";
        let toml = format!(
            "[pgvigil]\nadmin_token = \"token-secret-3\"\nauth_user = \"plain\"\n[databases.d]\n[users.plain]\npassword = \"plain-secret-4\"\n[users.scram]\npassword = \"{scram}\"\n[users.md5]\npassword = \"md5d41d8cd98f00b204e9800998ecf8427e\"\n[users.env]\npassword_env = \"PGVIGIL_TEST_DEBUG_PW\"\n[users.file]\npassword_file = \"{}\"\n",
            file.display()
        );
        let file_config = FileConfig::from_toml(&toml).unwrap();
        let cfg = Config::resolve(
            file_config,
            flags_with_upstream("postgres://up:url-secret-5@h/up"),
        )
        .unwrap();
        std::fs::remove_file(file).unwrap();
        assert_eq!(cfg.users.len(), 6);
        let text = format!("{cfg:?}");
        for secret in [
            "env-secret-1",
            "file-secret-2",
            "token-secret-3",
            "plain-secret-4",
            "url-secret-5",
            "q4Kjp3vsc8",
            "d41d8cd98f",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn the_example_config_resolves_to_the_documented_defaults() {
        let text = include_str!("../../../config/pgvigil.toml");
        let cfg =
            Config::resolve(FileConfig::from_toml(text).unwrap(), Overrides::default()).unwrap();
        let defaults = Config::resolve(
            FileConfig::default(),
            flags_with_upstream("postgres://a:b@h/d"),
        )
        .unwrap();
        assert_eq!(cfg.pool_defaults, defaults.pool_defaults);
        assert_eq!(cfg.client_tls, defaults.client_tls);
        assert_eq!(cfg.server_tls, defaults.server_tls);
        assert_eq!(cfg.client_login_timeout, defaults.client_login_timeout);
        assert_eq!(cfg.shutdown_timeout, defaults.shutdown_timeout);
    }

    #[test]
    fn a_zero_server_connect_timeout_is_refused_where_it_is_set() {
        for (toml, named) in [
            (
                "[pool]\nserver_connect_timeout = 0\n",
                "server_connect_timeout",
            ),
            (
                "[databases.a]\nserver_connect_timeout = 0.0\n",
                "databases.a.server_connect_timeout",
            ),
        ] {
            let err = resolve_toml(&format!("{BASE}{toml}")).unwrap_err();
            assert!(err.to_string().contains(named), "{toml}: {err}");
        }
        let cfg = resolve_toml(&format!("{BASE}[pool]\nserver_connect_timeout = 0.5\n")).unwrap();
        assert_eq!(
            cfg.pool_defaults.server_connect_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn health_limits_have_defaults_and_a_zero_long_transaction_is_refused() {
        let cfg = resolve_toml(BASE).unwrap();
        assert_eq!(cfg.advisor.long_transaction, Duration::from_secs(60));
        assert_eq!(
            (
                cfg.advisor.health_max_tables,
                cfg.advisor.health_max_sessions
            ),
            (20, 20)
        );
        let cfg = resolve_toml(&format!(
            "{BASE}[advisor]\nlong_transaction_s = 2.5\nhealth_max_tables = 3\n"
        ))
        .unwrap();
        assert_eq!(cfg.advisor.long_transaction, Duration::from_millis(2500));
        assert_eq!(cfg.advisor.health_max_tables, 3);
        let err = resolve_toml(&format!("{BASE}[advisor]\nlong_transaction_s = 0\n")).unwrap_err();
        assert!(
            err.to_string().contains("advisor.long_transaction_s"),
            "{err}"
        );
    }

    /// Prometheus' `histogram_quantile` on cumulative counts: find the
    /// bucket holding rank q*n and interpolate linearly inside it (the first
    /// bucket's lower bound is 0).
    fn histogram_quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> f64 {
        let total = *cumulative.last().unwrap() as f64;
        let rank = q * total;
        let i = cumulative.iter().position(|&c| c as f64 >= rank).unwrap();
        if i == bounds.len() {
            return bounds[bounds.len() - 1];
        }
        let (low, below) = if i == 0 {
            (0.0, 0.0)
        } else {
            (bounds[i - 1], cumulative[i - 1] as f64)
        };
        let inside = cumulative[i] as f64 - below;
        low + (bounds[i] - low) * (rank - below) / inside
    }

    /// Worst relative error of the exported p95 over synthetic latency
    /// distributions whose true p95 lies in 1 ms..10 s: point masses (a
    /// pg_sleep), narrow and wide log-normals, uniforms and a fast/slow mix,
    /// centred on 600 points spread logarithmically over the range.
    fn worst_p95_error(bounds: &[f64]) -> (f64, String) {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut uniform = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut worst = (0.0, String::new());
        for step in 0..600 {
            let centre = 0.001 * 10f64.powf(4.0 * step as f64 / 599.0);
            for shape in [
                "point",
                "lognormal 0.05",
                "lognormal 0.3",
                "lognormal 1",
                "uniform",
                "mix",
            ] {
                let mut samples: Vec<f64> = (0..2000)
                    .map(|_| {
                        let normal = (-2.0 * uniform().ln()).sqrt()
                            * (2.0 * std::f64::consts::PI * uniform()).cos();
                        let s = match shape {
                            "point" => centre,
                            "lognormal 0.05" => centre * (0.05 * normal).exp(),
                            "lognormal 0.3" => centre * (0.3 * normal).exp(),
                            "lognormal 1" => centre * normal.exp(),
                            "uniform" => centre * (0.5 + uniform()),
                            _ if uniform() < 0.9 => centre / 20.0,
                            _ => centre,
                        };
                        // pgvigil measures whole microseconds.
                        (s * 1e6).round().max(1.0) / 1e6
                    })
                    .collect();
                samples.sort_by(f64::total_cmp);
                let n = samples.len();
                let truth = samples[(0.95 * n as f64).ceil() as usize - 1];
                if !(0.001..=10.0).contains(&truth) {
                    continue;
                }
                let mut cumulative = vec![0u64; bounds.len() + 1];
                for s in &samples {
                    let slot = bounds
                        .iter()
                        .position(|&le| *s <= le)
                        .unwrap_or(bounds.len());
                    for c in &mut cumulative[slot..] {
                        *c += 1;
                    }
                }
                let estimate = histogram_quantile(0.95, bounds, &cumulative);
                let error = (estimate - truth).abs() / truth;
                if error > worst.0 {
                    worst = (error, format!("{shape} around {centre:.6}s: true p95 {truth:.6}s, histogram_quantile {estimate:.6}s"));
                }
            }
        }
        worst
    }

    #[test]
    fn default_duration_buckets_keep_histogram_quantile_p95_within_25_percent_from_1ms_to_10s() {
        let (error, case) = worst_p95_error(&DEFAULT_DURATION_BUCKETS);
        assert!(error <= 0.25, "{:.1}% off: {case}", error * 100.0);
        // The same check on the buckets that once reported a 114 ms p95 as
        // 242 ms must fail, or it proves nothing.
        let coarse = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        assert!(worst_p95_error(&coarse).0 > 0.25);
    }

    #[test]
    fn default_duration_buckets_hold_every_shipped_latency_threshold_and_step_at_most_1_25() {
        // PgvigilQueryP95High compares the p95 with 0.2 s.
        assert!(DEFAULT_DURATION_BUCKETS.contains(&0.2));
        for pair in DEFAULT_DURATION_BUCKETS.windows(2) {
            if pair[0] >= 0.001 && pair[1] <= 10.0 {
                assert!(pair[1] / pair[0] <= 1.25 + 1e-12, "{pair:?}");
            }
        }
    }

    #[test]
    fn duration_buckets_setting_rejects_unordered_or_non_positive_bounds() {
        let resolve = |text: &str| {
            Config::resolve(
                FileConfig::from_toml(text).unwrap(),
                flags_with_upstream("postgres://app:pw@127.0.0.1:5432/appdb"),
            )
        };
        let cfg = resolve("[metrics]\nduration_buckets = [0.01, 0.1, 1]\n").unwrap();
        assert_eq!(cfg.metrics.duration_buckets, vec![0.01, 0.1, 1.0]);
        let cfg = resolve("").unwrap();
        assert_eq!(
            cfg.metrics.duration_buckets,
            DEFAULT_DURATION_BUCKETS.to_vec()
        );
        for bad in ["[0.1, 0.1]", "[1, 0.5]", "[0, 1]", "[-1, 1]", "[]"] {
            let err = resolve(&format!("[metrics]\nduration_buckets = {bad}\n")).unwrap_err();
            assert!(
                err.to_string().contains("metrics.duration_buckets"),
                "{bad}: {err}"
            );
        }
    }
}
