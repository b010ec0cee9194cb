//! Named prepared statements in transaction mode.
//!
//! A client's next transaction may land on any server connection, where
//! its statements do not exist. So each distinct (query, parameter types)
//! gets one server-side name, `pgv_<hash>`, shared by every client; a
//! client's own name maps to it; and each server connection remembers
//! which of those it has, re-preparing on demand. Identical statements
//! from many clients are prepared once per server connection.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
pub(crate) use pgvigil_sql::FastMap;
use pgvigil_wire::frontend::{self, ParseView};

/// Identity of a statement's text and parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatementId(pub u64);

impl StatementId {
    /// FNV-1a: fixed, fast, and the name only has to be stable within
    /// one pgvigil process.
    pub(crate) fn of(query: &[u8], param_types: &[u8]) -> StatementId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in query.iter().chain([0u8].iter()).chain(param_types) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        StatementId(h)
    }

    pub fn server_name(self) -> String {
        format!("pgv_{:016x}", self.0)
    }
}

/// Ids the registry hands out for a hash are the hash with this bit
/// clear; ids for a colliding or unregistered statement have it set and
/// count up, so the two kinds can never meet.
const FRESH_ID_BIT: u64 = 1 << 63;

/// Where a pool's statements get their server-side names. A hash alone
/// cannot name a statement shared by many clients: FNV collisions can be
/// crafted, and a client whose text collides with another's would have
/// its Bind run the other statement. So every hash hit is confirmed by
/// comparing the full text and types, and a statement that collides gets
/// a name of its own.
///
/// Entries are never evicted: a client or server connection may still
/// hold an id, and reusing it for another text would be the confusion
/// this exists to prevent. Past `cap` entries, new statements get a
/// fresh id each time instead (correct, only not shared between clients)
/// and are counted in `unshared`.
pub(crate) struct StatementRegistry {
    hash: fn(&[u8], &[u8]) -> u64,
    cap: usize,
    len: usize,
    /// Masked hash to the statements with that hash; almost always one.
    by_hash: FastMap<u64, Vec<Registered>>,
    next_fresh: u64,
    unshared: u64,
}

struct Registered {
    query: Box<[u8]>,
    param_types: Box<[u8]>,
    id: StatementId,
}

impl StatementRegistry {
    pub(crate) fn new(cap: usize) -> Self {
        StatementRegistry::with_hash(cap, |q, t| StatementId::of(q, t).0)
    }

    /// With another hash function: tests inject collisions with it.
    pub(crate) fn with_hash(cap: usize, hash: fn(&[u8], &[u8]) -> u64) -> Self {
        StatementRegistry {
            hash,
            cap,
            len: 0,
            by_hash: FastMap::default(),
            next_fresh: 0,
            unshared: 0,
        }
    }

    /// The id of this (text, parameter types): the same for the same
    /// statement, different for any other.
    pub(crate) fn id(&mut self, query: &[u8], param_types: &[u8]) -> StatementId {
        let key = (self.hash)(query, param_types) & !FRESH_ID_BIT;
        if let Some(same) = self.by_hash.get(&key).and_then(|entries| {
            entries
                .iter()
                .find(|e| *e.query == *query && *e.param_types == *param_types)
        }) {
            return same.id;
        }
        if self.len >= self.cap {
            self.unshared += 1;
            return self.fresh();
        }
        let collides = self.by_hash.get(&key).is_some_and(|e| !e.is_empty());
        let id = if collides {
            self.fresh()
        } else {
            StatementId(key)
        };
        self.by_hash.entry(key).or_default().push(Registered {
            query: query.into(),
            param_types: param_types.into(),
            id,
        });
        self.len += 1;
        id
    }

    fn fresh(&mut self) -> StatementId {
        self.next_fresh += 1;
        StatementId(FRESH_ID_BIT | self.next_fresh)
    }

    /// Statements that got an id of their own because the registry was
    /// full.
    pub(crate) fn unshared(&self) -> u64 {
        self.unshared
    }
}

/// A client's statement as it exists on servers.
#[derive(Debug)]
pub struct Prepared {
    pub id: StatementId,
    pub server_name: Bytes,
    /// The Parse to send to a server that lacks it.
    pub parse: Bytes,
    /// A Close of the same name, sent just before `parse`: closing a
    /// statement that does not exist is not an error, so the pair
    /// (re)creates the statement whatever pgvigil's record of the server
    /// says (a DEALLOCATE ALL it did not see, a stale plan after ALTER).
    pub close: Bytes,
    /// The statement's generation when the client prepared it; see
    /// `ServerPool::statement_changed`.
    pub generation: u64,
    /// The pool's change epoch this client statement was last checked
    /// against, so an unchanged pool costs one atomic load per Bind.
    pub checked_epoch: AtomicU64,
}

impl Prepared {
    /// `id` comes from the pool's [`StatementRegistry`], never from a
    /// hash alone.
    pub fn from_parse(
        view: &ParseView<'_>,
        id: StatementId,
        generation: u64,
        epoch: u64,
    ) -> Prepared {
        let server_name = Bytes::from(id.server_name());
        let parse = frontend::parse(&server_name, view.query, view.param_types);
        let close = frontend::close(frontend::TARGET_STATEMENT, &server_name);
        Prepared {
            id,
            server_name,
            parse,
            close,
            generation,
            checked_epoch: AtomicU64::new(epoch),
        }
    }
}

/// The statements one client has prepared, by the client's names. The
/// table is made on the first: most clients prepare no named statement,
/// and every connected client carries this.
#[derive(Default)]
pub struct ClientStatements {
    #[allow(clippy::box_collection)] // for the size of every client's session
    by_name: Option<Box<FastMap<Vec<u8>, Arc<Prepared>>>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Prepared>> {
        self.by_name.as_ref()?.get(name)
    }

    pub fn insert(&mut self, name: &[u8], prepared: Arc<Prepared>) {
        self.by_name
            .get_or_insert_with(Box::default)
            .insert(name.to_vec(), prepared);
    }

    pub fn remove(&mut self, name: &[u8]) -> bool {
        self.by_name
            .as_mut()
            .is_some_and(|m| m.remove(name).is_some())
    }

    pub fn clear(&mut self) {
        self.by_name = None;
    }
}

/// The statements pgvigil created on one server connection, bounded by
/// `max_prepared_statements`; the least recently used go first.
pub struct ServerStatements {
    cap: usize,
    tick: u64,
    /// Per statement: last use, and the generation it was prepared at.
    last_used: FastMap<StatementId, (u64, u64)>,
}

impl ServerStatements {
    pub fn new(cap: usize) -> Self {
        ServerStatements {
            cap: cap.max(1),
            tick: 0,
            last_used: FastMap::default(),
        }
    }

    /// Whether the server has it, prepared at `generation` or later;
    /// counts as a use.
    pub fn touch(&mut self, id: StatementId, generation: u64) -> bool {
        self.tick += 1;
        match self.last_used.get_mut(&id) {
            Some((t, g)) if *g >= generation => {
                *t = self.tick;
                true
            }
            _ => false,
        }
    }

    pub fn insert(&mut self, id: StatementId, generation: u64) {
        self.tick += 1;
        self.last_used.insert(id, (self.tick, generation));
    }

    /// Forgets the least recently used statements beyond the cap and
    /// returns them, for the caller to deallocate on the server. Called
    /// between transactions, when closing them cannot interleave with a
    /// client's own messages.
    pub fn is_over_capacity(&self) -> bool {
        self.last_used.len() > self.cap
    }

    pub fn over_capacity(&mut self) -> Vec<StatementId> {
        let excess = self.last_used.len().saturating_sub(self.cap);
        if excess == 0 {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, StatementId)> = self
            .last_used
            .iter()
            .map(|(id, (t, _))| (*t, *id))
            .collect();
        by_age.sort_unstable();
        let evicted: Vec<StatementId> = by_age.into_iter().take(excess).map(|(_, id)| id).collect();
        for id in &evicted {
            self.last_used.remove(id);
        }
        evicted
    }

    pub fn remove(&mut self, id: StatementId) {
        self.last_used.remove(&id);
    }

    /// After DISCARD ALL or DEALLOCATE ALL the server has none.
    pub fn clear(&mut self) {
        self.last_used.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last_used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(registry: &mut StatementRegistry, name: &[u8], query: &[u8]) -> Prepared {
        prepared_with_types(registry, name, query, b"\0\0")
    }

    fn prepared_with_types(
        registry: &mut StatementRegistry,
        name: &[u8],
        query: &[u8],
        types: &[u8],
    ) -> Prepared {
        let parse = frontend::parse(name, query, types);
        let view = ParseView::new(&parse).unwrap();
        let id = registry.id(view.query, view.param_types);
        Prepared::from_parse(&view, id, 0, 0)
    }

    #[test]
    fn same_text_and_types_share_a_server_name() {
        let mut r = StatementRegistry::new(100);
        let pa = prepared(&mut r, b"P_0", b"SELECT $1");
        let pb = prepared(&mut r, b"other", b"SELECT $1");
        let pc = prepared_with_types(&mut r, b"P_0", b"SELECT $1", b"\0\x01\0\0\0\x17");
        assert_eq!(pa.server_name, pb.server_name);
        assert_ne!(pa.server_name, pc.server_name);
    }

    /// Every text hashes alike here, as crafted FNV collisions would.
    fn colliding(_: &[u8], _: &[u8]) -> u64 {
        0x1234
    }

    #[test]
    fn colliding_texts_get_their_own_server_names_and_parses() {
        let mut r = StatementRegistry::with_hash(100, colliding);
        let mine = prepared(&mut r, b"s", b"SELECT balance FROM accounts WHERE id = $1");
        let theirs = prepared(&mut r, b"s", b"DELETE FROM accounts WHERE id = $1");
        assert_ne!(mine.id, theirs.id);
        assert_ne!(mine.server_name, theirs.server_name);
        // What a server that lacks the statement is sent (and so what a
        // Bind to that name runs) is each client's own text.
        let mine_parse = ParseView::new(&mine.parse).unwrap();
        let theirs_parse = ParseView::new(&theirs.parse).unwrap();
        assert_eq!(mine_parse.statement, &mine.server_name[..]);
        assert_eq!(
            mine_parse.query,
            b"SELECT balance FROM accounts WHERE id = $1"
        );
        assert_eq!(theirs_parse.statement, &theirs.server_name[..]);
        assert_eq!(theirs_parse.query, b"DELETE FROM accounts WHERE id = $1");
        // Each keeps its name when prepared again, by any client.
        let mine_again = prepared(&mut r, b"t", b"SELECT balance FROM accounts WHERE id = $1");
        let theirs_again = prepared(&mut r, b"u", b"DELETE FROM accounts WHERE id = $1");
        assert_eq!(mine_again.id, mine.id);
        assert_eq!(theirs_again.id, theirs.id);
        // Same text, other parameter types: another statement too.
        let typed = prepared_with_types(
            &mut r,
            b"s",
            b"SELECT balance FROM accounts WHERE id = $1",
            b"\0\x01\0\0\0\x17",
        );
        assert!(typed.id != mine.id && typed.id != theirs.id);
    }

    #[test]
    fn a_full_registry_gives_new_statements_unshared_names_without_evicting() {
        let mut r = StatementRegistry::new(2);
        let a = r.id(b"SELECT 1", b"");
        let b = r.id(b"SELECT 2", b"");
        let c1 = r.id(b"SELECT 3", b"");
        let c2 = r.id(b"SELECT 3", b"");
        assert_ne!(c1, c2, "an unregistered statement is never shared");
        assert!(![a, b].contains(&c1) && ![a, b].contains(&c2));
        assert_eq!(r.unshared(), 2);
        assert_eq!(r.id(b"SELECT 1", b""), a);
        assert_eq!(r.id(b"SELECT 2", b""), b);
    }

    #[test]
    fn server_cache_evicts_least_recently_used() {
        let mut s = ServerStatements::new(2);
        s.insert(StatementId(1), 0);
        s.insert(StatementId(2), 0);
        assert!(s.touch(StatementId(1), 0));
        s.insert(StatementId(3), 0);
        assert_eq!(s.over_capacity(), vec![StatementId(2)]);
        assert!(s.touch(StatementId(1), 0));
        assert!(!s.touch(StatementId(2), 0));
        assert_eq!(s.len(), 2);
        assert!(s.over_capacity().is_empty());
    }

    #[test]
    fn a_statement_prepared_before_a_change_does_not_count() {
        let mut s = ServerStatements::new(10);
        s.insert(StatementId(1), 0);
        assert!(s.touch(StatementId(1), 0));
        assert!(!s.touch(StatementId(1), 1));
        s.insert(StatementId(1), 1);
        assert!(s.touch(StatementId(1), 1));
    }
}
