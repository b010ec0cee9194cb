//! A fixed, seedless 64-bit hash.
//!
//! Fingerprints are stored, compared across processes and machines, and
//! shown to people, so the hash must never change between runs, releases or
//! platforms: no random seed (unlike std's `RandomState`), no dependence on
//! pointer width or byte order (words are read little-endian explicitly).
//! The mixing step is a 64x64->128-bit multiply folded back to 64 bits (the
//! core of wyhash and foldhash), one multiply per 8 input bytes, which is
//! several times cheaper than byte-at-a-time FNV-1a on a 200-byte query.

/// Digits of pi: arbitrary odd constants with no structure to exploit.
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344 | 1;
const K2: u64 = 0xa409_3822_299f_31d1;
const K3: u64 = 0x082e_fa98_ec4e_6c89;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Reads up to 8 bytes as a little-endian word, zero-padded.
#[inline(always)]
fn read_tail(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

/// ASCII-lowercases the 8 bytes of a word at once (bytes >= 0x80 untouched,
/// like PostgreSQL's identifier folding in a multibyte encoding).
#[inline(always)]
pub(crate) fn ascii_lower_word(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let heptets = x & LOW7;
    let ge_a = heptets + ONES * (0x80 - u64::from(b'A'));
    let gt_z = heptets + ONES * (0x80 - u64::from(b'Z') - 1);
    let upper = ge_a & !gt_z & !x & HIGH;
    x | (upper >> 2)
}

/// Incremental stable hasher over 64-bit words.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StableHasher {
    state: u64,
}

impl StableHasher {
    /// `domain` keeps hashes of different things (fingerprints, constant
    /// values, cache keys) apart even when fed the same words.
    pub(crate) const fn new(domain: u64) -> Self {
        StableHasher {
            state: K0 ^ domain.wrapping_mul(K3),
        }
    }

    #[inline(always)]
    pub(crate) fn write_u64(&mut self, v: u64) {
        self.state = fold_mul(self.state ^ v, K1);
    }

    /// Hashes bytes; the caller mixes in the length (usually with a tag word)
    /// so that a run of bytes cannot be confused with its zero-padded form.
    #[inline]
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.write_u64(read_tail(rest));
        }
    }

    /// Like [`StableHasher::write_bytes`], ASCII-lowercasing first: the
    /// spelling of a keyword or unquoted identifier must not matter.
    #[inline]
    pub(crate) fn write_bytes_lowercase(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(ascii_lower_word(u64::from_le_bytes(w)));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.write_u64(ascii_lower_word(read_tail(rest)));
        }
    }

    #[inline]
    pub(crate) fn finish(&self) -> u64 {
        fold_mul(self.state ^ K2, K3 ^ self.state.rotate_left(23))
    }
}

/// Hash of a whole byte string, two words per multiply: the cache key for a
/// SQL text. Collisions only cost a byte comparison (the cache checks the
/// text), so speed matters more here than in fingerprints.
#[inline]
pub(crate) fn hash_text(bytes: &[u8]) -> u64 {
    let mut state = K0 ^ (bytes.len() as u64).wrapping_mul(K3);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&c[..8]);
        b.copy_from_slice(&c[8..]);
        state = fold_mul(u64::from_le_bytes(a) ^ state, u64::from_le_bytes(b) ^ K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let a = read_tail(rest);
        let b = read_tail(rest.get(8..).unwrap_or(&[]));
        state = fold_mul(a ^ state, b ^ K2);
    }
    fold_mul(state ^ K2, K3 ^ state.rotate_left(23))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_word_folds_only_ascii_capitals() {
        let w = u64::from_le_bytes(*b"AZaz@[\xc9_");
        assert_eq!(ascii_lower_word(w).to_le_bytes(), *b"azaz@[\xc9_");
    }

    #[test]
    fn lowercase_hash_ignores_ascii_case_only() {
        let h = |b: &[u8]| {
            let mut s = StableHasher::new(1);
            s.write_bytes_lowercase(b);
            s.finish()
        };
        assert_eq!(h(b"SeLeCt_Something_Long"), h(b"select_something_long"));
        assert_ne!(h(b"\xc9t\xc9"), h(b"\xe9t\xe9"));
    }

    #[test]
    fn hash_values_are_pinned() {
        // These exact numbers are part of the fingerprint contract: if this
        // test fails, stored fingerprints would silently stop matching.
        let mut s = StableHasher::new(0);
        s.write_bytes(b"pgvigil");
        assert_eq!(s.finish(), 0xaa97_379e_fcf6_a769);
        assert_eq!(hash_text(b"SELECT 1"), 0x0cfd_1bee_f0f1_0099);
    }

    #[test]
    fn text_hash_depends_on_every_byte_and_the_length() {
        let base = b"SELECT * FROM orders WHERE id = 1".to_vec();
        let h = hash_text(&base);
        for i in 0..base.len() {
            let mut v = base.clone();
            v[i] ^= 1;
            assert_ne!(hash_text(&v), h, "byte {i}");
        }
        assert_ne!(hash_text(b"a"), hash_text(b"a\0"));
    }
}
