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
    static LIVE_BLOCKS: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize, blocks: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + bytes));
    let _ = LIVE_BLOCKS.try_with(|c| c.set(c.get() + blocks));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, 1);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize), -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize, 0);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE_BYTES.with(Cell::get), LIVE_BLOCKS.with(Cell::get))
}

const FINGERPRINTS: usize = 5_000;

fn session(insight: &Arc<Insight>) -> Recorder {
    let info = SessionInfo {
        database: "pgbench".into(),
        user: "bench".into(),
        application_name: "psql".into(),
        client_addr: "127.0.0.1".into(),
    };
    Recorder::new(insight.clone(), info, 0)
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
/// second meanwhile. Returns (heap bytes, heap blocks) still held per
/// fingerprint once they are all tracked.
fn heap_per_fingerprint() -> (f64, f64) {
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
    (
        (after.0 - before.0) as f64 / n,
        (after.1 - before.1) as f64 / n,
    )
}

/// Measured 1,089 bytes in 12.4 blocks; the margin allows for other
/// machines (dashmap's shard count follows the number of CPUs).
const MAX_BYTES: f64 = 1_200.0;

#[test]
fn a_tracked_fingerprint_costs_at_most_the_measured_heap() {
    let (bytes, blocks) = heap_per_fingerprint();
    println!("heap per fingerprint: {bytes:.1} bytes in {blocks:.2} blocks");
    assert!(bytes <= MAX_BYTES, "{bytes:.1} bytes per fingerprint");
}
