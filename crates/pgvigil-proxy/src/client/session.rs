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
//! reply through `expected`, the one place where each statement and its
//! completion are seen.

use std::collections::{HashMap, VecDeque};
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
use super::observe::{Observer, Tracked};
use super::settings::ClientSettings;
use crate::cancel::CancelTarget;
use crate::error::ProxyError;
use crate::ids::ClientId;
use crate::outqueue::{OutQueue, Splicer};
use crate::pool::{PooledServer, ServerPool};
use crate::pool_stats::SessionTally;
use crate::prepared::{ClientStatements, Prepared, StatementId};
use crate::registry::ClientEntry;
use crate::stats;

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

/// A request whose reply has not arrived yet.
#[derive(Debug)]
enum Expect {
    /// The server will answer; pass the answer on.
    Forward(Request),
    /// The server will answer a message pgvigil added; drop the answer.
    Swallow(Request),
    /// pgvigil answers itself, in this position of the reply stream.
    Reply(Bytes),
}

#[derive(Debug)]
enum Request {
    /// A Parse; for a renamed statement, what it created, so a failure
    /// can be forgotten.
    Parse(Option<(StatementId, Vec<u8>)>),
    /// With the renamed statement it uses, if any.
    Bind(Option<StatementId>),
    Describe(Option<StatementId>),
    /// With the statement being timed, when analytics are on.
    Execute(Option<Tracked>),
    /// pgvigil's stand-in for a stale statement (`fail_as_stale`): its
    /// error is replaced by PostgreSQL's own.
    StaleStatement,
    Close,
    /// Simple Query and FunctionCall end with ReadyForQuery.
    UntilReady(Option<Tracked>),
    /// So does Sync, except while the server is in COPY FROM STDIN,
    /// when it ignores Sync.
    Sync,
}

impl Request {
    /// Whether a server message with this tag is the final reply.
    fn completed_by(&self, tag: u8) -> bool {
        match self {
            Request::Parse(_) => tag == be::PARSE_COMPLETE,
            Request::Bind(_) => tag == be::BIND_COMPLETE,
            Request::Close => tag == be::CLOSE_COMPLETE,
            Request::Describe(_) => tag == be::ROW_DESCRIPTION || tag == be::NO_DATA,
            Request::Execute(_) | Request::StaleStatement => matches!(
                tag,
                be::COMMAND_COMPLETE | be::EMPTY_QUERY_RESPONSE | be::PORTAL_SUSPENDED
            ),
            Request::UntilReady(_) | Request::Sync => tag == be::READY_FOR_QUERY,
        }
    }

    /// Extended-protocol requests: after an error the server skips them
    /// until Sync.
    fn skipped_after_error(&self) -> bool {
        !matches!(self, Request::UntilReady(_) | Request::Sync)
    }

    fn tracked_mut(&mut self) -> Option<&mut Tracked> {
        match self {
            Request::Execute(t) | Request::UntilReady(t) => t.as_mut(),
            _ => None,
        }
    }
}

/// Why the loop ended.
pub(crate) enum Exit {
    ClientLeft,
    Error(ProxyError),
}

pub(crate) struct Session {
    pub(crate) id: ClientId,
    pub(crate) client: tokio::net::TcpStream,
    pub(crate) client_buf: BytesMut,
    pub(crate) pool: Arc<ServerPool>,
    pub(crate) settings: ClientSettings,
    /// ParameterStatus values this client has been told.
    pub(crate) told: HashMap<String, String>,
    pub(crate) cancel: Arc<CancelTarget>,
    pub(crate) max_frame: usize,

    server: Option<PooledServer>,
    to_client: OutQueue,
    to_server: OutQueue,
    expected: VecDeque<Expect>,
    /// An extended-protocol request failed and no Sync was sent after it:
    /// the server ignores everything until the next Sync.
    skipping_until_sync: bool,
    /// Extended-protocol messages were sent since the last Sync.
    unsynced: bool,
    /// Bytes of a server frame still to pass through unexamined.
    passthrough: usize,
    /// The server is in COPY FROM STDIN, waiting for the client's data.
    copy_in: bool,
    /// A server message to be replaced by this one on its way out.
    error_replacement: Option<Bytes>,
    statements: ClientStatements,
    /// Which statements and portals run DISCARD ALL / DEALLOCATE ALL.
    resets: ResetTracker,
    observer: Option<Observer>,
    /// This client's line in SHOW CLIENTS.
    entry: Arc<ClientEntry>,
    /// This client's share of SHOW STATS.
    tally: SessionTally,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: ClientId,
        client: tokio::net::TcpStream,
        client_buf: BytesMut,
        pool: Arc<ServerPool>,
        settings: ClientSettings,
        told: HashMap<String, String>,
        cancel: Arc<CancelTarget>,
        max_frame: usize,
        observer: Option<Observer>,
        entry: Arc<ClientEntry>,
    ) -> Session {
        let tally = SessionTally::new(pool.tally.clone());
        Session {
            id,
            client,
            client_buf,
            pool,
            settings,
            told,
            cancel,
            max_frame,
            server: None,
            to_client: OutQueue::default(),
            to_server: OutQueue::default(),
            expected: VecDeque::new(),
            skipping_until_sync: false,
            unsynced: false,
            passthrough: 0,
            copy_in: false,
            error_replacement: None,
            statements: ClientStatements::default(),
            resets: ResetTracker::default(),
            observer,
            entry,
            tally,
        }
    }

    fn transaction_mode(&self) -> bool {
        self.pool.mode() == PoolMode::Transaction
    }

    pub(crate) async fn run(mut self) -> Exit {
        let exit = self.forward().await;
        self.finish(&exit).await;
        exit
    }

    async fn forward(&mut self) -> Exit {
        // Frames may have arrived together with the startup message.
        match self.on_client_data().await {
            Ok(true) => {}
            Ok(false) => return Exit::ClientLeft,
            Err(e) => return Exit::Error(e),
        }
        loop {
            if let Err(e) = self.flush_and_maybe_release() {
                return Exit::Error(e);
            }
            if self.to_server.len() < QUEUE_LIMIT && self.client_frame_ready() {
                match self.on_client_data().await {
                    Ok(true) => continue,
                    Ok(false) => return Exit::ClientLeft,
                    Err(e) => return Exit::Error(e),
                }
            }
            let event = std::future::poll_fn(|cx| self.poll_event(cx)).await;
            let step = match event {
                Event::ClientRead(Ok(0)) => return Exit::ClientLeft,
                Event::ClientRead(Ok(n)) => {
                    stats::count_client_bytes(n);
                    self.tally.received += n as u64;
                    self.on_client_data().await
                }
                Event::ClientRead(Err(e)) => Err(ProxyError::ClientIo(e)),
                Event::ServerRead(Ok(0)) => Err(ProxyError::ServerClosed),
                Event::ServerRead(Ok(n)) => {
                    stats::count_server_bytes(n);
                    self.tally.sent += n as u64;
                    self.on_server_data().map(|()| true)
                }
                Event::ServerRead(Err(e)) => Err(ProxyError::ServerIo(e)),
                Event::Writable(r) => r.map(|()| true),
            };
            match step {
                Ok(true) => {}
                Ok(false) => return Exit::ClientLeft,
                Err(e) => return Exit::Error(e),
            }
        }
    }

    /// Waits for whichever direction can progress, reading in the same
    /// step: data that is there is read at once (one `recv`), and a short
    /// read clears the socket's readiness, so the next wait goes to epoll
    /// instead of trying another `recv` that would only say EAGAIN. The
    /// server is served first: its replies free it for other clients.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let want_client_read = self.to_server.len() < QUEUE_LIMIT;
        let want_client_write = !self.to_client.is_empty();
        if let Some(server) = self.server.as_mut() {
            let server = &mut **server;
            if self.to_client.len() < QUEUE_LIMIT {
                if let Poll::Ready(r) =
                    poll_read_buf(&mut server.stream, &mut server.buf, READ_CHUNK, cx)
                {
                    return Poll::Ready(Event::ServerRead(r));
                }
            }
            if !self.to_server.is_empty() {
                if let Poll::Ready(r) = server.stream.poll_write_ready(cx) {
                    return Poll::Ready(Event::Writable(r.map_err(ProxyError::ServerIo)));
                }
            }
        }
        if want_client_read {
            if let Poll::Ready(r) = poll_read_buf(
                &mut self.client,
                &mut self.client_buf,
                CLIENT_READ_CHUNK,
                cx,
            ) {
                return Poll::Ready(Event::ClientRead(r));
            }
        }
        if want_client_write {
            if let Poll::Ready(r) = self.client.poll_write_ready(cx) {
                return Poll::Ready(Event::Writable(r.map_err(ProxyError::ClientIo)));
            }
        }
        Poll::Pending
    }

    /// Writes what the sockets take now, then lets go of the server if the
    /// transaction is over (transaction mode).
    fn flush_and_maybe_release(&mut self) -> Result<(), ProxyError> {
        self.to_client
            .try_flush(&self.client)
            .map_err(ProxyError::ClientIo)?;
        if let Some(server) = self.server.as_ref() {
            self.to_server
                .try_flush(&server.stream)
                .map_err(ProxyError::ServerIo)?;
        }
        if self.transaction_mode() && self.server_settled() {
            self.release_server();
        }
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

    /// Gets a server connection for this client and makes it carry the
    /// client's settings.
    async fn attach_server(&mut self) -> Result<(), ProxyError> {
        let mut server = self.pool.acquire_for(Some(&self.entry)).await?;
        self.cancel.set(Some(server.backend_key));
        if server.applied_signature != self.settings.signature() {
            if let Some(sql) = self.settings.sql_to_apply(&server.applied) {
                match server.run_own_query(&sql).await {
                    Ok(reported) => {
                        for (k, v) in reported {
                            self.tell_client(&k, &v);
                        }
                    }
                    Err(ProxyError::ServerLogin { code, message }) => {
                        // PostgreSQL would have refused the login; the
                        // client's setting is invalid, not the session.
                        tracing::warn!(client = %self.id, %code, "could not apply a startup setting: {message}");
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
        server.settled = false;
        self.server = Some(server);
        Ok(())
    }

    fn tell_client(&mut self, name: &str, value: &str) {
        if self.told.get(name).map(String::as_str) != Some(value) {
            let mut buf = BytesMut::new();
            backend::write_parameter_status(&mut buf, name.as_bytes(), value.as_bytes());
            self.to_client.push(buf.freeze());
            self.told.insert(name.to_string(), value.to_string());
        }
    }

    /// Handles the complete frames the client has sent. Returns false when
    /// the client said goodbye.
    async fn on_client_data(&mut self) -> Result<bool, ProxyError> {
        while self.to_server.len() < QUEUE_LIMIT {
            let Some(h) = FrameHeader::peek(&self.client_buf, self.max_frame)? else {
                return Ok(true);
            };
            if self.client_buf.len() < h.frame_len {
                self.client_buf.reserve(h.frame_len - self.client_buf.len());
                return Ok(true);
            }
            if h.tag == fe::TERMINATE {
                return Ok(false);
            }
            if self.server.is_none() {
                if self.answer_without_server(h)? {
                    continue;
                }
                self.attach_server().await?;
            }
            self.tally.request_sent();
            self.process_client_frames()?;
        }
        Ok(true)
    }

    /// A complete client frame is buffered but not yet handled (the
    /// queue to the server was full when it arrived).
    fn client_frame_ready(&self) -> bool {
        matches!(
            FrameHeader::peek(&self.client_buf, self.max_frame),
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
            Some(LocalCommand::Listen) => {
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
            let Some(h) = FrameHeader::peek(&self.client_buf[at..], self.max_frame)? else {
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
                o.on_parse(&name, &query);
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
            while let Some(h) = FrameHeader::peek(sp.pending(), self.max_frame)? {
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
        self.to_server = out;
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
        let extended = matches!(
            tag,
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE | fe::FLUSH
        );
        if extended {
            self.unsynced = true;
        }
        if self.skipping_until_sync && extended {
            // The server discards these; so does pgvigil's bookkeeping.
            return Ok(Action::Keep);
        }
        let action = match tag {
            fe::QUERY => {
                let text = frontend::query_text(frame)?;
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
                let tracked = self.observer.as_mut().and_then(|o| o.track_query(text));
                self.expected
                    .push_back(Expect::Forward(Request::UntilReady(tracked)));
                action
            }
            fe::FUNCTION_CALL => {
                self.expected
                    .push_back(Expect::Forward(Request::UntilReady(None)));
                Action::Keep
            }
            fe::SYNC if self.copy_in => Action::Keep, // ignored by the server
            fe::SYNC => {
                self.skipping_until_sync = false;
                self.unsynced = false;
                self.expected.push_back(Expect::Forward(Request::Sync));
                Action::Keep
            }
            fe::COPY_DONE | fe::COPY_FAIL => {
                self.copy_in = false;
                Action::Keep
            }
            fe::PARSE => {
                let view = ParseView::new(frame)?;
                if let Some(o) = self.observer.as_mut() {
                    o.on_parse(view.statement, view.query);
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
                    self.expected
                        .push_back(Expect::Forward(Request::Parse(None)));
                    Action::Keep
                }
            }
            fe::BIND => {
                let view = BindView::new(frame)?;
                if let Some(o) = self.observer.as_mut() {
                    o.on_bind(view.portal, view.statement, view.rest);
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
                self.expected.push_back(Expect::Forward(Request::Bind(id)));
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
                self.expected
                    .push_back(Expect::Forward(Request::Describe(id)));
                action
            }
            fe::CLOSE => {
                let view = TargetView::new(frame)?;
                if view.kind == TARGET_STATEMENT {
                    if let Some(o) = self.observer.as_mut() {
                        o.on_close_statement(view.name);
                    }
                }
                if rewrite && view.kind == TARGET_STATEMENT && !view.name.is_empty() {
                    // The server-side statement stays for other clients;
                    // only this client's name goes.
                    self.statements.remove(view.name);
                    self.expected
                        .push_back(Expect::Reply(backend::close_complete()));
                    Action::Drop
                } else {
                    self.expected.push_back(Expect::Forward(Request::Close));
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
                    Some(o) => o.track_execute(portal),
                    None => None,
                };
                self.expected
                    .push_back(Expect::Forward(Request::Execute(tracked)));
                Action::Keep
            }
            // Flush, CopyData/CopyDone/CopyFail, and types this proxy does
            // not know: forwarded, no reply of their own.
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
            self.expected.push_back(Expect::Swallow(request));
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
        self.expected.push_back(Expect::Swallow(Request::Close));
        self.expected.push_back(match client_name {
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
        while let Some(Expect::Reply(_)) = self.expected.front() {
            if let Some(Expect::Reply(bytes)) = self.expected.pop_front() {
                self.to_client.push(bytes);
            }
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
                if h.tag == be::DATA_ROW
                    && matches!(self.expected.front(), Some(Expect::Forward(_)))
                {
                    let n = h.frame_len.min(sp.pending().len());
                    sp.keep(n);
                    self.passthrough = h.frame_len - n;
                    continue;
                }
                let decoded = matches!(
                    h.tag,
                    be::READY_FOR_QUERY | be::ERROR_RESPONSE | be::PARAMETER_STATUS
                ) || (h.tag == be::COMMAND_COMPLETE && self.observer.is_some())
                    || matches!(self.expected.front(), Some(Expect::Swallow(_)));
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
                while let Some(Expect::Reply(_)) = self.expected.front() {
                    if let Some(Expect::Reply(bytes)) = self.expected.pop_front() {
                        sp.insert(bytes);
                    }
                }
                let frame = if decoded {
                    Some(&sp.pending()[..h.frame_len])
                } else {
                    None
                };
                let forward = self.route_server_message(h.tag, frame)?;
                if let Some(replacement) = self.error_replacement.take() {
                    sp.skip(h.frame_len);
                    sp.insert(replacement);
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
        self.to_client = out;
        self.emit_leading_replies();
        result
    }

    /// Bookkeeping for one server message; returns whether the client
    /// gets it.
    fn route_server_message(&mut self, tag: u8, frame: Option<&[u8]>) -> Result<bool, ProxyError> {
        match tag {
            be::NOTICE_RESPONSE | be::NOTIFICATION_RESPONSE => return Ok(true),
            be::PARAMETER_STATUS => {
                let (k, v) = backend::parameter_status(frame.expect("decoded"))?;
                let (k, v) = (String::from_utf8_lossy(k), String::from_utf8_lossy(v));
                self.told.insert(k.to_string(), v.to_string());
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
                return Ok(true);
            }
            be::READY_FOR_QUERY => {
                self.attached().status = backend::ready_for_query_status(frame.expect("decoded"))?;
            }
            be::COPY_IN_RESPONSE => {
                // Syncs the client sent after the COPY's Execute, before
                // its data, will be ignored by the server: expect no reply.
                self.copy_in = true;
                let mut i = 1;
                while i < self.expected.len() {
                    if matches!(self.expected[i], Expect::Forward(Request::Sync)) {
                        self.expected.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            _ => {}
        }
        if tag == be::READY_FOR_QUERY {
            let status = self.attached().status;
            self.tally.ready(status);
            if let Some(observer) = self.observer.as_mut() {
                observer.on_ready(status);
            }
        }
        let (swallow, skipped_after_error, completed, learned, uses) = match self
            .expected
            .front_mut()
        {
            None => return Ok(true), // e.g. a FATAL before the server closes
            Some(Expect::Reply(_)) => unreachable!("replies were emitted"),
            Some(head) => {
                let swallow = matches!(head, Expect::Swallow(_));
                let (Expect::Forward(r) | Expect::Swallow(r)) = head else {
                    unreachable!("matched above");
                };
                if let (Some(observer), Some(tracked)) = (self.observer.as_mut(), r.tracked_mut()) {
                    observer.on_reply(tracked, tag, frame);
                }
                let learned = match r {
                    Request::Parse(Some((id, _))) => Some(*id),
                    _ => None,
                };
                let uses = match r {
                    Request::Bind(id) | Request::Describe(id) => *id,
                    _ => None,
                };
                if tag == be::ERROR_RESPONSE && matches!(r, Request::StaleStatement) {
                    self.error_replacement = Some(stale_statement_error());
                }
                (
                    swallow,
                    r.skipped_after_error(),
                    r.completed_by(tag),
                    learned,
                    uses,
                )
            }
        };
        if tag == be::ERROR_RESPONSE && skipped_after_error {
            // A renamed statement the server no longer has, or whose plan
            // went stale after a schema change: prepare it afresh next time.
            if let (Some(id), Some(frame)) = (uses, frame) {
                let code = backend::error_fields(frame)?.code;
                if code == b"26000" || code == b"0A000" {
                    self.attached().statements.remove(id);
                }
                if code == b"0A000" {
                    self.pool.statement_changed(id);
                }
            }
            // The failed request is done, and the server skips the rest
            // up to the next Sync.
            let failed = self.expected.pop_front();
            self.forget_failed(failed);
            let mut synced = false;
            while let Some(e) = self.expected.front() {
                match e {
                    Expect::Forward(Request::UntilReady(_) | Request::Sync)
                    | Expect::Swallow(Request::UntilReady(_) | Request::Sync) => {
                        synced = true;
                        break;
                    }
                    _ => {
                        let skipped = self.expected.pop_front();
                        self.forget_failed(skipped);
                    }
                }
            }
            if !synced {
                self.skipping_until_sync = true;
            }
            // An error answers the client's request even when it was for
            // a Parse pgvigil added: the client's Bind fails with it.
            return Ok(true);
        }
        if completed {
            if let Some(id) = learned {
                self.pool.remember_statement(id);
            }
            self.expected.pop_front();
            return Ok(!swallow);
        }
        Ok(true)
    }

    /// A request the server did not carry out: whatever pgvigil recorded
    /// about statements it would have created is forgotten.
    fn forget_failed(&mut self, failed: Option<Expect>) {
        if let Some(Expect::Forward(Request::Parse(Some((id, name)))))
        | Some(Expect::Swallow(Request::Parse(Some((id, name))))) = failed
        {
            self.attached().statements.remove(id);
            if !name.is_empty() && self.statements.get(&name).map(|p| p.id) == Some(id) {
                self.statements.remove(&name);
            }
        }
    }

    /// Ends the session: what was queued for the client goes out, and the
    /// server connection goes back to the pool only if it is clean.
    async fn finish(&mut self, exit: &Exit) {
        if let Some(o) = self.observer.as_mut() {
            o.finish();
        }
        if let Exit::Error(e) = exit {
            let message = match e {
                ProxyError::ServerClosed | ProxyError::ServerIo(_) => {
                    "server connection lost: the server closed the connection or crashed while serving this client".to_string()
                }
                other => other.to_string(),
            };
            if !matches!(e, ProxyError::ClientIo(_)) {
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
            while !self.to_client.is_empty() {
                if self.client.writable().await.is_err()
                    || self.to_client.try_flush(&self.client).is_err()
                {
                    break;
                }
            }
        })
        .await;
        self.cancel.set(None);
        if let Some(mut server) = self.server.take() {
            let clean = self.server_settled_with(&server);
            server.settled = clean;
            if clean && !self.transaction_mode() {
                server.reset_and_release().await;
            }
        }
    }

    /// The server has answered everything and sits outside a transaction.
    fn server_settled_with(&self, s: &PooledServer) -> bool {
        s.status == TransactionStatus::Idle
            && self.expected.is_empty()
            && !self.unsynced
            && self.to_server.is_empty()
            && self.passthrough == 0
            && s.buf.is_empty()
    }
}

enum Event {
    /// Bytes read from the client (0: it closed the connection).
    ClientRead(io::Result<usize>),
    /// Bytes read from the server (0: it closed the connection).
    ServerRead(io::Result<usize>),
    Writable(Result<(), ProxyError>),
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
    use super::*;

    #[test]
    fn error_skips_extended_requests_but_not_ready() {
        assert!(Request::Bind(None).skipped_after_error());
        assert!(!Request::UntilReady(None).skipped_after_error());
        assert!(Request::Describe(None).completed_by(be::NO_DATA));
        assert!(!Request::Describe(None).completed_by(be::PARAMETER_DESCRIPTION));
    }
}
