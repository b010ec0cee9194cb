//! Normalization by shape: texts that differ only in literal values.
//!
//! Applications that inline their values (`WHERE aid = 48213`) send a new
//! text for every execution, so the text cache ([`crate::NormalizeCache`])
//! never hits for them and each one would be normalized from scratch.
//! Those texts share a *shape*: the same tokens, with the same bytes, in
//! the same places, except inside number and string literals. Normalizing
//! depends on a literal's bytes only where it keeps them (an `ORDER BY 2`
//! position, a `varchar(255)` modifier, a function body; the normalizer's
//! `Trace` lists those tokens) and otherwise only through the constant's
//! value. So one text of a shape is normalized, and another text of it is
//! answered from that result: same fingerprint, text, kind and tags, with
//! the constants, their hash and the span read from the new text. The
//! result is exactly what [`crate::normalize()`] returns (a property test
//! checks it); the only cost is lexing and comparing the tokens.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use crate::cache::PassThrough;
use crate::hash::{hash_text, StableHasher};
use crate::lexer::{lex, token_at, Kind, Token};
use crate::normalize::{normalize_tokens, Trace, CONSTANTS_DOMAIN};
use crate::NormalizedStatement;

const SHAPE_DOMAIN: u64 = 0x5348_4150_455f_4b59; // "SHAPE_KY"

/// A bounded map from shapes to a normalized example of each.
///
/// Entries cost the example's text, its tokens and its result (about
/// 1 KiB for a 200-byte query). CLOCK eviction, as in the text cache.
#[derive(Debug)]
pub struct ShapeCache {
    index: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    /// The two shapes last seen for a text beginning (see [`prefix_key`]),
    /// most recent first: a text that matches one byte for byte outside
    /// its literals needs no lexing at all. Two, because one beginning
    /// often has two shapes that alternate: `balance + 5` and
    /// `balance + -5` (a minus sign is a token of its own) in pgbench's
    /// TPC-B-like script, each half the time.
    prefixes: HashMap<u64, [usize; 2], BuildHasherDefault<PassThrough>>,
    slots: Vec<Template>,
    hand: usize,
    capacity: usize,
    hits: u64,
    /// Hits found by a text's beginning, without lexing the text.
    unlexed_hits: u64,
    misses: u64,
    /// Where the literals of the latest fast match are: kept between
    /// calls so a hit allocates no list.
    scratch: Vec<(usize, usize)>,
    /// Whether answers from a known shape list the constants' places
    /// (`NormalizedStatement::constants`).
    places: bool,
    /// Whether the latest text answered from a known shape holds
    /// constants.
    last_had_constants: bool,
}

#[derive(Debug)]
struct Template {
    key: u64,
    src: Box<[u8]>,
    tokens: Box<[Token]>,
    /// Literal tokens whose bytes must match too, ascending.
    verbatim: Box<[usize]>,
    /// The other literal tokens, ascending: the only ones a fast match
    /// lexes, and the only places where a text of this shape can differ.
    literals: Box<[usize]>,
    /// For each token, how many of `literals` come before it: everything
    /// between two literals is shifted by what the earlier one grew or
    /// shrank, so a token's place follows from that literal's.
    rank: Box<[u32]>,
    has_constants: bool,
    trace: Vec<crate::normalize::StatementTrace>,
    /// The result for the template's own text (without the constants'
    /// places when the cache leaves them out). Every text of the shape
    /// shares all of it but `constants_hash`, `constants` and `span`; for
    /// a shape without literals, which matches its own text only, all of
    /// it, so it is handed out as it is.
    example: Arc<[NormalizedStatement]>,
    referenced: bool,
}

impl crate::clock::Referenced for Template {
    fn referenced(&mut self) -> &mut bool {
        &mut self.referenced
    }
}

fn is_literal(kind: Kind) -> bool {
    matches!(kind, Kind::Number | Kind::String | Kind::DollarString)
}

/// Hash of a text's beginning, up to the first byte that may start a
/// literal (a digit, a quote, `$`), at most 32 bytes: stable across the
/// values of one statement's literals.
fn prefix_key(src: &[u8]) -> u64 {
    let head = &src[..src.len().min(PREFIX_MAX)];
    hash_text(&head[..literal_start(head)])
}

const PREFIX_MAX: usize = 32;

/// Index of the first digit, `'` or `$` in `head`, or its length. Runs on
/// every statement, so it looks at eight bytes at a time.
fn literal_start(head: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// High bit set in each byte of `x` equal to `b`.
    fn equal(x: u64, b: u8) -> u64 {
        let y = x ^ (ONES * b as u64);
        // Exact for every byte: the low seven bits cannot carry out.
        !(((y & !HIGH) + !HIGH) | y) & HIGH
    }
    let mut words = head.chunks_exact(8);
    for (i, w) in (&mut words).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        // A byte is a digit when it is below 0x80 and (x & 0x7f) lies in
        // 0x30..=0x39: adding 0x50 carries into the high bit from 0x30
        // up, adding 0x46 does not until 0x3a.
        let low = x & !HIGH;
        let digit = ((low + ONES * 0x50) & !(low + ONES * 0x46) & !x) & HIGH;
        let stop = digit | equal(x, b'\'') | equal(x, b'$');
        if stop != 0 {
            return i * 8 + (stop.trailing_zeros() / 8) as usize;
        }
    }
    let done = head.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b.is_ascii_digit() || b == b'\'' || b == b'$')
        .map_or(head.len(), |p| done + p)
}

/// Makes `slot` the most recent shape for `prefix`, keeping the one
/// before it second. `usize::MAX` marks an empty place.
fn remember_prefix(
    prefixes: &mut HashMap<u64, [usize; 2], BuildHasherDefault<PassThrough>>,
    prefix: u64,
    slot: usize,
) {
    let recent = prefixes.entry(prefix).or_insert([usize::MAX; 2]);
    if recent[0] != slot {
        *recent = [slot, recent[0]];
    }
}

/// Hash of everything but the bytes of literals.
fn shape_key(src: &[u8], tokens: &[Token]) -> u64 {
    let mut h = StableHasher::new(SHAPE_DOMAIN);
    for t in tokens {
        h.write_u64(((t.kind as u64) << 1) | t.gap as u64);
        if !is_literal(t.kind) {
            h.write_bytes(&src[t.start..t.end]);
        }
    }
    h.write_u64(tokens.len() as u64);
    h.finish()
}

impl Template {
    /// Whether `src` is this template's text with other literal values
    /// and nothing else changed, whitespace included; found without
    /// lexing more than the literals, whose places go to `out` (in the
    /// order of `literals`). False when anything differs (the caller then
    /// lexes the whole text).
    ///
    /// Why the literals are the tokens [`lex`] would find: the bytes
    /// before each literal are the template's, and each literal starts
    /// with the same byte as the template's (or a digit for a digit), so
    /// the token before it ends where it ended in the template (tokens
    /// look past their end only at that first byte); a literal is lexed
    /// where it starts, in `src`; everything after it is again the
    /// template's.
    fn fast_match(&self, src: &[u8], out: &mut Vec<(usize, usize)>) -> bool {
        out.clear();
        self.fast_match_into(src, out).is_some()
    }

    fn fast_match_into(&self, src: &[u8], out: &mut Vec<(usize, usize)>) -> Option<()> {
        let t = &*self.src;
        // `src` is `t` shifted by `delta` bytes after the literals so far;
        // the bytes since the last literal are compared in one go when
        // the next literal (or the end) comes.
        let mut delta = 0isize;
        let mut run = 0usize; // start of the bytes not compared yet, in `t`
        for &i in self.literals.iter() {
            let tok = &self.tokens[i];
            let np = tok.start.checked_add_signed(delta)?;
            if src.get(run.checked_add_signed(delta)?..np)? != &t[run..tok.start] {
                return None;
            }
            let (first, was) = (*src.get(np)?, t[tok.start]);
            if first != was && !(first.is_ascii_digit() && was.is_ascii_digit()) {
                return None;
            }
            let (kind, end) = token_at(src, np);
            if kind != tok.kind {
                return None;
            }
            out.push((np, end));
            delta = end as isize - tok.end as isize;
            run = tok.end;
        }
        (src.get(run.checked_add_signed(delta)?..)? == &t[run..]).then_some(())
    }

    /// Start and end of token `k` in a text that fast-matched with its
    /// literals at `literals`.
    fn shifted(&self, k: usize, literals: &[(usize, usize)]) -> (usize, usize) {
        let tok = &self.tokens[k];
        let r = self.rank[k] as usize;
        if self.literals.get(r) == Some(&k) {
            return literals[r];
        }
        let Some(r) = r.checked_sub(1) else {
            return (tok.start, tok.end);
        };
        // A token after literal `r` starts at least where it ended, in
        // both texts, so neither place can go below zero.
        let (new_end, old_end) = (literals[r].1, self.tokens[self.literals[r]].end);
        (
            new_end + (tok.start - old_end),
            new_end + (tok.end - old_end),
        )
    }

    fn matches(&self, src: &[u8], tokens: &[Token]) -> bool {
        if tokens.len() != self.tokens.len() {
            return false;
        }
        let mut verbatim = self.verbatim.iter().peekable();
        for (i, (a, b)) in self.tokens.iter().zip(tokens).enumerate() {
            if a.kind != b.kind || a.gap != b.gap {
                return false;
            }
            let keep = verbatim.next_if(|&&v| v == i).is_some();
            if (keep || !is_literal(a.kind)) && self.src[a.start..a.end] != src[b.start..b.end] {
                return false;
            }
        }
        true
    }

    /// Hash of the values of `trace`'s constants in `src`, whose token `k`
    /// spans `at(k)`; `places` gets their byte ranges.
    fn constants_hash(
        trace: &crate::normalize::StatementTrace,
        src: &[u8],
        mut places: Option<&mut Vec<std::ops::Range<usize>>>,
        at: &impl Fn(usize) -> (usize, usize),
    ) -> u64 {
        let mut values = StableHasher::new(CONSTANTS_DOMAIN);
        for &(from, to) in &trace.constants {
            let range = at(from).0..at(to).1;
            let b = &src[range.clone()];
            values.write_u64(b.len() as u64);
            values.write_bytes(b);
            if let Some(places) = places.as_deref_mut() {
                places.push(range);
            }
        }
        values.finish()
    }

    /// The example's result with the constants of `src`, whose token `k`
    /// spans `at(k)`.
    fn instantiate(
        &self,
        src: &[u8],
        places: bool,
        at: impl Fn(usize) -> (usize, usize),
    ) -> Arc<[NormalizedStatement]> {
        self.example
            .iter()
            .zip(&self.trace)
            .map(|(example, trace)| {
                let mut constants = Vec::new();
                if places {
                    constants.reserve_exact(trace.constants.len());
                }
                let constants_hash =
                    Self::constants_hash(trace, src, places.then_some(&mut constants), &at);
                NormalizedStatement {
                    fingerprint: example.fingerprint,
                    text: example.text.clone(),
                    kind: example.kind,
                    constants_hash,
                    constants,
                    tags: example.tags.clone(),
                    span: at(trace.first).0..at(trace.last).1,
                }
            })
            .collect()
    }
}

impl ShapeCache {
    /// A cache holding at most `capacity` shapes (0 disables it).
    pub fn new(capacity: usize) -> Self {
        ShapeCache {
            index: HashMap::default(),
            prefixes: HashMap::default(),
            slots: Vec::new(),
            hand: 0,
            capacity,
            hits: 0,
            unlexed_hits: 0,
            misses: 0,
            scratch: Vec::new(),
            places: true,
            last_had_constants: false,
        }
    }

    /// Answers leave `constants` (the places of the constants) empty,
    /// the text that makes a shape included; everything else,
    /// `constants_hash` included, is as [`crate::normalize()`] gives it. For callers that never look at
    /// the places (the proxy): listing them costs an allocation per
    /// statement.
    pub fn without_constant_places(mut self) -> Self {
        self.places = false;
        self
    }

    /// Whether the latest text answered from a known shape holds
    /// constants (whatever `without_constant_places` says).
    pub fn last_had_constants(&self) -> bool {
        self.last_had_constants
    }

    /// Exactly [`crate::normalize()`]`(sql)`, from a known shape when
    /// there is one.
    pub fn normalize(&mut self, sql: &[u8]) -> Arc<[NormalizedStatement]> {
        match self.known(sql) {
            Some(statements) => statements,
            None => self.normalize_unknown(sql),
        }
    }

    /// The answer for `sql` if it is one of the latest shapes seen for
    /// its beginning, found without lexing it: the cheapest way to a
    /// result, cheaper than hashing the whole text for a text cache.
    pub fn known(&mut self, sql: &[u8]) -> Option<Arc<[NormalizedStatement]>> {
        let slot = self.fast_hit(sql)?;
        let t = &self.slots[slot];
        if t.literals.is_empty() {
            return Some(Arc::clone(&t.example));
        }
        let literals = &self.scratch;
        Some(t.instantiate(sql, self.places, |k| t.shifted(k, literals)))
    }

    /// [`Self::known`] without building a result: the shape's example as
    /// it is, shared, and in `hashes` the `constants_hash` of each of its
    /// statements for `sql` (left empty when the example's own are right,
    /// for a shape without literals). The example's `constants` and
    /// `span` are its own text's; everything else is the same for every
    /// text of the shape. For callers that need only that (the proxy,
    /// unless it logs parameters): building a result costs an allocation
    /// and a copy per text.
    pub fn known_example(
        &mut self,
        sql: &[u8],
        hashes: &mut Vec<u64>,
    ) -> Option<Arc<[NormalizedStatement]>> {
        hashes.clear();
        let slot = self.fast_hit(sql)?;
        let t = &self.slots[slot];
        if !t.literals.is_empty() {
            let literals = &self.scratch;
            let at = |k| t.shifted(k, literals);
            hashes.extend(
                t.trace
                    .iter()
                    .map(|trace| Template::constants_hash(trace, sql, None, &at)),
            );
        }
        Some(Arc::clone(&t.example))
    }

    /// The slot of the shape `sql` fast-matches among the latest ones of
    /// its beginning, with the places of its literals in `scratch`.
    fn fast_hit(&mut self, sql: &[u8]) -> Option<usize> {
        if self.capacity == 0 {
            return None;
        }
        let recent = self.prefixes.get_mut(&prefix_key(sql))?;
        for k in 0..recent.len() {
            let slot = recent[k];
            let Some(t) = self.slots.get_mut(slot) else {
                continue;
            };
            if t.fast_match(sql, &mut self.scratch) {
                t.referenced = true;
                self.hits += 1;
                self.unlexed_hits += 1;
                recent.swap(0, k);
                self.last_had_constants = t.has_constants;
                return Some(slot);
            }
        }
        None
    }

    /// [`Self::normalize`] for a text [`Self::known`] did not answer:
    /// lexes it, then answers from its shape or normalizes it.
    pub(crate) fn normalize_unknown(&mut self, sql: &[u8]) -> Arc<[NormalizedStatement]> {
        if self.capacity == 0 {
            let statements = normalize_tokens(sql, &lex(sql), &mut Trace::default());
            self.last_had_constants = statements.iter().any(|s| !s.constants.is_empty());
            return statements.into();
        }
        let prefix = prefix_key(sql);
        if self.prefixes.len() >= 4 * self.capacity {
            self.prefixes.clear();
        }
        let tokens = lex(sql);
        let key = shape_key(sql, &tokens);
        let found = self.index.get(&key).copied();
        if let Some(i) = found {
            let t = &mut self.slots[i];
            if t.matches(sql, &tokens) {
                t.referenced = true;
                self.hits += 1;
                remember_prefix(&mut self.prefixes, prefix, i);
                self.last_had_constants = t.has_constants;
                // Same tokens can still differ in whitespace, which moves
                // the spans: only the very same text shares the result.
                if t.literals.is_empty() && *t.src == *sql {
                    return Arc::clone(&t.example);
                }
                return t.instantiate(sql, self.places, |k| (tokens[k].start, tokens[k].end));
            }
        }
        self.misses += 1;
        let mut trace = Trace::default();
        let statements = normalize_tokens(sql, &tokens, &mut trace);
        let mut verbatim = trace.verbatim;
        verbatim.sort_unstable();
        verbatim.dedup();
        let mut literals = Vec::new();
        let mut rank = Vec::with_capacity(tokens.len());
        let mut kept = verbatim.iter().peekable();
        for (i, tok) in tokens.iter().enumerate() {
            rank.push(literals.len() as u32);
            let keep = kept.next_if(|&&v| v == i).is_some();
            if is_literal(tok.kind) && !keep {
                literals.push(i);
            }
        }
        // Without places, the text that makes a shape is answered with the
        // shape's example too: a caller that keeps the answer (the
        // proxy's cache of texts) then shares it with the shape instead
        // of holding a copy that differs only in the places.
        let example: Arc<[NormalizedStatement]> = if self.places {
            statements.into()
        } else {
            statements
                .into_iter()
                .map(|s| NormalizedStatement {
                    constants: Vec::new(),
                    ..s
                })
                .collect()
        };
        let answer = Arc::clone(&example);
        let template = Template {
            key,
            src: sql.into(),
            tokens: tokens.into_boxed_slice(),
            verbatim: verbatim.into_boxed_slice(),
            literals: literals.into_boxed_slice(),
            rank: rank.into_boxed_slice(),
            has_constants: trace.statements.iter().any(|t| !t.constants.is_empty()),
            trace: trace.statements,
            example,
            referenced: false,
        };
        self.last_had_constants = template.has_constants;
        let slot = match found {
            // Same key, other shape (literal bytes kept verbatim differ,
            // or a 64-bit collision): the newer one takes the slot.
            Some(i) => {
                self.slots[i] = template;
                i
            }
            None if self.slots.len() < self.capacity => {
                self.index.insert(key, self.slots.len());
                self.slots.push(template);
                self.slots.len() - 1
            }
            None => {
                let victim = crate::clock::victim(&mut self.slots, &mut self.hand);
                let old = std::mem::replace(&mut self.slots[victim], template);
                self.index.remove(&old.key);
                self.index.insert(key, victim);
                victim
            }
        };
        remember_prefix(&mut self.prefixes, prefix, slot);
        answer
    }

    /// Number of shapes held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Texts answered from a known shape.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Hits answered without lexing the whole text (see `prefixes`).
    pub fn unlexed_hits(&self) -> u64 {
        self.unlexed_hits
    }

    /// Texts normalized from scratch.
    pub fn misses(&self) -> u64 {
        self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize;

    fn both(c: &mut ShapeCache, sql: &str) -> Vec<NormalizedStatement> {
        let got = c.normalize(sql.as_bytes()).to_vec();
        assert_eq!(got, normalize(sql.as_bytes()), "{sql}");
        got
    }

    #[test]
    fn literal_start_finds_the_first_digit_quote_or_dollar() {
        let scalar = |h: &[u8]| {
            h.iter()
                .position(|&b| b.is_ascii_digit() || b == b'\'' || b == b'$')
                .unwrap_or(h.len())
        };
        // Every byte value at every place of a word and of the tail, after
        // bytes that are not stops (high ones included).
        for len in 0..=PREFIX_MAX {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut h = vec![0xffu8; len];
                    for (i, x) in h.iter_mut().enumerate().take(at) {
                        *x = [b'a', b'/', b':', 0x80, 0xb0, b'&', b'%'][i % 7];
                    }
                    h[at] = b;
                    assert_eq!(literal_start(&h), scalar(&h), "{h:?}");
                }
            }
        }
    }

    #[test]
    fn literal_values_reuse_the_shape() {
        let mut c = ShapeCache::new(8);
        let a = both(
            &mut c,
            "SELECT abalance FROM pgbench_accounts WHERE aid = 5;",
        );
        let b = both(
            &mut c,
            "SELECT abalance FROM pgbench_accounts WHERE aid = 123456;",
        );
        assert_eq!((c.hits(), c.misses()), (1, 1));
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        assert_ne!(a[0].constants_hash, b[0].constants_hash);
    }

    #[test]
    fn kept_literals_and_other_words_are_other_shapes() {
        let mut c = ShapeCache::new(8);
        both(&mut c, "SELECT a, b FROM t ORDER BY 1");
        let b = both(&mut c, "SELECT a, b FROM t ORDER BY 2");
        assert_eq!(c.hits(), 0);
        both(&mut c, "SELECT a::varchar(10) FROM t WHERE x = 'a'");
        both(&mut c, "SELECT a::varchar(20) FROM t WHERE x = 'b'");
        both(&mut c, "SELECT a FROM t1 WHERE x = 1");
        both(&mut c, "SELECT a FROM t2 WHERE x = 1");
        both(&mut c, "DO $$BEGIN PERFORM 1; END$$");
        both(&mut c, "DO $$BEGIN PERFORM 2; END$$");
        assert_eq!(c.hits(), 0);
        let again = both(&mut c, "SELECT a, b FROM t ORDER BY 2");
        assert_eq!(again, b);
        assert_eq!(c.hits(), 1);
    }

    #[test]
    fn whitespace_inside_constants_and_multi_statement_spans() {
        let mut c = ShapeCache::new(8);
        both(
            &mut c,
            "SELECT - 1; /* app='x' */ UPDATE t SET v = 'a' WHERE id IN (1, 2)",
        );
        both(
            &mut c,
            "SELECT -   77; /* app='x' */ UPDATE t SET v = 'bcd' WHERE id IN (3, 44)",
        );
        both(
            &mut c,
            "SELECT -   77; /* app='y' */ UPDATE t SET v = 'bcd' WHERE id IN (3, 44)",
        );
        assert_eq!(c.hits(), 1);
    }

    #[test]
    fn without_places_only_the_places_are_left_out() {
        let mut c = ShapeCache::new(8).without_constant_places();
        let texts = [
            "UPDATE t SET v = v + 5 WHERE id = 1",
            "UPDATE t SET v = v + 77 WHERE id = 20",
            "UPDATE t SET v = v + 77 WHERE  id = 20",
            "SELECT now()",
            "SELECT now()",
        ];
        for sql in texts {
            let got = c.normalize(sql.as_bytes()).to_vec();
            let mut want = normalize(sql.as_bytes());
            assert_eq!(
                c.last_had_constants(),
                want.iter().any(|s| !s.constants.is_empty()),
                "{sql}"
            );
            for s in &mut want {
                s.constants.clear();
            }
            assert_eq!(got, want, "{sql}");
        }
        assert_eq!((c.hits(), c.unlexed_hits()), (3, 2));
    }

    #[test]
    fn capacity_bounds_shapes() {
        let mut c = ShapeCache::new(3);
        for i in 0..20 {
            both(&mut c, &format!("SELECT c{i} FROM t WHERE x = {i}"));
        }
        assert_eq!(c.len(), 3);
        let mut off = ShapeCache::new(0);
        both(&mut off, "SELECT 1");
        assert!(off.is_empty());
    }
}
