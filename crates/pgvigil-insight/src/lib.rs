//! Query insight: what every statement through pgvigil cost, which ones
//! were slow, and which came in N+1 loops.
//!
//! A pure library fed by the proxy: no sockets, no clocks (times are
//! passed in). Recording is built for the hot path: each execution goes
//! to a buffer owned by the recording thread, and `flush` (run by the
//! proxy a few times a second) merges the buffers into the global table,
//! so statements never contend on a shared lock or cache line.

mod histogram;
mod history;
mod markers;
mod nplusone;
mod regression;
mod slow;
mod stats;
mod store;
pub mod time;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;

pub use histogram::LatencyHistogram;
pub use history::{HistoryError, LoadedHistory, HISTORY_FORMAT_VERSION};
pub use markers::{
    Figures, Marker, MarkerComparison, MarkerConfig, MarkerCounters, MarkerKind, MarkerReport,
    MAX_MARKER_NAME,
};
pub use nplusone::{Detection, NPlusOneConfig, NPlusOneDetector, Observed, Pattern};
pub use regression::RegressionEvent;
pub use slow::{SlowContext, SlowEvent, SlowRule, SlowRules, DEFAULT_RULE};
pub use stats::{Execution, QueryStats, Totals, HISTORY_HOURS, HISTORY_MINUTES};
pub use store::StatementInfo;

use slow::SlowLog;
use store::Store;

#[derive(Debug, Clone)]
pub struct InsightConfig {
    pub max_fingerprints: usize,
    pub slow_rules: SlowRules,
    pub max_slow_events: usize,
    pub n_plus_one: NPlusOneConfig,
    pub max_detections: usize,
    pub log_parameters: bool,
    /// Before/after markers, regressions (markers.rs, regression.rs).
    pub markers: MarkerConfig,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            max_fingerprints: 5000,
            slow_rules: SlowRules::new(Vec::new(), 500_000),
            max_slow_events: 1000,
            n_plus_one: NPlusOneConfig::default(),
            max_detections: 1000,
            log_parameters: false,
            markers: MarkerConfig::default(),
        }
    }
}

/// Who ran a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub database: String,
    pub user: String,
    pub application_name: String,
}

/// A recording thread's buffer. Its lock is taken by that thread for
/// every execution and by `flush` a few times a second, so it is almost
/// never contended.
#[derive(Default)]
struct Shard {
    pending: Mutex<Vec<Execution>>,
}

/// A thread merges its own buffer once it holds this many executions,
/// so a burst between flushes stays bounded.
const SHARD_BATCH: usize = 8192;
/// The catalog of statement texts may hold this many times
/// `max_fingerprints` before it is trimmed.
const CATALOG_FACTOR: usize = 4;
const MAX_CALLERS: usize = 10_000;

static NEXT_INSIGHT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sort orders of the query list, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    TotalTime,
    Calls,
    Mean,
    P95,
    Errors,
}

impl std::str::FromStr for SortBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "total_time" => SortBy::TotalTime,
            "calls" => SortBy::Calls,
            "mean" => SortBy::Mean,
            "p95" => SortBy::P95,
            "errors" => SortBy::Errors,
            other => {
                return Err(format!(
                    "unknown sort `{other}`: use total_time, calls, mean, p95 or errors"
                ))
            }
        })
    }
}

/// One fingerprint's figures over a period, pg_stat_statements' columns
/// plus percentiles. Durations in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRow {
    pub fingerprint: u64,
    pub query: String,
    pub statement: String,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// From the statement's lint, once it ran (see `annotate`).
    pub tables: Vec<String>,
    /// (code, message) findings.
    pub lint: Vec<(String, String)>,
}

/// What the off-hot-path analysis of a statement found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotation {
    pub parsed: bool,
    pub tables: Vec<String>,
    pub findings: Vec<(String, String)>,
}

/// A fingerprint in detail: its row, histogram, errors and callers.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryDetail {
    pub row: QueryRow,
    /// (lower µs, upper µs, count) for each non-empty bucket.
    pub histogram: Vec<(u64, u64, u64)>,
    pub errors_by_sqlstate: Vec<(String, u64)>,
    pub callers: Vec<Caller>,
    /// p50/p95/p99 (ms) and calls per recent slice, oldest first.
    pub minutes: Vec<MinuteRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRow {
    pub minute_start_ms: u64,
    /// Length of the slice: 1, or 5 for older history.
    pub minutes: u64,
    pub calls: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// N+1 findings aggregated per (parent, child) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRow {
    pub pattern: Pattern,
    pub child: u64,
    pub child_query: String,
    pub parent_query: Option<String>,
    /// Repeats in the most recent occurrence.
    pub repeats: usize,
    /// Summed duration of the repeated statements, last occurrence, ms.
    pub total_ms: f64,
    pub occurrences: u64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub caller: Caller,
    pub tags: Vec<(String, String)>,
    pub suggestion: String,
}

/// One `/metrics` series family member; see `Insight::export`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedSeries {
    /// None for the sum of the fingerprints beyond the series cap.
    pub info: Option<Arc<StatementInfo>>,
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
    pub rows: u64,
    /// Errors by SQLSTATE class (first two characters).
    pub errors_by_class: Vec<(String, u64)>,
}

impl ExportedSeries {
    fn empty(info: Option<Arc<StatementInfo>>, bounds: usize) -> Self {
        ExportedSeries {
            info,
            buckets: vec![0; bounds + 1],
            sum_seconds: 0.0,
            count: 0,
            rows: 0,
            errors_by_class: Vec::new(),
        }
    }

    fn add(&mut self, stats: &QueryStats, bounds_us: &[u64]) {
        for (low, high, n) in stats.histogram.buckets() {
            let mid = low + (high - low) / 2;
            let slot = bounds_us
                .iter()
                .position(|&le| mid <= le)
                .unwrap_or(bounds_us.len());
            self.buckets[slot] += n;
        }
        self.sum_seconds += stats.totals.total_us as f64 / 1e6;
        self.count += stats.totals.calls;
        self.rows += stats.totals.rows;
        for (code, n) in &stats.errors_by_code {
            let class = String::from_utf8_lossy(&code[..2]).into_owned();
            match self.errors_by_class.iter_mut().find(|(c, _)| *c == class) {
                Some((_, total)) => *total += n,
                None => self.errors_by_class.push((class, *n)),
            }
        }
    }
}

/// Context of a detection, from the session that saw it.
#[derive(Debug, Clone)]
pub struct SeenBy {
    pub caller: u32,
    pub tags: Vec<(String, String)>,
    pub now_ms: u64,
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
}

pub struct Insight {
    id: u64,
    config: InsightConfig,
    catalog: DashMap<u64, Arc<StatementInfo>>,
    annotations: DashMap<u64, Arc<Annotation>>,
    store: Mutex<Store>,
    shards: Mutex<Vec<Arc<Shard>>>,
    callers: Mutex<(HashMap<Caller, u32>, Vec<Caller>)>,
    slow: Mutex<SlowLog>,
    detections: Mutex<HashMap<(Pattern, u64), DetectionRow>>,
    detections_total: AtomicU64,
    detections_dropped: AtomicU64,
    /// The `now_ms` of the latest flush, for merges a thread triggers.
    last_flush_ms: AtomicU64,
    lint_dropped: AtomicU64,
    /// Markers and regressions (markers.rs, regression.rs).
    marks: markers::Marks,
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
            shards: Mutex::new(Vec::new()),
            callers: Mutex::new((HashMap::new(), Vec::new())),
            detections: Mutex::new(HashMap::new()),
            detections_total: AtomicU64::new(0),
            detections_dropped: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(0),
            lint_dropped: AtomicU64::new(0),
            marks: markers::Marks::default(),
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
        self.catalog.insert(info.fingerprint, info).is_none()
    }

    /// Attaches lint results to a fingerprint; bounded like the catalog.
    pub fn annotate(&self, fingerprint: u64, annotation: Annotation) {
        if self.annotations.len() >= self.config.max_fingerprints * CATALOG_FACTOR {
            self.annotations.clear();
        }
        self.annotations.insert(fingerprint, Arc::new(annotation));
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

    /// Interns a (database, user, application_name); ids are stable for
    /// the life of the process. Past the cap, everyone new shares id 0.
    pub fn caller(&self, database: &str, user: &str, application_name: &str) -> u32 {
        let key = Caller {
            database: database.to_string(),
            user: user.to_string(),
            application_name: application_name.to_string(),
        };
        let mut guard = lock(&self.callers);
        let (ids, list) = &mut *guard;
        if list.is_empty() {
            list.push(Caller {
                database: "(other)".into(),
                user: "(other)".into(),
                application_name: "(other)".into(),
            });
        }
        if let Some(&id) = ids.get(&key) {
            return id;
        }
        if list.len() >= MAX_CALLERS {
            return 0;
        }
        let id = list.len() as u32;
        list.push(key.clone());
        ids.insert(key, id);
        id
    }

    fn caller_by_id(&self, id: u32) -> Caller {
        lock(&self.callers)
            .1
            .get(id as usize)
            .cloned()
            .unwrap_or(Caller {
                database: String::new(),
                user: String::new(),
                application_name: String::new(),
            })
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
            pending.push(e);
            (pending.len() >= SHARD_BATCH)
                .then(|| std::mem::replace(&mut *pending, Vec::with_capacity(SHARD_BATCH)))
        });
        if let Some(batch) = full {
            self.merge(&batch, self.last_flush_ms.load(Ordering::Relaxed));
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

    fn merge(&self, batch: &[Execution], now_ms: u64) {
        let mut store = lock(&self.store);
        for e in batch {
            store.record(e, now_ms, || {
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
            });
        }
    }

    pub fn report_slow(&self, event: SlowEvent) {
        let mut slow = lock(&self.slow);
        slow.count(&event.rule, event.fingerprint);
        slow.push(event);
    }

    /// Slow executions counted per (rule, fingerprint), since start or
    /// reset; fingerprint None sums what the counter's cap left out.
    pub fn slow_counts(&self) -> Vec<(String, Option<u64>, u64)> {
        lock(&self.slow).counts()
    }

    /// Series for `/metrics`: the `max_series` fingerprints with the most
    /// total time each get their own, the rest are summed into one with
    /// fingerprint None ("other"). Bucket counts are per bucket of
    /// `bounds_us`, with one more for +Inf.
    pub fn export(&self, max_series: usize, bounds_us: &[u64]) -> Vec<ExportedSeries> {
        let store = lock(&self.store);
        let mut entries: Vec<&store::Entry> = store.entries.values().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.stats.totals.total_us));
        let mut out: Vec<ExportedSeries> = Vec::new();
        let mut other = ExportedSeries::empty(None, bounds_us.len());
        for (i, e) in entries.iter().enumerate() {
            let target = if i < max_series {
                out.push(ExportedSeries::empty(Some(e.info.clone()), bounds_us.len()));
                out.last_mut().expect("just pushed")
            } else {
                &mut other
            };
            target.add(&e.stats, bounds_us);
        }
        if other.count > 0 {
            out.push(other);
        }
        out
    }

    pub fn slow_events(&self, limit: usize) -> Vec<SlowEvent> {
        lock(&self.slow).recent(limit)
    }

    pub fn report_detection(&self, d: &Detection, seen: &SeenBy) {
        self.detections_total.fetch_add(1, Ordering::Relaxed);
        let parent = match d.pattern {
            Pattern::NPlusOne { parent } => Some(parent),
            Pattern::RepeatedIdentical => None,
        };
        let child_query = self.text_of(d.child);
        let parent_query = parent.map(|p| self.text_of(p));
        let caller = self.caller_by_id(seen.caller);
        let mut all = lock(&self.detections);
        let full = all.len() >= self.config.max_detections;
        match all.get_mut(&(d.pattern, d.child)) {
            Some(row) => {
                row.occurrences += 1;
                row.repeats = d.repeats;
                row.total_ms = d.total_us as f64 / 1000.0;
                row.last_seen_ms = seen.now_ms;
                row.caller = caller;
                row.tags = seen.tags.clone();
            }
            None if full => {
                self.detections_dropped.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let suggestion = suggestion(d.pattern, &child_query);
                all.insert(
                    (d.pattern, d.child),
                    DetectionRow {
                        pattern: d.pattern,
                        child: d.child,
                        child_query,
                        parent_query,
                        repeats: d.repeats,
                        total_ms: d.total_us as f64 / 1000.0,
                        occurrences: 1,
                        first_seen_ms: seen.now_ms,
                        last_seen_ms: seen.now_ms,
                        caller,
                        tags: seen.tags.clone(),
                        suggestion,
                    },
                );
            }
        }
    }

    fn text_of(&self, fingerprint: u64) -> String {
        self.statement(fingerprint)
            .map(|i| i.query.clone())
            .unwrap_or_else(|| format!("(fingerprint {fingerprint:016x})"))
    }

    /// Detections, most recent first.
    pub fn detections(&self) -> Vec<DetectionRow> {
        let mut rows: Vec<DetectionRow> = lock(&self.detections).values().cloned().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.last_seen_ms));
        rows
    }

    /// The query list over all time since start/reset, or over the last
    /// `window_minutes`.
    pub fn queries(
        &self,
        sort: SortBy,
        limit: usize,
        window_minutes: Option<u64>,
        now_ms: u64,
    ) -> Vec<QueryRow> {
        let store = lock(&self.store);
        let mut rows: Vec<QueryRow> = store
            .entries
            .values()
            .filter_map(|e| {
                let (totals, hist) = match window_minutes {
                    Some(m) => {
                        let (t, h) = e.stats.window(m, now_ms);
                        (t, std::borrow::Cow::Owned(h))
                    }
                    None => (
                        e.stats.totals,
                        std::borrow::Cow::Borrowed(&e.stats.histogram),
                    ),
                };
                (totals.calls > 0).then(|| row(e, &totals, &hist))
            })
            .collect();
        drop(store);
        let key = |r: &QueryRow| match sort {
            SortBy::TotalTime => r.total_ms,
            SortBy::Calls => r.calls as f64,
            SortBy::Mean => r.mean_ms,
            SortBy::P95 => r.p95_ms,
            SortBy::Errors => r.errors as f64,
        };
        rows.sort_by(|a, b| key(b).total_cmp(&key(a)));
        rows.truncate(limit);
        for r in &mut rows {
            self.fill_annotation(r);
        }
        rows
    }

    pub fn query(&self, fingerprint: u64, now_ms: u64) -> Option<QueryDetail> {
        let store = lock(&self.store);
        let e = store.entries.get(&fingerprint)?;
        let row = row(e, &e.stats.totals, &e.stats.histogram);
        let histogram = e.stats.histogram.buckets().collect();
        let errors_by_sqlstate = e
            .stats
            .errors_by_code
            .iter()
            .map(|(c, n)| (String::from_utf8_lossy(c).into_owned(), *n))
            .collect();
        let caller_ids = e.stats.callers.clone();
        let first_minute = (now_ms / 60_000).saturating_sub(HISTORY_MINUTES - 1);
        let minutes = e
            .stats
            .slices
            .iter()
            .filter(|s| s.minute + s.span > first_minute)
            .map(|s| MinuteRow {
                minute_start_ms: s.minute * 60_000,
                minutes: s.span,
                calls: s.totals.calls,
                p50_ms: percentile_ms(&s.histogram, &s.totals, 0.5),
                p95_ms: percentile_ms(&s.histogram, &s.totals, 0.95),
                p99_ms: percentile_ms(&s.histogram, &s.totals, 0.99),
            })
            .collect();
        drop(store);
        let callers = caller_ids
            .into_iter()
            .map(|id| self.caller_by_id(id))
            .collect();
        Some(QueryDetail {
            row,
            histogram,
            errors_by_sqlstate,
            callers,
            minutes,
        })
    }

    fn fill_annotation(&self, r: &mut QueryRow) {
        if let Some(a) = self.annotation(r.fingerprint) {
            r.tables = a.tables.clone();
            r.lint = a.findings.clone();
        }
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
        }
    }
}

/// A percentile in milliseconds. Histogram answers are bucket midpoints,
/// which may fall just outside what was actually measured; the recorded
/// minimum and maximum are exact, so the answer is kept between them.
fn percentile_ms(h: &LatencyHistogram, t: &Totals, q: f64) -> f64 {
    match h.quantile_us(q) {
        Some(us) if t.calls > 0 => us.clamp(t.min_us as f64, t.max_us as f64) / 1000.0,
        Some(us) => us / 1000.0,
        None => 0.0,
    }
}

fn row(e: &store::Entry, t: &Totals, h: &LatencyHistogram) -> QueryRow {
    QueryRow {
        fingerprint: e.info.fingerprint,
        query: e.info.query.clone(),
        statement: e.info.kind.clone(),
        calls: t.calls,
        errors: t.errors,
        rows: t.rows,
        total_ms: t.total_us as f64 / 1000.0,
        mean_ms: t.mean_us() / 1000.0,
        min_ms: t.min_us as f64 / 1000.0,
        max_ms: t.max_us as f64 / 1000.0,
        stddev_ms: t.stddev_us() / 1000.0,
        p50_ms: percentile_ms(h, t, 0.5),
        p90_ms: percentile_ms(h, t, 0.9),
        p95_ms: percentile_ms(h, t, 0.95),
        p99_ms: percentile_ms(h, t, 0.99),
        p999_ms: percentile_ms(h, t, 0.999),
        first_seen_ms: e.stats.first_seen_ms,
        last_seen_ms: e.stats.last_seen_ms,
        tables: Vec::new(),
        lint: Vec::new(),
    }
}

/// A concrete fix, in SQL and ORM terms.
fn suggestion(pattern: Pattern, child_query: &str) -> String {
    match pattern {
        Pattern::NPlusOne { .. } => format!(
            "The app runs `{}` once per row of the parent query. Fetch all children in one query \
             (`... WHERE key = ANY($1)` with the parent keys as an array, or `IN (...)`), or JOIN \
             the child table in the parent query. In ORM terms: eager-load the association \
             (e.g. selectinload/joinedload, includes/preload, prefetch_related).",
            child_query
        ),
        Pattern::RepeatedIdentical => format!(
            "The app runs `{}` repeatedly with the same parameters in one unit of work. Run it \
             once and reuse the result (memoize, or cache it for the request).",
            child_query
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(fp: u64, us: u64) -> Execution {
        Execution {
            fingerprint: fp,
            duration_us: us,
            rows: 1,
            sqlstate: None,
            caller: 0,
        }
    }

    #[test]
    fn executions_from_many_threads_are_all_counted_after_flush() {
        let insight = Arc::new(Insight::new(InsightConfig::default()));
        insight.register(Arc::new(StatementInfo {
            fingerprint: 7,
            query: "SELECT $1".into(),
            kind: "SELECT".into(),
        }));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let i = insight.clone();
                std::thread::spawn(move || {
                    for n in 0..10_000 {
                        i.record(exec(7, 100 + n % 50));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        insight.flush(1_000);
        let rows = insight.queries(SortBy::Calls, 10, None, 1_000);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].calls, 40_000);
        assert_eq!(rows[0].query, "SELECT $1");
    }

    #[test]
    fn nothing_is_visible_before_a_flush_and_reset_clears() {
        let insight = Insight::new(InsightConfig::default());
        insight.record(exec(1, 10));
        assert!(insight.queries(SortBy::Calls, 10, None, 0).is_empty());
        insight.flush(0);
        assert_eq!(insight.queries(SortBy::Calls, 10, None, 0).len(), 1);
        insight.reset();
        assert!(insight.queries(SortBy::Calls, 10, None, 0).is_empty());
    }

    #[test]
    fn sorting_by_total_time_puts_the_costliest_first() {
        let insight = Insight::new(InsightConfig::default());
        for _ in 0..10 {
            insight.record(exec(1, 1_000));
        }
        insight.record(exec(2, 50_000));
        insight.flush(0);
        let rows = insight.queries(SortBy::TotalTime, 10, None, 0);
        assert_eq!(rows[0].fingerprint, 2);
        let rows = insight.queries(SortBy::Calls, 1, None, 0);
        assert_eq!(rows[0].fingerprint, 1);
    }

    #[test]
    fn percentiles_never_leave_the_measured_range() {
        let insight = Insight::new(InsightConfig::default());
        insight.record(exec(1, 200_600));
        insight.flush(0);
        let r = &insight.queries(SortBy::Calls, 1, None, 0)[0];
        for p in [r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms] {
            assert_eq!(p, 200.6);
        }
    }

    #[test]
    fn export_caps_series_and_sums_the_rest_into_other() {
        let insight = Insight::new(InsightConfig::default());
        for fp in 0..50u64 {
            for _ in 0..=fp {
                insight.record(exec(fp, 1_000));
            }
        }
        insight.flush(0);
        let series = insight.export(10, &[500, 2_000, 30_000_000]);
        assert_eq!(series.len(), 11);
        let top: Vec<u64> = series[..10]
            .iter()
            .map(|s| s.info.as_ref().unwrap().fingerprint)
            .collect();
        assert_eq!(top, (40..50u64).rev().collect::<Vec<_>>());
        let other = series.last().unwrap();
        assert!(other.info.is_none());
        let all: u64 = series.iter().map(|s| s.count).sum();
        assert_eq!(all, (1..=50u64).sum::<u64>());
        assert_eq!(other.buckets[1], other.count); // 1 ms <= 2 ms
    }

    #[test]
    fn detections_aggregate_per_pair() {
        let insight = Insight::new(InsightConfig::default());
        let d = Detection {
            pattern: Pattern::NPlusOne { parent: 1 },
            child: 2,
            repeats: 20,
            total_us: 5_000,
        };
        let seen = SeenBy {
            caller: insight.caller("db", "app", "web"),
            tags: vec![("controller".into(), "orders".into())],
            now_ms: 10,
        };
        insight.report_detection(&d, &seen);
        insight.report_detection(&d, &SeenBy { now_ms: 20, ..seen });
        let rows = insight.detections();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].occurrences, 2);
        assert_eq!(rows[0].caller.application_name, "web");
        assert!(rows[0].suggestion.contains("ANY($1)"));
    }

    #[test]
    fn a_typical_fingerprint_fits_in_eight_kib() {
        // A statement that ran every minute of the last hour with
        // latencies spread over a 16x range.
        let mut q = QueryStats::new(0);
        for minute in 0..60u64 {
            for i in 0..500u64 {
                let e = exec(1, 300 + (i * 37) % 4500);
                q.record(&e, minute * 60_000 + i);
            }
        }
        let bytes = std::mem::size_of::<QueryStats>() + q.heap_bytes();
        assert!(bytes <= 8 * 1024, "{bytes} bytes");
    }
}
