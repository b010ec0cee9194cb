//! Per-pool totals for the console's SHOW STATS, in PgBouncer's terms: a
//! query is one request/ReadyForQuery cycle, a transaction ends at
//! ReadyForQuery 'I', bytes are what the client sent and was sent.
//!
//! Each session owns a set of counters that only it writes (a load and a
//! store, no read-modify-write, no cache line shared with another
//! session), published once per ReadyForQuery. The pool lists the sets of
//! its live sessions and folds a session's figures into `retired` when it
//! ends; SHOW STATS sums them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pgvigil_wire::backend::TransactionStatus;

use crate::clock::MonoTime;

#[derive(Default)]
struct Cells {
    queries: AtomicU64,
    transactions: AtomicU64,
    query_time_us: AtomicU64,
    xact_time_us: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
}

/// Only the owning session writes, so load + store needs no RMW.
fn add(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl Cells {
    fn totals(&self) -> PoolTotals {
        PoolTotals {
            queries: self.queries.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            query_time_us: self.query_time_us.load(Ordering::Relaxed),
            xact_time_us: self.xact_time_us.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
        }
    }
}

/// Sums since start for one pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolTotals {
    pub queries: u64,
    pub transactions: u64,
    pub query_time_us: u64,
    pub xact_time_us: u64,
    pub received: u64,
    pub sent: u64,
}

impl std::ops::AddAssign for PoolTotals {
    fn add_assign(&mut self, o: PoolTotals) {
        self.queries += o.queries;
        self.transactions += o.transactions;
        self.query_time_us += o.query_time_us;
        self.xact_time_us += o.xact_time_us;
        self.received += o.received;
        self.sent += o.sent;
    }
}

#[derive(Default)]
struct Book {
    live: Vec<Arc<Cells>>,
    /// Figures of sessions that ended.
    retired: PoolTotals,
}

/// One pool's sessions' counters.
#[derive(Default)]
pub(crate) struct PoolTally {
    book: Mutex<Book>,
}

impl PoolTally {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn totals(&self) -> PoolTotals {
        let book = self.book();
        let mut t = book.retired;
        for c in &book.live {
            t += c.totals();
        }
        t
    }
}

/// A session's counters and its running query cycle.
pub(crate) struct SessionTally {
    pool: Arc<PoolTally>,
    cells: Arc<Cells>,
    cycle_start: Option<MonoTime>,
    xact_start: Option<MonoTime>,
    /// When the last cycle ended.
    last_ready: Option<MonoTime>,
    /// `last_ready` has not yet been handed to a checkin.
    ready_unclaimed: bool,
    /// The client was idle at least `LONG_IDLE_US` before its latest cycle.
    idled_long: bool,
    pub(crate) received: u64,
    pub(crate) sent: u64,
}

/// A client whose query cycles come further apart than this spends
/// nearly all its time idle: its session gives back the room its queues
/// grew to after each cycle, since with thousands of such clients that
/// room is a large part of what each costs. A busy client keeps it, and
/// spares the allocations its next transaction would make (a few hundred
/// instructions per transaction under callgrind).
const LONG_IDLE_US: u64 = 100_000;

impl SessionTally {
    pub(crate) fn new(pool: Arc<PoolTally>) -> SessionTally {
        let cells = Arc::new(Cells::default());
        pool.book().live.push(cells.clone());
        SessionTally {
            pool,
            cells,
            cycle_start: None,
            xact_start: None,
            last_ready: None,
            ready_unclaimed: false,
            idled_long: true,
            received: 0,
            sent: 0,
        }
    }

    /// Requests went to the server: a query cycle (and maybe a
    /// transaction) starts unless one is under way.
    pub(crate) fn request_sent(&mut self) {
        if self.cycle_start.is_none() {
            let now = MonoTime::now();
            self.cycle_start = Some(now);
            self.xact_start.get_or_insert(now);
            self.idled_long = self
                .last_ready
                .is_none_or(|r| now.micros_since(r) >= LONG_IDLE_US);
        }
    }

    /// Whether the client idled long before its latest query cycle (or
    /// has had none yet): the sign of a client that is mostly idle.
    pub(crate) fn idles_long(&self) -> bool {
        self.idled_long
    }

    /// The server said ReadyForQuery: one query cycle is over, and the
    /// transaction too when the status is idle.
    pub(crate) fn ready(&mut self, status: TransactionStatus) {
        let Some(start) = self.cycle_start.take() else {
            return;
        };
        let now = MonoTime::now();
        self.last_ready = Some(now);
        self.ready_unclaimed = true;
        let c = &self.cells;
        add(&c.queries, 1);
        add(&c.query_time_us, now.micros_since(start));
        if status == TransactionStatus::Idle {
            if let Some(s) = self.xact_start.take() {
                add(&c.transactions, 1);
                add(&c.xact_time_us, now.micros_since(s));
            }
        }
        add(&c.received, std::mem::take(&mut self.received));
        add(&c.sent, std::mem::take(&mut self.sent));
    }

    /// When the latest cycle ended, once: the time a server connection
    /// released right after it was last used.
    pub(crate) fn take_ready_at(&mut self) -> Option<MonoTime> {
        std::mem::take(&mut self.ready_unclaimed)
            .then_some(self.last_ready)
            .flatten()
    }
}

impl Drop for SessionTally {
    fn drop(&mut self) {
        let mut book = self.pool.book();
        if let Some(i) = book.live.iter().position(|c| Arc::ptr_eq(c, &self.cells)) {
            book.live.swap_remove(i);
        }
        let mut last = self.cells.totals();
        last.received += self.received;
        last.sent += self.sent;
        book.retired += last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_counts_a_query_and_an_idle_ready_ends_the_transaction() {
        let tally = Arc::new(PoolTally::default());
        let mut s = SessionTally::new(tally.clone());
        s.request_sent();
        s.received = 10;
        s.ready(TransactionStatus::InTransaction);
        s.request_sent();
        s.sent = 7;
        s.ready(TransactionStatus::Idle);
        assert!(s.take_ready_at().is_some());
        assert!(s.take_ready_at().is_none());
        // A ReadyForQuery without a request of ours (e.g. a health check)
        // is not counted.
        s.ready(TransactionStatus::Idle);
        let t = tally.totals();
        assert_eq!((t.queries, t.transactions), (2, 1));
        assert_eq!((t.received, t.sent), (10, 7));
        assert!(t.xact_time_us >= t.query_time_us / 2);
    }

    #[test]
    fn only_cycles_after_a_long_idle_mark_the_client_as_mostly_idle() {
        let mut s = SessionTally::new(Arc::new(PoolTally::default()));
        assert!(s.idles_long(), "a new client counts as idle");
        s.request_sent();
        s.ready(TransactionStatus::Idle);
        s.request_sent();
        assert!(!s.idles_long(), "back to back");
        s.ready(TransactionStatus::Idle);
        s.last_ready = s
            .last_ready
            .map(|r| MonoTime::from_nanos(r.as_nanos() - LONG_IDLE_US * 1_000));
        s.request_sent();
        assert!(s.idles_long());
    }

    #[test]
    fn figures_of_live_and_ended_sessions_from_any_thread_are_summed() {
        let tally = Arc::new(PoolTally::default());
        let t2 = tally.clone();
        std::thread::spawn(move || {
            let mut s = SessionTally::new(t2);
            s.request_sent();
            s.ready(TransactionStatus::Idle);
            // Bytes read after the last ReadyForQuery still count.
            s.received = 5;
        })
        .join()
        .unwrap();
        let mut s = SessionTally::new(tally.clone());
        s.request_sent();
        s.ready(TransactionStatus::Idle);
        let t = tally.totals();
        assert_eq!((t.queries, t.transactions, t.received), (2, 2, 5));
        drop(s);
        assert_eq!(tally.totals().queries, 2);
        assert!(tally.book().live.is_empty());
    }
}
