//! Server connection pools, one per (database, user).
//!
//! Checking a connection out returns a `PooledServer` guard; dropping the
//! guard gives the connection back, or closes it if it is not settled (a
//! reply in flight, a transaction open), so no path can hand a dirty
//! connection to the next client or forget to return a clean one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pgvigil_config::{PoolMode, PoolSettings};
use pgvigil_wire::backend::TransactionStatus;
use tokio::sync::oneshot;

use crate::error::ProxyError;
use crate::prepared::StatementId;
use crate::server::{ServerConn, ServerTarget};
use crate::stats::WaitHistogram;

/// What a waiting client is handed when capacity frees up.
enum Handoff {
    /// An idle connection, ready to use.
    Conn(Box<ServerConn>),
    /// Room to open a new connection; the slot is already counted.
    Slot,
}

/// ParameterStatus (name, value) pairs from a server login.
pub type WelcomeParams = Arc<Vec<(String, String)>>;

enum Plan {
    Ready(Handoff),
    Wait(oneshot::Receiver<Handoff>),
}

#[derive(Default)]
struct PoolState {
    idle: Vec<ServerConn>,
    /// Open connections plus connections being opened.
    total: usize,
    waiters: VecDeque<oneshot::Sender<Handoff>>,
}

/// Counters the admin surface reads; plain atomics, off the lock.
#[derive(Default)]
pub struct PoolCounters {
    pub waiting_clients: AtomicUsize,
    pub server_connect_errors: AtomicU64,
    pub acquire_timeouts: AtomicU64,
    pub servers_discarded: AtomicU64,
    /// Clients logged in to this pool right now.
    pub clients: AtomicUsize,
    /// Whether the latest attempt to open a server connection succeeded
    /// (1 until one fails).
    pub upstream_up: AtomicUsize,
    pub wait: WaitHistogram,
}

pub struct ServerPool {
    pub database: String,
    pub user: String,
    pub settings: PoolSettings,
    target: ServerTarget,
    state: Mutex<PoolState>,
    /// ParameterStatus values of the latest login, shown to clients at
    /// theirs (PostgreSQL clients expect server_version and friends).
    welcome: Mutex<Option<WelcomeParams>>,
    pub counters: PoolCounters,
    /// Statements some server of this pool accepted (see
    /// `Session::answer_known_parses`); bounded, and only an optimisation.
    known_statements: Mutex<HashSet<StatementId>>,
    /// Statements whose result type changed (PostgreSQL said 0A000,
    /// "cached plan must not change result type"), with how often.
    generations: Mutex<HashMap<StatementId, u64>>,
    /// Bumped with every change: while it stands still, client statements
    /// need no generation check.
    change_epoch: AtomicU64,
}

const MAX_KNOWN_STATEMENTS: usize = 10_000;

/// A snapshot for the admin console and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolSnapshot {
    pub idle: usize,
    pub total: usize,
    pub waiting: usize,
    pub clients: usize,
}

impl ServerPool {
    pub fn new(
        database: String,
        user: String,
        settings: PoolSettings,
        target: ServerTarget,
    ) -> Arc<ServerPool> {
        Arc::new(ServerPool {
            database,
            user,
            settings,
            target,
            state: Mutex::new(PoolState::default()),
            welcome: Mutex::new(None),
            counters: PoolCounters {
                upstream_up: AtomicUsize::new(1),
                ..PoolCounters::default()
            },
            known_statements: Mutex::new(HashSet::new()),
            generations: Mutex::new(HashMap::new()),
            change_epoch: AtomicU64::new(0),
        })
    }

    pub fn mode(&self) -> PoolMode {
        self.settings.pool_mode
    }

    pub fn target(&self) -> &ServerTarget {
        &self.target
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock would be a bug in a few lines of
        // bookkeeping; keep serving rather than poisoning every client.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn capacity(&self) -> usize {
        self.settings.pool_size + self.settings.max_overflow
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let st = self.lock();
        PoolSnapshot {
            idle: st.idle.len(),
            total: st.total,
            waiting: self.counters.waiting_clients.load(Ordering::Relaxed),
            clients: self.counters.clients.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn statement_known(&self, id: StatementId) -> bool {
        self.known_statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    pub(crate) fn change_epoch(&self) -> u64 {
        self.change_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn statement_generation(&self, id: StatementId) -> u64 {
        if self.change_epoch() == 0 {
            return 0;
        }
        self.generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// A server said this statement's plan changed result type: every
    /// copy prepared before is stale, and every client statement prepared
    /// before must fail once, as it would on its own connection.
    pub(crate) fn statement_changed(&self, id: StatementId) {
        *self
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(0) += 1;
        self.change_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn remember_statement(&self, id: StatementId) {
        let mut known = self
            .known_statements
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.len() < MAX_KNOWN_STATEMENTS {
            known.insert(id);
        }
    }

    /// Checks out a server connection, waiting up to `acquire_timeout`.
    pub async fn acquire(self: &Arc<Self>) -> Result<PooledServer, ProxyError> {
        let started = Instant::now();
        let result = self.acquire_inner().await;
        self.counters.wait.record(started.elapsed());
        result
    }

    async fn acquire_inner(self: &Arc<Self>) -> Result<PooledServer, ProxyError> {
        let deadline = tokio::time::Instant::now() + self.settings.acquire_timeout;
        loop {
            let plan = {
                let mut st = self.lock();
                if let Some(conn) = st.idle.pop() {
                    Plan::Ready(Handoff::Conn(Box::new(conn)))
                } else if st.total < self.capacity() {
                    st.total += 1;
                    Plan::Ready(Handoff::Slot)
                } else {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.push_back(tx);
                    Plan::Wait(rx)
                }
            };
            let step = match plan {
                Plan::Ready(handoff) => handoff,
                Plan::Wait(rx) => {
                    self.counters
                        .waiting_clients
                        .fetch_add(1, Ordering::Relaxed);
                    let mut waiter = Waiter {
                        rx: Some(rx),
                        pool: self,
                    };
                    let got = waiter.wait_until(deadline).await;
                    self.counters
                        .waiting_clients
                        .fetch_sub(1, Ordering::Relaxed);
                    match got {
                        Some(handoff) => handoff,
                        None => {
                            self.counters
                                .acquire_timeouts
                                .fetch_add(1, Ordering::Relaxed);
                            return Err(ProxyError::AcquireTimeout(self.settings.acquire_timeout));
                        }
                    }
                }
            };
            match step {
                Handoff::Conn(conn) => {
                    if let Some(conn) = self.validate(*conn).await {
                        return Ok(self.guard(conn));
                    }
                }
                Handoff::Slot => return self.open_in_slot().await.map(|c| self.guard(c)),
            }
        }
    }

    fn guard(self: &Arc<Self>, conn: ServerConn) -> PooledServer {
        PooledServer {
            conn: Some(conn),
            pool: self.clone(),
        }
    }

    /// Opens a connection in a slot already counted in `total`.
    async fn open_in_slot(&self) -> Result<ServerConn, ProxyError> {
        match ServerConn::connect(&self.target, self.settings.max_prepared_statements).await {
            Ok(conn) => {
                self.counters.upstream_up.store(1, Ordering::Relaxed);
                tracing::debug!(
                    server = %conn.id, backend_pid = conn.backend_key.process_id,
                    database = %self.database, user = %self.user, "server connection opened"
                );
                let params = Arc::new(conn.login_params.clone());
                *self.welcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(params);
                Ok(conn)
            }
            Err(e) => {
                if matches!(e, ProxyError::Connect(_)) {
                    self.counters.upstream_up.store(0, Ordering::Relaxed);
                }
                self.counters
                    .server_connect_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.release_slot();
                Err(e)
            }
        }
    }

    /// Decides whether an idle connection may serve: not past its
    /// lifetime, not closed under us, and answering a health check when it
    /// sat idle longer than `server_check_delay`.
    async fn validate(&self, mut conn: ServerConn) -> Option<ServerConn> {
        let now = Instant::now();
        let fit =
            now.duration_since(conn.created) < self.settings.server_lifetime && conn.looks_alive();
        let fit = fit
            && (now.duration_since(conn.last_used) < self.settings.server_check_delay
                || matches!(
                    tokio::time::timeout(
                        self.settings.server_connect_timeout,
                        conn.run_own_query("SELECT 1")
                    )
                    .await,
                    Ok(Ok(_))
                ));
        if fit {
            Some(conn)
        } else {
            self.discard(conn);
            None
        }
    }

    /// Returns a settled connection: to the longest-waiting client, else to
    /// the idle list; overflow connections close when nobody waits.
    fn checkin(&self, mut conn: ServerConn) {
        conn.last_used = Instant::now();
        let mut st = self.lock();
        let mut conn = Box::new(conn);
        while let Some(tx) = st.waiters.pop_front() {
            match tx.send(Handoff::Conn(conn)) {
                Ok(()) => return,
                Err(Handoff::Conn(back)) => conn = back,
                Err(Handoff::Slot) => unreachable!("sent a connection"),
            }
        }
        let conn = *conn;
        if st.total > self.settings.pool_size {
            st.total -= 1;
            drop(st);
            tokio::spawn(conn.terminate());
        } else {
            st.idle.push(conn);
        }
    }

    /// Closes a connection that cannot be reused and frees its slot.
    fn discard(&self, conn: ServerConn) {
        self.counters
            .servers_discarded
            .fetch_add(1, Ordering::Relaxed);
        drop(conn);
        self.release_slot();
    }

    /// A slot became free: give it to a waiting client, if any.
    fn release_slot(&self) {
        let mut st = self.lock();
        while let Some(tx) = st.waiters.pop_front() {
            if tx.send(Handoff::Slot).is_ok() {
                return;
            }
        }
        st.total -= 1;
    }

    /// The parameters to show a logging-in client, connecting once if
    /// no server connection has logged in yet.
    pub async fn welcome_params(
        self: &Arc<Self>,
    ) -> Result<Arc<Vec<(String, String)>>, ProxyError> {
        if let Some(p) = self
            .welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(p);
        }
        let server = self.acquire().await?;
        drop(server);
        self.welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ProxyError::ServerClosed)
    }

    /// Readiness: can a server connection log in right now? Opens one
    /// outside the pool and closes it politely.
    pub async fn probe(&self) -> Result<(), ProxyError> {
        let result = ServerConn::connect(&self.target, 1).await;
        self.counters
            .upstream_up
            .store(result.is_ok() as usize, Ordering::Relaxed);
        result?.terminate().await;
        Ok(())
    }

    /// Periodic upkeep: close connections idle too long or past their
    /// lifetime, and open connections up to `min_pool_size`.
    pub fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let mut closing = Vec::new();
        let to_open;
        {
            let mut st = self.lock();
            let mut i = 0;
            while i < st.idle.len() {
                let c = &st.idle[i];
                let expired = now.duration_since(c.created) >= self.settings.server_lifetime;
                let idle_too_long = now.duration_since(c.last_used)
                    >= self.settings.server_idle_timeout
                    && st.total > self.settings.min_pool_size;
                if expired || idle_too_long {
                    closing.push(st.idle.swap_remove(i));
                    st.total -= 1;
                } else {
                    i += 1;
                }
            }
            to_open = self.settings.min_pool_size.saturating_sub(st.total);
            st.total += to_open;
        }
        for conn in closing {
            tokio::spawn(conn.terminate());
        }
        for _ in 0..to_open {
            let pool = self.clone();
            tokio::spawn(async move {
                match pool.open_in_slot().await {
                    Ok(conn) => pool.checkin(conn),
                    Err(e) => tracing::warn!(
                        database = %pool.database, user = %pool.user,
                        "could not open min_pool_size connection: {e}"
                    ),
                }
            });
        }
    }
}

/// A client waiting for capacity. If it gives up (timeout, or its task is
/// dropped) while a handoff is already on its way, the handoff is taken
/// back so no connection or slot leaks.
struct Waiter<'a> {
    rx: Option<oneshot::Receiver<Handoff>>,
    pool: &'a ServerPool,
}

impl Waiter<'_> {
    async fn wait_until(&mut self, deadline: tokio::time::Instant) -> Option<Handoff> {
        let rx = self.rx.as_mut()?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(handoff)) => {
                self.rx = None;
                Some(handoff)
            }
            // The pool never drops a waiter's sender without sending.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            match rx.try_recv() {
                Ok(Handoff::Conn(conn)) => self.pool.checkin(*conn),
                Ok(Handoff::Slot) => self.pool.release_slot(),
                Err(_) => {}
            }
        }
    }
}

/// A checked-out server connection. Dropping it returns the connection
/// to its pool if settled, or closes it.
pub struct PooledServer {
    conn: Option<ServerConn>,
    pool: Arc<ServerPool>,
}

impl PooledServer {
    pub fn pool(&self) -> &Arc<ServerPool> {
        &self.pool
    }

    /// Session mode: clean the connection (server_reset_query) so the
    /// next client finds a fresh session, then give it back.
    pub async fn reset_and_release(mut self) {
        let query = self.pool.settings.server_reset_query.clone();
        if let Some(conn) = self.conn.as_mut() {
            if !conn.settled || conn.status != TransactionStatus::Idle {
                return; // Drop closes it.
            }
            if !query.is_empty() {
                match conn.run_own_query(&query).await {
                    Ok(_) => {
                        conn.applied.clear();
                        conn.applied_signature = 0;
                        conn.statements.clear();
                    }
                    Err(_) => conn.settled = false,
                }
            }
        }
    }
}

impl Deref for PooledServer {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledServer {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledServer {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let reusable = conn.settled
                && conn.status == TransactionStatus::Idle
                && conn.created.elapsed() < self.pool.settings.server_lifetime;
            if reusable {
                self.pool.checkin(conn);
            } else {
                self.pool.discard(conn);
            }
        }
    }
}
