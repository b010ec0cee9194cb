//! Per-fingerprint statistics: pg_stat_statements' columns, a latency
//! histogram, one-minute slices of the last hour and hourly slices of the
//! last day.

use std::borrow::Cow;

use crate::histogram::{LatencyHistogram, COARSE};

/// Recent history: one-minute slices for the last `MINUTE_SLICES`
/// minutes, then five-minute slices back to an hour, then hourly slices
/// back to `HISTORY_HOURS`. Windows of up to five minutes are exact to the
/// minute; longer ones to five minutes. Slices use the coarse histogram
/// resolution, which keeps a fingerprint that ran in every minute of the
/// hour near 8 KiB; the day of hourly slices a regression's baseline and a
/// marker's "before" need costs a few KiB more.
pub const MINUTE_SLICES: u64 = 5;
pub const HISTORY_MINUTES: u64 = 60;
/// A day: what regression baselines compare against, and what a restart
/// keeps when history is saved to a file.
pub const HISTORY_HOURS: u64 = 24;
pub(crate) const FOLD_MINUTES: u64 = 5;
const HOUR_MINUTES: u64 = 60;
/// Distinct SQLSTATEs and (database, user, application) tuples kept per
/// fingerprint; beyond, the rarest stays out and a counter says so.
const MAX_ERROR_CODES: usize = 8;
const MAX_CALLERS: usize = 8;

/// Sums that merge by addition: everything but the histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    /// Sum of squared durations (µs²) for the standard deviation.
    pub sum_sq_us: f64,
}

impl Totals {
    pub fn record(&mut self, us: u64, rows: u64, failed: bool) {
        if self.calls == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.calls += 1;
        self.errors += failed as u64;
        self.rows += rows;
        self.total_us += us;
        self.sum_sq_us += (us as f64) * (us as f64);
    }

    pub fn merge(&mut self, other: &Totals) {
        if other.calls == 0 {
            return;
        }
        if self.calls == 0 || other.min_us < self.min_us {
            self.min_us = other.min_us;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.calls += other.calls;
        self.errors += other.errors;
        self.rows += other.rows;
        self.total_us += other.total_us;
        self.sum_sq_us += other.sum_sq_us;
    }

    pub fn mean_us(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_us as f64 / self.calls as f64
        }
    }

    /// Population standard deviation, as pg_stat_statements reports.
    pub fn stddev_us(&self) -> f64 {
        if self.calls == 0 {
            return 0.0;
        }
        let mean = self.mean_us();
        (self.sum_sq_us / self.calls as f64 - mean * mean)
            .max(0.0)
            .sqrt()
    }
}

/// One stretch of time of one fingerprint.
#[derive(Debug, Clone)]
pub struct Slice {
    /// First minute covered, in minutes since the Unix epoch.
    pub minute: u64,
    /// Minutes covered: 1, or `FOLD_MINUTES` once folded.
    pub span: u64,
    pub totals: Totals,
    pub histogram: LatencyHistogram,
}

impl Slice {
    fn new(minute: u64, span: u64) -> Slice {
        Slice {
            minute,
            span,
            totals: Totals::default(),
            histogram: LatencyHistogram::with_resolution(COARSE),
        }
    }

    /// A one-minute slice older than `MINUTE_SLICES`: folded into its
    /// five-minute slice when its fingerprint next runs, and read as if it
    /// already were by whoever merges fingerprints (`recent_overall`).
    pub(crate) fn folds_to_five_minutes(&self, now_minute: u64) -> bool {
        self.span == 1 && self.minute + MINUTE_SLICES <= now_minute
    }
}

#[derive(Debug, Clone)]
pub struct QueryStats {
    pub totals: Totals,
    pub histogram: LatencyHistogram,
    /// Recent minutes, oldest first; minutes without calls are absent.
    /// Empty while every call fell in the first minute: that minute's
    /// slice is then `totals` and `histogram` (see `slices`). Boxed,
    /// 16 bytes less than a VecDeque: a new minute rebuilds the list when
    /// it folds anyway.
    pub(crate) kept_slices: Box<[Slice]>,
    /// Boxed, 8 bytes less than a Vec: most fingerprints never fail, and
    /// a new code (at most `MAX_ERROR_CODES` a fingerprint) can afford
    /// a copy.
    pub errors_by_code: Box<[([u8; 5], u64)]>,
    /// Interned caller ids (see `Callers`), most recent last.
    pub callers: Vec<u32>,
    /// Unix milliseconds.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// Decaying use count for eviction, as pg_stat_statements' `usage`.
    pub usage: f64,
}

impl QueryStats {
    pub fn new(now_ms: u64) -> Self {
        QueryStats {
            totals: Totals::default(),
            histogram: LatencyHistogram::new(),
            kept_slices: Box::default(),
            errors_by_code: Box::default(),
            // Every fingerprint has a caller from its first call, and
            // most keep that one: room for one, not the four a first
            // push reserves.
            callers: Vec::with_capacity(1),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            usage: 0.0,
        }
    }

    pub fn record(&mut self, s: &Execution, now_ms: u64) {
        let failed = s.sqlstate.is_some();
        let minute = now_ms / 60_000;
        if self.kept_slices.last().map(|x| x.minute) != Some(minute) {
            self.next_minute(minute);
        }
        self.totals.record(s.duration_us, s.rows, failed);
        self.histogram.record_us(s.duration_us);
        self.last_seen_ms = now_ms;
        self.usage += 1.0;
        // None in the first minute, whose slice is the totals.
        if let Some(slice) = self.kept_slices.last_mut() {
            slice.totals.record(s.duration_us, s.rows, failed);
            slice.histogram.record_us(s.duration_us);
        }
        if let Some(code) = s.sqlstate {
            let known = self.errors_by_code.len();
            match self.errors_by_code.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None if known < MAX_ERROR_CODES => {
                    let mut codes = std::mem::take(&mut self.errors_by_code).into_vec();
                    codes.reserve_exact(1);
                    codes.push((code, 1));
                    self.errors_by_code = codes.into_boxed_slice();
                }
                None => {}
            }
        }
        if self.callers.last() != Some(&s.caller) {
            self.callers.retain(|&c| c != s.caller);
            if self.callers.len() == MAX_CALLERS {
                self.callers.remove(0);
            }
            self.callers.push(s.caller);
        }
    }

    /// A call in `minute`, which has no slice yet. The first minute
    /// keeps none: a fingerprint seen in one minute only (most of those
    /// of an app that inlines values) would hold its totals and
    /// histogram twice, over 100 bytes in two allocations. Its slice is made
    /// from them once a call comes in another minute, before that call
    /// is counted.
    #[cold]
    fn next_minute(&mut self, minute: u64) {
        let first = if self.kept_slices.is_empty() {
            if self.totals.calls == 0 || minute == self.first_seen_ms / 60_000 {
                return;
            }
            self.first_minute()
        } else {
            None
        };
        let mut slices = std::mem::take(&mut self.kept_slices).into_vec();
        slices.extend(first);
        slices.push(Slice::new(minute, 1));
        self.kept_slices = fold(slices, minute);
    }

    /// The slice of the first minute while no slice is kept.
    fn first_minute(&self) -> Option<Slice> {
        if !self.kept_slices.is_empty() || self.totals.calls == 0 {
            return None;
        }
        let mut slice = Slice::new(self.first_seen_ms / 60_000, 1);
        slice.totals = self.totals;
        // Exactly the coarse histogram of the same calls: each fine
        // bucket lies within one coarse bucket.
        slice.histogram.merge(&self.histogram);
        Some(slice)
    }

    /// Recent slices, oldest first, the first minute's included while it
    /// is not kept (then made on the spot: readers are rare, calls are
    /// not).
    pub fn slices(&self) -> Cow<'_, [Slice]> {
        match self.first_minute() {
            Some(first) => Cow::Owned(vec![first]),
            None => Cow::Borrowed(&self.kept_slices),
        }
    }

    /// (first minute, minutes, totals) of each recent slice, oldest
    /// first, as `slices` without making the first minute's.
    pub(crate) fn slice_totals(&self) -> impl DoubleEndedIterator<Item = (u64, u64, &Totals)> {
        let first = (self.kept_slices.is_empty() && self.totals.calls > 0).then_some((
            self.first_seen_ms / 60_000,
            1,
            &self.totals,
        ));
        first.into_iter().chain(
            self.kept_slices
                .iter()
                .map(|s| (s.minute, s.span, &s.totals)),
        )
    }

    /// `fold`, of the kept slices.
    pub(crate) fn fold_history(&mut self, now_minute: u64) {
        let slices = std::mem::take(&mut self.kept_slices).into_vec();
        self.kept_slices = fold(slices, now_minute);
    }

    /// Totals and histogram over the last `minutes` minutes (the current,
    /// partial minute included).
    pub fn window(&self, minutes: u64, now_ms: u64) -> (Totals, LatencyHistogram) {
        let now_minute = now_ms / 60_000;
        let mut totals = Totals::default();
        let mut hist = LatencyHistogram::new();
        for s in self.slices().iter().rev() {
            // Include every slice that overlaps the window.
            if s.minute + s.span + minutes <= now_minute + 1 {
                break;
            }
            totals.merge(&s.totals);
            hist.merge(&s.histogram);
        }
        (totals, hist)
    }

    /// Heap bytes, for the documented per-fingerprint memory figure.
    pub fn heap_bytes(&self) -> usize {
        self.histogram.heap_bytes()
            + self.kept_slices.len() * std::mem::size_of::<Slice>()
            + self
                .kept_slices
                .iter()
                .map(|s| s.histogram.heap_bytes())
                .sum::<usize>()
            + self.errors_by_code.len() * std::mem::size_of::<([u8; 5], u64)>()
            + self.callers.capacity() * std::mem::size_of::<u32>()
    }
}

/// Folds one-minute slices older than `MINUTE_SLICES` into five-minute
/// ones, five-minute ones into hourly ones once their whole hour is older
/// than `HISTORY_MINUTES` (so an hourly slice never overlaps the recent
/// hour windows are taken from), and drops what is older than
/// `HISTORY_HOURS`.
fn fold(slices: Vec<Slice>, now_minute: u64) -> Box<[Slice]> {
    let mut folded: Vec<Slice> = Vec::with_capacity(slices.len());
    for s in slices {
        if s.minute + s.span + HISTORY_HOURS * HOUR_MINUTES <= now_minute + 1 {
            continue; // older than the day
        }
        let hour = s.minute - s.minute % HOUR_MINUTES;
        let span = if hour + HOUR_MINUTES + HISTORY_MINUTES <= now_minute + 1 {
            HOUR_MINUTES
        } else if s.folds_to_five_minutes(now_minute) {
            FOLD_MINUTES
        } else {
            s.span
        };
        if span == s.span {
            folded.push(s);
            continue;
        }
        let start = s.minute - s.minute % span;
        match folded.last_mut() {
            Some(last) if last.span == span && last.minute == start => {
                last.totals.merge(&s.totals);
                last.histogram.merge(&s.histogram);
            }
            _ => {
                let mut f = Slice::new(start, span);
                f.totals = s.totals;
                f.histogram = s.histogram;
                folded.push(f);
            }
        }
    }
    folded.into_boxed_slice()
}

/// One finished statement, as the proxy reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    pub fingerprint: u64,
    pub duration_us: u64,
    pub rows: u64,
    /// SQLSTATE of the error, if the statement failed.
    pub sqlstate: Option<[u8; 5]>,
    /// Interned (database, user, application_name).
    pub caller: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(us: u64) -> Execution {
        Execution {
            fingerprint: 1,
            duration_us: us,
            rows: 1,
            sqlstate: None,
            caller: 0,
        }
    }

    #[test]
    fn totals_match_pg_stat_statements_definitions() {
        let mut t = Totals::default();
        for us in [100, 200, 300] {
            t.record(us, 2, false);
        }
        assert_eq!((t.calls, t.rows, t.min_us, t.max_us), (3, 6, 100, 300));
        assert_eq!(t.mean_us(), 200.0);
        assert!((t.stddev_us() - 81.6497).abs() < 0.01);
    }

    #[test]
    fn windows_cover_only_recent_minutes() {
        let mut q = QueryStats::new(0);
        q.record(&exec(1000), 0); // minute 0
        q.record(&exec(2000), 10 * 60_000); // minute 10
        q.record(&exec(3000), 12 * 60_000 + 5); // minute 12
        let (t, _) = q.window(5, 12 * 60_000 + 30_000);
        assert_eq!(t.calls, 2);
        let (t, h) = q.window(1, 12 * 60_000 + 30_000);
        assert_eq!(t.calls, 1);
        assert!((h.quantile_us(0.5).unwrap() - 3000.0).abs() < 60.0);
        // Two hours later the old minutes are one hourly slice, outside
        // the recent windows; a day later they are gone.
        q.record(&exec(10), 120 * 60_000);
        assert_eq!(q.kept_slices.len(), 2);
        assert_eq!(q.window(60, 120 * 60_000).0.calls, 1);
        q.record(&exec(10), 25 * 60 * 60_000);
        assert_eq!(q.kept_slices.first().unwrap().minute, 120);
    }

    #[test]
    fn older_minutes_fold_into_five_minute_slices() {
        let mut q = QueryStats::new(0);
        for minute in 0..60u64 {
            q.record(&exec(1000 + minute), minute * 60_000);
        }
        let spans: Vec<u64> = q.kept_slices.iter().map(|s| s.span).collect();
        assert_eq!(
            spans.iter().filter(|&&s| s == 1).count(),
            MINUTE_SLICES as usize
        );
        assert_eq!(spans.iter().filter(|&&s| s == 5).count(), 11);
        let (t, _) = q.window(60, 59 * 60_000);
        assert_eq!(t.calls, 60);
        let (t, _) = q.window(5, 59 * 60_000);
        assert_eq!(t.calls, 5);
    }

    #[test]
    fn a_day_of_history_folds_into_hourly_slices_and_older_is_dropped() {
        let mut q = QueryStats::new(0);
        for minute in 0..(30 * 60u64) {
            q.record(&exec(1000), minute * 60_000);
        }
        let now_minute = 30 * 60 - 1;
        // Slices stay in time order and never overlap.
        for w in q.kept_slices.iter().collect::<Vec<_>>().windows(2) {
            assert!(w[0].minute + w[0].span <= w[1].minute, "{w:?}");
        }
        let hourly: Vec<&Slice> = q.kept_slices.iter().filter(|s| s.span == 60).collect();
        assert!(hourly.len() >= 22 && hourly.len() <= 23, "{}", hourly.len());
        let oldest = q.kept_slices.first().unwrap();
        assert!(oldest.minute + 24 * 60 > now_minute, "{}", oldest.minute);
        // No hourly slice reaches into the last hour.
        assert!(hourly.iter().all(|s| s.minute + 60 + 60 <= now_minute + 1));
        // Every call of the day is still counted, exactly.
        let (t, _) = q.window(24 * 60, now_minute * 60_000);
        assert_eq!(t.calls, 24 * 60);
    }

    #[test]
    fn a_fingerprint_with_a_day_of_history_stays_under_sixteen_kib() {
        let mut q = QueryStats::new(0);
        for minute in 0..(25 * 60u64) {
            for i in 0..100u64 {
                q.record(&exec(300 + (i * 37) % 4500), minute * 60_000 + i);
            }
        }
        let bytes = std::mem::size_of::<QueryStats>() + q.heap_bytes();
        assert!(bytes <= 16 * 1024, "{bytes} bytes");
    }

    #[test]
    fn a_first_minute_keeps_no_slice_and_reads_as_if_it_did() {
        let durations = [40u64, 1_000, 1_037, 250_000];
        let mut q = QueryStats::new(5 * 60_000 + 10);
        for (i, &us) in durations.iter().enumerate() {
            q.record(&exec(us), 5 * 60_000 + 10 + i as u64);
        }
        assert!(q.kept_slices.is_empty());
        let mut want = Slice::new(5, 1);
        for &us in &durations {
            want.totals.record(us, 1, false);
            want.histogram.record_us(us);
        }
        let check = |s: &Slice| {
            assert_eq!((s.minute, s.span, s.totals), (5, 1, want.totals));
            assert_eq!(s.histogram, want.histogram);
        };
        check(&q.slices()[0]);
        assert_eq!(q.slices().len(), 1);
        let (t, h) = q.window(1, 5 * 60_000 + 59_000);
        assert_eq!(t, want.totals);
        let mut coarse_in_fine = LatencyHistogram::new();
        coarse_in_fine.merge(&want.histogram);
        assert_eq!(h, coarse_in_fine);

        // A call in the next minute keeps the first minute's slice as it
        // was, then its own.
        q.record(&exec(77), 6 * 60_000);
        assert_eq!(q.kept_slices.len(), 2);
        check(&q.kept_slices[0]);
        assert_eq!(q.kept_slices[1].totals.calls, 1);
        assert_eq!(q.totals.calls, 5);
    }

    #[test]
    fn errors_are_counted_by_sqlstate() {
        let mut q = QueryStats::new(0);
        let mut e = exec(5);
        e.sqlstate = Some(*b"23505");
        q.record(&e, 0);
        q.record(&e, 0);
        assert_eq!(q.totals.errors, 2);
        assert_eq!(&q.errors_by_code[..], [(*b"23505", 2)]);
    }
}
