//! Counters the admin surface reads: per-pool figures and process-wide
//! traffic. Hot-path counters are written only by the thread that owns
//! them, so counting never bounces a cache line between cores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the pool wait histogram: from a pool that
/// hands out connections at once to clients queueing for seconds.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
];

/// A fixed-bucket histogram of time spent waiting for a server
/// connection. Updated once per checkout, next to the pool's own lock.
#[derive(Default)]
pub struct WaitHistogram {
    /// Per-bucket counts; the last slot is +Inf.
    buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl WaitHistogram {
    pub fn record(&self, wait: Duration) {
        let secs = wait.as_secs_f64();
        let slot = WAIT_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(WAIT_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(wait.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (per-bucket counts with +Inf last, sum in seconds, count)
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        let buckets = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, sum, self.count.load(Ordering::Relaxed))
    }
}

/// Bytes through the proxy, per direction, counted per thread.
#[derive(Default)]
struct ThreadBytes {
    client_to_server: AtomicU64,
    server_to_client: AtomicU64,
}

static ALL_THREADS: Mutex<Vec<Arc<ThreadBytes>>> = Mutex::new(Vec::new());

thread_local! {
    static MINE: Arc<ThreadBytes> = {
        let mine = Arc::new(ThreadBytes::default());
        ALL_THREADS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(mine.clone());
        mine
    };
}

pub(crate) fn count_client_bytes(n: usize) {
    MINE.with(|m| m.client_to_server.fetch_add(n as u64, Ordering::Relaxed));
}

pub(crate) fn count_server_bytes(n: usize) {
    MINE.with(|m| m.server_to_client.fetch_add(n as u64, Ordering::Relaxed));
}

/// Total bytes (client to server, server to client) since start.
pub fn bytes_total() -> (u64, u64) {
    let threads = ALL_THREADS.lock().unwrap_or_else(|p| p.into_inner());
    threads.iter().fold((0, 0), |(a, b), t| {
        (
            a + t.client_to_server.load(Ordering::Relaxed),
            b + t.server_to_client.load(Ordering::Relaxed),
        )
    })
}

/// The timeout settings that end a session or a transaction, counted
/// process-wide so operators can tell a leak guard firing from clients
/// disconnecting on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    ClientLogin,
    Query,
    IdleTransaction,
    ClientIdle,
    Transaction,
}

impl TimeoutKind {
    pub const ALL: [TimeoutKind; 5] = [
        TimeoutKind::ClientLogin,
        TimeoutKind::Query,
        TimeoutKind::IdleTransaction,
        TimeoutKind::ClientIdle,
        TimeoutKind::Transaction,
    ];

    /// The setting's name, which is what operators search the config for.
    pub fn setting(self) -> &'static str {
        match self {
            TimeoutKind::ClientLogin => "client_login_timeout",
            TimeoutKind::Query => "query_timeout",
            TimeoutKind::IdleTransaction => "idle_transaction_timeout",
            TimeoutKind::ClientIdle => "client_idle_timeout",
            TimeoutKind::Transaction => "transaction_timeout",
        }
    }
}

/// Timeouts are rare events, so plain shared atomics (not per-thread) do.
static TIMEOUTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Counts one session or transaction ended by `kind`.
pub fn count_timeout(kind: TimeoutKind) {
    TIMEOUTS[kind as usize].fetch_add(1, Ordering::Relaxed);
}

/// Every kind with its count since start, zeros included.
pub fn timeouts() -> [(TimeoutKind, u64); 5] {
    TimeoutKind::ALL.map(|k| (k, TIMEOUTS[k as usize].load(Ordering::Relaxed)))
}

static FAILED_LOGINS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_failed_login() {
    FAILED_LOGINS.fetch_add(1, Ordering::Relaxed);
}

/// Logins refused since start (wrong password, unknown user or database,
/// protocol errors during login).
pub fn failed_logins_total() -> u64 {
    FAILED_LOGINS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_land_in_the_first_bucket_that_holds_them() {
        let h = WaitHistogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], 1);
        assert_eq!(buckets[3], 1); // <= 5 ms
        assert_eq!(buckets[WAIT_BUCKETS.len()], 1); // +Inf
        assert!((sum - 60.00305).abs() < 1e-6);
    }

    #[test]
    fn each_timeout_kind_is_counted_under_its_own_setting_name() {
        let before = timeouts();
        count_timeout(TimeoutKind::IdleTransaction);
        count_timeout(TimeoutKind::IdleTransaction);
        count_timeout(TimeoutKind::ClientLogin);
        let after = timeouts();
        let names: Vec<&str> = after.iter().map(|(k, _)| k.setting()).collect();
        assert_eq!(
            names,
            [
                "client_login_timeout",
                "query_timeout",
                "idle_transaction_timeout",
                "client_idle_timeout",
                "transaction_timeout"
            ]
        );
        // Other tests may count concurrently: at least what we added.
        assert!(after[2].1 >= before[2].1 + 2);
        assert!(after[0].1 > before[0].1);
    }

    #[test]
    fn bytes_from_every_thread_are_summed() {
        let before = bytes_total();
        std::thread::spawn(|| count_client_bytes(10))
            .join()
            .unwrap();
        count_server_bytes(7);
        let after = bytes_total();
        assert!(after.0 >= before.0 + 10 && after.1 >= before.1 + 7);
    }
}
