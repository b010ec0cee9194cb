//! pgvigil's configuration: the TOML file, command-line overrides and
//! validation, resolved into the plain values the proxy runs on.
//!
//! The vocabulary follows PgBouncer's (`pool_mode`, `min_pool_size`,
//! `server_lifetime`, ...) so operators can carry their habits over. Every
//! error names the key it is about, because the binary prints it as one line.

mod file;
mod resolve;

pub use file::{
    AdvisorSection, DatabaseSection, FileConfig, InsightSection, MetricsSection, NPlusOneSection,
    PoolSection, ProxySection, SlowRuleSection, UserSection,
};
pub use resolve::{
    AdvisorSettings, ClientAuth, ClientSslMode, ClientTlsSettings, Config, DatabaseConfig,
    InsightSettings, LogFormat, MetricsSettings, NPlusOneSettings, Overrides, PasswordKind,
    PoolMode, PoolSettings, Secret, ServerAuthMethod, ServerRequireAuth, ServerSslMode,
    ServerTlsSettings, SlowRuleSettings, UserConfig, CONSOLE_DATABASE, DEFAULT_AUTH_QUERY,
    DEFAULT_DURATION_BUCKETS,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
