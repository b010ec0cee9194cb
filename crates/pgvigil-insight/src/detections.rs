//! N+1 findings, aggregated per (pattern, child) pair, with the fix in
//! SQL and ORM terms.

use std::sync::atomic::Ordering;

use crate::insight::lock;
use crate::{Caller, Detection, Insight, Pattern, SlowEvent};

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
    /// When this pair last wrote a log line (Unix ms), and occurrences
    /// since then; see [`DetectionLog`].
    pub(crate) logged_ms: u64,
    pub(crate) unlogged: u64,
}

/// Whether a detection deserves a log line. A loop in a request handler
/// repeats on every request (1,251 identical lines in 9 minutes for one
/// pattern), so a (pattern, parent, child) is logged in full the first
/// time, then at most once per [`DETECTION_LOG_PERIOD_MS`] with the count
/// of occurrences since its last line; the decision is two compares under
/// the lock the aggregation already takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectionLog {
    First,
    /// `more` occurrences since the last line, this one included.
    Again {
        more: u64,
    },
    Quiet,
}

/// One line per pattern per minute at most, PgBouncer's `stats_period`
/// default for its periodic log lines.
pub const DETECTION_LOG_PERIOD_MS: u64 = 60_000;

/// Context of a detection, from the session that saw it.
#[derive(Debug, Clone)]
pub struct SeenBy {
    pub caller: u32,
    pub tags: Vec<(String, String)>,
    pub now_ms: u64,
}

impl Insight {
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

    pub fn slow_events(&self, limit: usize) -> Vec<SlowEvent> {
        lock(&self.slow).recent(limit)
    }

    pub fn report_detection(&self, d: &Detection, seen: &SeenBy) -> DetectionLog {
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
                row.unlogged += 1;
                if seen.now_ms.saturating_sub(row.logged_ms) < DETECTION_LOG_PERIOD_MS {
                    return DetectionLog::Quiet;
                }
                row.logged_ms = seen.now_ms;
                DetectionLog::Again {
                    more: std::mem::take(&mut row.unlogged),
                }
            }
            // Counted in pgvigil_detections_dropped; logging each would
            // bring back a line per occurrence once the table is full.
            None if full => {
                self.detections_dropped.fetch_add(1, Ordering::Relaxed);
                DetectionLog::Quiet
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
                        logged_ms: seen.now_ms,
                        unlogged: 0,
                    },
                );
                DetectionLog::First
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
    use crate::InsightConfig;

    #[test]
    fn a_pattern_logs_first_then_at_most_a_count_per_period() {
        let insight = Insight::new(InsightConfig::default());
        let d = Detection {
            pattern: Pattern::NPlusOne { parent: 1 },
            child: 2,
            repeats: 20,
            total_us: 5_000,
        };
        let at = |now_ms| SeenBy {
            caller: insight.caller("db", "app", "web"),
            tags: Vec::new(),
            now_ms,
        };
        assert_eq!(
            insight.report_detection(&d, &at(1_000)),
            DetectionLog::First
        );
        for t in 1..=9 {
            assert_eq!(
                insight.report_detection(&d, &at(1_000 + t * 1_000)),
                DetectionLog::Quiet
            );
        }
        // A minute after the first line: one line counting all ten since.
        assert_eq!(
            insight.report_detection(&d, &at(1_000 + DETECTION_LOG_PERIOD_MS)),
            DetectionLog::Again { more: 10 }
        );
        assert_eq!(
            insight.report_detection(&d, &at(2_000 + DETECTION_LOG_PERIOD_MS)),
            DetectionLog::Quiet
        );
        // Another parent is another pattern: logged on its own first time.
        let other = Detection {
            pattern: Pattern::NPlusOne { parent: 3 },
            ..d
        };
        assert_eq!(
            insight.report_detection(&other, &at(3_000)),
            DetectionLog::First
        );
    }
}
