//! Regressions: a fingerprint whose p95 over the recent window is
//! `regression_factor` times its p95 over the day of history before it.
//!
//! Checked from flush's upkeep (every few seconds, off the forwarding
//! path) on the slices `QueryStats` already keeps, so the window is
//! rounded up to whole minutes: the current, partial minute counts as one.

use std::collections::{HashSet, VecDeque};

use crate::histogram::{LatencyHistogram, COARSE};
use crate::insight::lock;
use crate::markers::quantile_ms;
use crate::stats::Totals;
use crate::Insight;

/// Regression events kept; older ones are dropped and counted.
pub const MAX_REGRESSION_EVENTS: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct RegressionEvent {
    pub fingerprint: u64,
    pub query: String,
    /// Unix milliseconds of the check that found it.
    pub at_ms: u64,
    pub window_calls: u64,
    pub window_p95_ms: f64,
    pub baseline_calls: u64,
    pub baseline_p95_ms: f64,
    /// window_p95_ms / baseline_p95_ms.
    pub factor: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Regressions {
    pub(crate) events: VecDeque<RegressionEvent>,
    /// Regressed at the last check: not reported again until it recovers.
    active: HashSet<u64>,
    pub(crate) total: u64,
    pub(crate) dropped: u64,
}

impl Insight {
    pub(crate) fn check_regressions(&self, now_ms: u64) {
        let cfg = &self.config.markers;
        let window_minutes = cfg.regression_window_ms.div_ceil(60_000).max(1);
        let now_minute = now_ms / 60_000;
        let min_calls = cfg.regression_min_calls.max(1);
        let mut found = Vec::new();
        let mut recovered = Vec::new();
        {
            let store = lock(&self.store);
            for (fp, e) in &store.entries {
                let in_window =
                    |s: &&crate::stats::Slice| s.minute + s.span + window_minutes > now_minute + 1;
                // Call counts first: most fingerprints stop here without
                // allocating or merging a histogram.
                let all_calls: u64 = e.stats.slice_totals().map(|(_, _, t)| t.calls).sum();
                let recent_calls: u64 = e
                    .stats
                    .slice_totals()
                    .rev()
                    .take_while(|(minute, span, _)| minute + span + window_minutes > now_minute + 1)
                    .map(|(_, _, t)| t.calls)
                    .sum();
                let older_calls = all_calls - recent_calls;
                if recent_calls < min_calls || older_calls < min_calls {
                    continue;
                }
                let slices = e.stats.slices();
                let (recent, older): (Vec<_>, Vec<_>) = slices.iter().partition(in_window);
                let p95 = |slices: &[&crate::stats::Slice]| {
                    let mut t = Totals::default();
                    let mut h = LatencyHistogram::with_resolution(COARSE);
                    for s in slices {
                        t.merge(&s.totals);
                        h.merge(&s.histogram);
                    }
                    quantile_ms(&h, &t, 0.95)
                };
                let (now_p95, base_p95) = (p95(&recent), p95(&older));
                if base_p95 > 0.0 && now_p95 >= cfg.regression_factor * base_p95 {
                    found.push(RegressionEvent {
                        fingerprint: *fp,
                        query: e.info.query.clone(),
                        at_ms: now_ms,
                        window_calls: recent_calls,
                        window_p95_ms: now_p95,
                        baseline_calls: older_calls,
                        baseline_p95_ms: base_p95,
                        factor: now_p95 / base_p95,
                    });
                } else {
                    recovered.push(*fp);
                }
            }
        }
        let mut r = lock(&self.marks.regressions);
        for fp in recovered {
            r.active.remove(&fp);
        }
        for event in found {
            if !r.active.insert(event.fingerprint) {
                continue;
            }
            // The fingerprint only: its text may hold what an
            // application put in it.
            tracing::warn!(
                fingerprint = format!("{:016x}", event.fingerprint),
                "query regression: p95 {:.3} ms over the last {} min is {:.1}x its baseline {:.3} ms",
                event.window_p95_ms,
                window_minutes,
                event.factor,
                event.baseline_p95_ms
            );
            r.total += 1;
            if r.events.len() >= MAX_REGRESSION_EVENTS {
                r.events.pop_front();
                r.dropped += 1;
            }
            r.events.push_back(event);
        }
        if r.active.len() > self.config.max_fingerprints {
            // Fingerprints evicted while regressed.
            let store = lock(&self.store);
            r.active.retain(|fp| store.entries.contains_key(fp));
        }
    }

    /// Regression events, newest first.
    pub fn regressions(&self, limit: usize) -> Vec<RegressionEvent> {
        lock(&self.marks.regressions)
            .events
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Execution, Insight, InsightConfig};

    fn exec(us: u64) -> Execution {
        Execution {
            fingerprint: 9,
            duration_us: us,
            rows: 1,
            sqlstate: None,
            caller: 0,
        }
    }

    // On an hour boundary.
    const T0: u64 = 1_800_000_000_000;

    fn insight() -> Insight {
        let mut c = InsightConfig::default();
        c.markers.regression_window_ms = 300_000;
        c.markers.regression_min_calls = 20;
        c.markers.regression_factor = 2.0;
        Insight::new(c)
    }

    /// 30 calls a minute at `us` over `minutes` minutes from `start`.
    fn run(i: &Insight, start_ms: u64, minutes: u64, us: u64) {
        for m in 0..minutes {
            for _ in 0..30 {
                i.record(exec(us));
            }
            i.flush(start_ms + m * 60_000);
        }
    }

    #[test]
    fn a_query_three_times_slower_than_its_baseline_is_reported_once() {
        let i = insight();
        run(&i, T0, 120, 1_000);
        assert!(i.regressions(10).is_empty());
        run(&i, T0 + 120 * 60_000, 3, 3_000);
        let events = i.regressions(10);
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e.fingerprint, 9);
        assert!(e.factor > 2.5 && e.factor < 3.5, "{e:?}");
        assert!(e.baseline_calls >= 20 && e.window_calls >= 20);
        // Still regressed: not reported again.
        run(&i, T0 + 123 * 60_000, 3, 3_000);
        assert_eq!(i.regressions(10).len(), 1);
        assert_eq!(i.marker_counters().regressions, 1);
    }

    #[test]
    fn a_recovered_query_that_regresses_again_is_reported_again() {
        let i = insight();
        run(&i, T0, 60, 1_000);
        run(&i, T0 + 60 * 60_000, 2, 5_000);
        assert_eq!(i.regressions(10).len(), 1);
        // Fast again for longer than the window.
        run(&i, T0 + 62 * 60_000, 10, 1_000);
        run(&i, T0 + 72 * 60_000, 3, 10_000);
        assert_eq!(i.regressions(10).len(), 2);
    }

    #[test]
    fn too_few_calls_or_a_small_change_raise_nothing() {
        let i = insight();
        run(&i, T0, 60, 1_000);
        // 1.5x: under the factor.
        run(&i, T0 + 60 * 60_000, 3, 1_500);
        assert!(i.regressions(10).is_empty());
        // 10x, but a handful of calls after a quiet spell.
        let j = insight();
        run(&j, T0, 60, 1_000);
        for m in 0..5 {
            j.record(exec(10_000));
            j.flush(T0 + (70 + m) * 60_000);
        }
        assert!(j.regressions(10).is_empty());
    }
}
