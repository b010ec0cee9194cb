//! pgvigil's networking: the client listener, the startup handshake and
//! authentication, the forwarding session, server connection pools and
//! cancel routing. Framing comes from `pgvigil-wire`; this crate owns
//! sockets and tasks.

mod analysis;
mod cancel;
mod client;
mod error;
mod ids;
mod listener;
mod outqueue;
mod pool;
mod prepared;
pub mod scram;
mod server;
pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use pgvigil_config::Config;
use pgvigil_insight::Insight;
use tokio::sync::mpsc;

pub use error::ProxyError;
pub use ids::{BackendKey, ClientId, ClientKey, ServerId};
pub use listener::Proxy;
pub use pool::{PoolSnapshot, ServerPool};

use cancel::CancelRegistry;
use client::Account;
use scram::ScramVerifier;
use server::ServerTarget;

/// What every session shares: configuration, pools, accounts, cancel keys.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) pools: HashMap<(String, String), Arc<ServerPool>>,
    pub(crate) users: HashMap<String, Account>,
    pub(crate) cancel: CancelRegistry,
    /// None when analytics are off.
    pub(crate) insight: Option<Arc<Insight>>,
    pub(crate) lint: Option<mpsc::Sender<client::LintJob>>,
}

impl Shared {
    fn new(config: Config) -> Shared {
        let users = config
            .users
            .values()
            .map(|u| {
                let scram = u.password.as_deref().map(ScramVerifier::from_password);
                (
                    u.name.clone(),
                    Account {
                        password: u.password.clone(),
                        scram,
                    },
                )
            })
            .collect();
        let mut pools = HashMap::new();
        for db in config.databases.values() {
            for user in config.users.values() {
                let target = ServerTarget {
                    host: db.host.clone(),
                    port: db.port,
                    dbname: db.dbname.clone(),
                    user: user.name.clone(),
                    password: user.password.clone(),
                    connect_timeout: db.pool.server_connect_timeout,
                };
                pools.insert(
                    (db.name.clone(), user.name.clone()),
                    ServerPool::new(db.name.clone(), user.name.clone(), db.pool.clone(), target),
                );
            }
        }
        let insight = config
            .insight
            .analytics
            .then(|| Arc::new(Insight::new(analysis::insight_config(&config.insight))));
        Shared {
            config,
            pools,
            users,
            cancel: CancelRegistry::default(),
            insight,
            lint: None,
        }
    }
}
