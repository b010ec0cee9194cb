//! pgvigil's networking: the client listener, the startup handshake and
//! authentication, the forwarding session, server connection pools and
//! cancel routing. Framing comes from `pgvigil-wire`; this crate owns
//! sockets and tasks.

mod admission;
mod advisor_link;
mod analysis;
mod auth_query;
mod cancel;
mod client;
mod clock;
mod connection;
mod console;
mod error;
mod handshake;
mod health;
mod history;
mod ids;
mod listener;
pub mod negotiation;
mod outqueue;
mod pool;
mod pool_stats;
mod prepared;
pub mod registry;
pub mod scram;
pub mod scram_client;
mod server;
pub mod server_auth;
mod shutdown;
pub mod stats;
mod tls;
mod transport;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use pgvigil_config::{Config, CONSOLE_DATABASE};
use pgvigil_insight::Insight;
use tokio::sync::Notify;

pub use advisor_link::AdvisorConn;
pub use auth_query::AuthQueryStats;
pub use error::ProxyError;
pub use ids::{BackendKey, ClientId, ClientKey, ServerId};
pub use listener::{Proxy, ProxyControl};
pub use pool::{PoolSnapshot, ServerPool};
pub use pool_stats::PoolTotals;
pub use shutdown::{draining, Shutdown};

use cancel::CancelRegistry;
use handshake::Account;
use registry::Registry;
use server::ServerTarget;

/// Produces the configuration RELOAD should apply (the binary re-reads
/// the file and re-applies its flags); an error names the bad key.
pub type Reloader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Who may log in, and who may use the console: replaced as a whole by
/// RELOAD, read once per login.
pub(crate) struct Access {
    pub(crate) users: HashMap<String, Arc<Account>>,
    pub(crate) admin_users: HashSet<String>,
    pub(crate) stats_users: HashSet<String>,
    /// The admin token as a password, for console users without one.
    pub(crate) token: Option<Arc<Account>>,
}

impl Access {
    fn from_config(config: &Config) -> Access {
        let account = |password: Option<&str>| Arc::new(Account::from_password(password));
        Access {
            users: config
                .users
                .values()
                .map(|u| (u.name.clone(), account(u.password.as_deref())))
                .collect(),
            admin_users: config.admin_users.iter().cloned().collect(),
            stats_users: config.stats_users.iter().cloned().collect(),
            token: config.admin_token.as_ref().map(|t| account(Some(&t.0))),
        }
    }
}

/// `server_require_auth` as the server login applies it.
fn require_auth(setting: &pgvigil_config::ServerRequireAuth) -> server_auth::RequireAuth {
    use pgvigil_config::{ServerAuthMethod as S, ServerRequireAuth as R};
    use server_auth::AuthMethod as A;
    let method = |m: &S| match m {
        S::Password => A::Password,
        S::Md5 => A::Md5,
        S::ScramSha256 => A::ScramSha256,
        S::None => A::None,
    };
    match setting {
        R::Default => server_auth::RequireAuth::default(),
        R::Only(list) => {
            server_auth::RequireAuth::only(&list.iter().map(method).collect::<Vec<_>>())
        }
        R::Except(list) => {
            let refused: Vec<A> = list.iter().map(method).collect();
            let allowed: Vec<A> = [A::None, A::Password, A::Md5, A::ScramSha256]
                .into_iter()
                .filter(|m| !refused.contains(m))
                .collect();
            server_auth::RequireAuth::only(&allowed)
        }
    }
}

/// What every session shares: configuration, pools, accounts, cancel keys.
pub(crate) struct Shared {
    /// The configuration pgvigil started with; what RELOAD cannot change
    /// (listen addresses, databases, pool modes) is read from here.
    pub(crate) config: Config,
    /// The latest configuration accepted, by start or RELOAD.
    live: RwLock<Arc<Config>>,
    access: RwLock<Arc<Access>>,
    pub(crate) pools: HashMap<(String, String), Arc<ServerPool>>,
    /// Users looked up with auth_query: the lookup cache and their pools.
    pub(crate) auth_query: auth_query::AuthQuery,
    pub(crate) cancel: CancelRegistry,
    /// None when analytics are off.
    pub(crate) insight: Option<Arc<Insight>>,
    /// Each database's latest health sample; None when the advisor is off.
    pub(crate) health: Option<Arc<pgvigil_advisor::HealthBoard>>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) started: Instant,
    /// The console's SHUTDOWN.
    pub(crate) shutdown: Notify,
    pub(crate) reloader: OnceLock<Reloader>,
    /// The client leg's certificates (reloaded by RELOAD and SIGHUP).
    pub(crate) client_tls: tls::ClientTls,
    /// Each database's server-leg TLS, shared by its pools.
    server_tls: HashMap<String, Arc<tls::ServerTls>>,
    /// Set once at bind when `[advisor] enabled`: for SHOW ADVICE.
    pub(crate) advisor: OnceLock<pgvigil_advisor::AdvisorHandle>,
}

impl Shared {
    fn new(config: Config) -> Result<Shared, tls::TlsError> {
        let registry = Arc::new(Registry::default());
        let mut pools = HashMap::new();
        let mut server_tls = HashMap::new();
        for db in config.databases.values() {
            let tls = Arc::new(tls::ServerTls::new(&db.server_tls)?);
            server_tls.insert(db.name.clone(), tls.clone());
            for user in config.users.values() {
                let target = ServerTarget {
                    host: db.host.as_str().into(),
                    port: db.port,
                    dbname: db.dbname.clone(),
                    user: user.name.clone(),
                    credential: server_auth::Credential::from_config(user.password.as_deref()),
                    require_auth: require_auth(&config.server_require_auth),
                    connect_timeout: db.pool.server_connect_timeout,
                    tls: tls.clone(),
                };
                pools.insert(
                    (db.name.clone(), user.name.clone()),
                    ServerPool::new(
                        db.name.clone(),
                        user.name.clone(),
                        db.pool.clone(),
                        target,
                        registry.clone(),
                    ),
                );
            }
        }
        let insight = config.insight.analytics.then(|| {
            let insight = Insight::new(analysis::insight_config(&config.insight, &config.advisor));
            history::load(&insight, &config.advisor);
            Arc::new(insight)
        });
        let health = config
            .advisor
            .enabled
            .then(|| Arc::new(pgvigil_advisor::HealthBoard::default()));
        Ok(Shared {
            client_tls: tls::ClientTls::new(&config.client_tls)?,
            server_tls,
            access: RwLock::new(Arc::new(Access::from_config(&config))),
            live: RwLock::new(Arc::new(config.clone())),
            config,
            pools,
            auth_query: auth_query::AuthQuery::default(),
            cancel: CancelRegistry::default(),
            insight,
            health,
            registry,
            started: Instant::now(),
            shutdown: Notify::new(),
            reloader: OnceLock::new(),
            advisor: OnceLock::new(),
        })
    }

    /// The pool a logged-in client uses: a configured user's, else the
    /// one created for a user auth_query found. Only logins call this.
    pub(crate) fn pool(&self, database: &str, user: &str) -> Option<Arc<ServerPool>> {
        self.pools
            .get(&(database.to_string(), user.to_string()))
            .cloned()
            .or_else(|| self.auth_query.pool(database, user))
    }

    /// Every pool, the configured users' and auth_query's, sorted by
    /// (database, user): for SHOW POOLS, metrics and upkeep.
    pub(crate) fn all_pools(&self) -> Vec<Arc<ServerPool>> {
        let mut pools: Vec<_> = self.pools.values().cloned().collect();
        pools.extend(self.auth_query.pools());
        pools.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
        pools
    }

    /// auth_query's counters, cache and pool counts.
    pub(crate) fn auth_query_stats(&self) -> AuthQueryStats {
        self.auth_query.stats()
    }

    pub(crate) fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn live_config(&self) -> Arc<Config> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `client_login_timeout`, as RELOAD last set it.
    pub(crate) fn login_timeout(&self) -> std::time::Duration {
        self.live_config().client_login_timeout
    }

    /// `shutdown_timeout`.
    pub(crate) fn shutdown_timeout(&self) -> std::time::Duration {
        self.live_config().shutdown_timeout
    }

    /// `pgvigil` opens the console; so does `pgbouncer`, for tools written
    /// for PgBouncer, unless a real database has that name.
    pub(crate) fn is_console_database(&self, name: &str) -> bool {
        name == CONSOLE_DATABASE
            || (name == "pgbouncer" && !self.config.databases.contains_key(name))
    }

    /// Applies a new configuration: what can change at runtime changes,
    /// the rest is named in the returned warnings.
    pub(crate) fn apply(&self, new: Config) -> Vec<String> {
        let old = &self.config;
        let mut warnings = Vec::new();
        let mut needs_restart = |key: &str| {
            warnings.push(format!("{key} changed: restart pgvigil to apply it"));
        };
        if new.listen != old.listen {
            needs_restart("listen");
        }
        if new.admin_listen != old.admin_listen {
            needs_restart("admin_listen");
        }
        if new.client_auth != old.client_auth {
            needs_restart("client_auth");
        }
        if new.max_client_conn != old.max_client_conn {
            needs_restart("max_client_conn");
        }
        if new.max_packet_size != old.max_packet_size {
            needs_restart("max_packet_size");
        }
        if new.server_require_auth != old.server_require_auth {
            needs_restart("server_require_auth");
        }
        if new.insight != old.insight {
            needs_restart("insight settings");
        }
        if history::marker_config(&new.advisor) != history::marker_config(&old.advisor)
            || new.advisor.history_file != old.advisor.history_file
        {
            needs_restart("advisor marker, regression or history_file settings");
        }
        if new.metrics != old.metrics || new.admin_token != old.admin_token {
            needs_restart("admin listener settings");
        }
        let names = |c: &Config| c.databases.keys().cloned().collect::<Vec<_>>();
        if names(&new) != names(old) {
            needs_restart("the list of databases");
        }
        // A removed user is turned away at once (its sessions run on); an
        // added one has no pools until a restart.
        let added: Vec<&str> = new
            .users
            .keys()
            .filter(|u| !old.users.contains_key(*u))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            needs_restart(&format!("users added ({})", added.join(", ")));
        }
        for db in new.databases.values() {
            let Some(was) = old.databases.get(&db.name) else {
                continue;
            };
            if (&db.host, db.port, &db.dbname) != (&was.host, was.port, &was.dbname) {
                needs_restart(&format!("databases.{} address", db.name));
            }
            if db.pool.pool_mode != was.pool.pool_mode {
                needs_restart(&format!("databases.{}.pool_mode", db.name));
            }
            for pool in self.pools.values().filter(|p| *p.database == db.name) {
                pool.set_settings(db.pool.clone());
                if let Some(user) = new.users.get(&*pool.user) {
                    pool.set_credential(server_auth::Credential::from_config(
                        user.password.as_deref(),
                    ));
                }
            }
            for pool in self
                .auth_query
                .pools()
                .into_iter()
                .filter(|p| *p.database == db.name)
            {
                pool.set_settings(db.pool.clone());
            }
        }
        // Certificates and keys roll without dropping anyone: new
        // handshakes use the new files, sessions keep theirs.
        if let Err(e) = self.client_tls.reload(&new.client_tls) {
            warnings.push(format!(
                "client TLS not reloaded, the previous certificates stay: {e}"
            ));
        }
        for db in new.databases.values() {
            if let Some(tls) = self.server_tls.get(&db.name) {
                if let Err(e) = tls.reload(&db.server_tls) {
                    warnings.push(format!(
                        "databases.{} server TLS not reloaded, the previous settings stay: {e}",
                        db.name
                    ));
                }
            }
        }
        let mut access = Access::from_config(&new);
        access.users.retain(|name, _| old.users.contains_key(name));
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(access);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        warnings
    }

    /// RELOAD and SIGHUP: re-read the configuration and apply it, or
    /// change nothing and say why.
    pub(crate) fn reload(&self) -> Result<Vec<String>, String> {
        let reloader = self
            .reloader
            .get()
            .ok_or_else(|| "this pgvigil was started without a way to reload".to_string())?;
        let config = reloader()?;
        let warnings = self.apply(config);
        for w in &warnings {
            tracing::warn!("reload: {w}");
        }
        tracing::info!("configuration reloaded");
        Ok(warnings)
    }
}
