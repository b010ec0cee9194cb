//! The process-wide table every session's recorder feeds: statements'
//! texts, their figures, slow events and N+1 findings, merged from
//! per-thread buffers so statements never contend on a shared lock or
//! cache line.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use dashmap::DashMap;

use crate::callers::Caller;
use crate::rows::Annotation;
use crate::slow::SlowLog;
use crate::store::Store;
use crate::watch::{Crossing, ParameterSample, Watchers};
use crate::{DetectionRow, Execution, InsightConfig, Pattern, StatementInfo};

/// A recording thread's buffer. Its lock is taken by that thread for
/// every execution and by `flush` a few times a second, so it is almost
/// never contended.
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) pending: Mutex<Vec<Execution>>,
}

/// A thread merges its own buffer once it holds this many executions,
/// so a burst between flushes stays bounded.
const SHARD_BATCH: usize = 8192;
/// A thread never waits for the table (a reader ranking every
/// fingerprint may hold it for milliseconds): while it is held, a full
/// buffer keeps growing to this, then executions are dropped and counted.
pub(crate) const SHARD_LIMIT: usize = 4 * SHARD_BATCH;
/// The catalog of statement texts may hold this many times
/// `max_fingerprints` before it is trimmed.
const CATALOG_FACTOR: usize = 4;

const CROSSED_SLOW: u8 = 1;
const CROSSED_TOTAL: u8 = 2;

static NEXT_INSIGHT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InsightCounters {
    pub fingerprints: usize,
    pub evictions: u64,
    pub slow_events: u64,
    pub slow_events_dropped: u64,
    pub detections: u64,
    pub detections_dropped: u64,
    /// New fingerprints not linted because the lint queue was full.
    pub lint_dropped: u64,
    /// Executions not counted: a thread's buffer reached its limit while
    /// the statistics table was held.
    pub executions_dropped: u64,
}

/// Query insight: one per proxy process (tests make several).
pub struct Insight {
    pub(crate) id: u64,
    pub(crate) config: InsightConfig,
    pub(crate) catalog: DashMap<u64, Arc<StatementInfo>>,
    pub(crate) annotations: DashMap<u64, Arc<Annotation>>,
    /// The distinct annotations of `annotations`, each held once: most
    /// statements of an app name a table others name too and lint finds
    /// nothing in them, so thousands of fingerprints share a few dozen
    /// annotations, where each held a copy (about 140 bytes).
    pub(crate) distinct_annotations: Mutex<HashSet<Arc<Annotation>>>,
    pub(crate) store: Mutex<Store>,
    pub(crate) shards: Mutex<Vec<Arc<Shard>>>,
    pub(crate) callers: Mutex<(HashMap<Caller, u32>, Vec<Caller>)>,
    pub(crate) slow: Mutex<SlowLog>,
    pub(crate) detections: Mutex<HashMap<(Pattern, u64), DetectionRow>>,
    pub(crate) detections_total: AtomicU64,
    pub(crate) detections_dropped: AtomicU64,
    /// The `now_ms` of the latest flush, for merges a thread triggers.
    pub(crate) last_flush_ms: AtomicU64,
    pub(crate) lint_dropped: AtomicU64,
    pub(crate) executions_dropped: AtomicU64,
    pub(crate) watchers: Watchers,
    /// Whether `watchers` is non-empty, read without its lock when a
    /// fingerprint is registered.
    pub(crate) has_watchers: std::sync::atomic::AtomicBool,
    pub(crate) samples: Mutex<HashMap<u64, ParameterSample>>,
    /// Markers and regressions (markers.rs, regression.rs).
    pub(crate) marks: crate::markers::Marks,
}

impl Insight {
    pub fn new(config: InsightConfig) -> Insight {
        Insight {
            id: NEXT_INSIGHT_ID.fetch_add(1, Ordering::Relaxed),
            store: Mutex::new(Store::new(config.max_fingerprints)),
            slow: Mutex::new(SlowLog::new(config.max_slow_events)),
            config,
            catalog: DashMap::new(),
            annotations: DashMap::new(),
            distinct_annotations: Mutex::new(HashSet::new()),
            shards: Mutex::new(Vec::new()),
            callers: Mutex::new((HashMap::new(), Vec::new())),
            detections: Mutex::new(HashMap::new()),
            detections_total: AtomicU64::new(0),
            detections_dropped: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(0),
            lint_dropped: AtomicU64::new(0),
            executions_dropped: AtomicU64::new(0),
            watchers: Watchers::default(),
            has_watchers: std::sync::atomic::AtomicBool::new(false),
            samples: Mutex::new(HashMap::new()),
            marks: crate::markers::Marks::default(),
        }
    }

    /// Unique among the instances of this process (never reused), for
    /// callers that keep per-thread state about one instance.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn config(&self) -> &InsightConfig {
        &self.config
    }

    /// Makes a statement's text known; called once per newly normalized
    /// text, off the per-execution path. Returns whether it was new, so
    /// the caller can have it analysed once.
    pub fn register(&self, info: Arc<StatementInfo>) -> bool {
        if self.catalog.contains_key(&info.fingerprint) {
            return false;
        }
        if self.catalog.len() >= self.config.max_fingerprints * CATALOG_FACTOR {
            // Texts of fingerprints still in the table live on there.
            self.catalog.clear();
        }
        let new = self
            .catalog
            .insert(info.fingerprint, info.clone())
            .is_none();
        if new {
            self.notify_new(&info);
        }
        new
    }

    /// Attaches lint results to a fingerprint; bounded like the catalog.
    pub fn annotate(&self, fingerprint: u64, annotation: Annotation) {
        if self.annotations.len() >= self.config.max_fingerprints * CATALOG_FACTOR {
            self.annotations.clear();
        }
        let shared = {
            let mut distinct = lock(&self.distinct_annotations);
            if distinct.len() >= self.config.max_fingerprints {
                // Bounded like the table: past it, annotations made
                // before are simply no longer shared with later ones.
                distinct.clear();
            }
            match distinct.get(&annotation) {
                Some(known) => known.clone(),
                None => {
                    let new = Arc::new(annotation);
                    distinct.insert(new.clone());
                    new
                }
            }
        };
        self.annotations.insert(fingerprint, shared);
    }

    /// A new fingerprint could not be queued for lint.
    pub fn count_lint_dropped(&self) {
        self.lint_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn annotation(&self, fingerprint: u64) -> Option<Arc<Annotation>> {
        self.annotations.get(&fingerprint).map(|a| a.clone())
    }

    pub fn statement(&self, fingerprint: u64) -> Option<Arc<StatementInfo>> {
        if let Some(info) = self.catalog.get(&fingerprint) {
            return Some(info.clone());
        }
        lock(&self.store)
            .entries
            .get(&fingerprint)
            .map(|e| e.info.clone())
    }

    /// Records one execution. Called on the hot path, per statement.
    pub fn record(&self, e: Execution) {
        let full = SHARDS.with(|cell| {
            let mut local = cell.borrow_mut();
            let at = match local.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    let s = Arc::new(Shard::default());
                    lock(&self.shards).push(s.clone());
                    local.push((self.id, s));
                    local.len() - 1
                }
            };
            // Pushed where the shard lies: cloning its Arc out first would
            // cost two atomic operations per statement.
            let mut pending = lock(&local[at].1.pending);
            if pending.len() >= SHARD_LIMIT {
                self.executions_dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            pending.push(e);
            if pending.len() < SHARD_BATCH {
                return None;
            }
            let store = match self.store.try_lock() {
                Ok(store) => store,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return None,
            };
            let batch = std::mem::replace(&mut *pending, Vec::with_capacity(SHARD_BATCH));
            Some((store, batch))
        });
        if let Some((store, batch)) = full {
            self.merge_into(store, &batch, self.last_flush_ms.load(Ordering::Relaxed));
        }
    }

    /// Merges every thread's buffer into the table. The proxy calls this
    /// a few times a second, so readers see figures under a second old.
    pub fn flush(&self, now_ms: u64) {
        self.last_flush_ms.store(now_ms, Ordering::Relaxed);
        let shards: Vec<Arc<Shard>> = lock(&self.shards).clone();
        for shard in shards {
            let batch = {
                let mut pending = lock(&shard.pending);
                // The next batch starts at the size of this one: growing
                // it again from nothing would copy it a dozen times over
                // between two flushes.
                let room = pending.len().min(SHARD_BATCH);
                std::mem::replace(&mut *pending, Vec::with_capacity(room))
            };
            if !batch.is_empty() {
                self.merge(&batch, now_ms);
            }
        }
        self.after_flush(now_ms);
    }

    pub(crate) fn merge(&self, batch: &[Execution], now_ms: u64) {
        self.merge_into(lock(&self.store), batch, now_ms);
    }

    fn merge_into(&self, mut store: MutexGuard<'_, Store>, batch: &[Execution], now_ms: u64) {
        let mut crossings = Vec::new();
        let (slow_us, total_us) = (self.config.watch_slow_us, self.config.watch_total_us);
        for e in batch {
            let info = || {
                self.catalog
                    .get(&e.fingerprint)
                    .map(|i| i.clone())
                    .unwrap_or_else(|| {
                        Arc::new(StatementInfo {
                            fingerprint: e.fingerprint,
                            query: "(text no longer cached)".into(),
                            kind: "UNKNOWN".into(),
                        })
                    })
            };
            store.record(e, now_ms, info, |entry| {
                if e.duration_us >= slow_us && entry.crossed & CROSSED_SLOW == 0 {
                    entry.crossed |= CROSSED_SLOW;
                    let c = Crossing::SlowExecution {
                        duration_us: e.duration_us,
                    };
                    crossings.push((e.fingerprint, c));
                }
                let total = entry.stats.totals.total_us;
                if total >= total_us && entry.crossed & CROSSED_TOTAL == 0 {
                    entry.crossed |= CROSSED_TOTAL;
                    crossings.push((e.fingerprint, Crossing::TotalTime { total_us: total }));
                }
            });
        }
        drop(store);
        self.notify_crossings(&crossings);
    }

    /// Forgets all statistics, events and detections, like
    /// pg_stat_statements_reset().
    pub fn reset(&self) {
        self.flush(self.last_flush_ms.load(Ordering::Relaxed));
        lock(&self.store).clear();
        lock(&self.slow).clear();
        lock(&self.detections).clear();
    }

    pub fn counters(&self) -> InsightCounters {
        let (fingerprints, evictions) = {
            let s = lock(&self.store);
            (s.len(), s.evictions())
        };
        let (slow_events, slow_events_dropped) = {
            let s = lock(&self.slow);
            (s.total, s.dropped)
        };
        InsightCounters {
            fingerprints,
            evictions,
            slow_events,
            slow_events_dropped,
            detections: self.detections_total.load(Ordering::Relaxed),
            detections_dropped: self.detections_dropped.load(Ordering::Relaxed),
            lint_dropped: self.lint_dropped.load(Ordering::Relaxed),
            executions_dropped: self.executions_dropped.load(Ordering::Relaxed),
        }
    }
}
