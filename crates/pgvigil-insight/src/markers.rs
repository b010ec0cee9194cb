//! Before/after markers: points in time (DDL through pgvigil, a new
//! application version, an operator's note) and how each busy
//! fingerprint ran before and after them.
//!
//! The split is exact even within a minute: creating a marker first
//! merges every thread's pending executions, then copies each chosen
//! fingerprint's cumulative totals and (coarse) histogram. "After" is the
//! cumulative figures now minus that copy, so nothing is recorded twice
//! and the hot path does not know markers exist. "Before" is the hour of
//! slices before the marker, kept as four numbers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::histogram::{LatencyHistogram, COARSE};
use crate::insight::lock;
use crate::stats::{Totals, HISTORY_MINUTES};
use crate::{Insight, StatementInfo};

/// Statement kinds that set a marker when they succeed.
const DDL_KINDS: &[&str] = &["CREATE INDEX", "DROP INDEX", "ALTER TABLE"];
/// sqlcommenter keys whose new values mark a deployment.
const VERSION_TAGS: &[&str] = &["version", "deploy"];
/// Fingerprints compared per marker: the busiest of the hour before it
/// (by total time), plus as many that touch the DDL's table. A copy of a
/// coarse histogram is a few hundred bytes, so a marker stays under about
/// 100 KiB.
pub const MARKER_TOP_FINGERPRINTS: usize = 50;
pub const MARKER_RELATED_FINGERPRINTS: usize = 50;
/// Automatic version markers are at most this frequent: a client cycling
/// through tag values must not make every statement pay for a marker.
const VERSION_MARKER_MIN_INTERVAL_MS: u64 = 10_000;
/// Values remembered per version tag, so a rolling deploy (old and new
/// versions interleaved) sets one marker, not one per alternation.
const MAX_VERSIONS_PER_TAG: usize = 64;
/// Longest marker name kept (a manual name, or a tag value); longer ones
/// are cut at a character boundary.
pub const MAX_MARKER_NAME: usize = 200;
/// After this long a marker's "after" figures are frozen and its copies
/// freed: a day later, other changes dominate what "after" means.
const MARKER_FOLLOW_MS: u64 = 24 * 3_600_000;
/// How often flush runs the slower upkeep (regression checks, freezing).
const UPKEEP_INTERVAL_MS: u64 = 5_000;

/// What the proxy's `[advisor]` section decides about markers and
/// regressions.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerConfig {
    pub max_markers: usize,
    pub regression_factor: f64,
    pub regression_window_ms: u64,
    pub regression_min_calls: u64,
}

impl Default for MarkerConfig {
    fn default() -> Self {
        MarkerConfig {
            max_markers: 100,
            regression_factor: 2.0,
            regression_window_ms: 300_000,
            regression_min_calls: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkerKind {
    Ddl,
    Version,
    Manual,
}

impl MarkerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            MarkerKind::Ddl => "ddl",
            MarkerKind::Version => "version",
            MarkerKind::Manual => "manual",
        }
    }
}

/// A fingerprint's figures on one side of a marker; durations in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub calls: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl Figures {
    pub(crate) fn of(totals: &Totals, hist: &LatencyHistogram) -> Figures {
        Figures {
            calls: totals.calls,
            mean_ms: totals.mean_us() / 1000.0,
            p50_ms: quantile_ms(hist, totals, 0.5),
            p95_ms: quantile_ms(hist, totals, 0.95),
        }
    }
}

/// Bucket midpoints kept within what was measured, as the query list does.
pub(crate) fn quantile_ms(h: &LatencyHistogram, t: &Totals, q: f64) -> f64 {
    match h.quantile_us(q) {
        Some(us) if t.calls > 0 && t.max_us >= t.min_us => {
            us.clamp(t.min_us as f64, t.max_us as f64) / 1000.0
        }
        Some(us) => us / 1000.0,
        None => 0.0,
    }
}

/// A marker as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub id: u64,
    pub name: String,
    pub kind: MarkerKind,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// For DDL: the command tag, e.g. `CREATE INDEX`.
    pub statement: Option<String>,
    /// For DDL: the objects named (index, table), never anything else of
    /// the statement's text.
    pub objects: Vec<String>,
    /// For a version marker: (tag key, new value).
    pub tag: Option<(String, String)>,
    /// Fingerprints whose before/after is followed.
    pub fingerprints: usize,
}

/// One fingerprint on both sides of a marker.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerComparison {
    pub fingerprint: u64,
    pub query: String,
    /// It touches a table the marker's DDL named (lint's table list).
    pub related: bool,
    pub before: Figures,
    pub after: Figures,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarkerReport {
    pub marker: Marker,
    /// Fingerprints with calls on both sides: related ones first, then by
    /// time spent before.
    pub comparisons: Vec<MarkerComparison>,
    /// E.g. "after CREATE INDEX orders_customer_id_idx, p95 of these 3
    /// queries fell from 41 ms to 0.3 ms".
    pub summary: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MarkerCounters {
    /// Markers kept now.
    pub markers: usize,
    pub markers_created: u64,
    /// Markers dropped past `max_markers`, and automatic ones skipped by
    /// the version rate limit.
    pub markers_dropped: u64,
    pub regressions: u64,
    pub regression_events_dropped: u64,
}

/// What a marker is made from; `tables` (bare names) pick the related
/// fingerprints.
struct NewMarker {
    kind: MarkerKind,
    name: String,
    statement: Option<String>,
    objects: Vec<String>,
    tables: Vec<String>,
    tag: Option<(String, String)>,
}

/// The cumulative figures of a fingerprint at a marker.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) totals: Totals,
    pub(crate) histogram: LatencyHistogram,
    pub(crate) first_seen_ms: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Followed {
    pub(crate) info: Arc<StatementInfo>,
    pub(crate) related: bool,
    pub(crate) before: Figures,
    /// Until frozen: None once frozen (or loaded from a file).
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) frozen_after: Option<Figures>,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredMarker {
    pub(crate) marker: Marker,
    pub(crate) followed: Vec<Followed>,
}

#[derive(Debug, Default)]
pub(crate) struct MarkerBook {
    pub(crate) markers: VecDeque<StoredMarker>,
    pub(crate) next_id: u64,
    pub(crate) created: u64,
    pub(crate) dropped: u64,
    /// Values seen per version tag key, oldest first.
    pub(crate) versions: HashMap<String, Vec<String>>,
    last_version_marker_ms: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Marks {
    pub(crate) book: Mutex<MarkerBook>,
    /// Hash of the last value seen per `VERSION_TAGS` key: the common case
    /// (same version as the statement before) costs a hash and a load.
    version_seen: [AtomicU64; 2],
    pub(crate) regressions: Mutex<crate::regression::Regressions>,
    last_upkeep_ms: AtomicU64,
}

/// FNV-1a: the values are short and not attacker-sensitive here (a
/// collision only skips the slow path's check).
fn value_hash(v: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The objects a DDL statement names: (index, table) for CREATE INDEX,
/// the indexes for DROP INDEX, the table for ALTER TABLE. Names only,
/// lower-cased unless quoted.
pub(crate) fn ddl_objects(kind: &str, text: &str) -> Vec<String> {
    let words = identifiers(text);
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let is = |i: usize, w: &str| lower.get(i).map(|x| x == w).unwrap_or(false);
    let skip = |mut i: usize, list: &[&str]| {
        while list.iter().any(|w| is(i, w)) {
            i += 1;
        }
        i
    };
    match kind {
        "CREATE INDEX" => {
            let Some(on) = lower.iter().position(|w| w == "on") else {
                return Vec::new();
            };
            let index_at = skip(
                2,
                &["unique", "index", "concurrently", "if", "not", "exists"],
            );
            let table_at = skip(on + 1, &["only"]);
            let mut out = Vec::new();
            if index_at < on {
                out.push(words[index_at].clone());
            }
            if let Some(t) = words.get(table_at) {
                out.push(t.clone());
            }
            out
        }
        "DROP INDEX" => {
            let at = skip(2, &["concurrently", "if", "exists"]);
            words[at.min(words.len())..]
                .iter()
                .zip(&lower[at.min(words.len())..])
                .take_while(|(_, l)| *l != "cascade" && *l != "restrict")
                .map(|(w, _)| w.clone())
                .collect()
        }
        "ALTER TABLE" => {
            let at = skip(2, &["if", "exists", "only"]);
            words.get(at).cloned().into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// Words and (possibly quoted, possibly schema-qualified) names of a
/// normalized statement, up to the first parenthesis: enough to find the
/// objects DDL names without parsing it.
fn identifiers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '(' | ';' => break,
            c if c.is_alphanumeric() || c == '_' || c == '.' || c == '$' => {
                cur.push(c.to_ascii_lowercase())
            }
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The table part of a possibly qualified name, for matching lint's
/// table lists.
fn bare(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn describe_change(before: f64, after: f64) -> &'static str {
    if after <= before * 0.9 {
        "fell"
    } else if after >= before * 1.1 {
        "rose"
    } else {
        "stayed"
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.3} ms")
    }
}

fn summary(marker: &Marker, comparisons: &[MarkerComparison]) -> String {
    let what = match (&marker.kind, &marker.statement, &marker.tag) {
        (MarkerKind::Ddl, Some(stmt), _) => match marker.objects.first() {
            Some(o) => format!("{stmt} {o}"),
            None => stmt.clone(),
        },
        (MarkerKind::Version, _, Some((k, v))) => format!("{k} {v}"),
        _ => format!("marker \"{}\"", marker.name),
    };
    let related: Vec<&MarkerComparison> = comparisons.iter().filter(|c| c.related).collect();
    let set: Vec<&MarkerComparison> = if related.is_empty() {
        comparisons.iter().collect()
    } else {
        related
    };
    if set.is_empty() {
        return format!("after {what}, no query has run on both sides yet");
    }
    // Weighted by calls after the marker, so a query run once does not
    // swing the figure.
    let weight: f64 = set
        .iter()
        .map(|c| c.after.calls as f64)
        .sum::<f64>()
        .max(1.0);
    let before = set
        .iter()
        .map(|c| c.before.p95_ms * c.after.calls as f64)
        .sum::<f64>()
        / weight;
    let after = set
        .iter()
        .map(|c| c.after.p95_ms * c.after.calls as f64)
        .sum::<f64>()
        / weight;
    let these = if set.len() == 1 {
        "this query".to_string()
    } else {
        format!("these {} queries", set.len())
    };
    match describe_change(before, after) {
        "stayed" => format!("after {what}, p95 of {these} stayed at {}", ms(after)),
        verb => format!(
            "after {what}, p95 of {these} {verb} from {} to {}",
            ms(before),
            ms(after)
        ),
    }
}

/// "After" from a copy taken at the marker and the cumulative figures now.
fn after_figures(
    snap: &Snapshot,
    totals: &Totals,
    hist: &LatencyHistogram,
    first_seen_ms: u64,
) -> Figures {
    if first_seen_ms > snap.first_seen_ms || totals.calls < snap.totals.calls {
        // Evicted or reset since: everything it has now came after.
        return Figures::of(totals, hist);
    }
    let mut diff = LatencyHistogram::with_resolution(COARSE);
    diff.merge(hist);
    diff.subtract(&snap.histogram);
    let calls = totals.calls - snap.totals.calls;
    let t = Totals {
        calls,
        errors: totals.errors.saturating_sub(snap.totals.errors),
        rows: totals.rows.saturating_sub(snap.totals.rows),
        total_us: totals.total_us.saturating_sub(snap.totals.total_us),
        // Bounds of the whole history still bound the part after.
        min_us: totals.min_us,
        max_us: totals.max_us,
        sum_sq_us: (totals.sum_sq_us - snap.totals.sum_sq_us).max(0.0),
    };
    Figures::of(&t, &diff)
}

impl Insight {
    /// The recorder's one call per finished statement: sets a marker for
    /// successful DDL (CREATE INDEX, DROP INDEX, ALTER TABLE) and for a
    /// new value of a `version` or `deploy` sqlcommenter tag. Returns at
    /// once for anything else, and for a tag value that is the same as
    /// last time. `text` is the normalized text; only the object names in
    /// it are kept.
    pub fn note_statement(
        &self,
        kind: &str,
        text: &str,
        tags: &[(String, String)],
        succeeded: bool,
        now_ms: u64,
    ) {
        if succeeded && DDL_KINDS.contains(&kind) {
            self.note_ddl(kind, text, now_ms);
        }
        for (key, value) in tags {
            let Some(slot) = VERSION_TAGS.iter().position(|t| t == key) else {
                continue;
            };
            let h = value_hash(value);
            if self.marks.version_seen[slot].swap(h, Ordering::Relaxed) == h {
                continue;
            }
            self.note_version(key, value, now_ms);
        }
    }

    fn note_ddl(&self, kind: &str, text: &str, now_ms: u64) {
        let objects = ddl_objects(kind, text);
        let unnamed_index = kind == "CREATE INDEX" && objects.len() == 1;
        let name = match objects.first() {
            Some(o) if unnamed_index => format!("{kind} ON {o}"),
            Some(o) => format!("{kind} {o}"),
            None => kind.to_string(),
        };
        // The tables whose queries the change is about.
        let tables: Vec<String> = match kind {
            "CREATE INDEX" => objects.last().cloned().into_iter().collect(),
            "ALTER TABLE" => objects.clone(),
            // DROP INDEX names no table: take it from the marker of the
            // index's creation, if pgvigil saw it.
            _ => {
                let book = lock(&self.marks.book);
                book.markers
                    .iter()
                    .filter(|m| m.marker.statement.as_deref() == Some("CREATE INDEX"))
                    .filter(|m| m.marker.objects.len() == 2)
                    .filter(|m| {
                        objects
                            .iter()
                            .any(|o| bare(o) == bare(&m.marker.objects[0]))
                    })
                    .map(|m| m.marker.objects[1].clone())
                    .collect()
            }
        };
        self.add_marker(
            NewMarker {
                kind: MarkerKind::Ddl,
                name: cut(&name, MAX_MARKER_NAME),
                statement: Some(kind.to_string()),
                objects,
                tables,
                tag: None,
            },
            now_ms,
        );
    }

    fn note_version(&self, key: &str, value: &str, now_ms: u64) {
        let value = cut(value, MAX_MARKER_NAME);
        {
            let mut book = lock(&self.marks.book);
            let book = &mut *book;
            let seen = book.versions.entry(key.to_string()).or_default();
            if seen.contains(&value) {
                return;
            }
            let first = seen.is_empty();
            if seen.len() >= MAX_VERSIONS_PER_TAG {
                seen.remove(0);
            }
            seen.push(value.clone());
            if first {
                // The version running when pgvigil started is no change.
                return;
            }
            if let Some(last) = book.last_version_marker_ms {
                if now_ms.saturating_sub(last) < VERSION_MARKER_MIN_INTERVAL_MS {
                    book.dropped += 1;
                    return;
                }
            }
            book.last_version_marker_ms = Some(now_ms);
        }
        self.add_marker(
            NewMarker {
                kind: MarkerKind::Version,
                name: cut(&format!("{key}={value}"), MAX_MARKER_NAME),
                statement: None,
                objects: Vec::new(),
                tables: Vec::new(),
                tag: Some((key.to_string(), value)),
            },
            now_ms,
        );
    }

    /// An operator's marker (`POST /api/markers`).
    pub fn add_manual_marker(&self, name: &str, now_ms: u64) -> Marker {
        self.add_marker(
            NewMarker {
                kind: MarkerKind::Manual,
                name: cut(name, MAX_MARKER_NAME),
                statement: None,
                objects: Vec::new(),
                tables: Vec::new(),
                tag: None,
            },
            now_ms,
        )
    }

    fn add_marker(&self, new: NewMarker, now_ms: u64) -> Marker {
        let NewMarker {
            kind,
            name,
            statement,
            objects,
            tables,
            tag,
        } = new;
        // Everything recorded so far happened before the marker.
        self.flush_buffers(now_ms);
        let tables: Vec<String> = tables.iter().map(|t| bare(t).to_string()).collect();
        let followed = self.follow(&tables, now_ms);
        let mut book = lock(&self.marks.book);
        book.next_id = book.next_id.max(1);
        let marker = Marker {
            id: book.next_id,
            name,
            kind,
            at_ms: now_ms,
            statement,
            objects,
            tag,
            fingerprints: followed.len(),
        };
        book.next_id += 1;
        book.created += 1;
        book.markers.push_back(StoredMarker {
            marker: marker.clone(),
            followed,
        });
        let max = self.config.markers.max_markers.max(1);
        while book.markers.len() > max {
            book.markers.pop_front();
            book.dropped += 1;
        }
        marker
    }

    /// Picks and copies the fingerprints a new marker follows.
    fn follow(&self, tables: &[String], now_ms: u64) -> Vec<Followed> {
        let now_minute = now_ms / 60_000;
        let store = lock(&self.store);
        // Time spent in the hour before, from slice totals alone: cheap
        // enough over every fingerprint.
        let mut recent: Vec<(u64, u64, bool)> = store
            .entries
            .iter()
            .filter_map(|(fp, e)| {
                let total: u64 = e
                    .stats
                    .slice_totals()
                    .rev()
                    .take_while(|(minute, span, _)| {
                        minute + span + HISTORY_MINUTES > now_minute + 1
                    })
                    .map(|(_, _, t)| t.total_us)
                    .sum();
                if total == 0 {
                    return None;
                }
                let related = !tables.is_empty()
                    && self.annotation(*fp).is_some_and(|a| {
                        a.tables
                            .iter()
                            .any(|t| tables.iter().any(|x| bare(t).eq_ignore_ascii_case(x)))
                    });
                Some((*fp, total, related))
            })
            .collect();
        recent.sort_by_key(|&(_, total, _)| std::cmp::Reverse(total));
        let related = recent
            .iter()
            .filter(|r| r.2)
            .take(MARKER_RELATED_FINGERPRINTS);
        let top = recent.iter().filter(|r| !r.2).take(MARKER_TOP_FINGERPRINTS);
        related
            .chain(top)
            .filter_map(|&(fp, _, related)| {
                let e = store.entries.get(&fp)?;
                let (t, h) = e.stats.window(HISTORY_MINUTES, now_ms);
                let mut coarse = LatencyHistogram::with_resolution(COARSE);
                coarse.merge(&e.stats.histogram);
                Some(Followed {
                    info: e.info.clone(),
                    related,
                    before: Figures::of(&t, &h),
                    snapshot: Some(Snapshot {
                        totals: e.stats.totals,
                        histogram: coarse,
                        first_seen_ms: e.stats.first_seen_ms,
                    }),
                    frozen_after: None,
                })
            })
            .collect()
    }

    /// Markers, newest first.
    pub fn markers(&self) -> Vec<Marker> {
        lock(&self.marks.book)
            .markers
            .iter()
            .rev()
            .map(|m| m.marker.clone())
            .collect()
    }

    /// A marker with its before/after comparisons.
    pub fn marker(&self, id: u64) -> Option<MarkerReport> {
        self.flush_buffers(self.last_flush_ms.load(Ordering::Relaxed));
        let stored = lock(&self.marks.book)
            .markers
            .iter()
            .find(|m| m.marker.id == id)?
            .clone();
        let mut comparisons = self.comparisons(&stored);
        comparisons.retain(|c| c.before.calls > 0 && c.after.calls > 0);
        comparisons.sort_by(|a, b| {
            b.related.cmp(&a.related).then(
                (b.before.mean_ms * b.before.calls as f64)
                    .total_cmp(&(a.before.mean_ms * a.before.calls as f64)),
            )
        });
        let summary = summary(&stored.marker, &comparisons);
        Some(MarkerReport {
            marker: stored.marker,
            comparisons,
            summary,
        })
    }

    pub(crate) fn comparisons(&self, stored: &StoredMarker) -> Vec<MarkerComparison> {
        let store = lock(&self.store);
        stored
            .followed
            .iter()
            .map(|f| {
                let after = match (&f.frozen_after, &f.snapshot) {
                    (Some(a), _) => *a,
                    (None, Some(snap)) => match store.entries.get(&f.info.fingerprint) {
                        Some(e) => after_figures(
                            snap,
                            &e.stats.totals,
                            &e.stats.histogram,
                            e.stats.first_seen_ms,
                        ),
                        None => Figures::default(),
                    },
                    (None, None) => Figures::default(),
                };
                MarkerComparison {
                    fingerprint: f.info.fingerprint,
                    query: f.info.query.clone(),
                    related: f.related,
                    before: f.before,
                    after,
                }
            })
            .collect()
    }

    pub fn marker_counters(&self) -> MarkerCounters {
        let (markers, markers_created, markers_dropped) = {
            let b = lock(&self.marks.book);
            (b.markers.len(), b.created, b.dropped)
        };
        let (regressions, regression_events_dropped) = {
            let r = lock(&self.marks.regressions);
            (r.total, r.dropped)
        };
        MarkerCounters {
            markers,
            markers_created,
            markers_dropped,
            regressions,
            regression_events_dropped,
        }
    }

    /// Merges the per-thread buffers without running the upkeep.
    pub(crate) fn flush_buffers(&self, now_ms: u64) {
        let shards: Vec<Arc<crate::insight::Shard>> = lock(&self.shards).clone();
        for shard in shards {
            let batch = std::mem::take(&mut *lock(&shard.pending));
            if !batch.is_empty() {
                self.merge(&batch, now_ms);
            }
        }
    }

    /// Called at the end of every flush; does its work at most every
    /// `UPKEEP_INTERVAL_MS`, off the forwarding path.
    pub(crate) fn after_flush(&self, now_ms: u64) {
        let last = self.marks.last_upkeep_ms.load(Ordering::Relaxed);
        if now_ms < last + UPKEEP_INTERVAL_MS {
            return;
        }
        self.marks.last_upkeep_ms.store(now_ms, Ordering::Relaxed);
        self.check_regressions(now_ms);
        self.freeze_old_markers(now_ms);
    }

    fn freeze_old_markers(&self, now_ms: u64) {
        let due: Vec<StoredMarker> = lock(&self.marks.book)
            .markers
            .iter()
            .filter(|m| {
                m.marker.at_ms + MARKER_FOLLOW_MS <= now_ms
                    && m.followed.iter().any(|f| f.snapshot.is_some())
            })
            .cloned()
            .collect();
        for m in due {
            let after: Vec<Figures> = self.comparisons(&m).iter().map(|c| c.after).collect();
            let mut book = lock(&self.marks.book);
            if let Some(kept) = book.markers.iter_mut().find(|k| k.marker.id == m.marker.id) {
                for (f, a) in kept.followed.iter_mut().zip(after) {
                    f.frozen_after = Some(a);
                    f.snapshot = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Annotation, Execution, InsightConfig};

    fn exec(fp: u64, us: u64) -> Execution {
        Execution {
            fingerprint: fp,
            duration_us: us,
            rows: 1,
            sqlstate: None,
            caller: 0,
        }
    }

    fn register(insight: &Insight, fp: u64, query: &str) {
        insight.register(Arc::new(StatementInfo {
            fingerprint: fp,
            query: query.into(),
            kind: "SELECT".into(),
        }));
    }

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn ddl_objects_are_names_only() {
        assert_eq!(
            ddl_objects(
                "CREATE INDEX",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_c_idx ON ONLY public.orders USING btree (customer_id) WHERE total > $1"
            ),
            vec!["orders_c_idx", "public.orders"]
        );
        assert_eq!(
            ddl_objects("CREATE INDEX", "create index on \"Orders\" (a)"),
            vec!["Orders"]
        );
        assert_eq!(
            ddl_objects("DROP INDEX", "DROP INDEX IF EXISTS a_idx, b_idx CASCADE"),
            vec!["a_idx", "b_idx"]
        );
        assert_eq!(
            ddl_objects(
                "ALTER TABLE",
                "ALTER TABLE IF EXISTS orders ADD COLUMN note text DEFAULT $1"
            ),
            vec!["orders"]
        );
    }

    #[test]
    fn a_marker_splits_before_and_after_within_one_minute() {
        let insight = Insight::new(InsightConfig::default());
        register(&insight, 1, "SELECT * FROM orders WHERE customer_id = $1");
        insight.annotate(
            1,
            Annotation {
                parsed: true,
                tables: vec!["public.orders".into()],
                findings: Vec::new(),
            },
        );
        // Slow before, all within the same minute, never flushed by hand:
        // the marker must merge pending executions itself.
        for _ in 0..100 {
            insight.record(exec(1, 40_000));
        }
        insight.note_statement(
            "CREATE INDEX",
            "CREATE INDEX orders_customer_id_idx ON orders (customer_id)",
            &[],
            true,
            T0 + 10_000,
        );
        for _ in 0..300 {
            insight.record(exec(1, 300));
        }
        insight.flush(T0 + 20_000);
        let list = insight.markers();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, MarkerKind::Ddl);
        assert_eq!(
            list[0].objects,
            vec!["orders_customer_id_idx".to_string(), "orders".to_string()]
        );
        let report = insight.marker(list[0].id).unwrap();
        let c = &report.comparisons[0];
        assert!(c.related);
        assert_eq!((c.before.calls, c.after.calls), (100, 300));
        assert!((c.before.p95_ms - 40.0).abs() < 1.5, "{:?}", c.before);
        assert!((c.after.p95_ms - 0.3).abs() < 0.02, "{:?}", c.after);
        assert!((c.after.mean_ms - 0.3).abs() < 1e-9);
        assert!(
            report.summary.starts_with(
                "after CREATE INDEX orders_customer_id_idx, p95 of this query fell from "
            ),
            "{}",
            report.summary
        );
    }

    #[test]
    fn dropping_an_index_pgvigil_saw_created_relates_its_table_queries() {
        let insight = Insight::new(InsightConfig::default());
        register(&insight, 1, "SELECT * FROM orders WHERE c = $1");
        register(&insight, 2, "SELECT * FROM lines");
        for (fp, table) in [(1, "orders"), (2, "lines")] {
            insight.annotate(
                fp,
                Annotation {
                    parsed: true,
                    tables: vec![table.into()],
                    findings: Vec::new(),
                },
            );
        }
        let run = |us| {
            for _ in 0..10 {
                insight.record(exec(1, us));
                insight.record(exec(2, 100));
            }
        };
        run(300);
        insight.note_statement("CREATE INDEX", "CREATE INDEX ON orders (c)", &[], true, T0);
        assert_eq!(insight.markers()[0].name, "CREATE INDEX ON orders");
        insight.note_statement(
            "CREATE INDEX",
            "CREATE INDEX orders_c ON public.orders (c)",
            &[],
            true,
            T0 + 1,
        );
        run(300);
        insight.note_statement("DROP INDEX", "DROP INDEX orders_c", &[], true, T0 + 2);
        run(40_000);
        let id = insight.markers()[0].id;
        let r = insight.marker(id).unwrap();
        let related: Vec<u64> = r
            .comparisons
            .iter()
            .filter(|c| c.related)
            .map(|c| c.fingerprint)
            .collect();
        assert_eq!(related, vec![1]);
        assert!(
            r.summary
                .starts_with("after DROP INDEX orders_c, p95 of this query rose"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn failed_ddl_and_other_statements_set_no_marker() {
        let insight = Insight::new(InsightConfig::default());
        insight.note_statement("CREATE INDEX", "CREATE INDEX i ON t (a)", &[], false, T0);
        insight.note_statement("SELECT", "SELECT $1", &[], true, T0);
        insight.note_statement("CREATE TABLE", "CREATE TABLE t (a int)", &[], true, T0);
        assert!(insight.markers().is_empty());
    }

    #[test]
    fn a_new_version_tag_value_sets_one_marker_and_old_values_none() {
        let insight = Insight::new(InsightConfig::default());
        let tags = |v: &str| vec![("version".to_string(), v.to_string())];
        insight.note_statement("SELECT", "SELECT $1", &tags("1"), true, T0);
        insight.note_statement("SELECT", "SELECT $1", &tags("1"), true, T0 + 1);
        assert!(
            insight.markers().is_empty(),
            "the first version is no change"
        );
        insight.note_statement("SELECT", "SELECT $1", &tags("2"), true, T0 + 2);
        // A rolling deploy interleaves both versions.
        for i in 0..10 {
            let v = if i % 2 == 0 { "1" } else { "2" };
            insight.note_statement("SELECT", "SELECT $1", &tags(v), true, T0 + 100 + i);
        }
        let list = insight.markers();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, MarkerKind::Version);
        assert_eq!(list[0].tag, Some(("version".into(), "2".into())));
        // A third version soon after is rate limited and counted.
        insight.note_statement("SELECT", "SELECT $1", &tags("3"), true, T0 + 200);
        assert_eq!(insight.markers().len(), 1);
        assert_eq!(insight.marker_counters().markers_dropped, 1);
    }

    #[test]
    fn markers_beyond_the_cap_drop_the_oldest_and_are_counted() {
        let mut config = InsightConfig::default();
        config.markers.max_markers = 3;
        let insight = Insight::new(config);
        for i in 0..5 {
            insight.add_manual_marker(&format!("m{i}"), T0 + i);
        }
        let names: Vec<String> = insight.markers().into_iter().map(|m| m.name).collect();
        assert_eq!(names, vec!["m4", "m3", "m2"]);
        let c = insight.marker_counters();
        assert_eq!((c.markers, c.markers_created, c.markers_dropped), (3, 5, 2));
    }

    #[test]
    fn after_figures_freeze_a_day_later() {
        let insight = Insight::new(InsightConfig::default());
        register(&insight, 1, "SELECT $1");
        for _ in 0..10 {
            insight.record(exec(1, 1_000));
        }
        let m = insight.add_manual_marker("deploy", T0);
        for _ in 0..10 {
            insight.record(exec(1, 2_000));
        }
        insight.flush(T0 + MARKER_FOLLOW_MS);
        // Later calls no longer change the frozen "after".
        for _ in 0..10 {
            insight.record(exec(1, 9_000));
        }
        insight.flush(T0 + MARKER_FOLLOW_MS + 1);
        let r = insight.marker(m.id).unwrap();
        assert_eq!(r.comparisons[0].after.calls, 10);
        assert!((r.comparisons[0].after.mean_ms - 2.0).abs() < 1e-9);
    }
}
