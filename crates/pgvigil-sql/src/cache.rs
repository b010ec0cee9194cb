//! A bounded cache of normalization results, keyed by the SQL text.
//!
//! Applications send the same few hundred texts over and over, so the
//! proxy normalizes each distinct text once and afterwards pays only for a
//! hash of the bytes, one table probe, a byte comparison and an `Arc`
//! clone, with no allocation. Eviction is CLOCK (second chance): an LRU's
//! per-hit list update would cost more than the rest of a hit, while CLOCK
//! only sets a bit. Texts are many but unbounded (apps that inline values
//! make a new text per call), hence a fixed number of entries and an
//! eviction counter the proxy can export: a high rate means the capacity is
//! too small or the app inlines its values.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::hash::hash_text;
use crate::{normalize, NormalizedStatement};

/// Bounded map from SQL text to its [`normalize()`](crate::normalize()) result.
///
/// Takes `&mut self`: the proxy keeps one per worker (no lock, no shared
/// cache line) or wraps it in a mutex.
#[derive(Debug)]
pub struct NormalizeCache {
    index: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
    evictions: u64,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    text: Box<[u8]>,
    value: Arc<[NormalizedStatement]>,
    /// Set on every hit, cleared when the clock hand passes.
    referenced: bool,
}

impl NormalizeCache {
    /// A cache holding at most `capacity` texts (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        NormalizeCache {
            index: HashMap::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
            slots: Vec::with_capacity(capacity.min(1 << 16)),
            hand: 0,
            capacity,
            evictions: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The statements of `sql`, normalized now or earlier.
    pub fn get_or_normalize(&mut self, sql: &[u8]) -> Arc<[NormalizedStatement]> {
        let hash = hash_text(sql);
        if let Some(&i) = self.index.get(&hash) {
            if let Some(slot) = self.slots.get_mut(i) {
                if *slot.text == *sql {
                    slot.referenced = true;
                    self.hits += 1;
                    return Arc::clone(&slot.value);
                }
                // Two texts with one 64-bit hash: the newer one takes the slot.
                self.misses += 1;
                self.evictions += 1;
                let value: Arc<[NormalizedStatement]> = normalize(sql).into();
                slot.text = sql.into();
                slot.value = Arc::clone(&value);
                slot.referenced = true;
                return value;
            }
        }
        self.misses += 1;
        let value: Arc<[NormalizedStatement]> = normalize(sql).into();
        if self.capacity == 0 {
            return value;
        }
        let slot = Slot {
            hash,
            text: sql.into(),
            value: Arc::clone(&value),
            // New entries start unreferenced: a text seen once is the first
            // to go, which keeps one-off texts from flushing the hot set.
            referenced: false,
        };
        if self.slots.len() < self.capacity {
            self.index.insert(hash, self.slots.len());
            self.slots.push(slot);
            return value;
        }
        let victim = self.advance_clock();
        if let Some(old) = self.slots.get_mut(victim) {
            self.index.remove(&old.hash);
            *old = slot;
            self.index.insert(hash, victim);
            self.evictions += 1;
        }
        value
    }

    /// Finds an unreferenced slot, clearing reference bits on the way
    /// (at most one full turn plus one step).
    fn advance_clock(&mut self) -> usize {
        let len = self.slots.len();
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % len;
            match self.slots.get_mut(i) {
                Some(s) if s.referenced => s.referenced = false,
                _ => return i,
            }
        }
    }

    /// Number of cached texts.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries dropped to make room since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that had to normalize.
    pub fn misses(&self) -> u64 {
        self.misses
    }
}

/// The keys are already hashes of the text: use them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_returns_the_same_shared_result() {
        let mut c = NormalizeCache::new(4);
        let a = c.get_or_normalize(b"SELECT 1");
        let b = c.get_or_normalize(b"SELECT 1");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((c.hits(), c.misses(), c.len()), (1, 1, 1));
    }

    #[test]
    fn texts_differing_in_one_byte_are_different_entries() {
        let mut c = NormalizeCache::new(4);
        let a = c.get_or_normalize(b"SELECT 1");
        let b = c.get_or_normalize(b"SELECT 2");
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        assert_ne!(a[0].constants_hash, b[0].constants_hash);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn capacity_bounds_entries_and_evictions_are_counted() {
        let mut c = NormalizeCache::new(3);
        for i in 0..10 {
            c.get_or_normalize(format!("SELECT {i}").as_bytes());
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.evictions(), 7);
    }

    #[test]
    fn clock_keeps_a_text_that_is_hit_while_one_offs_pass_through() {
        let mut c = NormalizeCache::new(3);
        let hot = b"SELECT * FROM hot WHERE id = 1";
        let first = c.get_or_normalize(hot);
        for i in 0..50 {
            assert!(
                Arc::ptr_eq(&c.get_or_normalize(hot), &first),
                "hot entry evicted at {i}"
            );
            c.get_or_normalize(format!("SELECT {i} FROM once").as_bytes());
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = NormalizeCache::new(0);
        let a = c.get_or_normalize(b"SELECT 1");
        assert_eq!(a.len(), 1);
        assert!(c.is_empty());
        assert_eq!(c.capacity(), 0);
    }
}
