//! SQL text to normalized statements and stable fingerprints.
//!
//! pgvigil groups the queries it forwards the way pg_stat_statements does:
//! constants become `$n`, and statements that differ only in their
//! constants (or in whitespace, comments, keyword case) share a
//! [`Fingerprint`]. Unlike pg_stat_statements it works from the text alone,
//! before PostgreSQL has seen it, so it uses a lexer for PostgreSQL's
//! lexical rules instead of the parser: a fingerprint is a hash of the
//! normalized token stream. That keeps it cheap enough for the proxy's hot
//! path (about a microsecond for a typical ORM query, once per distinct
//! text; [`NormalizeCache`] makes repeats a hash lookup) and means it never
//! fails: text that is not valid SQL still gets a fingerprint.
//!
//! Where pgvigil deliberately differs from PostgreSQL 15's query ids:
//! - lists of constants in `IN (...)`, `ARRAY[...]` and multi-row
//!   `VALUES` collapse, so a list's length never makes a new fingerprint
//!   (PostgreSQL 18 does the same for `IN` and `ARRAY`);
//! - a constant's type does not count (`price = 1` and `price = 1.5` share
//!   a fingerprint), since apps that inline values are inconsistent about
//!   quoting and decimals;
//! - `NULL` stays `NULL`;
//! - utility statements (`SET`, DDL, ...) are normalized like the rest,
//!   where PostgreSQL 15 hashes their raw text. As in PostgreSQL 17,
//!   savepoint names are constants (`SAVEPOINT $1`: ORMs number their
//!   savepoints) and spellings of one transaction command share a
//!   fingerprint (`END` and `COMMIT`, `ROLLBACK TO` and
//!   `ROLLBACK TRANSACTION TO SAVEPOINT`). String literals that are code
//!   (the body of `CREATE FUNCTION`/`PROCEDURE` and `DO`) are kept.
//!
//! `tests/pgss_agreement.rs` checks all of this against a real PostgreSQL
//! 15 on a corpus of a few hundred statements.
//!
//! Pure library: no I/O, no clocks, no global state.

mod cache;
mod clock;
mod comment;
mod fast_hash;
mod hash;
mod kind;
mod lexer;
mod normalize;
mod shape;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

pub use cache::NormalizeCache;
pub use fast_hash::{FastHash, FastHasher, FastMap};
pub use kind::StatementKind;
pub use shape::ShapeCache;

/// Identity of a statement's shape: equal for statements that differ only
/// in constants, whitespace, comments and the case of keywords and unquoted
/// identifiers.
///
/// Fingerprints are stored and compared across processes, restarts,
/// machines and pgvigil versions, so they come from a fixed hash with no
/// seed, and their text form (16 lowercase hex digits) round-trips through
/// [`FromStr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A string that is not 16 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 16 hexadecimal digits, got {0:?}")]
pub struct ParseFingerprintError(String);

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseFingerprintError(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|_| ParseFingerprintError(s.to_owned()))
    }
}

/// One statement of a (possibly multi-statement) SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NormalizedStatement {
    /// Shape of the statement; see [`Fingerprint`].
    pub fingerprint: Fingerprint,
    /// The statement as written with comments dropped, runs of whitespace
    /// made one space, constants replaced by `$n` (numbered after the
    /// highest `$n` already present) and constant lists shortened to
    /// `IN ($1, ...)`, `ARRAY[$1, ...]`, `VALUES ($1, $2), ...`. Keywords
    /// keep their case: like pg_stat_statements, a caller keeps the first
    /// text seen for a fingerprint. Invalid UTF-8 is replaced by U+FFFD.
    /// Shared: every execution of a statement carries the same text, and
    /// a cache hit hands it out without copying it.
    pub text: std::sync::Arc<str>,
    /// The command, from the first keyword(s).
    pub kind: StatementKind,
    /// Hash of the constants' values in order: two executions with the same
    /// fingerprint and the same `constants_hash` ran the very same statement
    /// (an N+1 loop varies it, a retry does not).
    pub constants_hash: u64,
    /// Byte ranges of the constants in the input, in order (every element
    /// of a collapsed list included). Left empty in answers from a
    /// [`ShapeCache`] made [`ShapeCache::without_constant_places`].
    pub constants: Vec<Range<usize>>,
    /// sqlcommenter key/value pairs from the statement's comments, for
    /// attributing events to application code. High cardinality by design:
    /// never use them as metric labels.
    pub tags: Vec<(String, String)>,
    /// Byte range of the statement in the input, without the separating
    /// `;` and surrounding whitespace (comments included).
    pub span: Range<usize>,
}

/// A stable 64-bit hash of a byte string, several times cheaper than a
/// byte-at-a-time hash: for callers that compare values (the proxy's hash
/// of a Bind's parameters) the way `constants_hash` compares constants.
pub fn bytes_hash(bytes: &[u8]) -> u64 {
    hash::hash_text(bytes)
}

/// Splits a simple-query string into statements and normalizes each.
///
/// Never panics and never fails, whatever the bytes (non-UTF-8 encodings
/// such as LATIN1 included). Statements are separated by `;` outside
/// quotes, comments, parentheses and `BEGIN ATOMIC ... END` bodies; empty
/// ones are skipped, so an empty or comment-only input gives an empty
/// vector.
pub fn normalize(sql: &[u8]) -> Vec<NormalizedStatement> {
    normalize::normalize(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_prints_as_16_lowercase_hex_digits_and_parses_back() {
        let f = Fingerprint(0x00ab_cdef_0123_4567);
        assert_eq!(f.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<Fingerprint>(), Ok(f));
        assert_eq!("00ABCDEF01234567".parse::<Fingerprint>(), Ok(f));
    }

    #[test]
    fn fingerprint_rejects_anything_but_16_hex_digits() {
        for s in [
            "",
            "abc",
            "00abcdef012345678",
            "+0abcdef01234567",
            "00abcdef0123456g",
        ] {
            assert!(s.parse::<Fingerprint>().is_err(), "{s}");
        }
    }
}
