//! Token stream -> statements: splitting, constant replacement, list
//! collapsing, fingerprinting, all in one pass per statement.
//!
//! What counts as a constant follows PostgreSQL's query jumbling (what
//! pg_stat_statements replaces with `$n`), worked out from tokens alone:
//! literals, `TRUE`/`FALSE` (not after `IS`), a unary minus folded into the
//! number it precedes, the field of `EXTRACT(field FROM ...)`. Numbers that
//! PostgreSQL does not keep as constants stay as written: `ORDER BY 2`
//! positions, type modifiers such as `varchar(255)`.

use std::ops::Range;

use crate::comment::parse_tags;
use crate::hash::StableHasher;
use crate::kind::{classify, StatementKind};
use crate::lexer::{is_ident_cont, lex, Kind, Token};
use crate::{Fingerprint, NormalizedStatement};

// Tags mixed into the fingerprint before each token (top byte of a word
// whose low bytes hold a length or a small value).
const T_WORD: u64 = 1 << 56;
const T_QIDENT: u64 = 2 << 56;
const T_CONST: u64 = 3 << 56;
const T_PARAM: u64 = 4 << 56;
const T_OP: u64 = 5 << 56;
const T_PUNCT: u64 = 6 << 56;
const T_CAST: u64 = 7 << 56;
const T_OTHER: u64 = 8 << 56;
const T_LIST: u64 = 9 << 56;
const T_LIST_VALUE: u64 = 10 << 56;
const T_TYPMOD: u64 = 11 << 56;
const T_POSITION: u64 = 12 << 56;
const T_BODY: u64 = 13 << 56;

/// Hasher domains, so that equal word streams for different purposes never
/// produce related numbers.
const FINGERPRINT_DOMAIN: u64 = 0x5047_5649_4749_4c31; // "PGVIGIL1"
pub(crate) const CONSTANTS_DOMAIN: u64 = 0x434f_4e53_5441_4e54; // "CONSTANT"

pub(crate) fn normalize(src: &[u8]) -> Vec<NormalizedStatement> {
    let tokens = lex(src);
    normalize_tokens(src, &tokens, &mut Trace::default())
}

/// Where each statement's variable parts came from, so that
/// [`crate::shape`] can rebuild the result for a text with other literal
/// values without normalizing it again.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trace {
    /// Literal tokens (numbers, strings) whose bytes went into the text or
    /// the fingerprint (`ORDER BY 2`, `varchar(255)`, function bodies): a
    /// text with other bytes there is another shape.
    pub verbatim: Vec<usize>,
    /// Per statement, in output order.
    pub statements: Vec<StatementTrace>,
}

#[derive(Debug, Clone)]
pub(crate) struct StatementTrace {
    /// First and last token of the statement (its span).
    pub first: usize,
    pub last: usize,
    /// Each constant's first and last token, in order.
    pub constants: Vec<(usize, usize)>,
}

/// [`normalize`] over tokens already lexed, recording a [`Trace`].
pub(crate) fn normalize_tokens(
    src: &[u8],
    tokens: &[Token],
    trace: &mut Trace,
) -> Vec<NormalizedStatement> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Inside `BEGIN ATOMIC ... END` (SQL-standard function bodies), `;`
    // separates the body's statements, not ours. CASE ... END nests there.
    let mut atomic = 0usize;
    let mut lo = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            Kind::Punct => match src[t.start] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth = depth.saturating_sub(1),
                b';' if depth == 0 && atomic == 0 => {
                    statement(src, tokens, lo..i, &mut out, trace);
                    lo = i + 1;
                }
                _ => {}
            },
            Kind::Word => {
                let w = &src[t.start..t.end];
                if atomic > 0 {
                    if w.eq_ignore_ascii_case(b"case") {
                        atomic += 1;
                    } else if w.eq_ignore_ascii_case(b"end") {
                        atomic -= 1;
                    }
                } else if w.eq_ignore_ascii_case(b"begin") {
                    let next = tokens[i + 1..].iter().find(|t| t.kind != Kind::Comment);
                    if next.is_some_and(|n| {
                        n.kind == Kind::Word && src[n.start..n.end].eq_ignore_ascii_case(b"atomic")
                    }) {
                        atomic = 1;
                    }
                }
            }
            _ => {}
        }
    }
    statement(src, tokens, lo..tokens.len(), &mut out, trace);
    out
}

fn statement(
    src: &[u8],
    all: &[Token],
    range: Range<usize>,
    out: &mut Vec<NormalizedStatement>,
    trace: &mut Trace,
) {
    let base = range.start;
    let toks = &all[range];
    let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
        return;
    };
    if toks.iter().all(|t| t.kind == Kind::Comment) {
        // `SELECT 1; /*controller='x'*/`: tags written after the semicolon
        // still describe the statement before it.
        if let Some(prev) = out.last_mut() {
            for t in toks {
                block_comment_tags(src, t, &mut prev.tags);
            }
        }
        return;
    }
    let mut b = Builder::new(src, toks, base, trace);
    b.run();
    let Builder {
        fp,
        text,
        kind,
        values,
        constants,
        tags,
        constant_tokens,
        ..
    } = b;
    trace.statements.push(StatementTrace {
        first: base,
        last: base + toks.len() - 1,
        constants: constant_tokens,
    });
    out.push(NormalizedStatement {
        fingerprint: Fingerprint(fp.finish()),
        text: into_string(text).into(),
        kind,
        constants_hash: values.finish(),
        constants,
        tags,
        span: first.start..last.end,
    });
}

type SplitBody<'a> = (&'a [u8], std::borrow::Cow<'a, [u8]>, &'a [u8]);

/// A DO body's opening delimiter, its code, and its closing delimiter:
/// `$tag$ code $tag$`, or `' code '` with doubled quotes undone. None for
/// what cannot be read back reliably (unterminated, `E'...'` escapes).
fn split_body(raw: &[u8]) -> Option<SplitBody<'_>> {
    match raw.first()? {
        b'$' => {
            let tag_end = raw[1..].iter().position(|&c| c == b'$')? + 2;
            let open = &raw[..tag_end];
            if raw.len() < 2 * tag_end || !raw.ends_with(open) {
                return None;
            }
            let inner = &raw[tag_end..raw.len() - tag_end];
            Some((open, inner.into(), &raw[raw.len() - tag_end..]))
        }
        b'\'' => {
            if raw.len() < 2 || raw.last() != Some(&b'\'') {
                return None;
            }
            let inner = &raw[1..raw.len() - 1];
            let mut out = Vec::with_capacity(inner.len());
            let mut k = 0;
            while k < inner.len() {
                out.push(inner[k]);
                k += if inner[k] == b'\'' { 2 } else { 1 };
            }
            Some((&raw[..1], out.into(), &raw[raw.len() - 1..]))
        }
        _ => None,
    }
}

fn block_comment_tags(src: &[u8], t: &Token, tags: &mut Vec<(String, String)>) {
    let c = &src[t.start..t.end];
    if c.starts_with(b"/*") && c.windows(2).any(|w| w == b"='") {
        parse_tags(c, tags);
    }
}

fn into_string(v: Vec<u8>) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

struct Builder<'a> {
    src: &'a [u8],
    toks: &'a [Token],
    /// Index of `toks[0]` in the whole text's tokens.
    base: usize,
    /// Where literal bytes were used verbatim.
    trace: &'a mut Trace,
    /// Each constant's first and last token (whole-text indices).
    constant_tokens: Vec<(usize, usize)>,
    kind: StatementKind,
    text: Vec<u8>,
    fp: StableHasher,
    values: StableHasher,
    constants: Vec<Range<usize>>,
    tags: Vec<(String, String)>,
    next_placeholder: u64,
    /// The last text written was a `$n` placeholder (a word glued to it
    /// would read as part of it).
    after_placeholder: bool,
    /// Last two significant tokens (indices into `toks`).
    prev: Option<usize>,
    prev2: Option<usize>,
    depth: usize,
    /// Paren depth of an `ORDER BY` / `GROUP BY` list being read.
    by_list: Option<usize>,
    /// Token index of a savepoint name (a constant, like in PostgreSQL 17).
    savepoint_name: Option<usize>,
    /// String literals are code here (function bodies), not values.
    keep_strings: bool,
}

impl<'a> Builder<'a> {
    fn new(src: &'a [u8], toks: &'a [Token], base: usize, trace: &'a mut Trace) -> Self {
        let kind = classify(src, toks);
        let mut max_param = 0u64;
        for t in toks.iter().filter(|t| t.kind == Kind::Param) {
            max_param = max_param.max(param_number(&src[t.start..t.end]));
        }
        let savepoint_name = match kind {
            StatementKind::Transaction("SAVEPOINT" | "RELEASE" | "ROLLBACK TO SAVEPOINT") => {
                let last = toks.iter().rposition(|t| t.kind != Kind::Comment);
                last.filter(|&i| {
                    let t = &toks[i];
                    i > 0
                        && (t.kind == Kind::QuotedIdent
                            || t.kind == Kind::Word
                                && !src[t.start..t.end].eq_ignore_ascii_case(b"savepoint"))
                })
            }
            _ => None,
        };
        let keep_strings = matches!(
            kind,
            StatementKind::Ddl("CREATE FUNCTION" | "CREATE PROCEDURE")
                | StatementKind::Utility("DO")
        );
        let len = toks.last().map_or(0, |l| l.end) - toks.first().map_or(0, |f| f.start);
        Builder {
            src,
            toks,
            base,
            trace,
            constant_tokens: Vec::new(),
            kind,
            text: Vec::with_capacity(len + 8),
            fp: StableHasher::new(FINGERPRINT_DOMAIN),
            values: StableHasher::new(CONSTANTS_DOMAIN),
            constants: Vec::new(),
            tags: Vec::new(),
            next_placeholder: max_param.saturating_add(1),
            after_placeholder: false,
            prev: None,
            prev2: None,
            depth: 0,
            by_list: None,
            savepoint_name,
            keep_strings,
        }
    }

    #[inline]
    fn bytes(&self, i: usize) -> &'a [u8] {
        let t = &self.toks[i];
        &self.src[t.start..t.end]
    }

    /// First significant (non-comment) token at or after `i`.
    #[inline]
    fn sig(&self, mut i: usize) -> Option<usize> {
        while let Some(t) = self.toks.get(i) {
            if t.kind != Kind::Comment {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    #[inline]
    fn is_punct(&self, i: Option<usize>, c: u8) -> bool {
        i.is_some_and(|i| self.toks[i].kind == Kind::Punct && self.src[self.toks[i].start] == c)
    }

    #[inline]
    fn is_word(&self, i: Option<usize>, w: &[u8]) -> bool {
        i.is_some_and(|i| self.toks[i].kind == Kind::Word && self.bytes(i).eq_ignore_ascii_case(w))
    }

    fn run(&mut self) {
        let mut i = 0;
        while let Some(&t) = self.toks.get(i) {
            let next = match t.kind {
                Kind::Comment => {
                    block_comment_tags(self.src, &t, &mut self.tags);
                    i += 1;
                    continue;
                }
                Kind::Word => self.word(i),
                Kind::QuotedIdent => {
                    if self.savepoint_name == Some(i) {
                        self.constant(i, i);
                    } else {
                        self.emit(i);
                        self.hash_quoted_ident(i);
                    }
                    i + 1
                }
                Kind::String | Kind::DollarString => {
                    if self.kind == StatementKind::Utility("DO") {
                        self.do_body(i);
                    } else if self.keep_strings {
                        self.emit(i);
                        self.hash_bytes(T_BODY, i);
                    } else {
                        self.constant(i, i);
                    }
                    i + 1
                }
                Kind::Number => self.number(i),
                Kind::Param => {
                    self.emit(i);
                    self.fp.write_u64(T_PARAM);
                    self.fp.write_u64(param_number(self.bytes(i)));
                    i + 1
                }
                Kind::Op => self.operator(i),
                Kind::Punct => self.punct(i),
                Kind::Cast => {
                    self.emit(i);
                    self.fp.write_u64(T_CAST);
                    i + 1
                }
                Kind::Other => {
                    self.emit(i);
                    self.hash_bytes(T_OTHER, i);
                    i + 1
                }
            };
            // `next` is past the construct; its last significant token is
            // what the following tokens see as their predecessor.
            let last = (i..next)
                .rev()
                .find(|&j| self.toks[j].kind != Kind::Comment);
            if last.is_some() {
                self.prev2 = self.prev;
                self.prev = last;
            }
            i = next;
        }
    }

    // ----- text -----

    fn space(&mut self, gap: bool, first_byte: u8) {
        if matches!(self.text.last(), None | Some(b' ')) {
            return;
        }
        if gap || (self.after_placeholder && is_ident_cont(first_byte)) {
            self.text.push(b' ');
        }
    }

    /// A literal token's bytes shape the result (not only its value).
    #[inline]
    fn note_verbatim(&mut self, i: usize) {
        if matches!(
            self.toks[i].kind,
            Kind::Number | Kind::String | Kind::DollarString
        ) {
            self.trace.verbatim.push(self.base + i);
        }
    }

    /// Copies token `i` to the text as written.
    fn emit(&mut self, i: usize) {
        self.note_verbatim(i);
        let t = self.toks[i];
        self.space(t.gap, self.src[t.start]);
        self.text.extend_from_slice(&self.src[t.start..t.end]);
        self.after_placeholder = false;
    }

    fn placeholder(&mut self, gap: bool) {
        // `N'x'` is shown `N$1`, as pg_stat_statements does; any other word
        // glued to a placeholder would read as one identifier.
        let glued = self.text.last().is_some_and(|&c| is_ident_cont(c))
            && !ends_with_national_prefix(&self.text);
        self.space(gap || glued, b'$');
        self.text.push(b'$');
        push_decimal(&mut self.text, self.next_placeholder);
        self.next_placeholder = self.next_placeholder.saturating_add(1);
        self.after_placeholder = true;
    }

    // ----- hashing -----

    fn hash_bytes(&mut self, tag: u64, i: usize) {
        self.note_verbatim(i);
        let b = self.bytes(i);
        self.fp.write_u64(tag | b.len() as u64);
        self.fp.write_bytes(b);
    }

    fn hash_word(&mut self, i: usize) {
        let b = self.bytes(i);
        self.fp.write_u64(T_WORD | b.len() as u64);
        self.fp.write_bytes_lowercase(b);
    }

    /// `"users"` names the same table as `users`, so a quoted identifier
    /// that PostgreSQL would fold to the same name hashes like the word.
    /// `"Users"` does not: quoted identifiers keep their case.
    fn hash_quoted_ident(&mut self, i: usize) {
        let b = self.bytes(i);
        if let Some(inner) = b.strip_prefix(b"\"").and_then(|b| b.strip_suffix(b"\"")) {
            let plain = inner
                .first()
                .is_some_and(|&c| c == b'_' || c.is_ascii_lowercase() || c >= 0x80)
                && inner.iter().all(|&c| {
                    c == b'_'
                        || c == b'$'
                        || c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c >= 0x80
                });
            if plain {
                self.fp.write_u64(T_WORD | inner.len() as u64);
                self.fp.write_bytes(inner);
                return;
            }
        }
        self.hash_bytes(T_QIDENT, i);
    }

    /// Records the value of a constant spanning tokens `from..=to`.
    fn value(&mut self, from: usize, to: usize) {
        let range = self.toks[from].start..self.toks[to].end;
        let b = &self.src[range.clone()];
        self.values.write_u64(b.len() as u64);
        self.values.write_bytes(b);
        self.constants.push(range);
        self.constant_tokens
            .push((self.base + from, self.base + to));
    }

    /// A constant spanning tokens `from..=to` becomes `$n`.
    fn constant(&mut self, from: usize, to: usize) {
        self.placeholder(self.toks[from].gap);
        self.fp.write_u64(T_CONST);
        self.value(from, to);
    }

    /// A DO block's body is code, but code written around the caller's
    /// values (`DO $$ ... 'password' ... $$`): kept verbatim it would show
    /// those values on every statistics surface. Its literals (strings,
    /// numbers, nested dollar quotes) become `$n` and comments go, as in
    /// any other statement, so blocks differing only in values share a
    /// fingerprint. The body's bytes still key the shape cache (they are
    /// noted verbatim), so a cached text is only reused for the very same
    /// body. A body that cannot be taken apart (unterminated, or an
    /// escape string) becomes one `$n` altogether.
    fn do_body(&mut self, i: usize) {
        let raw = self.bytes(i);
        let Some((open, inner, close)) = split_body(raw) else {
            self.constant(i, i);
            return;
        };
        self.note_verbatim(i);
        let inner_toks = lex(&inner);
        let mut body: Vec<u8> = Vec::with_capacity(inner.len());
        let mut after_placeholder = false;
        for t in inner_toks.iter().filter(|t| t.kind != Kind::Comment) {
            let bytes = &inner[t.start..t.end];
            let glued = body.last().is_some_and(|&c| is_ident_cont(c));
            let literal = matches!(t.kind, Kind::Number | Kind::String | Kind::DollarString);
            let spaced = !body.is_empty()
                && (t.gap || (literal && glued) || (after_placeholder && is_ident_cont(bytes[0])));
            if spaced {
                body.push(b' ');
            }
            if literal {
                body.push(b'$');
                push_decimal(&mut body, self.next_placeholder);
                self.next_placeholder = self.next_placeholder.saturating_add(1);
            } else {
                body.extend_from_slice(bytes);
            }
            after_placeholder = literal;
        }
        let t = self.toks[i];
        self.space(t.gap, raw[0]);
        self.text.extend_from_slice(open);
        self.text.push(b' ');
        self.text.extend_from_slice(&body);
        self.text.push(b' ');
        self.text.extend_from_slice(close);
        self.after_placeholder = false;
        self.fp.write_u64(T_BODY | body.len() as u64);
        self.fp.write_bytes(&body);
    }

    // ----- tokens -----

    fn word(&mut self, i: usize) -> usize {
        let w = self.bytes(i);
        if self.savepoint_name == Some(i) {
            self.constant(i, i);
            return i + 1;
        }
        if let StatementKind::Transaction(tag) = self.kind {
            // One command, several spellings: END is COMMIT, ABORT is
            // ROLLBACK, and WORK, TRANSACTION and SAVEPOINT are optional
            // noise (PostgreSQL parses them to the same node).
            if self.prev.is_none() {
                self.emit(i);
                self.fp.write_u64(T_WORD | tag.len() as u64);
                self.fp.write_bytes_lowercase(tag.as_bytes());
                return i + 1;
            }
            if [&b"work"[..], b"transaction", b"savepoint"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
            {
                self.emit(i);
                return i + 1;
            }
        }
        match w.len() {
            2 if w.eq_ignore_ascii_case(b"in") => {
                if let Some(end) = self.list(i, ListKind::In) {
                    return end;
                }
            }
            2 if w.eq_ignore_ascii_case(b"by") => {
                let p = self.prev;
                if self.is_word(p, b"order") || self.is_word(p, b"group") {
                    self.by_list = Some(self.depth);
                }
            }
            4 | 5 if w.eq_ignore_ascii_case(b"true") || w.eq_ignore_ascii_case(b"false") => {
                // `x IS [NOT] TRUE` is a test, not a constant.
                let after_is = self.is_word(self.prev, b"is")
                    || self.is_word(self.prev, b"not") && self.is_word(self.prev2, b"is");
                if !after_is {
                    self.constant(i, i);
                    return i + 1;
                }
            }
            5 if w.eq_ignore_ascii_case(b"array") => {
                if let Some(end) = self.list(i, ListKind::Array) {
                    return end;
                }
            }
            6 if w.eq_ignore_ascii_case(b"values") => {
                if let Some(end) = self.list(i, ListKind::Values) {
                    return end;
                }
            }
            _ => {}
        }
        if self.by_list == Some(self.depth) && ends_by_list(w) {
            self.by_list = None;
        }
        // EXTRACT(field FROM x): PostgreSQL turns the field into a string
        // constant.
        if self.is_punct(self.prev, b'(')
            && self.is_word(self.prev2, b"extract")
            && self.is_word(self.sig(i + 1), b"from")
        {
            self.constant(i, i);
            return i + 1;
        }
        self.emit(i);
        self.hash_word(i);
        i + 1
    }

    fn number(&mut self, i: usize) -> usize {
        // `ORDER BY 2` / `GROUP BY 1, 2` name output columns: not constants.
        let in_by_list = self.is_word(self.prev, b"by") && self.by_list == Some(self.depth)
            || self.is_punct(self.prev, b',') && self.by_list == Some(self.depth);
        if in_by_list {
            let next = self.sig(i + 1);
            let ends_item = match next {
                None => true,
                Some(n) => {
                    self.is_punct(next, b',')
                        || self.is_punct(next, b')')
                        || self.toks[n].kind == Kind::Word && {
                            let w = self.bytes(n);
                            ends_by_list(w)
                                || [&b"asc"[..], b"desc", b"nulls", b"using"]
                                    .iter()
                                    .any(|k| w.eq_ignore_ascii_case(k))
                        }
                }
            };
            if ends_item {
                self.emit(i);
                self.hash_bytes(T_POSITION, i);
                return i + 1;
            }
        }
        self.constant(i, i);
        i + 1
    }

    fn operator(&mut self, i: usize) -> usize {
        let op = self.bytes(i);
        if op == b"-" && self.unary_context() {
            if let Some(n) = self.sig(i + 1) {
                // Unary minus binds looser than `::` and `[`: `-1::int` is
                // -(1::int), which PostgreSQL does not fold.
                let after = self.sig(n + 1);
                if self.toks[n].kind == Kind::Number
                    && !after.is_some_and(|a| self.toks[a].kind == Kind::Cast)
                    && !self.is_punct(after, b'[')
                {
                    self.constant(i, n);
                    return n + 1;
                }
            }
        }
        self.emit(i);
        if op == b"!=" {
            // The lexer of PostgreSQL turns `!=` into `<>`.
            self.fp.write_u64(T_OP | 2);
            self.fp.write_bytes(b"<>");
        } else {
            self.hash_bytes(T_OP, i);
        }
        i + 1
    }

    /// Would a `-` here start an operand (unary) rather than subtract?
    fn unary_context(&self) -> bool {
        let Some(p) = self.prev else {
            return true;
        };
        let t = &self.toks[p];
        match t.kind {
            Kind::Op | Kind::Cast | Kind::Other => true,
            Kind::Punct => matches!(self.src[t.start], b'(' | b',' | b'[' | b':' | b';'),
            Kind::Word => expects_operand(self.bytes(p)),
            _ => false,
        }
    }

    fn punct(&mut self, i: usize) -> usize {
        let c = self.src[self.toks[i].start];
        match c {
            b'(' => {
                if let Some(end) = self.typmod(i) {
                    return end;
                }
                self.depth += 1;
            }
            b')' => {
                self.depth = self.depth.saturating_sub(1);
                if self.by_list.is_some_and(|d| d > self.depth) {
                    self.by_list = None;
                }
            }
            _ => {}
        }
        self.emit(i);
        self.fp.write_u64(T_PUNCT | u64::from(c));
        i + 1
    }

    /// `varchar(255)`, `numeric(10, 2)`: PostgreSQL keeps type modifiers out
    /// of the constants (pg_stat_statements shows them as written) and its
    /// query id ignores their values, so: shown as written, hashed as one
    /// marker.
    fn typmod(&mut self, open: usize) -> Option<usize> {
        let p = self.prev?;
        if p + 1 != open || self.toks[p].kind != Kind::Word || !is_typmod_type(self.bytes(p)) {
            return None;
        }
        let mut j = open + 1;
        let mut numbers = 0;
        loop {
            let t = self.toks.get(j)?;
            match t.kind {
                Kind::Number => numbers += 1,
                Kind::Comment => {}
                Kind::Punct if self.src[t.start] == b',' => {}
                Kind::Punct if self.src[t.start] == b')' && numbers > 0 => break,
                _ => return None,
            }
            j += 1;
        }
        for k in open..=j {
            if self.toks[k].kind != Kind::Comment {
                self.emit(k);
            }
        }
        self.fp.write_u64(T_TYPMOD);
        Some(j + 1)
    }

    // ----- lists -----

    /// `IN (...)`, `ARRAY[...]`, `VALUES (...), (...)` made only of
    /// constants and parameters: the fingerprint sees one element (or row)
    /// and the text shows the first followed by `...`, so the length of the
    /// list never makes a new fingerprint. Every element's value still goes
    /// into the constants.
    fn list(&mut self, kw: usize, kind: ListKind) -> Option<usize> {
        let open = self.sig(kw + 1)?;
        let (open_c, close_c) = match kind {
            ListKind::Array => (b'[', b']'),
            _ => (b'(', b')'),
        };
        if !self.is_punct(Some(open), open_c) {
            return None;
        }
        // Parse first, emit after: nothing is written unless the whole list
        // qualifies.
        let mut rows = 0usize;
        let mut first_row: Option<(usize, usize)> = None;
        let mut arity = 0usize;
        let mut elements = 0usize;
        let mut row_open = open;
        let end = loop {
            let (close, n) = self.elements(row_open, close_c)?;
            if rows == 0 {
                first_row = Some((row_open, close));
                arity = n;
            } else if n != arity {
                return None;
            }
            rows += 1;
            elements += n;
            if kind != ListKind::Values {
                break close + 1;
            }
            let comma = self.sig(close + 1);
            if self.is_punct(comma, b',') {
                let next_open = comma.and_then(|c| self.sig(c + 1));
                if self.is_punct(next_open, b'(') {
                    row_open = next_open?;
                    continue;
                }
            }
            break close + 1;
        };
        let (row_open, row_close) = first_row?;

        self.emit(kw);
        self.hash_word(kw);
        self.fp.write_u64(T_LIST | kind as u64);
        self.emit(row_open);
        self.fp.write_u64(T_PUNCT | u64::from(open_c));
        let (more, show) = match kind {
            ListKind::Values => (rows > 1, usize::MAX),
            _ => (elements > 1, 1),
        };
        // Every element is walked: the shown ones (the first element, or
        // the whole first row of VALUES) are written and hashed, all of
        // them contribute their values.
        let mut index = 0usize;
        let mut j = row_open + 1;
        while let Some(s) = self.sig(j).filter(|&s| s < end) {
            let t = self.toks[s];
            if t.kind == Kind::Punct {
                j = s + 1;
                continue;
            }
            let Some((value_end, elem_end)) = self.element(s) else {
                // Unreachable: the same tokens parsed above.
                break;
            };
            let in_first_row = s < row_close;
            let shown = in_first_row && index < show;
            if shown && index > 0 {
                self.text.extend_from_slice(b", ");
            }
            self.list_element(s, value_end, elem_end, shown);
            if in_first_row {
                index += 1;
            }
            j = elem_end;
        }
        match kind {
            ListKind::Values => {
                self.text.push(b')');
                if more {
                    self.text.extend_from_slice(b", ...");
                }
            }
            _ => {
                if more {
                    self.text.extend_from_slice(b", ...");
                }
                self.text.push(close_c);
            }
        }
        self.fp.write_u64(T_PUNCT | u64::from(close_c));
        self.after_placeholder = false;
        Some(end)
    }

    /// Elements between `open` and its closing bracket: returns the index of
    /// the closing bracket and the number of elements, or `None` if anything
    /// but a constant or parameter is found.
    fn elements(&self, open: usize, close_c: u8) -> Option<(usize, usize)> {
        let mut j = self.sig(open + 1)?;
        let mut n = 0;
        loop {
            let (_, end) = self.element(j)?;
            n += 1;
            let k = self.sig(end)?;
            let t = &self.toks[k];
            if t.kind != Kind::Punct {
                return None;
            }
            match self.src[t.start] {
                b',' => j = self.sig(k + 1)?,
                c if c == close_c => return Some((k, n)),
                _ => return None,
            }
        }
    }

    /// One list element at significant token `j`: a literal, a negative
    /// number, `TRUE`/`FALSE`, a parameter or a typed literal (`DATE '...'`),
    /// then any `::type` casts. Returns (end of the value, end of the
    /// element) as token indices.
    fn element(&self, j: usize) -> Option<(usize, usize)> {
        let t = &self.toks[j];
        let value_end = match t.kind {
            Kind::Number | Kind::String | Kind::DollarString | Kind::Param => j + 1,
            Kind::Op if self.bytes(j) == b"-" => {
                let n = self.sig(j + 1)?;
                if self.toks[n].kind != Kind::Number {
                    return None;
                }
                n + 1
            }
            Kind::Word => {
                let w = self.bytes(j);
                if w.eq_ignore_ascii_case(b"true") || w.eq_ignore_ascii_case(b"false") {
                    j + 1
                } else {
                    let s = self.sig(j + 1)?;
                    if self.toks[s].kind != Kind::String {
                        return None;
                    }
                    s + 1
                }
            }
            _ => return None,
        };
        let mut end = value_end;
        while let Some(c) = self.sig(end).filter(|&c| self.toks[c].kind == Kind::Cast) {
            end = self.type_name(c + 1)?;
        }
        Some((value_end, end))
    }

    /// A type name after `::`: words (dotted, with the multi-word spellings
    /// such as `double precision`, `timestamp with time zone`), optional
    /// modifiers, optional `[]`s. Returns the index after it.
    fn type_name(&self, j: usize) -> Option<usize> {
        let first = self.sig(j)?;
        if !matches!(self.toks[first].kind, Kind::Word | Kind::QuotedIdent) {
            return None;
        }
        let mut end = first + 1;
        loop {
            let n = self.sig(end);
            let Some(ni) = n else { return Some(end) };
            let t = &self.toks[ni];
            match t.kind {
                Kind::Punct if self.src[t.start] == b'.' => {
                    let w = self.sig(ni + 1)?;
                    end = w + 1;
                }
                Kind::Word
                    if [
                        &b"precision"[..],
                        b"varying",
                        b"with",
                        b"without",
                        b"time",
                        b"zone",
                    ]
                    .iter()
                    .any(|k| self.bytes(ni).eq_ignore_ascii_case(k)) =>
                {
                    end = ni + 1;
                }
                Kind::Punct if self.src[t.start] == b'(' => {
                    let mut k = ni + 1;
                    loop {
                        let t = self.toks.get(k)?;
                        match t.kind {
                            Kind::Number | Kind::Comment => {}
                            Kind::Punct if self.src[t.start] == b',' => {}
                            Kind::Punct if self.src[t.start] == b')' => break,
                            _ => return None,
                        }
                        k += 1;
                    }
                    end = k + 1;
                }
                Kind::Punct if self.src[t.start] == b'[' => {
                    let mut k = self.sig(ni + 1)?;
                    if self.toks[k].kind == Kind::Number {
                        k = self.sig(k + 1)?;
                    }
                    if !self.is_punct(Some(k), b']') {
                        return None;
                    }
                    end = k + 1;
                }
                _ => return Some(end),
            }
        }
    }

    /// Writes and hashes one element if `shown`; always records its value.
    fn list_element(&mut self, s: usize, value_end: usize, elem_end: usize, shown: bool) {
        let t = self.toks[s];
        let is_param = t.kind == Kind::Param;
        // A typed literal's type word (`DATE '...'`) is part of the shape.
        let typed = t.kind == Kind::Word
            && !self.bytes(s).eq_ignore_ascii_case(b"true")
            && !self.bytes(s).eq_ignore_ascii_case(b"false");
        if shown {
            if typed {
                self.text.extend_from_slice(self.bytes(s));
                self.hash_word(s);
                self.placeholder(true);
            } else if is_param {
                // Parameter numbers are not part of a collapsed list's shape.
                self.text.extend_from_slice(self.bytes(s));
                self.after_placeholder = true;
            } else {
                self.placeholder(false);
            }
            self.fp.write_u64(T_LIST_VALUE);
        }
        if !is_param {
            let from = if typed {
                self.sig(s + 1).unwrap_or(s)
            } else {
                s
            };
            self.value(from, value_end - 1);
        }
        if !shown {
            return;
        }
        for k in value_end..elem_end {
            match self.toks[k].kind {
                Kind::Comment => continue,
                Kind::Number => {
                    self.emit(k);
                    self.fp.write_u64(T_TYPMOD);
                }
                Kind::Word => {
                    self.emit(k);
                    self.hash_word(k);
                }
                Kind::QuotedIdent => {
                    self.emit(k);
                    self.hash_quoted_ident(k);
                }
                Kind::Cast => {
                    self.emit(k);
                    self.fp.write_u64(T_CAST);
                }
                _ => {
                    self.emit(k);
                    self.hash_bytes(T_PUNCT, k);
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    In = 1,
    Array = 2,
    Values = 3,
}

fn ends_with_national_prefix(text: &[u8]) -> bool {
    match text {
        [b'N' | b'n'] => true,
        [.., before, b'N' | b'n'] => !is_ident_cont(*before),
        _ => false,
    }
}

fn param_number(b: &[u8]) -> u64 {
    b.iter()
        .skip(1)
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, &c| {
            n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        })
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Words after which a `-` starts an operand. Reserved keywords cannot end
/// an expression, unlike identifiers (`a - 1`), so `-1` after them is a
/// negative constant; a few non-reserved ones (`BETWEEN`) are added.
fn expects_operand(w: &[u8]) -> bool {
    if w.len() > 10 {
        return false;
    }
    let mut buf = [0u8; 10];
    let lw = &mut buf[..w.len()];
    lw.copy_from_slice(w);
    lw.make_ascii_lowercase();
    matches!(
        &*lw,
        b"select"
            | b"where"
            | b"and"
            | b"or"
            | b"not"
            | b"then"
            | b"else"
            | b"when"
            | b"case"
            | b"limit"
            | b"offset"
            | b"having"
            | b"on"
            | b"returning"
            | b"between"
            | b"symmetric"
            | b"like"
            | b"ilike"
            | b"similar"
            | b"by"
            | b"distinct"
            | b"all"
            | b"any"
            | b"some"
            | b"return"
            | b"default"
            | b"escape"
            | b"to"
            | b"from"
            | b"for"
            | b"with"
            | b"zone"
            | b"in"
            | b"using"
            | b"set"
            | b"values"
            | b"minvalue"
            | b"maxvalue"
            | b"start"
            | b"restart"
            | b"increment"
            | b"fetch"
            | b"first"
            | b"next"
            | b"absolute"
            | b"relative"
            | b"forward"
            | b"backward"
    )
}

/// Words that end an `ORDER BY` / `GROUP BY` list at its own depth.
fn ends_by_list(w: &[u8]) -> bool {
    [
        &b"limit"[..],
        b"offset",
        b"fetch",
        b"for",
        b"having",
        b"window",
        b"union",
        b"intersect",
        b"except",
        b"returning",
        b"from",
        b"where",
        b"select",
        b"on",
        b"order",
        b"group",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

/// Types that take modifiers in parentheses.
fn is_typmod_type(w: &[u8]) -> bool {
    [
        &b"varchar"[..],
        b"char",
        b"character",
        b"varying",
        b"nchar",
        b"bpchar",
        b"numeric",
        b"decimal",
        b"dec",
        b"bit",
        b"varbit",
        b"time",
        b"timetz",
        b"timestamp",
        b"timestamptz",
        b"interval",
        b"float",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}
