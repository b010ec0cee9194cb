//! The forwarding loop of one logged-in client.
//!
//! One task owns the client socket and, while one is attached, a server
//! connection. It waits on whichever of the four directions can make
//! progress (client readable, server readable, and either writable when
//! bytes are queued), so a slow reader on one side never blocks the other
//! direction, and each queue is capped: a client that stops reading makes
//! pgvigil stop reading from the server, and the server's own socket
//! buffer holds the rest (backpressure, flat memory).
//!
//! Frames are forwarded as the bytes they arrived as. Only the message
//! types that drive pooling (transaction boundaries, prepared statements,
//! session parameters) are decoded, and every request is matched with its
//! reply through the reply queue (`reply_queue.rs`), the one place where
//! each statement and its completion are seen.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use pgvigil_config::PoolMode;
use pgvigil_wire::backend::{self, tag as be, Severity, TransactionStatus};
use pgvigil_wire::frontend::{self, tag as fe, BindView, ParseView, TargetView, TARGET_STATEMENT};
use pgvigil_wire::FrameHeader;
use tokio::io::{AsyncRead, ReadBuf};

use super::commands::{local_command, LocalCommand, Reset, ResetTracker};
use super::guards::{Activity, Guard, GuardClock, GuardSettings, Verdict};
use super::reply_queue::{ClientMessage, Expect, ReplyQueue, Request, ServerReply};
use super::settings::ClientSettings;
use crate::cancel::CancelTarget;
use crate::clock::MonoTime;
use crate::error::ProxyError;
use crate::outqueue::{OutQueue, Splicer};
use crate::pool::{PooledServer, ServerPool};
use crate::pool_stats::SessionTally;
use crate::prepared::{ClientStatements, Prepared, StatementId};
use crate::registry::ClientEntry;
use crate::stats;
use crate::transport::Transport;
use pgvigil_insight::Recorder;

use super::session_state::{may_change_session_state, SessionState, PROBE_SQL};

/// Beyond this many queued bytes toward a peer, stop reading from the
/// other one.
const QUEUE_LIMIT: usize = 512 * 1024;
/// Server replies can be large (result sets); a few server connections
/// serve many clients, so their buffers may be generous.
const READ_CHUNK: usize = 64 * 1024;
/// Clients mostly send small messages, and there may be thousands of
/// them: a smaller read size keeps an idle client's buffer small.
const CLIENT_READ_CHUNK: usize = 8 * 1024;
/// PostgreSQL's MaxAllocSize: no server message is larger.
const MAX_SERVER_FRAME: usize = 1 << 30;

/// Why the loop ended.
pub(crate) enum Exit {
    ClientLeft,
    /// Boxed: the session's future holds an `Exit` inline, for as long as
    /// its client is connected.
    Error(Box<ProxyError>),
}

pub(crate) struct Session {
    pub(crate) client: Transport,
    pub(crate) client_buf: BytesMut,
    pub(crate) pool: Arc<ServerPool>,
    pub(crate) settings: ClientSettings,
    /// ParameterStatus values this client has been told.
    pub(crate) told: super::shared_list::ToldParams,
    pub(crate) cancel: Arc<CancelTarget>,
    /// `max_packet_size`, as 32 bits: a frame's length field is 32 bits
    /// anyway, and every connected client carries this.
    pub(crate) max_frame: u32,

    server: Option<PooledServer>,
    /// Session mode: the server taken at login, attached when the session
    /// starts.
    owned: Option<PooledServer>,
    /// The process id this client was told (BackendKeyData).
    told_pid: i32,
    /// Transaction mode: the current transaction ran a statement that may
    /// change session state, so the server is asked before it is released.
    state_dirty: bool,
    /// Transaction mode: session state that keeps this client on its
    /// server connection, a bit per `session_state::PinReason` (0: not
    /// pinned).
    pinned: u8,
    /// Named statements whose text may change session state; made on the
    /// first, which most sessions never have.
    #[allow(clippy::box_collection)] // for the session's size, as said above
    stateful_statements: Option<Box<HashSet<Vec<u8>>>>,
    /// The latest Parse text checked for session state, and the answer:
    /// drivers send the same unnamed statement over and over. Made on the
    /// first Parse (simple-protocol clients never send one).
    last_parse_checked: Option<Box<(Vec<u8>, bool)>>,
    to_client: OutQueue,
    to_server: OutQueue,
    replies: ReplyQueue,
    /// Bytes of a server frame still to pass through unexamined.
    passthrough: usize,
    /// A server message to be replaced by this one on its way out (boxed:
    /// rare, and every connected client carries the field).
    error_replacement: Option<Box<Bytes>>,
    statements: ClientStatements,
    /// Which statements and portals run DISCARD ALL / DEALLOCATE ALL.
    resets: ResetTracker,
    observer: Option<Recorder>,
    /// This client's line in SHOW CLIENTS.
    entry: Arc<ClientEntry>,
    /// This client's share of SHOW STATS.
    tally: SessionTally,
    /// The leak guards, when any is on.
    guards: Option<Box<GuardRuntime>>,
    /// `finish` ran: the client has been told how the session ended.
    finished: bool,
    /// The server sent an error answering nothing: its FATAL before it
    /// closes the connection.
    server_said_goodbye: bool,
    /// A batch whose wait for a server was cancelled: its messages are
    /// dropped up to Sync, which gets ReadyForQuery.
    discarding_until_sync: bool,
}

impl Drop for Session {
    /// A session dropped unfinished was ended by shutdown: its client is
    /// told so, if the socket takes the message now and no forwarded
    /// frame is cut in the middle.
    fn drop(&mut self) {
        if self.finished || !crate::shutdown::cutting() || self.passthrough > 0 {
            return;
        }
        self.to_client.push(backend::error_response(
            Severity::Fatal,
            "57P01",
            crate::shutdown::ADMIN_TERMINATION,
        ));
        let _ = self.to_client.try_flush(&mut self.client);
    }
}

struct GuardRuntime {
    settings: GuardSettings,
    clock: GuardClock,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// query_timeout cancelled the running statement: its 57014 error
    /// names the setting.
    cancelled: bool,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: Transport,
        client_buf: BytesMut,
        pool: Arc<ServerPool>,
        settings: ClientSettings,
        told: super::shared_list::ToldParams,
        cancel: Arc<CancelTarget>,
        max_frame: usize,
        observer: Option<Recorder>,
        entry: Arc<ClientEntry>,
        owned: Option<PooledServer>,
        told_pid: i32,
    ) -> Session {
        let tally = SessionTally::new(pool.tally.clone());
        let guard_settings = GuardSettings::of(&pool.settings());
        let guards = guard_settings.any().then(|| {
            let now = MonoTime::now();
            let clock = GuardClock::new(now);
            let first = match clock.check(&guard_settings, Activity::IDLE, now) {
                Verdict::CheckAt(at) => at.since(now),
                Verdict::Fire(_) => std::time::Duration::ZERO,
            };
            Box::new(GuardRuntime {
                settings: guard_settings,
                clock,
                timer: Box::pin(tokio::time::sleep(first)),
                cancelled: false,
            })
        });
        Session {
            client,
            // The handshake's buffer, unless frames came with the login.
            client_buf: if client_buf.is_empty() {
                BytesMut::new()
            } else {
                client_buf
            },
            pool,
            settings,
            told,
            cancel,
            max_frame: u32::try_from(max_frame).unwrap_or(u32::MAX),
            server: None,
            owned,
            told_pid,
            state_dirty: false,
            pinned: 0,
            stateful_statements: None,
            last_parse_checked: None,
            to_client: OutQueue::default(),
            to_server: OutQueue::default(),
            replies: ReplyQueue::default(),
            passthrough: 0,
            error_replacement: None,
            statements: ClientStatements::default(),
            resets: ResetTracker::default(),
            observer,
            entry,
            tally,
            guards,
            finished: false,
            server_said_goodbye: false,
            discarding_until_sync: false,
        }
    }

    fn transaction_mode(&self) -> bool {
        self.pool.mode() == PoolMode::Transaction
    }

    /// An `async` block rather than an `async fn`: the latter stores its
    /// argument twice for the whole session (see `connection::serve`).
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run(mut self: Box<Self>) -> impl Future<Output = Exit> {
        async move {
            let exit = self.forward().await;
            // Boxed: held inline, the goodbye's state would sit in every
            // connected client's session future.
            Box::pin(self.finish(&exit)).await;
            exit
        }
    }

    /// An `async` block, not an `async fn`, for the same reason as `run`.
    #[allow(clippy::manual_async_fn)]
    fn forward(&mut self) -> impl Future<Output = Exit> + '_ {
        async move {
            // Session mode: the server taken at login becomes this client's.
            if self.owned.is_some() {
                if let Err(e) = self.attach().await {
                    return Exit::Error(e.into());
                }
            }
            // Frames may have arrived together with the startup message.
            match self.on_client_data().await {
                Ok(true) => {}
                Ok(false) => return Exit::ClientLeft,
                Err(e) => return Exit::Error(e.into()),
            }
            loop {
                if self.state_dirty && self.transaction_mode() && self.server_settled() {
                    // Boxed: rare, and an inline wait would stay in every
                    // client's session future for as long as it is connected.
                    if let Err(e) = Box::pin(self.settle_session_state()).await {
                        // What the connection holds is unknown: never shared.
                        if let Some(mut s) = self.server.take() {
                            s.settled = false;
                        }
                        return Exit::Error(e.into());
                    }
                }
                if let Err(e) = self.flush_and_maybe_release() {
                    return Exit::Error(e.into());
                }
                if self.to_server.len() < QUEUE_LIMIT && self.client_frame_ready() {
                    match self.on_client_data().await {
                        Ok(true) => continue,
                        Ok(false) => return Exit::ClientLeft,
                        Err(e) => return Exit::Error(e.into()),
                    }
                }
                let event = std::future::poll_fn(|cx| self.poll_event(cx)).await;
                // Handled in a plain function and its error returned first:
                // the event and the error would otherwise stay in this
                // future's state across the await below.
                let next = match self.on_event(event) {
                    Ok(next) => next,
                    Err(e) => return Exit::Error(e.into()),
                };
                let step = match next {
                    Next::ClientData => self.on_client_data().await,
                    Next::Continue => Ok(true),
                    Next::ClientLeft => Ok(false),
                };
                match step {
                    Ok(true) => {}
                    Ok(false) => return Exit::ClientLeft,
                    Err(e) => return Exit::Error(e.into()),
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Result<Next, ProxyError> {
        match event {
            Event::ClientRead(Ok(0)) => Ok(Next::ClientLeft),
            Event::ClientRead(Ok(n)) => {
                if let Some(g) = self.guards.as_mut() {
                    let now = MonoTime::now();
                    g.clock.last_activity = now;
                    if self.replies.is_idle() {
                        g.clock.busy_since = now;
                    }
                }
                stats::count_client_bytes(n);
                self.tally.received += n as u64;
                Ok(Next::ClientData)
            }
            Event::ClientRead(Err(e)) => Err(ProxyError::ClientIo(e)),
            Event::ServerRead(Ok(0)) => Err(ProxyError::ServerClosed),
            Event::ServerRead(Ok(n)) => {
                if let Some(g) = self.guards.as_mut() {
                    g.clock.last_activity = MonoTime::now();
                }
                stats::count_server_bytes(n);
                self.tally.sent += n as u64;
                self.on_server_data().map(|()| Next::Continue)
            }
            Event::ServerRead(Err(e)) => Err(ProxyError::ServerIo(e)),
            Event::Writable(r) => r.map(|()| Next::Continue),
            Event::Guard => match self.on_guard() {
                Ok(true) => Ok(Next::Continue),
                Ok(false) => Ok(Next::ClientLeft),
                Err(e) => Err(e),
            },
        }
    }

    /// Waits for whichever direction can progress, reading in the same
    /// step: data that is there is read at once (one `recv`), and a short
    /// read clears the socket's readiness, so the next wait goes to epoll
    /// instead of trying another `recv` that would only say EAGAIN. The
    /// server is served first: its replies free it for other clients.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let want_client_read = self.to_server.len() < QUEUE_LIMIT;
        let want_client_write = !self.to_client.is_empty() || self.client.has_pending_output();
        if let Some(server) = self.server.as_mut() {
            let server = &mut **server;
            if self.to_client.len() < QUEUE_LIMIT {
                if let Poll::Ready(r) =
                    poll_read_buf(&mut server.stream, &mut server.buf, READ_CHUNK, cx)
                {
                    return Poll::Ready(Event::ServerRead(r));
                }
            }
            if !self.to_server.is_empty() || server.stream.has_pending_output() {
                if let Poll::Ready(r) = server.stream.poll_write_ready(cx) {
                    return Poll::Ready(Event::Writable(r.map_err(ProxyError::ServerIo)));
                }
            }
        }
        if want_client_read {
            if let Poll::Ready(r) = poll_read_client(&mut self.client, &mut self.client_buf, cx) {
                return Poll::Ready(Event::ClientRead(r));
            }
        }
        if want_client_write {
            if let Poll::Ready(r) = self.client.poll_write_ready(cx) {
                return Poll::Ready(Event::Writable(r.map_err(ProxyError::ClientIo)));
            }
        }
        if let Some(g) = self.guards.as_mut() {
            if g.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Guard);
            }
        }
        Poll::Pending
    }

    /// The guard timer fired: act on a guard that is due, or sleep until
    /// the next one could be.
    fn on_guard(&mut self) -> Result<bool, ProxyError> {
        let activity = Activity {
            waiting_on_server: !self.replies.is_idle(),
            in_transaction: self
                .server
                .as_ref()
                .is_some_and(|s| s.status != TransactionStatus::Idle),
        };
        let settings = GuardSettings::of(&self.pool.settings());
        let Some(g) = self.guards.as_mut() else {
            return Ok(true);
        };
        // RELOAD may have changed the durations.
        if settings.any() {
            g.settings = settings;
        }
        let now = MonoTime::now();
        loop {
            match g.clock.check(&g.settings, activity, now) {
                Verdict::CheckAt(at) => {
                    g.timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + at.since(now));
                    return Ok(true);
                }
                Verdict::Fire(Guard::Query) => {
                    stats::count_timeout(stats::TimeoutKind::Query);
                    tracing::info!(client = %self.entry.id, "query_timeout: cancelling the running statement");
                    self.cancel.cancel_now();
                    g.clock.cancel_sent_at = Some(now);
                    g.cancelled = true;
                }
                Verdict::Fire(guard) => {
                    stats::count_timeout(match guard {
                        Guard::IdleTransaction => stats::TimeoutKind::IdleTransaction,
                        Guard::ClientIdle => stats::TimeoutKind::ClientIdle,
                        Guard::Transaction => stats::TimeoutKind::Transaction,
                        Guard::Query | Guard::CancelIgnored => stats::TimeoutKind::Query,
                    });
                    return Err(guard_error(guard));
                }
            }
        }
    }

    /// Writes what the sockets take now, then lets go of the server if the
    /// transaction is over (transaction mode).
    fn flush_and_maybe_release(&mut self) -> Result<(), ProxyError> {
        self.to_client
            .try_flush(&mut self.client)
            .map_err(ProxyError::ClientIo)?;
        if let Some(server) = self.server.as_mut() {
            self.to_server
                .try_flush(&mut server.stream)
                .map_err(ProxyError::ServerIo)?;
        }
        if self.transaction_mode() && !self.state_dirty && self.pinned == 0 && self.server_settled()
        {
            self.release_server();
        }
        if self.tally.idles_long()
            && self.to_client.is_empty()
            && self.to_server.is_empty()
            && self.replies.is_idle()
        {
            self.to_client.release_storage();
            self.to_server.release_storage();
            self.replies.release_storage();
        }
        Ok(())
    }

    /// `may_change_session_state` of a Parse's text, remembered for the
    /// latest text (compared in one `memcmp`).
    fn parse_may_change_state(&mut self, query: &[u8]) -> bool {
        let (text, answer) = &mut **self.last_parse_checked.get_or_insert_with(Box::default);
        if text.as_slice() != query {
            *answer = may_change_session_state(query);
            text.clear();
            if query.len() <= 2048 {
                text.extend_from_slice(query);
            }
        }
        *answer
    }

    /// Transaction mode, at the end of a transaction that may have changed
    /// session state: asks the server what the session holds. Settings
    /// become the client's (they follow it to its next connection); state
    /// no shared connection can carry pins the client to this one, or,
    /// past `max_pinned_clients` or with `pin_session_state = false`,
    /// ends with the connection closed rather than shared.
    async fn settle_session_state(&mut self) -> Result<(), ProxyError> {
        self.state_dirty = false;
        let mut asynchronous = Vec::new();
        let rows = self
            .attached()
            .run_own_query_keeping(PROBE_SQL, &[], Some(&mut asynchronous))
            .await?;
        for frame in asynchronous {
            self.to_client.push(frame);
        }
        let state = SessionState::from_rows(&rows);
        self.settings.adopt_session(&state.settings);
        let server = self.server.as_mut().expect("attached");
        server.applied = state.settings.iter().cloned().collect();
        if let Some(sql) = self.settings.sql_to_apply(&server.applied) {
            // A RESET brought back a startup setting this connection never
            // had (it came with the pool's own login).
            let mut asynchronous = Vec::new();
            let reported = server
                .run_own_simple_query_keeping(&sql, Some(&mut asynchronous))
                .await?;
            for frame in asynchronous {
                self.to_client.push(frame);
            }
            for (k, v) in reported {
                self.tell_client(&k, &v);
            }
        }
        let server = self.server.as_mut().expect("attached");
        server.applied = self.settings.as_applied();
        server.applied_signature = self.settings.signature();
        let was_pinned = self.pinned != 0;
        let settings = self.pool.settings();
        if state.pins.is_empty() {
            if was_pinned {
                self.pool.unpin();
            }
        } else if !settings.pin_session_state {
            // RELOAD may have turned pinning off while this client was pinned.
            if was_pinned {
                self.pool.unpin();
            }
            // Never shared: the next client would inherit the state.
            if let Some(mut s) = self.server.take() {
                s.settled = false;
            }
            self.entry.linked(None);
            self.cancel.set(None);
            let names: Vec<&str> = state.pins.iter().map(|p| p.as_str()).collect();
            self.to_client.push(backend::warning_notice(
                "01000",
                &format!(
                    "{} not kept: this pool shares server connections between transactions (pin_session_state = false); the server connection holding it was closed",
                    names.join(", ")
                ),
            ));
            self.pinned = 0;
            self.entry.set_pinned_bits(0);
            return Ok(());
        } else if !was_pinned && !self.pool.try_pin() {
            // Its state is on this connection: closed, never shared.
            if let Some(mut s) = self.server.take() {
                s.settled = false;
            }
            return Err(ProxyError::client(
                "53300",
                format!(
                    "too many clients keep session state in transaction mode (max_pinned_clients = {}): this session's {} cannot be kept",
                    settings.max_pinned_clients,
                    state.pins.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        self.pinned = state.pins.iter().fold(0, |bits, p| bits | p.bit());
        self.entry.set_pinned_bits(self.pinned);
        Ok(())
    }

    fn attached(&mut self) -> &mut PooledServer {
        self.server.as_mut().expect("a server is attached")
    }

    fn server_settled(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(|s| self.server_settled_with(s))
    }

    fn release_server(&mut self) {
        if let Some(server) = self.server.as_mut() {
            server.settled = true;
            server.released_at = self.tally.take_ready_at();
            self.entry.linked(None);
            self.cancel.set(None);
            // Dropped where it lies: taking it out first would copy the
            // whole guard once more per transaction.
            self.server = None;
        }
    }

    /// Attaches a server connection to this client, without waiting
    /// when one is at hand and needs nothing done (as in most
    /// transactions); otherwise waits in `attach_server`, boxed so that
    /// an idle client's session future does not hold that wait.
    async fn attach(&mut self) -> Result<(), ProxyError> {
        let at_hand = match self.owned.take() {
            Some(server) => {
                server.link_to(&self.entry);
                Some(server)
            }
            None if crate::shutdown::refusing_new_transactions() => None,
            None => self.pool.try_acquire_now(&self.entry),
        };
        match at_hand {
            Some(server) if self.ready_as_is(&server) => {
                self.install(server);
                Ok(())
            }
            at_hand => Box::pin(self.attach_server(at_hand)).await,
        }
    }

    fn install(&mut self, mut server: PooledServer) {
        self.cancel.set(Some(server.backend_key));
        server.settled = false;
        self.server = Some(server);
    }

    /// A connection that already carries this client's settings and has
    /// no prepared statements to evict.
    fn ready_as_is(&self, server: &PooledServer) -> bool {
        server.applied_signature == self.settings.signature()
            && !(self.transaction_mode() && server.statements.is_over_capacity())
    }

    /// Gets a server connection for this client (`at_hand`, or one it
    /// waits for) and makes it carry the client's settings.
    async fn attach_server(&mut self, at_hand: Option<PooledServer>) -> Result<(), ProxyError> {
        let mut server = match at_hand {
            Some(server) => server,
            None => {
                if crate::shutdown::refusing_new_transactions() {
                    return Err(ProxyError::client(
                        "57P01",
                        crate::shutdown::ADMIN_TERMINATION,
                    ));
                }
                self.pool
                    .acquire_for(Some(&self.entry), Some(self.cancel.waiting()))
                    .await?
            }
        };
        self.cancel.set(Some(server.backend_key));
        if server.applied_signature != self.settings.signature() {
            if let Some(sql) = self.settings.sql_to_apply(&server.applied) {
                match server.run_own_query(&sql).await {
                    Ok(reported) => {
                        for (k, v) in reported {
                            if let Some(asked) = self.settings.get(&k) {
                                self.pool.learn_canonical(&k, asked, &v);
                            }
                            self.tell_client(&k, &v);
                        }
                    }
                    Err(ProxyError::ServerLogin { code, message }) => {
                        // PostgreSQL would have refused the login; the
                        // client's setting is invalid, not the session.
                        tracing::warn!(client = %self.entry.id, %code, "could not apply a startup setting: {message}");
                    }
                    Err(e) => return Err(e),
                }
            }
            server.applied = self.settings.as_applied();
            server.applied_signature = self.settings.signature();
        }
        if self.transaction_mode() {
            let excess = server.statements.over_capacity();
            if !excess.is_empty() {
                let sql: String = excess
                    .iter()
                    .map(|id| format!("DEALLOCATE {};", id.server_name()))
                    .collect();
                server.run_own_query(&sql).await?;
            }
        }
        self.install(server);
        Ok(())
    }

    fn tell_client(&mut self, name: &str, value: &str) {
        if self.told.set(name, value) {
            let mut buf = BytesMut::new();
            backend::write_parameter_status(&mut buf, name.as_bytes(), value.as_bytes());
            self.to_client.push(buf.freeze());
        }
    }

    /// Handles the complete frames the client has sent. Returns false when
    /// the client said goodbye.
    async fn on_client_data(&mut self) -> Result<bool, ProxyError> {
        while self.to_server.len() < QUEUE_LIMIT {
            let Some(h) = FrameHeader::peek(&self.client_buf, self.max_frame as usize)? else {
                if self.client_buf.is_empty() {
                    // Nothing kept while the client is quiet (see
                    // `poll_read_client`); the frames split off keep the
                    // allocation alive only until they are written.
                    self.client_buf = BytesMut::new();
                }
                return Ok(true);
            };
            if self.client_buf.len() < h.frame_len {
                self.client_buf.reserve(h.frame_len - self.client_buf.len());
                return Ok(true);
            }
            if h.tag == fe::TERMINATE {
                return Ok(false);
            }
            if !super::reply_queue::valid_after_login(h.tag) {
                // Never forwarded: PostgreSQL would end the connection,
                // and the server connection would die under the pool's
                // next client.
                return Err(invalid_message(h.tag));
            }
            if self.discarding_until_sync {
                let _ = self.client_buf.split_to(h.frame_len);
                if h.tag == fe::SYNC {
                    self.discarding_until_sync = false;
                    self.to_client
                        .push(backend::ready_for_query(TransactionStatus::Idle));
                }
                continue;
            }
            if self.server.is_none() {
                if self.answer_without_server(h)? {
                    continue;
                }
                match self.attach().await {
                    Ok(()) => {}
                    Err(ProxyError::WaitCancelled) => {
                        self.answer_cancelled_wait(h);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.tally.request_sent();
            self.process_client_frames()?;
        }
        Ok(true)
    }

    /// The request waiting for a server was cancelled: it is answered as
    /// PostgreSQL answers a cancelled statement (57014) and never reaches
    /// a server. An extended-protocol batch is discarded up to its Sync.
    fn answer_cancelled_wait(&mut self, h: FrameHeader) {
        self.to_client.push(backend::error_response(
            Severity::Error,
            "57014",
            "canceling statement due to user request",
        ));
        if h.tag == fe::QUERY || h.tag == fe::FUNCTION_CALL {
            let _ = self.client_buf.split_to(h.frame_len);
            self.to_client
                .push(backend::ready_for_query(TransactionStatus::Idle));
        } else {
            self.discarding_until_sync = true;
        }
    }

    /// A complete client frame is buffered but not yet handled (the
    /// queue to the server was full when it arrived).
    fn client_frame_ready(&self) -> bool {
        matches!(
            FrameHeader::peek(&self.client_buf, self.max_frame as usize),
            Ok(Some(h)) if self.client_buf.len() >= h.frame_len
        )
    }

    /// Some requests are answered by pgvigil without taking a server from
    /// the pool. Returns true if the frame was handled.
    fn answer_without_server(&mut self, h: FrameHeader) -> Result<bool, ProxyError> {
        if !self.transaction_mode() {
            return Ok(false);
        }
        if h.tag == fe::PARSE {
            return self.answer_known_parses();
        }
        if h.tag != fe::QUERY {
            return Ok(false);
        }
        let frame = &self.client_buf[..h.frame_len];
        let text = frontend::query_text(frame)?;
        match local_command(text) {
            Some(LocalCommand::Listen) if !self.pool.settings().pin_session_state => {
                let _ = self.client_buf.split_to(h.frame_len);
                self.to_client.push(backend::error_response(
                    Severity::Error,
                    "0A000",
                    "LISTEN is not supported in transaction pool mode: notifications arrive on a server connection the client does not keep. Use a pool with pool_mode = \"session\".",
                ));
                self.to_client
                    .push(backend::ready_for_query(TransactionStatus::Idle));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A batch of only Parse messages, each for a statement some server of
    /// this pool has already accepted, then Sync, is answered without a
    /// server: the statement is prepared on whichever server first needs
    /// it. Clients that prepare synchronously while other connections of
    /// theirs hold servers (pgbench -M prepared does) would otherwise wait
    /// on the pool for an answer that needs no server at all.
    fn answer_known_parses(&mut self) -> Result<bool, ProxyError> {
        let mut at = 0;
        let mut parsed = Vec::new();
        loop {
            let Some(h) = FrameHeader::peek(&self.client_buf[at..], self.max_frame as usize)?
            else {
                return Ok(false);
            };
            let Some(frame) = self.client_buf.get(at..at + h.frame_len) else {
                return Ok(false);
            };
            match h.tag {
                fe::PARSE => {
                    let view = ParseView::new(frame)?;
                    // Unnamed statements (the extended protocol's usual
                    // Parse) are turned away before anything is built.
                    if view.statement.is_empty()
                        || !self
                            .pool
                            .statement_known(self.pool.statement_id(view.query, view.param_types))
                    {
                        return Ok(false);
                    }
                    let prepared = self.new_prepared(&view);
                    parsed.push((
                        view.statement.to_vec(),
                        view.query.to_vec(),
                        Arc::new(prepared),
                    ));
                }
                fe::SYNC => {
                    at += h.frame_len;
                    break;
                }
                _ => return Ok(false),
            }
            at += h.frame_len;
        }
        let _ = self.client_buf.split_to(at);
        for (name, query, prepared) in parsed {
            if let Some(o) = self.observer.as_mut() {
                o.prepare(&name, &query);
            }
            self.resets.on_parse(&name, &query);
            self.statements.insert(&name, prepared);
            self.to_client.push(backend::parse_complete());
        }
        self.to_client
            .push(backend::ready_for_query(TransactionStatus::Idle));
        Ok(true)
    }

    /// Forwards (or rewrites) every complete client frame to the server.
    fn process_client_frames(&mut self) -> Result<(), ProxyError> {
        let rewrite = self.transaction_mode();
        let mut src = std::mem::take(&mut self.client_buf);
        let mut out = std::mem::take(&mut self.to_server);
        let result = (|| {
            let mut sp = Splicer::new(&mut src, &mut out);
            while let Some(h) = FrameHeader::peek(sp.pending(), self.max_frame as usize)? {
                if sp.pending().len() < h.frame_len || h.tag == fe::TERMINATE {
                    break;
                }
                let frame = &sp.pending()[..h.frame_len];
                let action = self.client_frame_action(h.tag, frame, rewrite)?;
                match action {
                    Action::Keep => sp.keep(h.frame_len),
                    Action::Replace(parts) => {
                        sp.skip(h.frame_len);
                        for p in parts {
                            sp.insert(p);
                        }
                    }
                    Action::ReplaceOne(message) => {
                        sp.skip(h.frame_len);
                        sp.insert(message);
                    }
                    Action::Drop => sp.skip(h.frame_len),
                }
                if sp.out_len() >= QUEUE_LIMIT {
                    break;
                }
            }
            Ok::<(), ProxyError>(())
        })();
        self.client_buf = src;
        // The empty queue `take` left: nothing to free (see on_server_data).
        let placeholder = std::mem::replace(&mut self.to_server, out);
        debug_assert!(placeholder.is_empty());
        std::mem::forget(placeholder);
        if let Some(server) = self.server.as_mut() {
            if !self.to_server.is_empty() {
                server.settled = false;
            }
        }
        self.emit_leading_replies();
        result
    }

    /// Decides what happens to one client frame and records the reply it
    /// will get.
    fn client_frame_action(
        &mut self,
        tag: u8,
        frame: &[u8],
        rewrite: bool,
    ) -> Result<Action, ProxyError> {
        match self.replies.on_client_message(tag) {
            ClientMessage::Track => {}
            // Skipped by the server after an error, ignored during COPY,
            // or a message with no reply of its own.
            ClientMessage::Untracked => return Ok(Action::Keep),
            ClientMessage::Invalid => return Err(invalid_message(tag)),
        }
        let action = match tag {
            fe::QUERY => {
                let text = frontend::query_text(frame)?;
                if rewrite && may_change_session_state(text) {
                    self.state_dirty = true;
                }
                let action = if rewrite {
                    self.local_statement_command(text)
                } else {
                    Action::Keep
                };
                if let Some(LocalCommand::DiscardAll | LocalCommand::Deallocate(None)) =
                    local_command(text)
                {
                    if let Some(o) = self.observer.as_mut() {
                        o.forget_statements();
                    }
                }
                let tracked = self
                    .observer
                    .as_mut()
                    .and_then(|o| o.begin_query(text, MonoTime::now().as_nanos()));
                self.replies
                    .push(Expect::Forward(Request::UntilReady(tracked)));
                action
            }
            fe::PARSE => {
                let view = ParseView::new(frame)?;
                if rewrite {
                    if self.parse_may_change_state(view.query) {
                        self.state_dirty = true;
                        if !view.statement.is_empty() {
                            self.stateful_statements
                                .get_or_insert_with(Box::default)
                                .insert(view.statement.to_vec());
                        }
                    } else if let Some(named) = self.stateful_statements.as_mut() {
                        named.remove(view.statement);
                    }
                }
                if let Some(o) = self.observer.as_mut() {
                    o.prepare(view.statement, view.query);
                }
                if rewrite {
                    self.resets.on_parse(view.statement, view.query);
                }
                if rewrite && !view.statement.is_empty() {
                    // A client's own Parse always reaches the server, as
                    // Close + Parse: the statement is then as fresh as the
                    // client asked (after ALTER TABLE a stale copy would
                    // describe the old columns), and it costs one message
                    // per statement per client connection.
                    let prepared = Arc::new(self.new_prepared(&view));
                    self.statements.insert(view.statement, prepared.clone());
                    let mut parts = Vec::with_capacity(2);
                    self.prepare_on_server(&prepared, &mut parts, Some(view.statement.to_vec()));
                    Action::Replace(parts)
                } else {
                    self.replies.push(Expect::Forward(Request::Parse(None)));
                    Action::Keep
                }
            }
            fe::BIND => {
                let view = BindView::new(frame)?;
                if rewrite
                    && self
                        .stateful_statements
                        .as_ref()
                        .is_some_and(|named| named.contains(view.statement))
                {
                    self.state_dirty = true;
                }
                if let Some(o) = self.observer.as_mut() {
                    o.bind(view.portal, view.statement, view.rest);
                }
                if rewrite {
                    self.resets.on_bind(view.portal, view.statement);
                }
                let (action, id) = match self.renamed(rewrite, view.statement) {
                    Some((prepare, name, id)) => (
                        Action::after(prepare, frontend::bind_renamed(&view, &name)),
                        Some(id),
                    ),
                    None => (Action::Keep, None),
                };
                self.replies.push(Expect::Forward(Request::Bind(id)));
                action
            }
            fe::DESCRIBE => {
                let view = TargetView::new(frame)?;
                let renamed = if view.kind == TARGET_STATEMENT {
                    self.renamed(rewrite, view.name)
                } else {
                    None
                };
                let (action, id) = match renamed {
                    Some((prepare, name, id)) => (
                        Action::after(prepare, frontend::describe(view.kind, &name)),
                        Some(id),
                    ),
                    None => (Action::Keep, None),
                };
                self.replies.push(Expect::Forward(Request::Describe(id)));
                action
            }
            fe::CLOSE => {
                let view = TargetView::new(frame)?;
                if view.kind == TARGET_STATEMENT {
                    if let Some(o) = self.observer.as_mut() {
                        o.close_statement(view.name);
                    }
                }
                if rewrite && view.kind == TARGET_STATEMENT && !view.name.is_empty() {
                    // The server-side statement stays for other clients;
                    // only this client's name goes.
                    self.statements.remove(view.name);
                    self.replies.push(Expect::Reply(backend::close_complete()));
                    Action::Drop
                } else {
                    self.replies.push(Expect::Forward(Request::Close));
                    Action::Keep
                }
            }
            fe::EXECUTE => {
                let portal = frontend::execute_portal(frame)?;
                if rewrite {
                    if let Some(reset) = self.resets.executes(portal) {
                        self.forget_server_state(reset);
                    }
                }
                let tracked = match self.observer.as_mut() {
                    Some(o) => o.begin_execute(portal, MonoTime::now().as_nanos()),
                    None => None,
                };
                self.replies
                    .push(Expect::Forward(Request::Execute(tracked)));
                Action::Keep
            }
            _ => Action::Keep,
        };
        Ok(action)
    }

    /// DEALLOCATE and DISCARD ALL name statements by the client's names,
    /// which the server does not know: translate them.
    fn local_statement_command(&mut self, text: &[u8]) -> Action {
        let server = self.server.as_mut().expect("attached");
        match local_command(text) {
            Some(LocalCommand::DiscardAll) => {
                self.forget_server_state(Reset::DiscardAll);
                Action::Keep
            }
            Some(LocalCommand::Deallocate(None)) => {
                self.forget_server_state(Reset::DeallocateAll);
                Action::Keep
            }
            Some(LocalCommand::Deallocate(Some(name))) => {
                let Some(prepared) = self.statements.get(&name).cloned() else {
                    return Action::Keep; // perhaps an SQL-level PREPARE
                };
                self.statements.remove(&name);
                // Deallocating the server's copy keeps PostgreSQL's reply
                // (tag, transaction status) exactly what the client
                // expects; the statement is prepared first if this server
                // lacks it, so the command cannot fail here.
                let mut parts = Vec::with_capacity(3);
                if !server.statements.touch(prepared.id, prepared.generation) {
                    self.prepare_on_server(&prepared, &mut parts, None);
                }
                let server = self.server.as_mut().expect("attached");
                server.statements.remove(prepared.id);
                let sql = format!("DEALLOCATE {}", prepared.id.server_name());
                parts.push(frontend::query(&sql));
                Action::Replace(parts)
            }
            _ => Action::Keep,
        }
    }

    /// For a Bind or Describe naming a client's statement: the server-side
    /// name and id, and the messages that prepare it first if this server
    /// lacks it.
    fn renamed(
        &mut self,
        rewrite: bool,
        client_name: &[u8],
    ) -> Option<(Vec<Bytes>, Bytes, StatementId)> {
        if !rewrite || client_name.is_empty() {
            return None;
        }
        // Unknown names go through unchanged, so the client gets
        // PostgreSQL's own "does not exist" error.
        let prepared = self.statements.get(client_name)?.clone();
        // Empty unless the server lacks the statement: most Binds need no
        // messages before them, and an empty Vec costs no allocation.
        let mut parts = Vec::new();
        if self.went_stale(&prepared) {
            self.fail_as_stale(&mut parts);
            return Some((parts, prepared.server_name.clone(), prepared.id));
        }
        let server = self.server.as_mut().expect("attached");
        if !server.statements.touch(prepared.id, prepared.generation) {
            self.prepare_on_server(&prepared, &mut parts, None);
        }
        Some((parts, prepared.server_name.clone(), prepared.id))
    }

    fn new_prepared(&self, view: &ParseView<'_>) -> Prepared {
        let epoch = self.pool.change_epoch();
        let id = self.pool.statement_id(view.query, view.param_types);
        let mut prepared = Prepared::from_parse(view, id, 0, epoch);
        prepared.generation = self.pool.statement_generation(prepared.id);
        prepared
    }

    /// Whether the client's statement predates a change of its result
    /// type seen on some server connection of the pool.
    fn went_stale(&self, prepared: &Prepared) -> bool {
        let epoch = self.pool.change_epoch();
        if prepared.checked_epoch.load(AtomicOrdering::Relaxed) == epoch {
            return false;
        }
        let stale = self.pool.statement_generation(prepared.id) > prepared.generation;
        if !stale {
            prepared.checked_epoch.store(epoch, AtomicOrdering::Relaxed);
        }
        stale
    }

    /// Makes the server answer the next message with PostgreSQL's own
    /// error for a statement whose result type changed, and skip the rest
    /// up to Sync, as the client's own connection would have. The client
    /// then prepares the statement again (asyncpg does so by itself).
    fn fail_as_stale(&mut self, parts: &mut Vec<Bytes>) {
        let raise = "DO $pgvigil$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', \
                     MESSAGE = 'cached plan must not change result type', \
                     HINT = 'The statement was prepared before a schema change; prepare it again.'; \
                     END$pgvigil$";
        parts.push(frontend::parse(b"", raise.as_bytes(), b"\0\0"));
        parts.push(frontend::build(fe::BIND, |b| {
            b.extend_from_slice(b"\0\0\0\0\0\0\0\0");
        }));
        parts.push(frontend::build(fe::EXECUTE, |b| {
            b.extend_from_slice(b"\0\0\0\0\0");
        }));
        for request in [
            Request::Parse(None),
            Request::Bind(None),
            Request::StaleStatement,
        ] {
            self.replies.push(Expect::Swallow(request));
        }
    }

    /// Queues Close + Parse of a renamed statement. The client's own Parse
    /// (`client_name` given) gets the server's reply; one pgvigil adds
    /// for a Bind or Describe does not.
    fn prepare_on_server(
        &mut self,
        prepared: &Prepared,
        parts: &mut Vec<Bytes>,
        client_name: Option<Vec<u8>>,
    ) {
        let server = self.server.as_mut().expect("attached");
        server.statements.insert(prepared.id, prepared.generation);
        parts.push(prepared.close.clone());
        parts.push(prepared.parse.clone());
        self.replies.push(Expect::Swallow(Request::Close));
        self.replies.push(match client_name {
            Some(name) => Expect::Forward(Request::Parse(Some((prepared.id, name)))),
            None => Expect::Swallow(Request::Parse(Some((prepared.id, Vec::new())))),
        });
    }

    /// DISCARD ALL or DEALLOCATE ALL is on its way to the server, which
    /// will drop every prepared statement (and with DISCARD, every
    /// setting): pgvigil's records of it and of the client's names go too.
    fn forget_server_state(&mut self, reset: Reset) {
        self.statements.clear();
        let server = self.server.as_mut().expect("attached");
        server.statements.clear();
        if reset == Reset::DiscardAll {
            server.applied.clear();
            server.applied_signature = 0;
        }
    }

    /// Replies pgvigil makes itself go out as soon as everything before
    /// them has.
    fn emit_leading_replies(&mut self) {
        while let Some(bytes) = self.replies.pop_own_reply() {
            self.to_client.push(bytes);
        }
    }

    /// Passes server frames to the client, dropping replies to messages
    /// pgvigil added and inserting replies pgvigil made.
    fn on_server_data(&mut self) -> Result<(), ProxyError> {
        // Only the read buffer leaves the guard: moving the whole
        // connection out and back costs two copies of it per read.
        let mut src = std::mem::take(&mut self.attached().buf);
        let mut out = std::mem::take(&mut self.to_client);
        let result = (|| {
            let mut sp = Splicer::new(&mut src, &mut out);
            loop {
                if self.passthrough > 0 {
                    let n = self.passthrough.min(sp.pending().len());
                    if n == 0 {
                        break;
                    }
                    sp.keep(n);
                    self.passthrough -= n;
                    continue;
                }
                let Some(h) = FrameHeader::peek(sp.pending(), usize::MAX)? else {
                    break;
                };
                // Rows are most of a big result and need no bookkeeping:
                // they complete no request, and the observer counts rows
                // from the CommandComplete tag. Only a request of the
                // client's own (not one whose replies are dropped, not
                // replies of pgvigil's due first) lets them through here.
                if h.tag == be::DATA_ROW && self.replies.head_is_forwarded() {
                    let n = h.frame_len.min(sp.pending().len());
                    sp.keep(n);
                    self.passthrough = h.frame_len - n;
                    continue;
                }
                let decoded = matches!(
                    h.tag,
                    be::READY_FOR_QUERY | be::ERROR_RESPONSE | be::PARAMETER_STATUS
                ) || (h.tag == be::COMMAND_COMPLETE && self.observer.is_some())
                    || self.replies.head_is_swallowed()
                    || (h.tag == be::NOTIFICATION_RESPONSE && self.pinned != 0);
                // The server is trusted, and PostgreSQL caps its own
                // messages at 1 GB; max_packet_size is about clients.
                if decoded && h.frame_len > MAX_SERVER_FRAME {
                    return Err(ProxyError::Protocol(pgvigil_wire::FrameError::TooLarge {
                        tag: h.tag as char,
                        size: h.frame_len,
                        limit: MAX_SERVER_FRAME,
                    }));
                }
                if decoded && sp.pending().len() < h.frame_len {
                    break;
                }
                // Our own replies that are due before this message.
                while let Some(bytes) = self.replies.pop_own_reply() {
                    sp.insert(bytes);
                }
                let frame = if decoded {
                    Some(&sp.pending()[..h.frame_len])
                } else {
                    None
                };
                if h.tag == be::NOTIFICATION_RESPONSE && self.pinned != 0 {
                    self.error_replacement =
                        frame.and_then(|f| self.own_notification(f).map(Box::new));
                }
                let forward = self.route_server_message(h.tag, frame)?;
                if let Some(replacement) = self.error_replacement.take() {
                    sp.skip(h.frame_len);
                    sp.insert(*replacement);
                } else if forward {
                    if decoded {
                        sp.keep(h.frame_len);
                    } else {
                        self.passthrough = h.frame_len;
                    }
                } else {
                    sp.skip(h.frame_len);
                }
            }
            Ok(())
        })();
        self.attached().buf = src;
        // What is left in `to_client` is the empty queue `take` put there:
        // nothing to free, and dropping it costs a call per read.
        let placeholder = std::mem::replace(&mut self.to_client, out);
        debug_assert!(placeholder.is_empty());
        std::mem::forget(placeholder);
        self.emit_leading_replies();
        result
    }

    /// A pinned transaction-mode client LISTENs on its server's backend,
    /// whose pid it was never told: a notification that backend sent
    /// itself (the client's own NOTIFY) carries the client's pid instead,
    /// as on a direct connection. Others' pids pass unchanged.
    fn own_notification(&self, frame: &[u8]) -> Option<Bytes> {
        let server_pid = self.server.as_ref()?.backend_key.process_id;
        let pid = i32::from_be_bytes(frame.get(5..9)?.try_into().ok()?);
        if pid != server_pid || pid == self.told_pid {
            return None;
        }
        let mut rewritten = BytesMut::from(frame);
        rewritten[5..9].copy_from_slice(&self.told_pid.to_be_bytes());
        Some(rewritten.freeze())
    }

    /// Bookkeeping for one server message; returns whether the client
    /// gets it.
    fn route_server_message(&mut self, tag: u8, frame: Option<&[u8]>) -> Result<bool, ProxyError> {
        match tag {
            be::PARAMETER_STATUS => {
                let (k, v) = backend::parameter_status(frame.expect("decoded"))?;
                let (k, v) = (String::from_utf8_lossy(k), String::from_utf8_lossy(v));
                self.told.set(&k, &v);
                self.settings.record_change(&k, &v);
                if k == "application_name" {
                    if let Some(o) = self.observer.as_mut() {
                        o.set_application_name(&v);
                    }
                }
                let signature = self.settings.signature();
                let server = self.attached();
                server.applied.insert(k.to_string(), v.to_string());
                server.applied_signature = signature;
            }
            be::READY_FOR_QUERY => {
                let status = backend::ready_for_query_status(frame.expect("decoded"))?;
                if let Some(g) = self.guards.as_mut() {
                    let now = MonoTime::now();
                    g.clock.busy_since = now;
                    g.clock.cancel_sent_at = None;
                    g.cancelled = false;
                    if status == TransactionStatus::Idle {
                        g.clock.transaction_since = None;
                    } else if g.clock.transaction_since.is_none() {
                        g.clock.transaction_since = Some(now);
                    }
                }
                self.attached().status = status;
                self.tally.ready(status);
                if let Some(observer) = self.observer.as_mut() {
                    observer.ready(status != TransactionStatus::Idle);
                }
            }
            be::ERROR_RESPONSE => {
                let severity = backend::error_fields(frame.expect("decoded"))?.severity;
                if severity == b"FATAL" || severity == b"PANIC" {
                    self.server_said_goodbye = true;
                }
                if let Some(g) = self.guards.as_ref().filter(|g| g.cancelled) {
                    let code = backend::error_fields(frame.expect("decoded"))?.code;
                    if code == b"57014" {
                        self.error_replacement = Some(Box::new(backend::error_response(
                            Severity::Error,
                            "57014",
                            &format!(
                                "canceling statement due to query_timeout ({} s)",
                                g.settings.query_timeout.as_secs_f64()
                            ),
                        )));
                    }
                }
            }
            _ => {}
        }
        if let (Some(observer), Some(tracked)) = (
            self.observer.as_mut(),
            self.replies.head_mut().and_then(Request::tracked_mut),
        ) {
            if !matches!(
                tag,
                be::NOTICE_RESPONSE | be::NOTIFICATION_RESPONSE | be::PARAMETER_STATUS
            ) {
                if let Some(outcome) = super::observe::outcome(tag, frame) {
                    observer.complete(tracked, outcome, MonoTime::now().as_nanos());
                }
            }
        }
        match self.replies.on_server_message(tag) {
            ServerReply::Unsolicited => Ok(true),
            ServerReply::Partial { swallow } => Ok(!swallow),
            ServerReply::Completed { learned, swallow } => {
                if let Some(id) = learned {
                    self.pool.remember_statement(id);
                }
                Ok(!swallow)
            }
            ServerReply::Failed { request, skipped } => {
                if matches!(request, Request::StaleStatement) {
                    self.error_replacement = Some(Box::new(stale_statement_error()));
                }
                // A renamed statement the server no longer has, or whose
                // plan went stale after a schema change: prepare it
                // afresh next time.
                if let (Some(id), Some(frame)) = (request.uses(), frame) {
                    let code = backend::error_fields(frame)?.code;
                    if code == b"26000" || code == b"0A000" {
                        self.attached().statements.remove(id);
                    }
                    if code == b"0A000" {
                        self.pool.statement_changed(id);
                    }
                }
                self.forget_failed(request);
                for r in skipped {
                    self.forget_failed(r);
                }
                Ok(true)
            }
        }
    }

    /// A request the server did not carry out: whatever pgvigil recorded
    /// about statements it would have created is forgotten.
    fn forget_failed(&mut self, failed: Request) {
        if let Request::Parse(Some((id, name))) = failed {
            self.attached().statements.remove(id);
            if !name.is_empty() && self.statements.get(&name).map(|p| p.id) == Some(id) {
                self.statements.remove(&name);
            }
        }
    }

    /// Ends the session: what was queued for the client goes out, and the
    /// server connection goes back to the pool only if it is clean.
    async fn finish(&mut self, exit: &Exit) {
        self.finished = true;
        if let Some(o) = self.observer.as_mut() {
            o.finish();
        }
        if let Exit::Error(e) = exit {
            let e: &ProxyError = e;
            let message = match e {
                ProxyError::ServerClosed | ProxyError::ServerIo(_) => {
                    "server connection lost: the server closed the connection or crashed while serving this client".to_string()
                }
                other => other.to_string(),
            };
            // PostgreSQL's own FATAL already told the client why the
            // server went away: a second error would be read as the
            // answer to its next request.
            let told = self.server_said_goodbye
                && matches!(e, ProxyError::ServerClosed | ProxyError::ServerIo(_));
            if !matches!(e, ProxyError::ClientIo(_)) && !told {
                self.to_client.push(backend::error_response(
                    Severity::Fatal,
                    e.sqlstate(),
                    &message,
                ));
            }
            if let ProxyError::ServerClosed | ProxyError::ServerIo(_) = e {
                if let Some(mut s) = self.server.take() {
                    s.settled = false;
                }
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !self.to_client.is_empty() || self.client.has_pending_output() {
                let writable = std::future::poll_fn(|cx| self.client.poll_write_ready(cx)).await;
                if writable.is_err() || self.to_client.try_flush(&mut self.client).is_err() {
                    break;
                }
            }
        })
        .await;
        self.cancel.set(None);
        let held_state = self.pinned != 0 || self.state_dirty;
        if self.pinned != 0 {
            self.pool.unpin();
            self.pinned = 0;
        }
        if let Some(mut server) = self.server.take() {
            let clean = self.server_settled_with(&server);
            server.settled = clean;
            if clean && !self.transaction_mode() {
                server.reset_and_release().await;
            } else if clean && held_state {
                // What pinned the client (or may have) must not reach the
                // next one.
                server.discard_and_release().await;
            }
        }
    }

    /// The server has answered everything and sits outside a transaction.
    fn server_settled_with(&self, s: &PooledServer) -> bool {
        s.status == TransactionStatus::Idle
            && self.replies.is_idle()
            && self.to_server.is_empty()
            && self.passthrough == 0
            && s.buf.is_empty()
    }
}

/// What the forwarding loop does after an event.
enum Next {
    /// Act on what the client sent (which may wait for a server).
    ClientData,
    Continue,
    ClientLeft,
}

enum Event {
    /// Bytes read from the client (0: it closed the connection).
    ClientRead(io::Result<usize>),
    /// Bytes read from the server (0: it closed the connection).
    ServerRead(io::Result<usize>),
    Writable(Result<(), ProxyError>),
    /// The leak guards' timer fired.
    Guard,
}

thread_local! {
    /// Where a client's data lands before it is known how much there is.
    static CLIENT_SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; CLIENT_READ_CHUNK].into_boxed_slice());
}

/// Reads a client's data without a read buffer of its own: with
/// thousands of clients connected and mostly quiet, a buffer each would
/// be most of what a client costs. The data lands in this thread's
/// scratch space and only what arrived is copied into `buf` (a request
/// is usually a few hundred bytes). When `buf` already has room, as
/// while a large frame comes in (`on_client_data` reserves it), the
/// data is read there directly.
fn poll_read_client(
    stream: &mut Transport,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() >= CLIENT_READ_CHUNK {
        return poll_read_buf(stream, buf, CLIENT_READ_CHUNK, cx);
    }
    CLIENT_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut read_buf = ReadBuf::new(&mut scratch[..]);
        match Pin::new(stream).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) => {
                let filled = read_buf.filled();
                buf.extend_from_slice(filled);
                Poll::Ready(Ok(filled.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Reads what the socket has into `buf`'s spare room (at least `chunk`
/// bytes of it), or registers the task for the socket's next readiness.
/// `AsyncRead::poll_read` clears the readiness after a short read, which
/// `try_read_buf` does not.
fn poll_read_buf(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    chunk: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    buf.reserve(chunk);
    let mut read_buf = ReadBuf::uninit(buf.spare_capacity_mut());
    match Pin::new(stream).poll_read(cx, &mut read_buf) {
        Poll::Ready(Ok(())) => {
            let n = read_buf.filled().len();
            // SAFETY: `poll_read` initialized the first `n` bytes of the
            // spare capacity (`ReadBuf::filled`), directly after `len`.
            unsafe { buf.set_len(buf.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

enum Action {
    Keep,
    Replace(Vec<Bytes>),
    /// The common case of `Replace`, without allocating a list: a Bind or
    /// Describe renamed for a server that already has the statement.
    ReplaceOne(Bytes),
    Drop,
}

impl Action {
    /// `message` instead of the frame, after `before` (messages that
    /// prepare the statement on this server, usually none).
    fn after(mut before: Vec<Bytes>, message: Bytes) -> Action {
        if before.is_empty() {
            return Action::ReplaceOne(message);
        }
        before.push(message);
        Action::Replace(before)
    }
}

/// What the client is told when a guard ends its session: PostgreSQL's
/// own SQLSTATE and wording for the same timeout, naming pgvigil's
/// setting.
fn guard_error(guard: Guard) -> ProxyError {
    let (code, what) = match guard {
        Guard::Query | Guard::CancelIgnored => (
            "57014",
            "canceling statement due to query_timeout: the server did not stop it after a cancel request",
        ),
        Guard::IdleTransaction => (
            "25P03",
            "terminating connection due to idle-in-transaction timeout",
        ),
        Guard::ClientIdle => ("57P05", "terminating connection due to idle-session timeout"),
        Guard::Transaction => ("25P04", "terminating connection due to transaction timeout"),
    };
    ProxyError::client(code, format!("{what} ({})", guard.setting()))
}

/// PostgreSQL's answer to a message type it does not accept after login.
fn invalid_message(tag: u8) -> ProxyError {
    ProxyError::client("08P01", format!("invalid frontend message type {tag}"))
}

/// PostgreSQL's error for a prepared statement whose result type changed,
/// field for field: asyncpg recognises it by the routine and re-prepares.
fn stale_statement_error() -> Bytes {
    backend::error_response_with(
        Severity::Error,
        "0A000",
        "cached plan must not change result type",
        &[(b'F', "plancache.c"), (b'R', "RevalidateCachedQuery")],
    )
}

#[cfg(test)]
mod tests {
    /// A session is boxed for as long as its client is connected, in the
    /// allocator's next size class up (640, 768, 896 bytes): a field that
    /// grows it past 640 bytes costs every connected client 128.
    #[test]
    fn a_session_fits_the_allocators_640_byte_class() {
        let size = std::mem::size_of::<super::Session>();
        assert!(size <= 640, "Session is {size} bytes");
    }
}
