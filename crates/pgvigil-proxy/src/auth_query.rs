//! `auth_user` / `auth_query`, as PgBouncer has them: a user missing from
//! `[users]` is looked up in PostgreSQL, so roles can be managed there
//! alone. The lookup runs on the auth_user's own pool with the user name
//! as a bound parameter; the secret it returns checks the client exactly
//! as a configured one would, and the client's SCRAM proof then lets the
//! user's own pool log in to PostgreSQL, with no plaintext anywhere.
//!
//! Looked-up users get pools created on first login; those pools live
//! here, beside the fixed ones in `Shared::pools`, so sessions and the
//! start-time pools are untouched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::error::ProxyError;
use crate::handshake::Account;
use crate::pool::ServerPool;
use crate::scram::ScramKeys;
use crate::server::ServerTarget;
use crate::server_auth::Credential;
use crate::Shared;

/// How long a lookup's answer (found or not) is trusted: long enough that
/// a login storm costs PostgreSQL one query per user, short enough that a
/// changed or dropped role is noticed soon (PgBouncer re-queries on every
/// login; this is the compromise between the two).
pub(crate) const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);

/// Cached lookups kept at most, so names made up by clients cannot grow
/// memory without bound; beyond it the oldest entry is evicted.
pub(crate) const AUTH_CACHE_MAX_ENTRIES: usize = 10_000;

/// Pools created for looked-up users, at most. Each may hold up to
/// pool_size server connections, so this bounds what auth_query lets
/// PostgreSQL's roles open; a login beyond it is refused (53300).
pub(crate) const MAX_DYNAMIC_POOLS: usize = 1_000;

/// How often the maintenance of dynamic pools runs, as for the
/// start-time pools.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

type Key = (String, String);

/// A user found by auth_query: how to check the client, and how its pool
/// logs in to PostgreSQL.
#[derive(Clone)]
pub(crate) struct LookedUp {
    pub(crate) account: Arc<Account>,
    pub(crate) credential: Credential,
}

struct Cached {
    /// None: auth_query returned no row, or a NULL password.
    found: Option<LookedUp>,
    at: Instant,
}

/// Counters for the console and metrics.
#[derive(Debug, Default)]
pub struct AuthQueryCounters {
    /// Queries run against PostgreSQL.
    pub lookups: AtomicU64,
    /// Logins answered from the cache.
    pub cache_hits: AtomicU64,
    /// Entries dropped before their time because the cache was full.
    pub cache_evictions: AtomicU64,
    /// Lookups that could not be done (auth_user could not log in, or the
    /// query failed).
    pub failures: AtomicU64,
    /// Logins refused because `MAX_DYNAMIC_POOLS` pools already exist.
    pub pool_refusals: AtomicU64,
}

/// A snapshot of [`AuthQueryCounters`] and the sizes they relate to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthQueryStats {
    pub lookups: u64,
    pub cache_hits: u64,
    pub cache_evictions: u64,
    pub failures: u64,
    pub pool_refusals: u64,
    pub cached: usize,
    pub dynamic_pools: usize,
}

#[derive(Default)]
pub(crate) struct AuthQuery {
    cache: Mutex<HashMap<Key, Cached>>,
    /// One lock per (database, user) being looked up, so a burst of
    /// logins for a name not cached yet runs the query once.
    in_flight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    pools: Arc<RwLock<HashMap<Key, Arc<ServerPool>>>>,
    maintenance: std::sync::OnceLock<()>,
    pub(crate) counters: AuthQueryCounters,
}

impl AuthQuery {
    /// The pool a looked-up user was given, if any.
    pub(crate) fn pool(&self, database: &str, user: &str) -> Option<Arc<ServerPool>> {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(database.to_string(), user.to_string()))
            .cloned()
    }

    /// Every pool created for a looked-up user.
    pub(crate) fn pools(&self) -> Vec<Arc<ServerPool>> {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn stats(&self) -> AuthQueryStats {
        let c = &self.counters;
        AuthQueryStats {
            lookups: c.lookups.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_evictions: c.cache_evictions.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            pool_refusals: c.pool_refusals.load(Ordering::Relaxed),
            cached: self.cache.lock().unwrap_or_else(|p| p.into_inner()).len(),
            dynamic_pools: self.pools.read().unwrap_or_else(|p| p.into_inner()).len(),
        }
    }

    /// The pool under `key`, made with `make` if there is none and fewer
    /// than `cap` exist; None (counted) when the cap is reached. The bool
    /// says whether the pool was made now.
    fn admit(
        &self,
        key: Key,
        cap: usize,
        make: impl FnOnce() -> Arc<ServerPool>,
    ) -> Option<(Arc<ServerPool>, bool)> {
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(&key) {
            return Some((pool.clone(), false));
        }
        if pools.len() >= cap {
            self.counters.pool_refusals.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let pool = make();
        pools.insert(key, pool.clone());
        Some((pool, true))
    }

    fn cached(&self, key: &Key) -> Option<Option<LookedUp>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(key)?;
        (entry.at.elapsed() < AUTH_CACHE_TTL).then(|| entry.found.clone())
    }

    fn remember(&self, key: Key, found: Option<LookedUp>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= AUTH_CACHE_MAX_ENTRIES && !cache.contains_key(&key) {
            cache.retain(|_, e| e.at.elapsed() < AUTH_CACHE_TTL);
        }
        if cache.len() >= AUTH_CACHE_MAX_ENTRIES && !cache.contains_key(&key) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
                self.counters
                    .cache_evictions
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        cache.insert(
            key,
            Cached {
                found,
                at: Instant::now(),
            },
        );
    }
}

/// Looks `user` up for `database`: Ok(None) when the database has no
/// auth_user or the query does not know the user (the caller then fails
/// the login like a wrong password); Err when the lookup itself could not
/// be done, which the client is told.
pub(crate) async fn lookup(
    shared: &Shared,
    database: &str,
    user: &str,
) -> Result<Option<LookedUp>, ProxyError> {
    // As RELOAD last set them: auth_user (among the users pgvigil has
    // pools for) and auth_query may change at runtime.
    let live = shared.live_config();
    let Some(db) = live.databases.get(database) else {
        return Ok(None);
    };
    let Some(auth_user) = db.auth_user.as_deref() else {
        return Ok(None);
    };
    let aq = &shared.auth_query;
    let key = (database.to_string(), user.to_string());
    if let Some(found) = aq.cached(&key) {
        aq.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        return Ok(found);
    }
    let gate = aq
        .in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.clone())
        .or_default()
        .clone();
    let result = {
        let _turn = gate.lock().await;
        // Whoever held the lock before may have answered already.
        match aq.cached(&key) {
            Some(found) => {
                aq.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(found)
            }
            None => run_lookup(shared, database, auth_user, &db.auth_query, user).await,
        }
    };
    {
        let mut in_flight = aq.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // The map's copy and ours: nobody else is waiting on this gate.
        if Arc::strong_count(&gate) <= 2 {
            in_flight.remove(&key);
        }
    }
    result
}

async fn run_lookup(
    shared: &Shared,
    database: &str,
    auth_user: &str,
    auth_query: &str,
    user: &str,
) -> Result<Option<LookedUp>, ProxyError> {
    let aq = &shared.auth_query;
    let failed = |what: &str| {
        aq.counters.failures.fetch_add(1, Ordering::Relaxed);
        // Neither the auth_user's password nor the looked-up secret can
        // be in `what`: connect and login errors name the server and
        // PostgreSQL's message only, query errors only their SQLSTATE.
        tracing::warn!(database, auth_user, "auth_query lookup failed: {what}");
    };
    let Some(pool) = shared
        .pools
        .get(&(database.to_string(), auth_user.to_string()))
        .cloned()
    else {
        failed("auth_user has no pool for this database");
        return Err(lookup_unavailable());
    };
    let mut server = match pool.acquire().await {
        Ok(s) => s,
        Err(e) => {
            failed(&format!("cannot get a server connection as auth_user: {e}"));
            return Err(lookup_unavailable());
        }
    };
    aq.counters.lookups.fetch_add(1, Ordering::Relaxed);
    let rows = match server
        .run_own_extended_query(auth_query, &[Some(user)])
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            let code = e.sqlstate().to_string();
            failed(&format!(
                "auth_query returned an error (SQLSTATE {code}); check that auth_user may run it"
            ));
            return Err(ProxyError::client(
                "28000",
                format!("password lookup for user \"{user}\" failed (auth_query, SQLSTATE {code})"),
            ));
        }
    };
    drop(server);
    let password = rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().nth(1).flatten())
        .filter(|p| !p.is_empty());
    let found = match password {
        None => None,
        Some(password) => {
            // A plaintext answer (a custom auth_query may give one) costs
            // 4096 HMAC rounds to turn into a SCRAM secret: not on this
            // thread, which serves other sessions too.
            let made = tokio::task::spawn_blocking(move || LookedUp {
                account: Arc::new(Account::from_password(Some(&password))),
                credential: Credential::from_config(Some(&password)),
            })
            .await
            .map_err(|_| lookup_unavailable())?;
            Some(made)
        }
    };
    aq.remember((database.to_string(), user.to_string()), found.clone());
    Ok(found)
}

fn lookup_unavailable() -> ProxyError {
    ProxyError::client(
        "08006",
        "pgvigil could not look up the password (auth_user cannot reach the server); see pgvigil's log",
    )
}

/// The pool of a user auth_query found, created on first login. A pool
/// that exists takes the looked-up credential (the role's password may
/// have changed in PostgreSQL) and the keys this login revealed.
pub(crate) fn dynamic_pool(
    shared: &Shared,
    database: &str,
    user: &str,
    found: &LookedUp,
    keys: Option<&ScramKeys>,
) -> Result<Arc<ServerPool>, ProxyError> {
    let aq = &shared.auth_query;
    let key = (database.to_string(), user.to_string());
    let offer = |pool: &Arc<ServerPool>| {
        if let Some(keys) = keys {
            pool.offer_scram_keys(keys);
        }
    };
    if let Some(pool) = aq.pool(database, user) {
        pool.set_credential(found.credential.clone());
        offer(&pool);
        return Ok(pool);
    }
    let (Some(db), Some(tls)) = (
        shared.config.databases.get(database),
        shared.server_tls.get(database),
    ) else {
        return Err(ProxyError::client(
            "3D000",
            format!("no pool for database \"{database}\""),
        ));
    };
    let make = || {
        let live = shared.live_config();
        let settings = live
            .databases
            .get(database)
            .map(|d| d.pool.clone())
            .unwrap_or_else(|| db.pool.clone());
        let target = ServerTarget {
            host: db.host.as_str().into(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: user.to_string(),
            credential: found.credential.clone(),
            require_auth: crate::require_auth(&shared.config.server_require_auth),
            connect_timeout: settings.server_connect_timeout,
            tls: tls.clone(),
        };
        let pool = ServerPool::new(
            database.to_string(),
            user.to_string(),
            settings,
            target,
            shared.registry.clone(),
        );
        offer(&pool);
        pool
    };
    let Some((pool, created)) = aq.admit(key, MAX_DYNAMIC_POOLS, make) else {
        tracing::warn!(
            database,
            user,
            limit = MAX_DYNAMIC_POOLS,
            "login refused: as many pools for auth_query users as allowed already exist"
        );
        return Err(ProxyError::client(
            "53300",
            "too many pools for users looked up with auth_query",
        ));
    };
    if !created {
        // Another login of this user made it meanwhile.
        offer(&pool);
        return Ok(pool);
    }
    tracing::info!(
        database,
        user,
        "pool created for a user found by auth_query"
    );
    aq.maintenance
        .get_or_init(|| spawn_maintenance(Arc::downgrade(&aq.pools)));
    Ok(pool)
}

/// Closes idle and expired connections of dynamic pools (the listener's
/// upkeep knows only the start-time pools); ends with pgvigil.
fn spawn_maintenance(pools: Weak<RwLock<HashMap<Key, Arc<ServerPool>>>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pools) = pools.upgrade() else { return };
            let all: Vec<_> = pools
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for pool in all {
                pool.maintain();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(password: &str) -> Option<LookedUp> {
        Some(LookedUp {
            account: Arc::new(Account::from_password(Some(password))),
            credential: Credential::from_config(Some(password)),
        })
    }

    #[test]
    fn a_full_cache_evicts_its_oldest_entry_and_counts_it() {
        let aq = AuthQuery::default();
        for i in 0..AUTH_CACHE_MAX_ENTRIES {
            aq.remember(("db".into(), format!("u{i}")), None);
        }
        assert_eq!(aq.counters.cache_evictions.load(Ordering::Relaxed), 0);
        aq.remember(("db".into(), "newcomer".into()), entry("md5abc"));
        assert_eq!(aq.counters.cache_evictions.load(Ordering::Relaxed), 1);
        assert_eq!(aq.stats().cached, AUTH_CACHE_MAX_ENTRIES);
        assert!(aq.cached(&("db".into(), "u0".into())).is_none());
        assert!(aq
            .cached(&("db".into(), "newcomer".into()))
            .is_some_and(|f| f.is_some()));
    }

    fn pool(user: &str) -> Arc<ServerPool> {
        let target = ServerTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "db".into(),
            user: user.into(),
            credential: Credential::None,
            require_auth: crate::server_auth::RequireAuth::default(),
            tls: crate::tls::ServerTls::disabled(),
            connect_timeout: Duration::from_secs(1),
        };
        ServerPool::new(
            "db".into(),
            user.into(),
            pgvigil_config::PoolSettings::default(),
            target,
            Arc::default(),
        )
    }

    #[test]
    fn pools_beyond_the_cap_are_refused_and_counted_but_existing_ones_still_found() {
        let aq = AuthQuery::default();
        let key = |u: &str| ("db".to_string(), u.to_string());
        assert!(aq
            .admit(key("a"), 2, || pool("a"))
            .is_some_and(|(_, made)| made));
        assert!(aq
            .admit(key("b"), 2, || pool("b"))
            .is_some_and(|(_, made)| made));
        assert!(aq.admit(key("c"), 2, || pool("c")).is_none());
        assert_eq!(aq.counters.pool_refusals.load(Ordering::Relaxed), 1);
        let (again, made) = aq
            .admit(key("a"), 2, || panic!("a exists already"))
            .expect("an existing pool is not refused");
        assert!(!made);
        assert_eq!(&*again.user, "a");
        assert!(aq.pool("db", "b").is_some() && aq.pool("db", "c").is_none());
        assert_eq!(aq.stats().dynamic_pools, 2);
    }

    #[test]
    fn an_unknown_user_is_cached_as_unknown_not_as_a_miss() {
        let aq = AuthQuery::default();
        let key = ("db".to_string(), "ghost".to_string());
        assert!(aq.cached(&key).is_none());
        aq.remember(key.clone(), None);
        assert!(matches!(aq.cached(&key), Some(None)));
    }
}
