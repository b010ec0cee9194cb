//! The global table of fingerprints, bounded like pg_stat_statements:
//! at `max_fingerprints`, usage decays and the least-used 5% go.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::stats::{Execution, QueryStats};

/// What is known about a fingerprint's statement, registered once when
/// its text is first normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo {
    pub fingerprint: u64,
    /// Normalized text, constants as `$n`, as first seen.
    pub query: String,
    /// Statement kind: SELECT, INSERT, ... Borrowed from the parser's
    /// names, so a fingerprint holds no copy; owned only when read back
    /// from a history file.
    pub kind: Cow<'static, str>,
}

#[derive(Debug)]
pub struct Entry {
    pub info: Arc<StatementInfo>,
    pub stats: QueryStats,
    /// Thresholds already reported to watchers (`Crossing` bits).
    pub crossed: u8,
}

/// Fingerprints are already 64-bit hashes: one multiply with a
/// per-process seed spreads them over the table, where SipHash would cost
/// about a hundred instructions per lookup. The seed keeps crafted
/// statements from piling onto one bucket.
#[derive(Clone)]
pub(crate) struct FingerprintHash {
    seed: u64,
}

impl Default for FingerprintHash {
    /// One seed per process, drawn once: tables are also made per N+1
    /// unit, where drawing a seed each time would cost a SipHash.
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new().hash_one(0x5047_5649_u64) | 1
        });
        FingerprintHash { seed }
    }
}

impl BuildHasher for FingerprintHash {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher {
            seed: self.seed,
            hash: 0,
        }
    }
}

pub(crate) struct FingerprintHasher {
    seed: u64,
    hash: u64,
}

impl Hasher for FingerprintHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; correct for anything else.
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let x = (self.hash ^ n ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.hash = x ^ (x >> 29);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

pub struct Store {
    /// Boxed: hashbrown keeps up to twice as many slots as entries (8,192
    /// for 5,000), and an empty slot of a boxed entry costs 16 bytes where
    /// one holding the entry itself cost the whole entry (about 200).
    pub(crate) entries: HashMap<u64, Box<Entry>, FingerprintHash>,
    max: usize,
    pub(crate) evictions: u64,
}

impl Store {
    pub fn new(max: usize) -> Store {
        Store {
            entries: HashMap::default(),
            max: max.max(1),
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Records one execution and hands its entry to `then`, whose answer
    /// is returned: a known fingerprint, by far the most common, costs one
    /// lookup, where returning the entry itself would cost two (the borrow
    /// checker refuses an early return of the first lookup's borrow).
    pub fn record<R>(
        &mut self,
        e: &Execution,
        now_ms: u64,
        info: impl FnOnce() -> Arc<StatementInfo>,
        then: impl FnOnce(&mut Entry) -> R,
    ) -> R {
        if let Some(entry) = self.entries.get_mut(&e.fingerprint) {
            entry.stats.record(e, now_ms);
            return then(entry);
        }
        if self.entries.len() >= self.max {
            self.evict();
        }
        let mut stats = QueryStats::new(now_ms);
        stats.record(e, now_ms);
        let entry = self.entries.entry(e.fingerprint).or_insert(Box::new(Entry {
            info: info(),
            stats,
            crossed: 0,
        }));
        then(entry)
    }

    /// Decays every entry's usage and drops the least used 5% (at least
    /// one), as pg_stat_statements does when full.
    fn evict(&mut self) {
        let mut usage: Vec<(f64, u64)> = self
            .entries
            .iter_mut()
            .map(|(fp, e)| {
                e.stats.usage *= 0.99;
                (e.stats.usage, *fp)
            })
            .collect();
        let victims = (self.entries.len() / 20).max(1);
        usage.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, fp) in usage.into_iter().take(victims) {
            self.entries.remove(&fp);
            self.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fp: u64) -> Arc<StatementInfo> {
        Arc::new(StatementInfo {
            fingerprint: fp,
            query: format!("SELECT {fp}"),
            kind: "SELECT".into(),
        })
    }

    fn exec(fp: u64) -> Execution {
        Execution {
            fingerprint: fp,
            duration_us: 10,
            rows: 0,
            sqlstate: None,
            caller: 0,
        }
    }

    #[test]
    fn table_never_exceeds_its_cap_and_counts_evictions() {
        let mut s = Store::new(100);
        for fp in 0..10_000u64 {
            s.record(&exec(fp), 0, || info(fp), |_| ());
        }
        assert!(s.len() <= 100);
        assert_eq!(s.evictions() as usize + s.len(), 10_000);
    }

    #[test]
    fn busy_fingerprints_survive_eviction() {
        let mut s = Store::new(100);
        for _ in 0..1000 {
            s.record(&exec(7), 0, || info(7), |_| ());
        }
        for fp in 100..600u64 {
            s.record(&exec(fp), 0, || info(fp), |_| ());
        }
        assert!(s.entries.contains_key(&7));
    }
}
