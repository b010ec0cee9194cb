//! A compact latency histogram with bounded relative error.
//!
//! hdrhistogram at 2-3 significant digits costs 26-184 KiB per histogram
//! over a microsecond-to-hour range; pgvigil keeps one per fingerprint and
//! thousands of fingerprints. Latencies of one statement cluster within a
//! few powers of two, so this histogram stores only the span of buckets
//! actually used: log-linear buckets (each power of two split into
//! 2^`SUB_BITS` equal parts) in a vector that grows at either end.

/// Sub-bucket bits of the fine resolution: 32 buckets per power of two,
/// so any value is within 1.6% of its bucket's midpoint.
pub const FINE: u8 = 5;
/// 16 buckets per power of two: within 3.2% of the midpoint, half the
/// memory; used for the per-minute slices.
pub const COARSE: u8 = 4;

/// Bucket index of a value in microseconds. Values under 2^bits map to
/// themselves; above, each octave [2^k, 2^(k+1)) splits into 2^bits
/// buckets, so a bucket's width is at most 2^-bits of its lower bound.
fn bucket_of(us: u64, bits: u8) -> u32 {
    let bits = bits as u32;
    let sub_count = 1u64 << bits;
    if us < sub_count {
        return us as u32;
    }
    let octave = 63 - us.leading_zeros(); // >= bits
    let shift = octave - bits;
    let sub = (us >> shift) - sub_count;
    ((octave - bits + 1) << bits) + sub as u32
}

/// Lowest value (µs) of a bucket, and its width.
fn bucket_range(b: u32, bits: u8) -> (u64, u64) {
    let bits = bits as u32;
    let sub_count = 1u64 << bits;
    if (b as u64) < sub_count {
        return (b as u64, 1);
    }
    let shift = (b >> bits) - 1;
    let sub = (b as u64) & (sub_count - 1);
    ((sub_count + sub) << shift, 1u64 << shift)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    bits: u8,
    /// Bucket index of `counts[0]`.
    first: u32,
    /// Exactly the buckets used, so no capacity to keep: a boxed slice
    /// is 8 bytes less than a Vec in each of thousands of fingerprints.
    counts: Box<[u32]>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::with_resolution(FINE)
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_resolution(bits: u8) -> Self {
        LatencyHistogram {
            bits: bits.clamp(1, 7),
            first: 0,
            counts: Box::default(),
            total: 0,
        }
    }

    pub fn record_us(&mut self, us: u64) {
        self.record_n(bucket_of(us, self.bits), 1);
    }

    fn record_n(&mut self, b: u32, n: u32) {
        if self.counts.is_empty() {
            self.first = b;
            self.counts = Box::new([0]);
        } else if b < self.first {
            // Exact growth: histograms are many and rarely widen.
            let grow = (self.first - b) as usize;
            let mut counts = Vec::with_capacity(grow + self.counts.len());
            counts.resize(grow, 0);
            counts.extend_from_slice(&self.counts);
            self.counts = counts.into_boxed_slice();
            self.first = b;
        } else if (b - self.first) as usize >= self.counts.len() {
            let len = (b - self.first) as usize + 1;
            let mut counts = std::mem::take(&mut self.counts).into_vec();
            counts.reserve_exact(len - counts.len());
            counts.resize(len, 0);
            self.counts = counts.into_boxed_slice();
        }
        let slot = &mut self.counts[(b - self.first) as usize];
        *slot = slot.saturating_add(n);
        self.total += n as u64;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Adds another histogram's counts; a finer one is re-bucketed by
    /// each bucket's midpoint.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (i, &n) in other.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let b = other.first + i as u32;
            let b = if other.bits == self.bits {
                b
            } else {
                let (low, width) = bucket_range(b, other.bits);
                bucket_of(low + width / 2, self.bits)
            };
            self.record_n(b, n);
        }
    }

    /// The value at quantile `q` (0..=1) in microseconds: the midpoint of
    /// the bucket holding it, so within 1.6% of the true sample.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                let (low, width) = bucket_range(self.first + i as u32, self.bits);
                return Some(low as f64 + (width as f64 - 1.0) / 2.0);
            }
        }
        None
    }

    /// Non-empty buckets as (lower bound µs, upper bound µs, count).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let (low, width) = bucket_range(self.first + i as u32, self.bits);
                (low, low + width, n as u64)
            })
    }

    /// Removes the counts of an earlier copy of this histogram (same
    /// resolution), leaving what was recorded since: how a marker's
    /// "after" is told apart from its "before" without recording twice.
    /// Counts never go below zero, so a copy that is not an ancestor
    /// (statistics reset in between) cannot underflow.
    pub(crate) fn subtract(&mut self, earlier: &LatencyHistogram) {
        if earlier.bits != self.bits {
            let mut same = LatencyHistogram::with_resolution(self.bits);
            same.merge(earlier);
            return self.subtract(&same);
        }
        for (i, &n) in earlier.counts.iter().enumerate() {
            let b = earlier.first + i as u32;
            if b < self.first || (b - self.first) as usize >= self.counts.len() {
                continue;
            }
            let slot = &mut self.counts[(b - self.first) as usize];
            let taken = (*slot).min(n);
            *slot -= taken;
            self.total -= taken as u64;
        }
    }

    /// (resolution bits, first bucket, counts), for saving history.
    pub(crate) fn parts(&self) -> (u8, u32, &[u32]) {
        (self.bits, self.first, &self.counts)
    }

    /// The inverse of `parts`; None for parts no histogram could have.
    pub(crate) fn from_parts(bits: u8, first: u32, counts: Vec<u32>) -> Option<Self> {
        if !(1..=7).contains(&bits) || first.checked_add(counts.len() as u32)? > 64 << bits {
            return None;
        }
        let total = counts.iter().map(|&n| n as u64).sum();
        Some(LatencyHistogram {
            bits,
            first,
            counts: counts.into_boxed_slice(),
            total,
        })
    }

    /// Heap bytes used, for the memory accounting of the stats store.
    pub fn heap_bytes(&self) -> usize {
        self.counts.len() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_ranges_tile_the_number_line() {
        for bits in [COARSE, FINE] {
            let mut next = 0u64;
            for b in 0..600 {
                let (low, width) = bucket_range(b, bits);
                assert_eq!(low, next, "bucket {b}");
                assert_eq!(bucket_of(low, bits), b);
                assert_eq!(bucket_of(low + width - 1, bits), b);
                next = low + width;
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10_000u64 {
            h.record_us(us * 100); // 100 µs .. 1 s, uniform
        }
        for (q, expect) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = h.quantile_us(q).unwrap();
            assert!(
                (got - expect).abs() / expect < 0.02,
                "q{q}: {got} vs {expect}"
            );
        }
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut all = LatencyHistogram::new();
        for us in [3, 900, 40_000, 7] {
            a.record_us(us);
            all.record_us(us);
        }
        for us in [1, 2_000_000, 55] {
            b.record_us(us);
            all.record_us(us);
        }
        a.merge(&b);
        assert_eq!(a.quantile_us(0.5), all.quantile_us(0.5));
        assert_eq!(a.count(), 7);
        assert_eq!(
            a.buckets().collect::<Vec<_>>(),
            all.buckets().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_typical_statement_histogram_stays_small() {
        let mut h = LatencyHistogram::new();
        for i in 0..100_000u64 {
            h.record_us(200 + (i * 7919) % 3000); // 0.2 .. 3.2 ms
        }
        assert!(h.heap_bytes() <= 1024, "{} bytes", h.heap_bytes());
    }

    #[test]
    fn subtracting_an_earlier_copy_leaves_what_came_since() {
        let mut h = LatencyHistogram::with_resolution(COARSE);
        for us in [100, 200, 300] {
            h.record_us(us);
        }
        let earlier = h.clone();
        for us in [5, 300, 90_000] {
            h.record_us(us);
        }
        h.subtract(&earlier);
        assert_eq!(h.count(), 3);
        let mut since = LatencyHistogram::with_resolution(COARSE);
        for us in [5, 300, 90_000] {
            since.record_us(us);
        }
        assert_eq!(
            h.buckets().collect::<Vec<_>>(),
            since.buckets().collect::<Vec<_>>()
        );
    }

    #[test]
    fn parts_round_trip_and_nonsense_is_refused() {
        let mut h = LatencyHistogram::new();
        for us in [7, 7_000, 7_000_000] {
            h.record_us(us);
        }
        let (bits, first, counts) = h.parts();
        let back = LatencyHistogram::from_parts(bits, first, counts.to_vec()).unwrap();
        assert_eq!(back, h);
        assert!(LatencyHistogram::from_parts(0, 0, vec![1]).is_none());
        assert!(LatencyHistogram::from_parts(4, u32::MAX, vec![1]).is_none());
    }

    proptest! {
        #[test]
        fn every_value_lands_within_two_percent(us in 1u64..(1u64 << 40)) {
            let mut h = LatencyHistogram::new();
            h.record_us(us);
            let got = h.quantile_us(0.5).unwrap();
            prop_assert!((got - us as f64).abs() <= us as f64 * 0.02, "{} -> {}", us, got);
        }

        #[test]
        fn coarse_values_land_within_three_and_a_half_percent(us in 1u64..(1u64 << 40)) {
            let mut h = LatencyHistogram::with_resolution(COARSE);
            h.record_us(us);
            let got = h.quantile_us(0.5).unwrap();
            prop_assert!((got - us as f64).abs() <= us as f64 * 0.035, "{} -> {}", us, got);
        }
    }
}
