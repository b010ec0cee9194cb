//! Query insight: what every statement through pgvigil cost, which ones
//! were slow, which came in N+1 loops, and what the advisor should look
//! at next.
//!
//! A pure library fed by the proxy: no sockets, no clocks (times are
//! passed in). The proxy turns wire messages into calls on a session's
//! `Recorder` (prepare, bind, begin, complete); the recorder normalizes
//! once per distinct text, times each statement, checks slow rules and
//! N+1 loops, and hands each execution to `Insight`, whose per-thread
//! buffers `flush` (run a few times a second) merges into the global
//! table, so statements never contend on a shared lock or cache line.
//! Work that needs more than the hot path can afford (lint, plans) hangs
//! off one hook, `Watcher`.

mod callers;
mod config;
mod detections;
mod export;
mod histogram;
mod history;
mod insight;
mod markers;
mod nplusone;
mod recorder;
mod regression;
mod rows;
mod slow;
mod stats;
mod store;
pub mod time;
mod watch;

pub use callers::Caller;
pub use config::InsightConfig;
pub use detections::{DetectionRow, SeenBy};
pub use export::ExportedSeries;
pub use histogram::LatencyHistogram;
pub use history::{HistoryError, LoadedHistory, HISTORY_FORMAT_VERSION};
pub use insight::{Insight, InsightCounters};
pub use markers::{
    Figures, Marker, MarkerComparison, MarkerConfig, MarkerCounters, MarkerKind, MarkerReport,
    MAX_MARKER_NAME,
};
pub use nplusone::{Detection, NPlusOneConfig, NPlusOneDetector, Observed, Pattern};
pub use recorder::{Outcome, Recorder, SessionInfo, Tracked};
pub use regression::RegressionEvent;
pub use rows::{Annotation, MinuteRow, QueryDetail, QueryRow, SortBy};
pub use slow::{SlowContext, SlowEvent, SlowRule, SlowRules, DEFAULT_RULE};
pub use stats::{Execution, QueryStats, Totals, HISTORY_HOURS, HISTORY_MINUTES};
pub use store::StatementInfo;
pub use watch::{Crossing, ParameterSample, Watcher};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
    fn a_recording_thread_never_waits_for_a_held_table_and_counts_what_it_drops() {
        let insight = Arc::new(Insight::new(InsightConfig::default()));
        let held = crate::insight::lock(&insight.store);
        let recorder = insight.clone();
        // Twice the buffer limit, recorded while a reader holds the
        // table: with a blocking merge this thread would never finish.
        let n = 2 * crate::insight::SHARD_LIMIT as u64;
        let done = std::thread::spawn(move || {
            for i in 0..n {
                recorder.record(exec(7, 100 + i % 50));
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the recording thread waited for the table"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(held);
        done.join().unwrap();
        insight.flush(1_000);
        let kept = insight.queries(SortBy::Calls, 10, None, 1_000)[0].calls;
        let dropped = insight.counters().executions_dropped;
        assert_eq!(
            kept,
            crate::insight::SHARD_LIMIT as u64,
            "the buffer keeps up to its limit"
        );
        assert_eq!(kept + dropped, n, "every execution is kept or counted");
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
    fn a_short_list_is_the_head_of_the_full_ranking_for_every_sort() {
        let insight = Insight::new(InsightConfig::default());
        // 300 fingerprints whose calls, durations and errors rank them
        // differently per sort, with ties in every column.
        for fp in 1..=300u64 {
            for call in 0..(fp % 7 + 1) {
                let mut e = exec(fp, (fp * 37 + call * 11) % 5_000 + 10);
                if (fp + call) % 5 == 0 {
                    e.sqlstate = Some(*b"57014");
                }
                insight.record(e);
            }
        }
        insight.flush(1_000);
        let key = |r: &QueryRow, sort| match sort {
            SortBy::TotalTime => r.total_ms,
            SortBy::Calls => r.calls as f64,
            SortBy::Mean => r.mean_ms,
            SortBy::P95 => r.p95_ms,
            SortBy::Errors => r.errors as f64,
        };
        for sort in [
            SortBy::TotalTime,
            SortBy::Calls,
            SortBy::Mean,
            SortBy::P95,
            SortBy::Errors,
        ] {
            let all = insight.queries(sort, usize::MAX, None, 1_000);
            assert_eq!(all.len(), 300);
            assert!(
                all.windows(2).all(|w| key(&w[0], sort) >= key(&w[1], sort)),
                "{sort:?}"
            );
            for limit in [0, 1, 7, 150, 299, 300, 1_000] {
                let head = insight.queries(sort, limit, None, 1_000);
                assert_eq!(head.len(), limit.min(300), "{sort:?} {limit}");
                let keys =
                    |rows: &[QueryRow]| rows.iter().map(|r| key(r, sort)).collect::<Vec<_>>();
                assert_eq!(keys(&head), keys(&all[..head.len()]), "{sort:?} {limit}");
                // Ties may come in any order, but each row is whole.
                for r in &head {
                    assert!(all.contains(r), "{sort:?} {limit}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn overall_history_sums_every_statement_once_per_moment() {
        const MIN: u64 = 60_000;
        let insight = Insight::new(InsightConfig::default());
        insight.record(exec(1, 1_000));
        insight.record(exec(2, 3_000));
        insight.flush(10 * MIN);
        insight.record(exec(1, 1_000));
        insight.flush(12 * MIN + 5);
        let rows = insight.recent_overall(12 * MIN + 10);
        let got: Vec<(u64, u64, u64)> = rows
            .iter()
            .map(|r| (r.minute_start_ms / MIN, r.minutes, r.calls))
            .collect();
        assert_eq!(got, [(10, 1, 2), (12, 1, 1)]);
        assert_eq!(rows[0].p99_ms, 3.0, "both statements in one minute");

        // Minute 20: fingerprint 2 runs and folds its old minutes into
        // five-minute slices, fingerprint 1 has not; the minutes 10-14
        // are one slice all the same, counted once.
        insight.record(exec(2, 2_000));
        insight.flush(20 * MIN);
        let got: Vec<(u64, u64, u64)> = insight
            .recent_overall(20 * MIN + 1)
            .iter()
            .map(|r| (r.minute_start_ms / MIN, r.minutes, r.calls))
            .collect();
        assert_eq!(got, [(10, 5, 3), (20, 1, 1)]);

        // Older than the hour: gone.
        assert!(insight.recent_overall(200 * MIN).is_empty());
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
    fn fingerprints_with_equal_annotations_share_one() {
        let insight = Insight::new(InsightConfig::default());
        let of = |tables: &[&str]| Annotation {
            parsed: true,
            tables: tables.iter().map(|t| t.to_string()).collect(),
            findings: Vec::new(),
        };
        insight.annotate(1, of(&["accounts"]));
        insight.annotate(2, of(&["accounts"]));
        insight.annotate(3, of(&["branches"]));
        let (a, b, c) = (
            insight.annotation(1).unwrap(),
            insight.annotation(2).unwrap(),
            insight.annotation(3).unwrap(),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(c.tables, ["branches"]);
        assert_eq!(*a, of(&["accounts"]));
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
