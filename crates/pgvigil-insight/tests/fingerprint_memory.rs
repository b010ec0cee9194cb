//! What a tracked fingerprint costs in heap, measured by counting every
//! allocation made on the recording thread. The proxy keeps up to
//! `max_fingerprints` of them (5,000 by default) for the life of the
//! process, so their size is most of what analytics add to its memory.
//!
//! Alone in its test binary: the counting allocator sees the whole
//! process, and the counts are kept per thread so the harness's own
//! threads cannot disturb them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, OnceLock, Weak};

use pgvigil_insight::{
    Annotation, Insight, InsightConfig, Outcome, Recorder, SessionInfo, StatementInfo, Watcher,
};

struct Counting;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static LIVE_CLASS_BYTES: Cell<isize> = const { Cell::new(0) };
    static LIVE_BLOCKS: Cell<isize> = const { Cell::new(0) };
}

/// The size mimalloc (the proxy's allocator) gives a request of `size`
/// bytes: 8-byte steps up to 64, then four size classes per power of
/// two (its `_mi_bin`).
fn size_class(size: usize) -> usize {
    let words = size.div_ceil(8).max(1);
    if words <= 8 {
        return words * 8;
    }
    let w = words - 1;
    let b = usize::BITS - 1 - w.leading_zeros();
    (((w >> (b - 2)) + 1) << (b - 2)) * 8
}

fn count(size: usize, sign: isize, blocks: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + sign * size as isize));
    let _ = LIVE_CLASS_BYTES.try_with(|c| c.set(c.get() + sign * size_class(size) as isize));
    let _ = LIVE_BLOCKS.try_with(|c| c.set(c.get() + blocks));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1, 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1, 1);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1, -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1, 0);
        count(new_size, 1, 0);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// (bytes asked for, bytes after size classes, allocations) still held.
fn live() -> [isize; 3] {
    [
        LIVE_BYTES.with(Cell::get),
        LIVE_CLASS_BYTES.with(Cell::get),
        LIVE_BLOCKS.with(Cell::get),
    ]
}

const FINGERPRINTS: usize = 5_000;

fn session(insight: &Arc<Insight>) -> Recorder {
    let info = SessionInfo {
        database: "pgbench".into(),
        user: "bench".into(),
        application_name: "psql".into(),
        client_addr: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    Recorder::new(insight.clone(), Arc::new(info), 0)
}

/// The proxy's lint worker, run at once on the recording thread: each
/// new fingerprint gets its tables and findings, as in the proxy.
struct LintAtOnce(OnceLock<Weak<Insight>>);

impl Watcher for LintAtOnce {
    fn new_fingerprint(&self, info: &StatementInfo) {
        let Some(insight) = self.0.get().and_then(Weak::upgrade) else {
            return;
        };
        let report = pgvigil_lint::lint(&info.query);
        insight.annotate(
            info.fingerprint,
            Annotation {
                parsed: report.parsed,
                tables: report.tables,
                findings: report
                    .findings
                    .into_iter()
                    .map(|f| (f.code.to_string(), f.message))
                    .collect(),
            },
        );
    }
}

/// The load benchmark's fill: one psql session sends `FINGERPRINTS`
/// distinct statements once each, and the proxy flushes a few times a
/// second meanwhile. Returns what `live` counts, per fingerprint, once
/// they are all tracked.
fn heap_per_fingerprint() -> [f64; 3] {
    // The thread's normalization caches are made on first use, once per
    // thread whatever the number of fingerprints: made here, outside
    // the measurement.
    let warm = Arc::new(Insight::new(InsightConfig::default()));
    let mut r = session(&warm);
    let mut tracked = r.begin_query(b"SELECT 1", 0).expect("a statement");
    r.complete(&mut tracked, Outcome::Completed { rows: 1 }, 1_000);
    drop(r);
    drop(warm);

    let insight = Arc::new(Insight::new(InsightConfig {
        wall_clock_ms: || 0,
        ..InsightConfig::default()
    }));
    let lint = Arc::new(LintAtOnce(OnceLock::new()));
    let _ = lint.0.set(Arc::downgrade(&insight));
    insight.watch(lint);
    let mut r = session(&insight);
    let before = live();
    let mut now_ns = 1_000_000u64;
    for i in 0..FINGERPRINTS {
        let sql = format!(
            "SELECT aid AS fill_{i} FROM pgbench_accounts WHERE aid = {};",
            i + 1
        );
        let mut tracked = r.begin_query(sql.as_bytes(), now_ns).expect("a statement");
        now_ns += 150_000;
        r.complete(&mut tracked, Outcome::Completed { rows: 1 }, now_ns);
        now_ns += 50_000;
        if i % 100 == 99 {
            insight.flush(now_ns / 1_000_000);
        }
    }
    insight.flush(now_ns / 1_000_000);
    let after = live();
    assert_eq!(insight.counters().fingerprints, FINGERPRINTS);
    let n = FINGERPRINTS as f64;
    [0, 1, 2].map(|i| (after[i] - before[i]) as f64 / n)
}

/// Measured 622 bytes in 6.9 allocations (1,089 in 12.4 before the
/// entries were slimmed); the margin allows for other machines
/// (dashmap's shard count follows the number of CPUs).
const MAX_BYTES: f64 = 700.0;
const MAX_ALLOCATIONS: f64 = 8.0;

#[test]
fn a_tracked_fingerprint_costs_at_most_the_measured_heap() {
    let [bytes, classed, blocks] = heap_per_fingerprint();
    println!(
        "heap per fingerprint: {bytes:.1} bytes ({classed:.1} in mimalloc's size classes) \
         in {blocks:.2} allocations"
    );
    assert!(bytes <= MAX_BYTES, "{bytes:.1} bytes per fingerprint");
    assert!(
        blocks <= MAX_ALLOCATIONS,
        "{blocks:.2} allocations per fingerprint"
    );
}
