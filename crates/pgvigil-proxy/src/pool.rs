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

use pgvigil_config::{PoolMode, PoolSettings};
use pgvigil_wire::backend::TransactionStatus;
use tokio::sync::{oneshot, Notify};

use crate::clock::MonoTime;
use crate::error::ProxyError;
use crate::pool_stats::{PoolTally, PoolTotals};
use crate::prepared::{StatementId, StatementRegistry};
use crate::registry::{unix_us, ClientEntry, NewServer, Registry};
use crate::scram::ScramKeys;
use crate::server::{ServerConn, ServerTarget};
use crate::server_auth::Credential;
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

/// Whether a checkout had to wait (for a connection, a pause, a health
/// check or a login), which decides if its wait time is measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    None,
    Some,
}

enum Plan {
    Ready(Handoff, Checks),
    Wait(oneshot::Receiver<Handoff>, tokio::time::Instant, Checks),
    Paused(tokio::time::Instant),
}

/// What checking out an idle connection needs from the settings, copied
/// under the lock the checkout takes anyway.
#[derive(Clone, Copy)]
struct Checks {
    lifetime: std::time::Duration,
    check_delay: std::time::Duration,
    connect_timeout: std::time::Duration,
}

impl Checks {
    fn of(s: &PoolSettings) -> Checks {
        Checks {
            lifetime: s.server_lifetime,
            check_delay: s.server_check_delay,
            connect_timeout: s.server_connect_timeout,
        }
    }
}

struct PoolState {
    /// Boxed, like every connection the pool hands around: a
    /// `ServerConn` is large, and moving it by value costs copies on
    /// every checkout and checkin (clippy's `vec_box` assumes the
    /// elements stay put; these move in and out all the time).
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Open connections plus connections being opened.
    total: usize,
    waiters: VecDeque<oneshot::Sender<Handoff>>,
    /// Under the lock every checkout takes anyway, so RELOAD can change
    /// them without the hot path paying for another lock.
    settings: PoolSettings,
    /// PAUSE: no server connection is handed out until RESUME.
    paused: bool,
    /// What new server connections log in with; RELOAD may change it
    /// (rotated in PostgreSQL and in the config together).
    credential: Credential,
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
    /// Transaction mode: clients keeping their server connection for
    /// session state (`max_pinned_clients`).
    pub pinned_clients: AtomicUsize,
    /// Clients refused a pin because `max_pinned_clients` were pinned.
    pub pins_refused: AtomicU64,
    pub wait: WaitHistogram,
}

/// The outcome of the latest attempt to log in to a pool's server (a
/// pool connection or a readiness probe).
#[derive(Debug, Clone)]
pub(crate) struct UpstreamAttempt {
    pub up: bool,
    pub at: MonoTime,
    /// Why it failed, for `/readyz`; never holds a password (connect and
    /// login errors name the host and PostgreSQL's message only).
    pub problem: Option<String>,
}

pub struct ServerPool {
    pub database: Arc<str>,
    pub user: Arc<str>,
    /// Fixed for the pool's life: clients in the middle of a session
    /// cannot switch modes (RELOAD says a restart is needed).
    mode: PoolMode,
    target: ServerTarget,
    state: Mutex<PoolState>,
    resumed: Notify,
    registry: Arc<Registry>,
    pub(crate) tally: Arc<PoolTally>,
    /// ParameterStatus values of the latest login, shown to clients at
    /// theirs (PostgreSQL clients expect server_version and friends).
    welcome: Mutex<Option<WelcomeParams>>,
    /// How PostgreSQL spells the settings clients asked for at startup
    /// (`utf-8` is `UTF8`, `iso, dmy` is `ISO, DMY`): keyed by (setting
    /// in lower case, value asked), learnt from the server once per
    /// distinct value and bounded.
    canonical: Mutex<HashMap<(String, String), String>>,
    pub counters: PoolCounters,
    /// Server-side names of the pool's shared prepared statements.
    statement_ids: Mutex<StatementRegistry>,
    /// Statements some server of this pool accepted (see
    /// `Session::answer_known_parses`); bounded, and only an optimisation.
    known_statements: Mutex<HashSet<StatementId>>,
    /// Statements whose result type changed (PostgreSQL said 0A000,
    /// "cached plan must not change result type"), with how often.
    generations: Mutex<HashMap<StatementId, u64>>,
    /// Bumped with every change: while it stands still, client statements
    /// need no generation check.
    change_epoch: AtomicU64,
    /// The startup settings and the ParameterStatus values most of this
    /// pool's clients have alike, one copy for all of them.
    pub(crate) startup_settings: crate::client::ListCache,
    pub(crate) told_at_login: crate::client::ListCache,
    /// None until a login has been tried: a pool nobody used says nothing
    /// about its server, and reporting it as up hid outages.
    upstream: Mutex<Option<UpstreamAttempt>>,
    /// Held while a readiness probe logs in, so probes arriving together
    /// share one login instead of each opening their own.
    probing: tokio::sync::Mutex<()>,
}

const MAX_KNOWN_STATEMENTS: usize = 10_000;
/// Distinct (setting, value) spellings a pool remembers.
const MAX_CANONICAL_VALUES: usize = 1024;
/// Distinct (text, parameter types) a pool names for sharing; beyond,
/// each Parse gets a name of its own (see `StatementRegistry`).
const MAX_SHARED_STATEMENTS: usize = 10_000;

/// A snapshot for the admin console and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolSnapshot {
    pub idle: usize,
    pub total: usize,
    pub waiting: usize,
    pub clients: usize,
    pub pinned: usize,
    pub pool_size: usize,
    pub paused: bool,
}

impl ServerPool {
    pub(crate) fn new(
        database: String,
        user: String,
        settings: PoolSettings,
        target: ServerTarget,
        registry: Arc<Registry>,
    ) -> Arc<ServerPool> {
        let credential = target.credential.clone();
        Arc::new(ServerPool {
            database: database.into(),
            user: user.into(),
            mode: settings.pool_mode,
            target,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                total: 0,
                waiters: VecDeque::new(),
                credential,
                settings,
                paused: false,
            }),
            resumed: Notify::new(),
            registry,
            tally: Arc::default(),
            welcome: Mutex::new(None),
            canonical: Mutex::new(HashMap::new()),
            counters: PoolCounters::default(),
            statement_ids: Mutex::new(StatementRegistry::new(MAX_SHARED_STATEMENTS)),
            known_statements: Mutex::new(HashSet::new()),
            generations: Mutex::new(HashMap::new()),
            change_epoch: AtomicU64::new(0),
            startup_settings: Default::default(),
            told_at_login: Default::default(),
            upstream: Mutex::new(None),
            probing: tokio::sync::Mutex::new(()),
        })
    }

    /// The latest login attempt's outcome; None if none was made yet.
    pub(crate) fn upstream_attempt(&self) -> Option<UpstreamAttempt> {
        self.upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// 1/0 on `/metrics`: None (no series) until a login was tried.
    pub fn upstream_up(&self) -> Option<bool> {
        self.upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|a| a.up)
    }

    /// Whether a login of this pool succeeded less than `max_age` ago.
    pub fn recently_up(&self, max_age: std::time::Duration) -> bool {
        self.upstream_attempt()
            .is_some_and(|a| a.up && a.at.elapsed() < max_age)
    }

    fn record_attempt(&self, problem: Option<String>) {
        if let Some(problem) = &problem {
            // An upstream the pool cannot reach or log in to fails every
            // client of the pool (and readiness): an operator's problem, so
            // WARN, as PgBouncer logs its failed server logins.
            tracing::warn!(
                database = %self.database, user = %self.user,
                "server connection failed: {problem}"
            );
        }
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = Some(UpstreamAttempt {
            up: problem.is_none(),
            at: MonoTime::now(),
            problem,
        });
    }

    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The settings in force now (RELOAD may change them).
    pub fn settings(&self) -> PoolSettings {
        self.lock().settings.clone()
    }

    /// RELOAD: new limits and timeouts apply from the next checkout; a
    /// smaller pool shrinks as connections come back.
    pub(crate) fn set_settings(&self, mut settings: PoolSettings) {
        settings.pool_mode = self.mode;
        self.lock().settings = settings;
        self.hand_out_free_capacity();
    }

    /// RELOAD: the next server connection logs in with this credential.
    /// Keys learnt for a SCRAM secret that RELOAD leaves unchanged are
    /// kept: dropping them would stop new server logins until the next
    /// client's SCRAM login.
    pub(crate) fn set_credential(&self, credential: Credential) {
        let mut state = self.lock();
        if let (Credential::ScramSecret(secret), Credential::ScramKeys(keys)) =
            (&credential, &state.credential)
        {
            if let Some(kept) = secret.keys_for(keys.client_key) {
                state.credential = Credential::ScramKeys(kept);
                return;
            }
        }
        state.credential = credential;
    }

    /// A client logged in with SCRAM against the configured secret: its
    /// keys let the pool log in to PostgreSQL too. Keys for another
    /// secret (RELOAD raced the login) are ignored; returns whether they
    /// were taken.
    pub fn offer_scram_keys(&self, keys: &ScramKeys) -> bool {
        let mut state = self.lock();
        let Credential::ScramSecret(secret) = &state.credential else {
            return false;
        };
        match secret.keys_for(keys.client_key) {
            Some(keys) => {
                state.credential = Credential::ScramKeys(keys);
                true
            }
            None => false,
        }
    }

    /// Where new connections go, with the credential in force now.
    pub(crate) fn login_target(&self) -> ServerTarget {
        ServerTarget {
            credential: self.lock().credential.clone(),
            ..self.target.clone()
        }
    }

    /// SHOW STATS totals.
    pub fn totals(&self) -> PoolTotals {
        self.tally.totals()
    }

    pub fn target(&self) -> &ServerTarget {
        &self.target
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock would be a bug in a few lines of
        // bookkeeping; keep serving rather than poisoning every client.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let st = self.lock();
        PoolSnapshot {
            idle: st.idle.len(),
            total: st.total,
            waiting: self.counters.waiting_clients.load(Ordering::Relaxed),
            clients: self.counters.clients.load(Ordering::Relaxed),
            pinned: self.counters.pinned_clients.load(Ordering::Relaxed),
            pool_size: st.settings.pool_size,
            paused: st.paused,
        }
    }

    /// Counts one more pinned client, unless `max_pinned_clients` are.
    pub(crate) fn try_pin(&self) -> bool {
        let max = self.settings().max_pinned_clients;
        let pinned = &self.counters.pinned_clients;
        let taken = pinned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.counters.pins_refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    pub(crate) fn unpin(&self) {
        let _ =
            self.counters
                .pinned_clients
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// PAUSE: stop handing out server connections, wait until every
    /// checked-out one has come back (running transactions finish), then
    /// close them all, as PgBouncer does before a database restart.
    pub async fn pause(&self) {
        self.lock().paused = true;
        loop {
            let idle = {
                let mut st = self.lock();
                if st.idle.len() == st.total {
                    st.total = 0;
                    Some(std::mem::take(&mut st.idle))
                } else {
                    None
                }
            };
            if let Some(idle) = idle {
                for conn in idle {
                    tokio::spawn(conn.terminate());
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// RESUME: clients that waited during the pause get connections.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.resumed.notify_waiters();
        self.hand_out_free_capacity();
    }

    /// Gives idle connections and free slots to queued clients (after a
    /// resume, or when RELOAD made the pool bigger).
    fn hand_out_free_capacity(&self) {
        let mut st = self.lock();
        if st.paused {
            return;
        }
        while !st.waiters.is_empty() {
            let handoff = if let Some(conn) = st.idle.pop() {
                Handoff::Conn(conn)
            } else if st.total < st.settings.pool_size + st.settings.max_overflow {
                st.total += 1;
                Handoff::Slot
            } else {
                break;
            };
            let Some(tx) = st.waiters.pop_front() else {
                break;
            };
            match tx.send(handoff) {
                Ok(()) => {}
                Err(Handoff::Conn(conn)) => st.idle.push(conn),
                Err(Handoff::Slot) => st.total -= 1,
            }
        }
    }

    /// The server-side identity of a client's statement: shared by every
    /// client that prepares the same text with the same parameter types,
    /// and by no other statement, whatever their hashes.
    pub(crate) fn statement_id(&self, query: &[u8], param_types: &[u8]) -> StatementId {
        self.statement_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .id(query, param_types)
    }

    /// Statements that got a name of their own because the pool's
    /// registry was full.
    pub fn unshared_statements(&self) -> u64 {
        self.statement_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unshared()
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
        self.acquire_for(None, None).await
    }

    /// Checks out a server connection for a client, which the console
    /// then shows as waiting, and linked to it once it has one.
    /// `cancel`: the client's cancel signal; a cancel request that
    /// arrives while the client waits for a connection ends the wait.
    pub(crate) async fn acquire_for(
        self: &Arc<Self>,
        client: Option<&Arc<ClientEntry>>,
        cancel: Option<&tokio::sync::Notify>,
    ) -> Result<PooledServer, ProxyError> {
        let started = MonoTime::now();
        let started_us = unix_us(started);
        if let Some(c) = client {
            c.start_waiting(started_us);
        }
        let result = self.acquire_inner(started, cancel).await;
        // An idle connection handed over at once waited for nothing; only
        // a wait, a health check or a new connection is worth a clock read.
        let waited = match &result {
            Ok((_, Wait::None)) => std::time::Duration::ZERO,
            _ => started.elapsed(),
        };
        self.counters.wait.record(waited);
        let result = result.map(|(server, _)| server);
        match (&result, client) {
            (Ok(server), client) => Self::checked_out(server, client, started_us),
            (Err(_), Some(c)) => c.linked(None),
            (Err(_), None) => {}
        }
        result
    }

    /// SHOW CLIENTS and SHOW SERVERS learn who has the connection now.
    fn checked_out(server: &ServerConn, client: Option<&Arc<ClientEntry>>, since_us: u64) {
        if let Some(c) = client {
            c.linked(Some(server.id));
        }
        if let Some(r) = &server.registration {
            r.entry.checked_out(client.map(|c| c.id), since_us);
        }
    }

    /// The common checkout, without waiting: an idle connection that
    /// needs no health check, or None (the caller then waits in
    /// `acquire_for`). Synchronous, so that a transaction that finds a
    /// connection at hand never enters (or allocates) the waiting path.
    pub(crate) fn try_acquire_now(
        self: &Arc<Self>,
        client: &Arc<ClientEntry>,
    ) -> Option<PooledServer> {
        let now = MonoTime::now();
        let (conn, checks) = {
            let mut st = self.lock();
            if st.paused {
                return None;
            }
            (st.idle.pop()?, Checks::of(&st.settings))
        };
        let conn = match self.validate(conn, checks, now) {
            Validated::Fit(conn) => conn,
            Validated::Unfit => return None,
            // Left for `acquire_for`, which checks it.
            Validated::Check(conn) => {
                self.lock().idle.push(conn);
                return None;
            }
        };
        self.counters.wait.record(std::time::Duration::ZERO);
        let now_us = unix_us(now);
        client.request_started(now_us);
        Self::checked_out(&conn, Some(client), now_us);
        Some(self.guard(conn))
    }

    async fn acquire_inner(
        self: &Arc<Self>,
        started: MonoTime,
        cancel: Option<&tokio::sync::Notify>,
    ) -> Result<(PooledServer, Wait), ProxyError> {
        let mut wait = Wait::None;
        // Computed only when a client has to wait: most checkouts don't.
        let deadline = |st: &PoolState| {
            tokio::time::Instant::now()
                + st.settings
                    .acquire_timeout
                    .saturating_sub(started.elapsed())
        };
        loop {
            let resumed = self.resumed.notified();
            let plan = {
                let mut st = self.lock();
                if st.paused {
                    Plan::Paused(deadline(&st))
                } else if let Some(conn) = st.idle.pop() {
                    Plan::Ready(Handoff::Conn(conn), Checks::of(&st.settings))
                } else if st.total < st.settings.pool_size + st.settings.max_overflow {
                    st.total += 1;
                    Plan::Ready(Handoff::Slot, Checks::of(&st.settings))
                } else {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.push_back(tx);
                    Plan::Wait(rx, deadline(&st), Checks::of(&st.settings))
                }
            };
            let step = match plan {
                Plan::Paused(deadline) => {
                    wait = Wait::Some;
                    self.counters
                        .waiting_clients
                        .fetch_add(1, Ordering::Relaxed);
                    let woken = tokio::time::timeout_at(deadline, resumed).await;
                    self.counters
                        .waiting_clients
                        .fetch_sub(1, Ordering::Relaxed);
                    if woken.is_err() {
                        return Err(self.timed_out());
                    }
                    continue;
                }
                Plan::Ready(handoff, checks) => (handoff, checks),
                Plan::Wait(rx, deadline, checks) => {
                    wait = Wait::Some;
                    self.counters
                        .waiting_clients
                        .fetch_add(1, Ordering::Relaxed);
                    let mut waiter = Waiter {
                        rx: Some(rx),
                        pool: self,
                    };
                    let got = waiter.wait_until(deadline, cancel).await;
                    self.counters
                        .waiting_clients
                        .fetch_sub(1, Ordering::Relaxed);
                    match got {
                        Waited::Got(handoff) => (handoff, checks),
                        Waited::TimedOut => return Err(self.timed_out()),
                        Waited::Cancelled => return Err(ProxyError::WaitCancelled),
                    }
                }
            };
            match step {
                (Handoff::Conn(conn), checks) => {
                    let conn = match self.validate(conn, checks, started) {
                        Validated::Fit(conn) => Some(conn),
                        Validated::Unfit => None,
                        Validated::Check(conn) => {
                            wait = Wait::Some;
                            self.health_check(conn, checks).await
                        }
                    };
                    if let Some(conn) = conn {
                        return Ok((self.guard(conn), wait));
                    }
                    wait = Wait::Some;
                }
                (Handoff::Slot, _) => {
                    return self
                        .open_in_slot()
                        .await
                        .map(|c| (self.guard(c), Wait::Some))
                }
            }
        }
    }

    fn timed_out(&self) -> ProxyError {
        self.counters
            .acquire_timeouts
            .fetch_add(1, Ordering::Relaxed);
        ProxyError::AcquireTimeout(self.lock().settings.acquire_timeout)
    }

    fn guard(self: &Arc<Self>, conn: Box<ServerConn>) -> PooledServer {
        PooledServer {
            conn: Some(conn),
            pool: self.clone(),
            released_at: None,
        }
    }

    /// Opens a connection in a slot already counted in `total`.
    async fn open_in_slot(&self) -> Result<Box<ServerConn>, ProxyError> {
        /// Gives the slot back unless a connection fills it, also when the
        /// wait is dropped half-way (a cancelled client, shutdown).
        struct Slot<'a>(Option<&'a ServerPool>);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                if let Some(pool) = self.0.take() {
                    pool.release_slot();
                }
            }
        }
        let mut slot = Slot(Some(self));
        let max_prepared = self.lock().settings.max_prepared_statements;
        match ServerConn::connect(&self.login_target(), max_prepared).await {
            Ok(mut conn) => {
                slot.0 = None;
                conn.registration = Some(self.registry.add_server(NewServer {
                    id: conn.id,
                    database: self.database.to_string(),
                    user: self.user.to_string(),
                    // PgBouncer's SHOW SERVERS says "unix" for a socket.
                    addr: if crate::transport::is_socket_dir(&self.target.host) {
                        "unix".into()
                    } else {
                        self.target.host.to_string()
                    },
                    port: self.target.port,
                    local_addr: conn.stream.local_addr(),
                    remote_pid: conn.backend_key.process_id,
                }));
                self.record_attempt(None);
                tracing::debug!(
                    server = %conn.id, backend_pid = conn.backend_key.process_id,
                    database = %self.database, user = %self.user, "server connection opened"
                );
                let params = Arc::new(conn.login_params.clone());
                *self.welcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(params);
                Ok(Box::new(conn))
            }
            Err(e) => {
                self.record_attempt(Some(e.to_string()));
                self.counters
                    .server_connect_errors
                    .fetch_add(1, Ordering::Relaxed);
                drop(slot);
                Err(e)
            }
        }
    }

    /// Decides whether an idle connection may serve: not past its
    /// lifetime, not closed under us, and, when it sat idle longer than
    /// `server_check_delay`, only after a health check.
    fn validate(&self, mut conn: Box<ServerConn>, checks: Checks, now: MonoTime) -> Validated {
        if now.since(conn.created) >= checks.lifetime || !conn.looks_alive() {
            self.discard(conn);
            return Validated::Unfit;
        }
        if now.since(conn.last_used) < checks.check_delay {
            Validated::Fit(conn)
        } else {
            Validated::Check(conn)
        }
    }

    /// `SELECT 1` on a connection that sat idle past `server_check_delay`.
    async fn health_check(&self, conn: Box<ServerConn>, checks: Checks) -> Option<Box<ServerConn>> {
        /// Discards the connection unless it passed, also when the check
        /// is dropped half-way (a cancelled client): a half-run `SELECT 1`
        /// leaves it unfit, and its slot must not be lost.
        struct Checking<'a> {
            pool: &'a ServerPool,
            conn: Option<Box<ServerConn>>,
        }
        impl Drop for Checking<'_> {
            fn drop(&mut self) {
                if let Some(conn) = self.conn.take() {
                    self.pool.discard(conn);
                }
            }
        }
        let mut checking = Checking {
            pool: self,
            conn: Some(conn),
        };
        let answered = matches!(
            tokio::time::timeout(
                checks.connect_timeout,
                checking.conn.as_mut()?.run_own_query("SELECT 1")
            )
            .await,
            Ok(Ok(_))
        );
        if answered {
            checking.conn.take()
        } else {
            None
        }
    }

    /// Returns a settled connection: to the longest-waiting client, else to
    /// the idle list; overflow connections close when nobody waits.
    fn checkin(&self, mut conn: Box<ServerConn>, released_at: Option<MonoTime>) {
        conn.last_used = released_at.unwrap_or_else(MonoTime::now);
        if let Some(r) = &conn.registration {
            r.entry.checked_in();
        }
        let mut st = self.lock();
        if conn.last_used.since(conn.created) >= st.settings.server_lifetime {
            drop(st);
            self.discard(conn);
            return;
        }
        while let Some(tx) = next_waiter(&mut st) {
            match tx.send(Handoff::Conn(conn)) {
                Ok(()) => return,
                Err(Handoff::Conn(back)) => conn = back,
                Err(Handoff::Slot) => unreachable!("sent a connection"),
            }
        }
        if st.total > st.settings.pool_size {
            st.total -= 1;
            drop(st);
            tokio::spawn(conn.terminate());
        } else {
            st.idle.push(conn);
        }
    }

    /// Closes a connection that cannot be reused and frees its slot.
    fn discard(&self, conn: Box<ServerConn>) {
        self.counters
            .servers_discarded
            .fetch_add(1, Ordering::Relaxed);
        drop(conn);
        self.release_slot();
    }

    /// A slot became free: give it to a waiting client, if any.
    fn release_slot(&self) {
        let mut st = self.lock();
        while let Some(tx) = next_waiter(&mut st) {
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

    /// How PostgreSQL reports `setting` set to `asked`, if learnt.
    pub(crate) fn canonical_value(&self, setting: &str, asked: &str) -> Option<String> {
        self.canonical
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(setting.to_ascii_lowercase(), asked.to_string()))
            .cloned()
    }

    /// Remembers how PostgreSQL reported a setting a client asked for.
    pub(crate) fn learn_canonical(&self, setting: &str, asked: &str, reported: &str) {
        let mut known = self.canonical.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_CANONICAL_VALUES {
            // Relearnt on demand: one query at a later login.
            known.clear();
        }
        known.insert(
            (setting.to_ascii_lowercase(), asked.to_string()),
            reported.to_string(),
        );
    }

    /// Readiness: can a server connection log in right now? Opens one
    /// outside the pool and closes it politely.
    pub async fn probe(&self) -> Result<(), ProxyError> {
        let result = ServerConn::connect(&self.login_target(), 1).await;
        self.record_attempt(result.as_ref().err().map(|e| e.to_string()));
        result?.terminate().await;
        Ok(())
    }

    /// Readiness from the latest login attempt when it is younger than
    /// `max_age`, else from a new probe (bounded by `timeout`). Load
    /// balancers poll every second or so; a login per poll would fill
    /// PostgreSQL's log and use up its connection slots for nothing.
    pub async fn readiness(
        &self,
        max_age: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        let fresh = |pool: &ServerPool| {
            pool.upstream_attempt()
                .filter(|a| a.at.elapsed() < max_age)
                .map(|a| match a.problem {
                    None => Ok(()),
                    Some(p) => Err(p),
                })
        };
        if let Some(verdict) = fresh(self) {
            return verdict;
        }
        let _probing = self.probing.lock().await;
        // Whoever held the lock may have just probed.
        if let Some(verdict) = fresh(self) {
            return verdict;
        }
        match tokio::time::timeout(timeout, self.probe()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => {
                let problem = format!("no answer within {timeout:?}");
                self.record_attempt(Some(problem.clone()));
                Err(problem)
            }
        }
    }

    /// Periodic upkeep: close connections idle too long or past their
    /// lifetime, and open connections up to `min_pool_size`.
    pub fn maintain(self: &Arc<Self>) {
        let now = MonoTime::now();
        let mut closing = Vec::new();
        let to_open;
        {
            let mut st = self.lock();
            let mut i = 0;
            while i < st.idle.len() {
                let c = &st.idle[i];
                let expired = now.since(c.created) >= st.settings.server_lifetime;
                let idle_too_long = now.since(c.last_used) >= st.settings.server_idle_timeout
                    && st.total > st.settings.min_pool_size;
                if expired || idle_too_long {
                    closing.push(st.idle.swap_remove(i));
                    st.total -= 1;
                } else {
                    i += 1;
                }
            }
            to_open = if st.paused {
                0
            } else {
                st.settings.min_pool_size.saturating_sub(st.total)
            };
            st.total += to_open;
        }
        for conn in closing {
            tokio::spawn(conn.terminate());
        }
        for _ in 0..to_open {
            let pool = self.clone();
            tokio::spawn(async move {
                match pool.open_in_slot().await {
                    Ok(conn) => pool.checkin(conn, None),
                    Err(e) => tracing::warn!(
                        database = %pool.database, user = %pool.user,
                        "could not open min_pool_size connection: {e}"
                    ),
                }
            });
        }
    }
}

/// The longest-waiting client, unless the pool is paused (then capacity
/// stays put until RESUME hands it out).
fn next_waiter(st: &mut PoolState) -> Option<oneshot::Sender<Handoff>> {
    if st.paused {
        None
    } else {
        st.waiters.pop_front()
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
    /// Waits for a hand-off until `deadline`, or until the client's cancel
    /// request (then the waiter's drop gives back anything handed over
    /// meanwhile).
    async fn wait_until(
        &mut self,
        deadline: tokio::time::Instant,
        cancel: Option<&tokio::sync::Notify>,
    ) -> Waited {
        let Some(rx) = self.rx.as_mut() else {
            return Waited::TimedOut;
        };
        let cancelled = async {
            match cancel {
                Some(c) => c.notified().await,
                None => std::future::pending().await,
            }
        };
        let got = tokio::select! {
            got = tokio::time::timeout_at(deadline, rx) => got,
            () = cancelled => return Waited::Cancelled,
        };
        match got {
            Ok(Ok(handoff)) => {
                self.rx = None;
                Waited::Got(handoff)
            }
            // The pool never drops a waiter's sender without sending.
            Ok(Err(_)) | Err(_) => Waited::TimedOut,
        }
    }
}

/// An idle connection, judged before it is handed out.
enum Validated {
    Fit(Box<ServerConn>),
    /// Discarded: past its lifetime or closed.
    Unfit,
    /// Idle past `server_check_delay`: fit if it answers.
    Check(Box<ServerConn>),
}

enum Waited {
    Got(Handoff),
    TimedOut,
    Cancelled,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            match rx.try_recv() {
                Ok(Handoff::Conn(conn)) => self.pool.checkin(conn, None),
                Ok(Handoff::Slot) => self.pool.release_slot(),
                Err(_) => {}
            }
        }
    }
}

/// A checked-out server connection. Dropping it returns the connection
/// to its pool if settled, or closes it.
pub struct PooledServer {
    conn: Option<Box<ServerConn>>,
    pool: Arc<ServerPool>,
    /// When the client let go of it, if the session already read the
    /// clock then; spares the checkin a clock read.
    pub(crate) released_at: Option<MonoTime>,
}

impl PooledServer {
    pub fn pool(&self) -> &Arc<ServerPool> {
        &self.pool
    }

    /// Shows a connection taken before its client was registered (a
    /// session-mode login) as that client's, as `acquire_for` would have.
    pub(crate) fn link_to(&self, client: &Arc<ClientEntry>) {
        client.linked(Some(self.id));
        if let Some(r) = &self.registration {
            r.entry
                .checked_out(Some(client.id), unix_us(MonoTime::now()));
        }
    }

    /// Session mode: clean the connection (server_reset_query) so the
    /// next client finds a fresh session, then give it back.
    pub async fn reset_and_release(self) {
        let query = self.pool.lock().settings.server_reset_query.clone();
        self.run_reset_and_release(&query).await;
    }

    /// Transaction mode, a client that held session state leaving: DISCARD
    /// ALL whatever `server_reset_query` says (temporary tables, locks,
    /// LISTEN, cursors and prepared statements all go), or the connection
    /// is closed.
    pub(crate) async fn discard_and_release(self) {
        self.run_reset_and_release("DISCARD ALL").await;
    }

    async fn run_reset_and_release(mut self, query: &str) {
        if let Some(conn) = self.conn.as_mut() {
            if !conn.settled || conn.status != TransactionStatus::Idle {
                return; // Drop closes it.
            }
            if !query.is_empty() {
                match conn.run_own_query(query).await {
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
            let reusable = conn.settled && conn.status == TransactionStatus::Idle;
            if reusable {
                self.pool.checkin(conn, self.released_at);
            } else {
                self.pool.discard(conn);
            }
        }
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;
    use crate::scram::{ScramExchange, ScramVerifier};
    use crate::server_auth::RequireAuth;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn pool_with(credential: Credential) -> Arc<ServerPool> {
        let target = ServerTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "db".into(),
            user: "app".into(),
            credential,
            require_auth: RequireAuth::default(),
            tls: crate::tls::ServerTls::disabled(),
            connect_timeout: std::time::Duration::from_secs(1),
        };
        ServerPool::new(
            "db".into(),
            "app".into(),
            PoolSettings::default(),
            target,
            Arc::default(),
        )
    }

    fn keys_of(secret: &ScramVerifier, password: &str) -> ScramKeys {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let (exchange, first) = ScramExchange::start(secret, client.message(), b"n").unwrap();
        client.update(first.as_bytes()).unwrap();
        exchange.finish_with_keys(client.message()).unwrap().1
    }

    #[test]
    fn a_scram_secret_pool_learns_keys_only_for_its_own_secret_and_keeps_them_across_reload() {
        let text = postgres_protocol::password::scram_sha_256(b"pw");
        let secret = ScramVerifier::parse(&text).unwrap();
        let pool = pool_with(Credential::from_config(Some(&text)));
        let other = ScramVerifier::from_password("pw");
        assert!(!pool.offer_scram_keys(&keys_of(&other, "pw")));
        assert!(matches!(
            pool.login_target().credential,
            Credential::ScramSecret(_)
        ));
        let keys = keys_of(&secret, "pw");
        assert!(pool.offer_scram_keys(&keys));
        assert_eq!(
            pool.login_target().credential,
            Credential::ScramKeys(keys.clone())
        );
        // RELOAD with the same secret keeps them; with another drops them.
        pool.set_credential(Credential::from_config(Some(&text)));
        assert_eq!(
            pool.login_target().credential,
            Credential::ScramKeys(keys.clone())
        );
        let rotated = postgres_protocol::password::scram_sha_256(b"new");
        pool.set_credential(Credential::from_config(Some(&rotated)));
        assert!(matches!(
            pool.login_target().credential,
            Credential::ScramSecret(_)
        ));
        // A plaintext pool has no use for them.
        let plain = pool_with(Credential::Plain("pw".into()));
        assert!(!plain.offer_scram_keys(&keys_of(&secret, "pw")));
    }
}
