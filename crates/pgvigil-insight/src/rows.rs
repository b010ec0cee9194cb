//! What readers get out of insight: the query list and one query in
//! detail, with pg_stat_statements' column names and percentiles.

use std::borrow::Cow;

use crate::histogram::LatencyHistogram;
use crate::insight::lock;
use crate::stats::{Totals, FOLD_MINUTES, HISTORY_MINUTES};
use crate::store;
use crate::{Caller, Insight};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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

impl Insight {
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
        // Ranked by the one figure the sort needs, and rows built for the
        // top `limit` only: with thousands of fingerprints, building every
        // row (its text copied, five percentiles) cost most of a scrape or
        // an advisor pass.
        let mut ranked: Vec<(f64, &store::Entry, Totals, Cow<'_, LatencyHistogram>)> = store
            .entries
            .values()
            .filter_map(|e| {
                let (totals, hist) = match window_minutes {
                    Some(m) => {
                        let (t, h) = e.stats.window(m, now_ms);
                        (t, Cow::Owned(h))
                    }
                    None => (e.stats.totals, Cow::Borrowed(&e.stats.histogram)),
                };
                (totals.calls > 0).then(|| (sort_key(sort, &totals, &hist), &**e, totals, hist))
            })
            .collect();
        let first = |a: &(f64, _, _, _), b: &(f64, _, _, _)| b.0.total_cmp(&a.0);
        if limit == 0 {
            ranked.clear();
        } else if ranked.len() > limit {
            ranked.select_nth_unstable_by(limit - 1, first);
            ranked.truncate(limit);
        }
        ranked.sort_by(first);
        let mut rows: Vec<QueryRow> = ranked
            .iter()
            .map(|(_, e, totals, hist)| row(e, totals, hist))
            .collect();
        drop(ranked);
        drop(store);
        for r in &mut rows {
            self.fill_annotation(r);
        }
        rows
    }

    pub fn query(&self, fingerprint: u64, now_ms: u64) -> Option<QueryDetail> {
        let store = lock(&self.store);
        let e = store.entries.get(&fingerprint)?;
        let mut row = row(e, &e.stats.totals, &e.stats.histogram);
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
            .slices()
            .iter()
            .filter(|s| s.minute + s.span > first_minute)
            .map(|s| minute_row(s.minute, s.span, &s.totals, &s.histogram))
            .collect();
        drop(store);
        // The same tables and lint as the list shows, or the detail page
        // contradicts the row it was opened from.
        self.fill_annotation(&mut row);
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

    /// Every statement together, per recent slice of the last hour, oldest
    /// first: the dashboard's latency-over-time chart. Fingerprints fold
    /// their one-minute slices into five-minute ones only when they next
    /// run, so a minute old enough to be folded is counted in its
    /// five-minute slice whether or not its fingerprint has folded it yet;
    /// otherwise one moment would show up twice, once per span.
    pub fn recent_overall(&self, now_ms: u64) -> Vec<MinuteRow> {
        let now_minute = now_ms / 60_000;
        let first_minute = now_minute.saturating_sub(HISTORY_MINUTES - 1);
        let mut merged: std::collections::BTreeMap<(u64, u64), (Totals, LatencyHistogram)> =
            Default::default();
        let store = lock(&self.store);
        for e in store.entries.values() {
            for s in e
                .stats
                .slices()
                .iter()
                .filter(|s| s.minute + s.span > first_minute)
            {
                let key = if s.folds_to_five_minutes(now_minute) {
                    (s.minute - s.minute % FOLD_MINUTES, FOLD_MINUTES)
                } else {
                    (s.minute, s.span)
                };
                let (totals, hist) = merged.entry(key).or_insert_with(|| {
                    (
                        Totals::default(),
                        LatencyHistogram::with_resolution(crate::histogram::COARSE),
                    )
                });
                totals.merge(&s.totals);
                hist.merge(&s.histogram);
            }
        }
        drop(store);
        merged
            .into_iter()
            .filter(|(_, (t, _))| t.calls > 0)
            .map(|((minute, span), (t, h))| minute_row(minute, span, &t, &h))
            .collect()
    }

    fn fill_annotation(&self, r: &mut QueryRow) {
        if let Some(a) = self.annotation(r.fingerprint) {
            r.tables = a.tables.clone();
            r.lint = a.findings.clone();
        }
    }
}

/// A percentile in milliseconds. Histogram answers are bucket midpoints,
/// which may fall just outside what was actually measured; the recorded
/// minimum and maximum are exact, so the answer is kept between them.
/// One slice of history as the API shows it, whether one fingerprint's
/// or every fingerprint's merged.
fn minute_row(minute: u64, span: u64, t: &Totals, h: &LatencyHistogram) -> MinuteRow {
    MinuteRow {
        minute_start_ms: minute * 60_000,
        minutes: span,
        calls: t.calls,
        p50_ms: percentile_ms(h, t, 0.5),
        p95_ms: percentile_ms(h, t, 0.95),
        p99_ms: percentile_ms(h, t, 0.99),
    }
}

fn percentile_ms(h: &LatencyHistogram, t: &Totals, q: f64) -> f64 {
    match h.quantile_us(q) {
        Some(us) if t.calls > 0 => us.clamp(t.min_us as f64, t.max_us as f64) / 1000.0,
        Some(us) => us / 1000.0,
        None => 0.0,
    }
}

/// The figure `row` would give the column `sort` orders by.
fn sort_key(sort: SortBy, t: &Totals, h: &LatencyHistogram) -> f64 {
    match sort {
        SortBy::TotalTime => t.total_us as f64 / 1000.0,
        SortBy::Calls => t.calls as f64,
        SortBy::Mean => t.mean_us() / 1000.0,
        SortBy::P95 => percentile_ms(h, t, 0.95),
        SortBy::Errors => t.errors as f64,
    }
}

fn row(e: &store::Entry, t: &Totals, h: &LatencyHistogram) -> QueryRow {
    QueryRow {
        fingerprint: e.info.fingerprint,
        query: e.info.query.clone(),
        statement: e.info.kind.to_string(),
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
