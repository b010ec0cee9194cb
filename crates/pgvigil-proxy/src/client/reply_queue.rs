//! Which server reply answers which client request.
//!
//! PostgreSQL answers requests strictly in order, but not one reply per
//! message: an error makes it skip the rest of an extended-protocol batch
//! up to Sync, COPY FROM STDIN makes it ignore Syncs, and pgvigil itself
//! adds requests (re-preparing a statement on another server connection)
//! whose replies the client must never see, and answers some requests
//! itself. This queue is that bookkeeping as plain data: the session
//! feeds it the tag of every client message it forwards and of every
//! server message it reads, and asks it what to do. No sockets, no
//! clocks, so every rule below has a table-driven test.

use std::collections::VecDeque;

use bytes::Bytes;
use pgvigil_wire::backend::tag as be;
use pgvigil_wire::frontend::tag as fe;

use crate::prepared::StatementId;
use pgvigil_insight::Tracked;

/// A request whose reply has not arrived yet.
#[derive(Debug)]
pub(crate) enum Expect {
    /// The server will answer; pass the answer on.
    Forward(Request),
    /// The server will answer a message pgvigil added; drop the answer.
    Swallow(Request),
    /// pgvigil answers itself, in this position of the reply stream.
    Reply(Bytes),
}

#[derive(Debug)]
pub(crate) enum Request {
    /// A Parse; for a renamed statement, what it created, so a failure
    /// can be forgotten.
    Parse(Option<(StatementId, Vec<u8>)>),
    /// With the renamed statement it uses, if any.
    Bind(Option<StatementId>),
    Describe(Option<StatementId>),
    /// With the statement being timed, when analytics are on.
    Execute(Option<Tracked>),
    /// pgvigil's stand-in for a stale statement: its error is replaced
    /// by PostgreSQL's own.
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

    pub(crate) fn tracked_mut(&mut self) -> Option<&mut Tracked> {
        match self {
            Request::Execute(t) | Request::UntilReady(t) => t.as_mut(),
            _ => None,
        }
    }

    /// The renamed statement a Bind or Describe names.
    pub(crate) fn uses(&self) -> Option<StatementId> {
        match self {
            Request::Bind(id) | Request::Describe(id) => *id,
            _ => None,
        }
    }
}

/// What a client message means for the reply stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    /// The session decides what it expects (Query, Parse, Bind, Describe,
    /// Close, Execute).
    Track,
    /// Forwarded with nothing to expect: Flush, COPY data, a Sync the
    /// server ignores during COPY, a request the server will skip.
    Untracked,
    /// PostgreSQL closes the connection on this type after login
    /// ("invalid frontend message type"). Forwarding it would leave a
    /// server connection that dies under the next client of the pool.
    Invalid,
}

/// How a server message relates to the outstanding requests.
#[derive(Debug)]
pub(crate) enum ServerReply {
    /// Not part of any reply pgvigil is waiting for (a notice, a FATAL
    /// before the server closes): the client gets it.
    Unsolicited,
    /// Part of the first request's reply, not its end.
    Partial { swallow: bool },
    /// The end of the first request's reply; `learned` is the renamed
    /// statement a Parse created on the server.
    Completed {
        learned: Option<StatementId>,
        swallow: bool,
    },
    /// An ErrorResponse: the first request failed, and the server will
    /// skip `skipped` (the rest of the batch up to Sync). The client
    /// always gets the error, even for a request pgvigil added: its own
    /// request behind it fails with it.
    Failed {
        request: Request,
        skipped: Vec<Request>,
    },
}

/// Frontend message types PostgreSQL accepts after login; any other
/// makes it end the session.
pub(crate) fn valid_after_login(tag: u8) -> bool {
    matches!(
        tag,
        fe::QUERY
            | fe::PARSE
            | fe::BIND
            | fe::EXECUTE
            | fe::FUNCTION_CALL
            | fe::CLOSE
            | fe::DESCRIBE
            | fe::FLUSH
            | fe::SYNC
            | fe::TERMINATE
            | fe::COPY_DATA
            | fe::COPY_DONE
            | fe::COPY_FAIL
    )
}

#[derive(Debug, Default)]
pub(crate) struct ReplyQueue {
    entries: VecDeque<Expect>,
    /// An extended-protocol request failed and no Sync was sent after it:
    /// the server ignores everything until the next Sync.
    skipping_until_sync: bool,
    /// Extended-protocol messages were sent since the last Sync.
    unsynced: bool,
    /// The server is in COPY FROM STDIN, waiting for the client's data.
    copy_in: bool,
}

impl ReplyQueue {
    /// Every request has its reply and no extended-protocol batch is open:
    /// nothing the server says next belongs to this client.
    pub(crate) fn is_idle(&self) -> bool {
        self.entries.is_empty() && !self.unsynced
    }

    /// Gives the list's storage back while nothing is outstanding (see
    /// `OutQueue::release_storage`): an extended-protocol batch leaves
    /// room for eight requests of 112 bytes each.
    pub(crate) fn release_storage(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            self.entries = VecDeque::new();
        }
    }

    pub(crate) fn push(&mut self, expect: Expect) {
        self.entries.push_back(expect);
    }

    /// Records a client message about to be forwarded. Sync and
    /// FunctionCall are expected here; the other requests are pushed by
    /// the session, which knows what they carry.
    pub(crate) fn on_client_message(&mut self, tag: u8) -> ClientMessage {
        if !valid_after_login(tag) {
            return ClientMessage::Invalid;
        }
        // Flush asks for nothing by itself: a bare one leaves no batch
        // open, and must not keep a server from going back to the pool.
        let extended = matches!(
            tag,
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE
        );
        if extended {
            self.unsynced = true;
            if self.skipping_until_sync {
                return ClientMessage::Untracked;
            }
        }
        match tag {
            fe::SYNC if self.copy_in => ClientMessage::Untracked,
            fe::SYNC => {
                self.skipping_until_sync = false;
                self.unsynced = false;
                self.push(Expect::Forward(Request::Sync));
                ClientMessage::Untracked
            }
            fe::FUNCTION_CALL => {
                self.push(Expect::Forward(Request::UntilReady(None)));
                ClientMessage::Untracked
            }
            fe::COPY_DONE | fe::COPY_FAIL => {
                self.copy_in = false;
                ClientMessage::Untracked
            }
            fe::QUERY | fe::PARSE | fe::BIND | fe::DESCRIBE | fe::CLOSE | fe::EXECUTE => {
                ClientMessage::Track
            }
            _ => ClientMessage::Untracked,
        }
    }

    /// A reply pgvigil makes itself, due now (everything before it has
    /// been answered).
    pub(crate) fn pop_own_reply(&mut self) -> Option<Bytes> {
        if !matches!(self.entries.front(), Some(Expect::Reply(_))) {
            return None;
        }
        match self.entries.pop_front() {
            Some(Expect::Reply(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The first request's reply goes to the client (rows may stream
    /// through unexamined).
    pub(crate) fn head_is_forwarded(&self) -> bool {
        matches!(self.entries.front(), Some(Expect::Forward(_)))
    }

    /// The first request's reply is dropped, so its messages must be
    /// read whole before deciding.
    pub(crate) fn head_is_swallowed(&self) -> bool {
        matches!(self.entries.front(), Some(Expect::Swallow(_)))
    }

    /// The first request, for the observer to see its reply.
    pub(crate) fn head_mut(&mut self) -> Option<&mut Request> {
        match self.entries.front_mut() {
            Some(Expect::Forward(r) | Expect::Swallow(r)) => Some(r),
            _ => None,
        }
    }

    /// Matches one server message against the first outstanding request.
    #[inline]
    /// pgvigil's own replies due first must have been taken
    /// (`pop_own_reply`).
    pub(crate) fn on_server_message(&mut self, tag: u8) -> ServerReply {
        if tag == be::NOTICE_RESPONSE
            || tag == be::NOTIFICATION_RESPONSE
            || tag == be::PARAMETER_STATUS
        {
            return ServerReply::Unsolicited;
        }
        if tag == be::COPY_IN_RESPONSE {
            // Syncs sent after the COPY's Execute, before its data, will
            // be ignored by the server: expect no reply to them.
            self.copy_in = true;
            let mut i = 1;
            while i < self.entries.len() {
                if matches!(self.entries[i], Expect::Forward(Request::Sync)) {
                    self.entries.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        let (swallow, request) = match self.entries.front() {
            None | Some(Expect::Reply(_)) => return ServerReply::Unsolicited,
            Some(Expect::Forward(r)) => (false, r),
            Some(Expect::Swallow(r)) => (true, r),
        };
        if tag == be::ERROR_RESPONSE && request.skipped_after_error() {
            let request = self.pop_request();
            let mut skipped = Vec::new();
            let mut synced = false;
            while let Some(e) = self.entries.front() {
                match e {
                    Expect::Forward(Request::UntilReady(_) | Request::Sync)
                    | Expect::Swallow(Request::UntilReady(_) | Request::Sync) => {
                        synced = true;
                        break;
                    }
                    Expect::Reply(_) => {
                        // pgvigil's own answer to a Close in the failed
                        // batch: PostgreSQL would have skipped the Close,
                        // so the client gets no CloseComplete.
                        self.entries.pop_front();
                    }
                    _ => skipped.push(self.pop_request()),
                }
            }
            if !synced {
                self.skipping_until_sync = true;
            }
            return ServerReply::Failed { request, skipped };
        }
        if request.completed_by(tag) {
            let learned = match request {
                Request::Parse(Some((id, _))) => Some(*id),
                _ => None,
            };
            // Dropped where it lies: moving a request (with what the
            // observer tracks) out costs a copy per reply.
            self.entries.pop_front();
            return ServerReply::Completed { learned, swallow };
        }
        ServerReply::Partial { swallow }
    }

    fn pop_request(&mut self) -> Request {
        match self.entries.pop_front() {
            Some(Expect::Forward(r) | Expect::Swallow(r)) => r,
            // Callers look at the head first.
            _ => Request::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact name for each expectation, for tables.
    fn names(q: &ReplyQueue) -> Vec<String> {
        q.entries
            .iter()
            .map(|e| match e {
                Expect::Forward(r) => short(r).to_string(),
                Expect::Swallow(r) => format!("~{}", short(r)),
                Expect::Reply(_) => "own".to_string(),
            })
            .collect()
    }

    fn short(r: &Request) -> &'static str {
        match r {
            Request::Parse(_) => "P",
            Request::Bind(_) => "B",
            Request::Describe(_) => "D",
            Request::Execute(_) => "E",
            Request::StaleStatement => "stale",
            Request::Close => "C",
            Request::UntilReady(_) => "Q",
            Request::Sync => "S",
        }
    }

    /// Feeds client tags as the session would: tracked requests get
    /// their plain expectation.
    fn client(q: &mut ReplyQueue, tags: &[u8]) {
        for &tag in tags {
            if q.on_client_message(tag) == ClientMessage::Track {
                q.push(Expect::Forward(match tag {
                    fe::QUERY => Request::UntilReady(None),
                    fe::PARSE => Request::Parse(None),
                    fe::BIND => Request::Bind(None),
                    fe::DESCRIBE => Request::Describe(None),
                    fe::CLOSE => Request::Close,
                    fe::EXECUTE => Request::Execute(None),
                    _ => unreachable!(),
                }));
            }
        }
    }

    /// Feeds server tags; returns one letter per message: f(orwarded
    /// partial), c(ompleted), x (failed), u(nsolicited), s(wallowed).
    fn server(q: &mut ReplyQueue, tags: &[u8]) -> String {
        tags.iter()
            .map(|&tag| match q.on_server_message(tag) {
                ServerReply::Unsolicited => 'u',
                ServerReply::Partial { swallow: false } => 'f',
                ServerReply::Partial { swallow: true } => 's',
                ServerReply::Completed { swallow: false, .. } => 'c',
                ServerReply::Completed { swallow: true, .. } => 's',
                ServerReply::Failed { .. } => 'x',
            })
            .collect()
    }

    #[test]
    fn storage_is_given_back_only_between_requests() {
        let mut q = ReplyQueue::default();
        client(&mut q, b"PBDE");
        q.release_storage();
        assert_eq!(
            names(&q),
            ["P", "B", "D", "E"],
            "outstanding requests survive"
        );
        assert_eq!(server(&mut q, b"12TC"), "cccc");
        assert!(q.entries.capacity() > 0);
        q.release_storage();
        assert_eq!(q.entries.capacity(), 0);
        client(&mut q, b"S");
        assert_eq!(server(&mut q, b"Z"), "c");
        assert!(q.is_idle());
    }

    #[test]
    fn replies_complete_requests_in_order() {
        // (client messages, server messages, what each server message
        // does, what is still expected afterwards)
        type Row = (
            &'static [u8],
            &'static [u8],
            &'static str,
            &'static [&'static str],
        );
        let table: &[Row] = &[
            // Simple query: rows and the tag are partial, Z completes.
            (b"Q", b"TDCZ", "fffc", &[]),
            // Two simple queries pipelined.
            (b"QQ", b"CZ", "fc", &["Q"]),
            // Extended batch.
            (b"PBDES", b"12TCZ", "ccccc", &[]),
            // Describe of a statement: ParameterDescription is partial,
            // NoData completes.
            (b"PDS", b"1tnZ", "cfcc", &[]),
            // Execute suspended by a row limit completes at 's'.
            (b"BES", b"2DsZ", "cfcc", &[]),
            // An empty query completes an Execute too.
            (b"PBES", b"12IZ", "cccc", &[]),
            // Notices and ParameterStatus answer nothing.
            (b"Q", b"NSCZ", "uufc", &[]),
            // A FATAL with nothing outstanding goes to the client.
            (b"", b"E", "u", &[]),
            // FunctionCall ends with ReadyForQuery.
            (b"F", b"VZ", "fc", &[]),
        ];
        for (i, (c, s, want, left)) in table.iter().enumerate() {
            let mut q = ReplyQueue::default();
            client(&mut q, c);
            assert_eq!(server(&mut q, s), *want, "row {i}");
            assert_eq!(names(&q), *left, "row {i}");
        }
    }

    #[test]
    fn an_error_skips_the_rest_of_the_batch_up_to_sync() {
        let mut q = ReplyQueue::default();
        client(&mut q, b"PBES");
        match q.on_server_message(be::ERROR_RESPONSE) {
            ServerReply::Failed { request, skipped } => {
                assert!(matches!(request, Request::Parse(_)));
                let skipped: Vec<_> = skipped.iter().map(short).collect();
                assert_eq!(skipped, ["B", "E"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(names(&q), ["S"]);
        assert_eq!(server(&mut q, b"Z"), "c");
        assert!(q.is_idle());
    }

    #[test]
    fn an_error_before_sync_is_sent_skips_what_follows_until_sync() {
        let mut q = ReplyQueue::default();
        client(&mut q, b"PB");
        assert_eq!(server(&mut q, b"E"), "x");
        assert!(names(&q).is_empty());
        assert!(!q.is_idle(), "no Sync yet: the batch is still open");
        // The server discards these; so does the bookkeeping.
        assert_eq!(q.on_client_message(fe::EXECUTE), ClientMessage::Untracked);
        assert_eq!(q.on_client_message(fe::BIND), ClientMessage::Untracked);
        assert!(names(&q).is_empty());
        client(&mut q, b"S");
        assert_eq!(server(&mut q, b"Z"), "c");
        assert!(q.is_idle());
        // After the Sync, requests are tracked again.
        assert_eq!(q.on_client_message(fe::PARSE), ClientMessage::Track);
    }

    #[test]
    fn an_error_in_a_simple_query_waits_for_ready_for_query() {
        let mut q = ReplyQueue::default();
        client(&mut q, b"Q");
        // UntilReady is not skipped: the error is part of its reply.
        assert_eq!(server(&mut q, b"EZ"), "fc");
        assert!(q.is_idle());
    }

    #[test]
    fn copy_in_makes_pending_syncs_expect_nothing() {
        let mut q = ReplyQueue::default();
        // Execute of COPY FROM STDIN, then a Sync sent before the data.
        client(&mut q, b"PBES");
        assert_eq!(server(&mut q, b"12G"), "ccf");
        assert_eq!(names(&q), ["E"], "the Sync the server will ignore is gone");
        // A Sync during COPY expects nothing either.
        client(&mut q, b"dS");
        assert_eq!(names(&q), ["E"]);
        client(&mut q, b"cS");
        assert_eq!(server(&mut q, b"CZ"), "cc");
        assert!(q.is_idle());
    }

    #[test]
    fn replies_to_added_requests_are_swallowed_and_own_replies_keep_their_place() {
        let mut q = ReplyQueue::default();
        // pgvigil re-prepares (Close + Parse, answers dropped) before the
        // client's Bind, and answers the client's Close itself.
        q.push(Expect::Swallow(Request::Close));
        q.push(Expect::Swallow(Request::Parse(None)));
        client(&mut q, b"B");
        q.push(Expect::Reply(Bytes::from_static(b"own")));
        client(&mut q, b"S");
        assert_eq!(server(&mut q, b"312"), "ssc");
        assert_eq!(q.pop_own_reply().as_deref(), Some(&b"own"[..]));
        assert_eq!(q.pop_own_reply(), None);
        assert_eq!(server(&mut q, b"Z"), "c");
        assert!(q.is_idle());
    }

    #[test]
    fn a_failed_added_parse_fails_the_clients_bind_with_it() {
        let mut q = ReplyQueue::default();
        q.push(Expect::Swallow(Request::Parse(None)));
        client(&mut q, b"BES");
        match q.on_server_message(be::ERROR_RESPONSE) {
            ServerReply::Failed { skipped, .. } => assert_eq!(skipped.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(server(&mut q, b"Z"), "c");
    }

    #[test]
    fn own_reply_to_a_close_skipped_after_an_error_is_dropped() {
        let mut q = ReplyQueue::default();
        client(&mut q, b"P");
        q.push(Expect::Reply(Bytes::from_static(b"3")));
        client(&mut q, b"S");
        assert_eq!(server(&mut q, b"E"), "x");
        assert_eq!(q.pop_own_reply(), None, "PostgreSQL would skip the Close");
        assert_eq!(server(&mut q, b"Z"), "c");
    }

    #[test]
    fn message_types_postgresql_refuses_after_login_are_invalid() {
        let mut q = ReplyQueue::default();
        for tag in [b'p', b'z', 0u8, b'v', b'?'] {
            assert_eq!(q.on_client_message(tag), ClientMessage::Invalid, "{tag}");
        }
        for tag in *b"QPBEFCDHSXdcf" {
            assert_ne!(q.on_client_message(tag), ClientMessage::Invalid, "{tag}");
        }
    }

    #[test]
    fn flush_and_copy_messages_expect_nothing() {
        let mut q = ReplyQueue::default();
        for tag in [fe::FLUSH, fe::COPY_DATA, fe::COPY_DONE, fe::COPY_FAIL] {
            assert_eq!(q.on_client_message(tag), ClientMessage::Untracked);
        }
        assert!(names(&q).is_empty());
        // A bare Flush opens no batch: the server may serve someone else.
        assert!(q.is_idle());
        // After a Parse, the batch is open until Sync.
        client(&mut q, b"PH");
        assert!(!q.is_idle());
    }
}
