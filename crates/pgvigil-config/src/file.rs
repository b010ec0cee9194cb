//! The shape of `pgvigil.toml`. Every field is optional here so that the
//! file, the flags and the defaults can be layered; `resolve` fills the gaps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub pgvigil: ProxySection,
    #[serde(default)]
    pub pool: PoolSection,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseSection>,
    #[serde(default)]
    pub users: BTreeMap<String, UserSection>,
    #[serde(default)]
    pub insight: InsightSection,
    #[serde(default)]
    pub n_plus_one: NPlusOneSection,
    #[serde(default)]
    pub slow_rules: Vec<SlowRuleSection>,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub advisor: AdvisorSection,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorSection {
    pub enabled: Option<bool>,
    pub interval_s: Option<f64>,
    pub statement_timeout_ms: Option<f64>,
    pub capture_parameters: Option<bool>,
    pub explain_analyze: Option<bool>,
    pub create_extension: Option<bool>,
    pub min_improvement: Option<f64>,
    pub plan_top_n: Option<usize>,
    pub plan_p95_ms: Option<f64>,
    pub plans_per_minute: Option<u32>,
    pub max_plans: Option<usize>,
    pub max_plan_bytes: Option<usize>,
    pub max_advice: Option<usize>,
    pub unused_index_min_age_s: Option<f64>,
    pub health_interval_s: Option<f64>,
    pub regression_factor: Option<f64>,
    pub regression_window_s: Option<f64>,
    pub regression_min_calls: Option<u64>,
    pub max_markers: Option<usize>,
    pub history_file: Option<PathBuf>,
    pub long_transaction_s: Option<f64>,
    pub health_max_tables: Option<usize>,
    pub health_max_sessions: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub max_query_series: Option<usize>,
    pub duration_buckets: Option<Vec<f64>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightSection {
    pub analytics: Option<bool>,
    pub max_fingerprints: Option<usize>,
    pub slow_query_ms: Option<f64>,
    pub log_parameters: Option<bool>,
    pub max_slow_events: Option<usize>,
    pub max_detections: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NPlusOneSection {
    pub enabled: Option<bool>,
    pub min_repeats: Option<usize>,
    pub max_gap_ms: Option<f64>,
    pub max_unit_statements: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowRuleSection {
    pub name: String,
    pub threshold_ms: f64,
    pub fingerprint: Option<String>,
    pub statement: Option<String>,
    pub table: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    pub query_regex: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    pub admin_allowed_hosts: Option<Vec<String>>,
    pub metrics_require_token: Option<bool>,
    pub admin_users: Option<Vec<String>>,
    pub stats_users: Option<Vec<String>>,
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
}

/// Pool settings; used both as the global `[pool]` defaults and, flattened,
/// as per-database overrides.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub pool_mode: Option<String>,
    pub pool_size: Option<usize>,
    pub min_pool_size: Option<usize>,
    pub max_overflow: Option<usize>,
    pub acquire_timeout: Option<f64>,
    pub server_lifetime: Option<f64>,
    pub server_idle_timeout: Option<f64>,
    pub server_check_delay: Option<f64>,
    pub server_connect_timeout: Option<f64>,
    pub server_reset_query: Option<String>,
    pub max_prepared_statements: Option<usize>,
    pub max_pinned_clients: Option<usize>,
    pub pin_session_state: Option<bool>,
    pub query_wait_timeout: Option<f64>,
    pub query_timeout: Option<f64>,
    pub idle_transaction_timeout: Option<f64>,
    pub client_idle_timeout: Option<f64>,
    pub transaction_timeout: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    // Per-database overrides of `[pool]`. Listed out rather than flattened:
    // serde cannot combine `flatten` with `deny_unknown_fields`, and a typo
    // in a key must be an error, not a silently ignored setting.
    pub pool_mode: Option<String>,
    pub pool_size: Option<usize>,
    pub min_pool_size: Option<usize>,
    pub max_overflow: Option<usize>,
    pub acquire_timeout: Option<f64>,
    pub server_lifetime: Option<f64>,
    pub server_idle_timeout: Option<f64>,
    pub server_check_delay: Option<f64>,
    pub server_connect_timeout: Option<f64>,
    pub server_reset_query: Option<String>,
    pub max_prepared_statements: Option<usize>,
    pub max_pinned_clients: Option<usize>,
    pub pin_session_state: Option<bool>,
    pub query_wait_timeout: Option<f64>,
    pub query_timeout: Option<f64>,
    pub idle_transaction_timeout: Option<f64>,
    pub client_idle_timeout: Option<f64>,
    pub transaction_timeout: Option<f64>,
    // Per-database overrides of `[pgvigil]`.
    pub server_tls_sslmode: Option<String>,
    pub server_tls_ca_file: Option<PathBuf>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
}

impl DatabaseSection {
    pub fn pool_overrides(&self) -> PoolSection {
        PoolSection {
            pool_mode: self.pool_mode.clone(),
            pool_size: self.pool_size,
            min_pool_size: self.min_pool_size,
            max_overflow: self.max_overflow,
            acquire_timeout: self.acquire_timeout,
            server_lifetime: self.server_lifetime,
            server_idle_timeout: self.server_idle_timeout,
            server_check_delay: self.server_check_delay,
            server_connect_timeout: self.server_connect_timeout,
            server_reset_query: self.server_reset_query.clone(),
            max_prepared_statements: self.max_prepared_statements,
            max_pinned_clients: self.max_pinned_clients,
            pin_session_state: self.pin_session_state,
            query_wait_timeout: self.query_wait_timeout,
            query_timeout: self.query_timeout,
            idle_transaction_timeout: self.idle_transaction_timeout,
            client_idle_timeout: self.client_idle_timeout,
            transaction_timeout: self.transaction_timeout,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Plain text, a SCRAM secret or an md5 hash, as pg_authid stores them.
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (one trailing newline is ignored).
    pub password_file: Option<PathBuf>,
}

impl FileConfig {
    /// Parses TOML, reporting the dotted path of the offending key.
    pub fn from_toml(text: &str) -> Result<FileConfig, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            // toml's own message spans several lines (with a source excerpt);
            // keep its first line so the binary can print one line.
            let inner = err.into_inner();
            let message = inner.message().lines().next().unwrap_or("").to_string();
            let key = if path == "." || path.is_empty() {
                unknown_field_name(&message).unwrap_or_else(|| "<file>".to_string())
            } else {
                path
            };
            ConfigError::invalid(key, message)
        })
    }

    pub fn from_path(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text)
    }
}

/// serde reports unknown fields at the parent's path; pull the field's name
/// out of "unknown field `x`, expected ..." so the error names it.
fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_error_names_the_key_path() {
        let err = FileConfig::from_toml("[pool]\npool_sise = 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pool_sise"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn wrong_type_error_names_the_key_path() {
        let err = FileConfig::from_toml("[pool]\npool_size = \"big\"\n").unwrap_err();
        assert!(err.to_string().contains("pool.pool_size"), "{err}");
    }

    #[test]
    fn database_sections_take_pool_overrides() {
        let cfg = FileConfig::from_toml(
            "[databases.appdb]\nhost = \"db\"\nport = 5433\npool_mode = \"session\"\n",
        )
        .unwrap();
        let db = &cfg.databases["appdb"];
        assert_eq!(db.port, Some(5433));
        assert_eq!(db.pool_overrides().pool_mode.as_deref(), Some("session"));
    }
}
