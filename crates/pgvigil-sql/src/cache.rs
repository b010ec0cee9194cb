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
use crate::{normalize, NormalizedStatement, ShapeCache};

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

impl crate::clock::Referenced for Slot {
    fn referenced(&mut self) -> &mut bool {
        &mut self.referenced
    }
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
        self.get_or(sql, |sql| (normalize(sql).into(), true))
    }

    /// The same, through `shapes` too (texts that differ only in literal
    /// values share a shape; the result is the same either way). A text
    /// among the latest shapes of its beginning is answered by `shapes`
    /// before this cache is looked at: that costs less than hashing the
    /// whole text. A text with constants answered from a known shape is
    /// not cached here: it is one more variant of a statement that
    /// inlines its values, unlikely to come again, and its shape answers
    /// it at a fraction of a normalization.
    pub fn get_or_normalize_with(
        &mut self,
        sql: &[u8],
        shapes: &mut ShapeCache,
    ) -> Arc<[NormalizedStatement]> {
        if let Some(statements) = shapes.known(sql) {
            return statements;
        }
        self.get_or_unknown_shape(sql, shapes)
    }

    /// [`Self::get_or_normalize_with`] for callers that read only what a
    /// shape's texts share and each statement's `constants_hash`: a text
    /// of a known shape gets the shape's example as it is, with the hashes
    /// of its own constants in `hashes` (see
    /// [`ShapeCache::known_example`]); when `hashes` is left empty the
    /// statements' own hashes are the text's.
    pub fn get_or_normalize_example(
        &mut self,
        sql: &[u8],
        shapes: &mut ShapeCache,
        hashes: &mut Vec<u64>,
    ) -> Arc<[NormalizedStatement]> {
        if let Some(example) = shapes.known_example(sql, hashes) {
            return example;
        }
        self.get_or_unknown_shape(sql, shapes)
    }

    /// A text `shapes` did not answer without lexing: from this cache, or
    /// normalized through `shapes` (and kept here unless it is one more
    /// variant of a known shape).
    fn get_or_unknown_shape(
        &mut self,
        sql: &[u8],
        shapes: &mut ShapeCache,
    ) -> Arc<[NormalizedStatement]> {
        self.get_or(sql, |sql| {
            let hits = shapes.hits();
            let value = shapes.normalize_unknown(sql);
            let keep = shapes.hits() == hits || !shapes.last_had_constants();
            (value, keep)
        })
    }

    /// `normalize` returns the statements and whether to cache them.
    fn get_or(
        &mut self,
        sql: &[u8],
        normalize: impl FnOnce(&[u8]) -> (Arc<[NormalizedStatement]>, bool),
    ) -> Arc<[NormalizedStatement]> {
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
                let (value, keep) = normalize(sql);
                if !keep {
                    return value;
                }
                self.evictions += 1;
                slot.text = sql.into();
                slot.value = Arc::clone(&value);
                slot.referenced = true;
                return value;
            }
        }
        self.misses += 1;
        let (value, keep) = normalize(sql);
        if self.capacity == 0 || !keep {
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
        let victim = crate::clock::victim(&mut self.slots, &mut self.hand);
        if let Some(old) = self.slots.get_mut(victim) {
            self.index.remove(&old.hash);
            *old = slot;
            self.index.insert(hash, victim);
            self.evictions += 1;
        }
        value
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
pub(crate) struct PassThrough(u64);

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
    fn variants_of_a_known_shape_are_not_cached_as_texts() {
        let mut c = NormalizeCache::new(4);
        let mut shapes = ShapeCache::new(4);
        let a = c.get_or_normalize_with(b"SELECT * FROM t WHERE id = 1", &mut shapes);
        let b = c.get_or_normalize_with(b"SELECT * FROM t WHERE id = 2", &mut shapes);
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        let again = c.get_or_normalize_with(b"SELECT * FROM t WHERE id = 1", &mut shapes);
        assert_eq!(a, again);
        // Only the first text reached the text cache; the shape answered
        // the others before it was looked at.
        assert_eq!((c.len(), c.hits(), c.misses(), shapes.hits()), (1, 0, 1, 2));
    }

    #[test]
    fn a_text_without_literals_is_answered_by_one_shared_result() {
        let mut c = NormalizeCache::new(4);
        let mut shapes = ShapeCache::new(4);
        let sql = b"SELECT * FROM t WHERE id = $1";
        let first = c.get_or_normalize_with(sql, &mut shapes);
        let second = c.get_or_normalize_with(sql, &mut shapes);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(*first, *normalize(sql));
        // The same tokens spaced differently have other spans: built,
        // not shared.
        let spaced = b"SELECT * FROM t WHERE  id = $1";
        let other = c.get_or_normalize_with(spaced, &mut shapes);
        assert_eq!(*other, *normalize(spaced));
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn the_text_cache_answers_when_a_beginning_has_many_shapes() {
        let mut c = NormalizeCache::new(8);
        let mut shapes = ShapeCache::new(8);
        // One 32-byte beginning, three shapes: only the latest two are
        // remembered for it, so the first comes from the text cache.
        let texts: [&[u8]; 3] = [
            b"SELECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, b FROM t",
            b"SELECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, c FROM t",
            b"SELECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, d FROM t",
        ];
        for t in texts {
            c.get_or_normalize_with(t, &mut shapes);
        }
        let got = c.get_or_normalize_with(texts[0], &mut shapes);
        assert_eq!(*got, *normalize(texts[0]));
        assert_eq!(c.hits(), 1);
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
