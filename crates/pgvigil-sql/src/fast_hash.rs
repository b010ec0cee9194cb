//! A fast seeded hasher for small private maps on the hot path.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// Hashing for the per-session and per-connection maps on the hot path
/// (statement and portal names, statement ids): a word at a time with a
/// per-process seed. SipHash costs about a hundred instructions per
/// lookup of a short key, this a tenth of it; the maps are private to one
/// session or connection and bounded, so the seed is enough against
/// crafted collisions.
#[derive(Clone, Copy, Debug)]
pub struct FastHash {
    seed: u64,
}

pub type FastMap<K, V> = HashMap<K, V, FastHash>;

impl Default for FastHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new().hash_one(0x7067_7669_u64)
        });
        FastHash { seed }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.seed)
    }
}

pub struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 60));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weakest; hashbrown indexes by
        // them, so fold the high half down.
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_hash_tells_short_keys_apart() {
        let h = FastHash::default();
        let keys: [&[u8]; 6] = [
            b"",
            b"\0",
            b"P_0",
            b"P_1",
            b"P_0\0",
            b"a_statement_name_longer_than_8",
        ];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| h.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        let mut m: FastMap<Vec<u8>, u32> = FastMap::default();
        for i in 0..1000u32 {
            m.insert(format!("S_{i}").into_bytes(), i);
        }
        assert_eq!(m.get(&b"S_417"[..]), Some(&417));
    }
}
