//! Layering: defaults, then the file, then command-line flags; then checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::file::{FileConfig, InsightSection, NPlusOneSection, PoolSection, SlowRuleSection};
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Fingerprints with their own series on /metrics; the rest are
    /// summed under fingerprint="other".
    pub max_query_series: usize,
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

        // Flags override the file's [pool] defaults and every database's
        // own overrides: a flag is the operator's last word.
        let pool_defaults = apply_pool(PoolSettings::default(), &file.pool, "pool")?;
        let pool_defaults = apply_pool(pool_defaults, &flags.pool, "pool")?;

        let mut databases = BTreeMap::new();
        for (name, section) in &file.databases {
            let key = format!("databases.{name}");
            let pool = apply_pool(pool_defaults.clone(), &section.pool_overrides(), &key)?;
            let pool = apply_pool(pool, &flags.pool, "pool")?;
            databases.insert(
                name.clone(),
                DatabaseConfig {
                    name: name.clone(),
                    host: section.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                    port: section.port.unwrap_or(5432),
                    dbname: section.dbname.clone().unwrap_or_else(|| name.clone()),
                    pool,
                },
            );
        }
        let mut users: BTreeMap<String, UserConfig> = file
            .users
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    UserConfig {
                        name: name.clone(),
                        password: u.password.clone(),
                    },
                )
            })
            .collect();

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
            databases.insert(
                up.dbname.clone(),
                DatabaseConfig {
                    name: up.dbname.clone(),
                    host: up.host,
                    port: up.port,
                    dbname: up.dbname,
                    pool,
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

        let insight = resolve_insight(
            &file.insight,
            &flags.insight,
            &file.n_plus_one,
            &file.slow_rules,
        )?;

        let metrics = MetricsSettings {
            max_query_series: file.metrics.max_query_series.unwrap_or(100),
        };

        Ok(Config {
            metrics,
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
        })
    }
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
    seconds(
        "acquire_timeout",
        section.acquire_timeout,
        &mut pool.acquire_timeout,
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
}
