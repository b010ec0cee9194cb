//! `/metrics` series: the costliest fingerprints each get their own, the
//! rest are summed, so the series count stays bounded.

use std::sync::Arc;

use crate::insight::lock;
use crate::stats::QueryStats;
use crate::store;
use crate::{Insight, StatementInfo};

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

impl Insight {
    /// Series for `/metrics`: the `max_series` fingerprints with the most
    /// total time each get their own, the rest are summed into one with
    /// fingerprint None ("other"). Bucket counts are per bucket of
    /// `bounds_us`, with one more for +Inf.
    pub fn export(&self, max_series: usize, bounds_us: &[u64]) -> Vec<ExportedSeries> {
        let store = lock(&self.store);
        let mut entries: Vec<&store::Entry> = store.entries.values().map(|e| &**e).collect();
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
}
