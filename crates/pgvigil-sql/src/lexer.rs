//! PostgreSQL's lexical rules (src/backend/parser/scan.l), on raw bytes.
//!
//! The lexer only has to find where each token starts and ends and what
//! sort it is: that is all constant replacement and fingerprinting need, and
//! it is an order of magnitude cheaper than a parse. It never fails: an
//! unterminated quote or comment runs to the end of the input, and a byte
//! that starts no token becomes a one-byte [`Kind::Other`] token. Bytes
//! from 0x80 up are identifier characters, as in PostgreSQL, so LATIN1 and
//! other single-byte encodings lex the same way UTF-8 does.
//!
//! `standard_conforming_strings` is assumed on (the default since 9.1):
//! backslashes are escapes only in `E'...'` strings.

/// What a token is, as far as normalization cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Keyword or unquoted identifier (case-insensitive).
    Word,
    /// `"..."` or `U&"..."` (case-sensitive), with any `UESCAPE '.'`.
    QuotedIdent,
    /// `'...'`, `E'...'`, `B'...'`, `X'...'`, `U&'...'` (with `UESCAPE`),
    /// including `'...'` continuation lines. `N'...'` lexes as the word `N`
    /// followed by a string, exactly as PostgreSQL does.
    String,
    /// `$$...$$` or `$tag$...$tag$`.
    DollarString,
    /// Integer, decimal or exponent literal, `0x`/`0o`/`0b`, `1_000`.
    Number,
    /// `$1`, `$2`, ...
    Param,
    /// Operator: `=`, `<>`, `->>`, `@>`, `?`, `||`, `+`, `-`, ...
    Op,
    /// One of `( ) [ ] , ; . :`.
    Punct,
    /// `::`
    Cast,
    /// `-- ...` or `/* ... */` (nested).
    Comment,
    /// A byte that starts no token (`\`, `{`, a lone `$`, control bytes).
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    /// Whitespace or a comment comes right before this token.
    pub gap: bool,
    pub start: usize,
    pub end: usize,
}

const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const IDENT_CONT: u8 = 4;
const DIGIT: u8 = 8;
const OP_CHAR: u8 = 16;
const HEX: u8 = 32;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            c |= SPACE;
        }
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= IDENT_START | IDENT_CONT;
        }
        if b.is_ascii_digit() {
            c |= DIGIT | IDENT_CONT;
        }
        if b == b'$' {
            c |= IDENT_CONT;
        }
        if b.is_ascii_hexdigit() {
            c |= HEX;
        }
        if matches!(
            b,
            b'~' | b'!'
                | b'@'
                | b'#'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'<'
                | b'>'
                | b'='
        ) {
            c |= OP_CHAR;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

#[inline(always)]
pub(crate) fn is_space(b: u8) -> bool {
    class(b) & SPACE != 0
}

#[inline(always)]
pub(crate) fn is_ident_start(b: u8) -> bool {
    class(b) & IDENT_START != 0
}

#[inline(always)]
pub(crate) fn is_ident_cont(b: u8) -> bool {
    class(b) & IDENT_CONT != 0
}

#[inline(always)]
fn is_digit(b: u8) -> bool {
    class(b) & DIGIT != 0
}

#[inline(always)]
fn is_op_char(b: u8) -> bool {
    class(b) & OP_CHAR != 0
}

/// Splits `src` into tokens (comments included, whitespace dropped).
pub(crate) fn lex(src: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(src.len() / 4 + 8);
    let mut lx = Lexer { src, pos: 0 };
    let mut gap = false;
    while let Some(&b) = src.get(lx.pos) {
        if is_space(b) {
            lx.pos += 1;
            gap = true;
            continue;
        }
        let start = lx.pos;
        let kind = lx.token(b);
        // Every branch of `token` consumes at least one byte.
        debug_assert!(lx.pos > start);
        tokens.push(Token {
            kind,
            gap,
            start,
            end: lx.pos,
        });
        gap = kind == Kind::Comment;
    }
    tokens
}

/// The one token that starts at `pos` (not whitespace): its kind and end.
/// Tokens do not depend on what precedes them, so this is the token
/// [`lex`] finds there whenever it finds one starting at `pos`.
pub(crate) fn token_at(src: &[u8], pos: usize) -> (Kind, usize) {
    let mut lx = Lexer { src, pos };
    let kind = lx.token(src[pos]);
    (kind, lx.pos)
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    fn token(&mut self, b: u8) -> Kind {
        let next = self.at(self.pos + 1);
        match b {
            b'-' if next == b'-' => {
                self.line_comment();
                Kind::Comment
            }
            b'/' if next == b'*' => {
                self.block_comment();
                Kind::Comment
            }
            b'\'' => {
                self.pos += 1;
                self.quoted_string(Quote::Standard);
                Kind::String
            }
            b'"' => {
                self.pos += 1;
                self.quoted_ident();
                Kind::QuotedIdent
            }
            b'$' => self.dollar(),
            b'0'..=b'9' => {
                self.number();
                Kind::Number
            }
            b'.' if is_digit(next) => {
                self.number();
                Kind::Number
            }
            b':' if next == b':' => {
                self.pos += 2;
                Kind::Cast
            }
            b':' if next == b'=' => {
                self.pos += 2;
                Kind::Op
            }
            b'(' | b')' | b'[' | b']' | b',' | b';' | b'.' | b':' => {
                self.pos += 1;
                Kind::Punct
            }
            _ if is_op_char(b) => {
                self.operator();
                Kind::Op
            }
            _ if is_ident_start(b) => self.word_or_prefixed(b, next),
            _ => {
                self.pos += 1;
                Kind::Other
            }
        }
    }

    fn line_comment(&mut self) {
        let rest = &self.src[self.pos..];
        let len = rest
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .unwrap_or(rest.len());
        self.pos += len;
    }

    fn block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1usize;
        while self.pos < self.src.len() {
            let c = self.src[self.pos];
            let n = self.at(self.pos + 1);
            if c == b'*' && n == b'/' {
                self.pos += 2;
                depth -= 1;
                if depth == 0 {
                    return;
                }
            } else if c == b'/' && n == b'*' {
                self.pos += 2;
                depth += 1;
            } else {
                self.pos += 1;
            }
        }
    }

    /// Body of a quoted string, starting after the opening quote, then any
    /// continuation (`'a'` newline `'b'` is one literal).
    fn quoted_string(&mut self, quote: Quote) {
        loop {
            self.string_body(quote);
            match self.continuation() {
                Some(next) => self.pos = next + 1,
                None => return,
            }
        }
    }

    fn string_body(&mut self, quote: Quote) {
        let src = self.src;
        while let Some(&c) = src.get(self.pos) {
            self.pos += 1;
            match c {
                b'\\' if quote == Quote::Escape && self.pos < src.len() => {
                    self.pos += 1;
                }
                b'\'' => {
                    if quote != Quote::Bits && self.at(self.pos) == b'\'' {
                        self.pos += 1;
                    } else {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// PostgreSQL's `quotecontinue`: after a closing quote, whitespace that
    /// holds at least one newline (and `--` comments) followed by another
    /// quote continues the same literal. Returns the position of that quote.
    fn continuation(&self) -> Option<usize> {
        let src = self.src;
        let mut i = self.pos;
        let mut newline = false;
        loop {
            match src.get(i).copied() {
                Some(b'\n' | b'\r') => {
                    newline = true;
                    i += 1;
                }
                Some(c) if is_space(c) => i += 1,
                Some(b'-') if src.get(i + 1) == Some(&b'-') => {
                    while let Some(&c) = src.get(i) {
                        if c == b'\n' || c == b'\r' {
                            break;
                        }
                        i += 1;
                    }
                }
                Some(b'\'') if newline => return Some(i),
                _ => return None,
            }
        }
    }

    fn quoted_ident(&mut self) {
        let src = self.src;
        while let Some(&c) = src.get(self.pos) {
            self.pos += 1;
            if c == b'"' {
                if self.at(self.pos) == b'"' {
                    self.pos += 1;
                } else {
                    return;
                }
            }
        }
    }

    /// `UESCAPE 'c'` after a `U&` literal belongs to it (PostgreSQL's
    /// parser folds it into the one constant).
    fn uescape(&mut self) {
        let src = self.src;
        let mut i = self.pos;
        let skip = |mut i: usize| loop {
            match src.get(i).copied() {
                Some(c) if is_space(c) => i += 1,
                Some(b'-') if src.get(i + 1) == Some(&b'-') => {
                    while let Some(&c) = src.get(i) {
                        if c == b'\n' || c == b'\r' {
                            break;
                        }
                        i += 1;
                    }
                }
                _ => return i,
            }
        };
        i = skip(i);
        let word = src.get(i..i + 7);
        if !word.is_some_and(|w| w.eq_ignore_ascii_case(b"uescape"))
            || src.get(i + 7).is_some_and(|&c| is_ident_cont(c))
        {
            return;
        }
        i = skip(i + 7);
        if src.get(i) != Some(&b'\'') {
            return;
        }
        let mut sub = Lexer { src, pos: i + 1 };
        sub.string_body(Quote::Standard);
        self.pos = sub.pos;
    }

    fn dollar(&mut self) -> Kind {
        let src = self.src;
        let start = self.pos;
        let next = self.at(start + 1);
        if is_digit(next) {
            self.pos += 1;
            while is_digit(self.at(self.pos)) {
                self.pos += 1;
            }
            // `$1abc` is "trailing junk" to PostgreSQL; keep it one token.
            self.skip_ident_junk();
            return Kind::Param;
        }
        // Dollar-quote delimiter: `$` [tag] `$`, tag = identifier without `$`.
        let mut i = start + 1;
        if is_ident_start(next) {
            i += 1;
            while let Some(&c) = src.get(i) {
                if is_ident_cont(c) && c != b'$' {
                    i += 1;
                } else {
                    break;
                }
            }
        }
        if src.get(i) != Some(&b'$') {
            self.pos += 1;
            return Kind::Other;
        }
        let delim = &src[start..=i];
        let body = i + 1;
        self.pos = find(&src[body..], delim).map_or(src.len(), |at| body + at + delim.len());
        Kind::DollarString
    }

    fn skip_ident_junk(&mut self) {
        while is_ident_cont(self.at(self.pos)) {
            self.pos += 1;
        }
    }

    /// Digits with single `_` separators (PostgreSQL 16 syntax).
    fn digits(&mut self, valid: impl Fn(u8) -> bool) -> bool {
        let start = self.pos;
        loop {
            let c = self.at(self.pos);
            if valid(c) {
                self.pos += 1;
            } else if c == b'_' && self.pos > start && valid(self.at(self.pos + 1)) {
                self.pos += 2;
            } else {
                return self.pos > start;
            }
        }
    }

    fn number(&mut self) {
        let b = self.at(self.pos);
        let radix = self.at(self.pos + 1) | 0x20;
        if b == b'0' && matches!(radix, b'x' | b'o' | b'b') {
            let valid: fn(u8) -> bool = match radix {
                b'x' => |c| class(c) & HEX != 0,
                b'o' => |c| (b'0'..=b'7').contains(&c),
                _ => |c| c == b'0' || c == b'1',
            };
            let save = self.pos;
            self.pos += 2;
            if self.at(self.pos) == b'_' {
                self.pos += 1;
            }
            if self.digits(valid) {
                self.skip_ident_junk();
                return;
            }
            self.pos = save;
        }
        let int = self.digits(is_digit);
        if self.at(self.pos) == b'.' && self.at(self.pos + 1) != b'.' {
            self.pos += 1;
            self.digits(is_digit);
        } else if !int {
            // `.` not followed by a digit never reaches here (see `token`).
            self.pos += 1;
        }
        let e = self.at(self.pos);
        if e == b'e' || e == b'E' {
            let sign = self.at(self.pos + 1);
            let skip = if sign == b'+' || sign == b'-' { 2 } else { 1 };
            if is_digit(self.at(self.pos + skip)) {
                self.pos += skip;
                self.digits(is_digit);
            }
        }
        // `123abc` is an error since PostgreSQL 15 ("trailing junk"); keep
        // it one token rather than inventing an identifier.
        self.skip_ident_junk();
    }

    fn operator(&mut self) {
        let src = self.src;
        let start = self.pos;
        let mut end = start;
        while let Some(&c) = src.get(end) {
            if !is_op_char(c) {
                break;
            }
            // A comment start ends the operator.
            let n = src.get(end + 1).copied();
            if end > start && ((c == b'-' && n == Some(b'-')) || (c == b'/' && n == Some(b'*'))) {
                break;
            }
            end += 1;
        }
        let mut len = end - start;
        // A multi-character operator cannot end in `+` or `-` unless it
        // holds one of `~ ! @ # % ^ & | ` ?`: `=-1` is `=` then `-1`.
        if len > 1 && matches!(src[start + len - 1], b'+' | b'-') {
            let op = &src[start..start + len];
            if !op.iter().any(|c| {
                matches!(
                    c,
                    b'~' | b'!' | b'@' | b'#' | b'%' | b'^' | b'&' | b'|' | b'`' | b'?'
                )
            }) {
                while len > 1 && matches!(src[start + len - 1], b'+' | b'-') {
                    len -= 1;
                }
            }
        }
        self.pos = start + len;
    }

    fn word_or_prefixed(&mut self, b: u8, next: u8) -> Kind {
        if next == b'\'' {
            let quote = match b {
                b'e' | b'E' => Some(Quote::Escape),
                b'b' | b'B' | b'x' | b'X' => Some(Quote::Bits),
                _ => None,
            };
            if let Some(q) = quote {
                self.pos += 2;
                self.quoted_string(q);
                return Kind::String;
            }
        }
        if (b == b'u' || b == b'U') && next == b'&' {
            match self.at(self.pos + 2) {
                b'\'' => {
                    self.pos += 3;
                    self.quoted_string(Quote::Standard);
                    self.uescape();
                    return Kind::String;
                }
                b'"' => {
                    self.pos += 3;
                    self.quoted_ident();
                    self.uescape();
                    return Kind::QuotedIdent;
                }
                _ => {}
            }
        }
        self.pos += 1;
        while is_ident_cont(self.at(self.pos)) {
            self.pos += 1;
        }
        Kind::Word
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    /// `'...'` and `U&'...'`: `''` is a quote, backslash is literal.
    Standard,
    /// `E'...'`: backslash escapes the next byte, `''` is a quote.
    Escape,
    /// `B'...'` / `X'...'`: no escapes at all.
    Bits,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(off) = haystack.get(from..)?.iter().position(|&c| c == first) {
        let at = from + off;
        if haystack.get(at + 1..at + 1 + rest.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        lex(sql.as_bytes())
            .into_iter()
            .map(|t| (t.kind, &sql[t.start..t.end]))
            .collect()
    }

    fn one(sql: &str) -> (Kind, &str) {
        let k = kinds(sql);
        assert_eq!(k.len(), 1, "{sql:?} lexed as {k:?}");
        k[0]
    }

    #[test]
    fn standard_string_doubles_quotes_and_keeps_backslashes() {
        assert_eq!(
            kinds(r"'it''s' 'a\' x"),
            vec![
                (Kind::String, "'it''s'"),
                (Kind::String, r"'a\'"),
                (Kind::Word, "x")
            ]
        );
    }

    #[test]
    fn escape_string_honours_backslash_escapes() {
        assert_eq!(
            one(r"E'it\'s \\ ''ok'''"),
            (Kind::String, r"E'it\'s \\ ''ok'''")
        );
        assert_eq!(one(r"e'\n'"), (Kind::String, r"e'\n'"));
    }

    #[test]
    fn unicode_string_and_identifier_take_their_uescape_clause() {
        assert_eq!(
            kinds(r"U&'d!0061t' UESCAPE '!' x"),
            vec![
                (Kind::String, r"U&'d!0061t' UESCAPE '!'"),
                (Kind::Word, "x")
            ]
        );
        assert_eq!(one(r#"u&"d\0061t""#), (Kind::QuotedIdent, r#"u&"d\0061t""#));
        assert_eq!(
            kinds("U & 'x'"),
            vec![(Kind::Word, "U"), (Kind::Op, "&"), (Kind::String, "'x'")]
        );
    }

    #[test]
    fn bit_and_hex_strings_are_single_literals() {
        assert_eq!(one("B'1010'"), (Kind::String, "B'1010'"));
        assert_eq!(one("x'1F'"), (Kind::String, "x'1F'"));
    }

    #[test]
    fn national_string_is_the_word_n_then_a_string_like_postgres() {
        assert_eq!(
            kinds("N'abc'"),
            vec![(Kind::Word, "N"), (Kind::String, "'abc'")]
        );
    }

    #[test]
    fn string_continues_across_a_newline_only() {
        assert_eq!(one("'a'\n  'b'"), (Kind::String, "'a'\n  'b'"));
        assert_eq!(one("'a' -- c\n'b'"), (Kind::String, "'a' -- c\n'b'"));
        assert_eq!(kinds("'a' 'b'").len(), 2);
        assert_eq!(kinds("'a' /* c */\n'b'").len(), 3);
    }

    #[test]
    fn dollar_quotes_with_and_without_tags() {
        assert_eq!(one("$$it's $x$ $$"), (Kind::DollarString, "$$it's $x$ $$"));
        assert_eq!(
            one("$fn$ select $$x$$; $fn$"),
            (Kind::DollarString, "$fn$ select $$x$$; $fn$")
        );
        assert_eq!(
            one("$a$never closed"),
            (Kind::DollarString, "$a$never closed")
        );
    }

    #[test]
    fn dollar_inside_identifier_is_part_of_it() {
        assert_eq!(one("a$b$c"), (Kind::Word, "a$b$c"));
    }

    #[test]
    fn parameters_are_dollar_digits() {
        assert_eq!(
            kinds("$1,$23"),
            vec![
                (Kind::Param, "$1"),
                (Kind::Punct, ","),
                (Kind::Param, "$23")
            ]
        );
        assert_eq!(one("$"), (Kind::Other, "$"));
    }

    #[test]
    fn quoted_identifier_doubles_quotes() {
        assert_eq!(one(r#""a""b""#), (Kind::QuotedIdent, r#""a""b""#));
    }

    #[test]
    fn line_and_nested_block_comments() {
        assert_eq!(
            kinds("a -- x */\nb /* 1 /* 2 */ still */ c"),
            vec![
                (Kind::Word, "a"),
                (Kind::Comment, "-- x */"),
                (Kind::Word, "b"),
                (Kind::Comment, "/* 1 /* 2 */ still */"),
                (Kind::Word, "c")
            ]
        );
        assert_eq!(one("/* open /* */"), (Kind::Comment, "/* open /* */"));
    }

    #[test]
    fn numbers_in_every_notation() {
        for n in [
            "42",
            "3.14",
            "5.",
            ".5",
            "1e10",
            "2.5E-3",
            "1_000_000",
            "0x1F",
            "0o17",
            "0b1010",
            "0x_FF",
            "1_000.000_1",
        ] {
            assert_eq!(one(n), (Kind::Number, n));
        }
    }

    #[test]
    fn number_stops_before_range_dots_and_keeps_trailing_junk() {
        assert_eq!(
            kinds("1..2"),
            vec![
                (Kind::Number, "1"),
                (Kind::Punct, "."),
                (Kind::Number, ".2")
            ]
        );
        assert_eq!(one("123abc"), (Kind::Number, "123abc"));
        assert_eq!(kinds("1e+"), vec![(Kind::Number, "1e"), (Kind::Op, "+")]);
    }

    #[test]
    fn casts_and_colons() {
        assert_eq!(
            kinds("a::int[1:2]"),
            vec![
                (Kind::Word, "a"),
                (Kind::Cast, "::"),
                (Kind::Word, "int"),
                (Kind::Punct, "["),
                (Kind::Number, "1"),
                (Kind::Punct, ":"),
                (Kind::Number, "2"),
                (Kind::Punct, "]")
            ]
        );
    }

    #[test]
    fn multi_char_operators_follow_the_trailing_sign_rule() {
        assert_eq!(
            kinds("a=-1"),
            vec![
                (Kind::Word, "a"),
                (Kind::Op, "="),
                (Kind::Op, "-"),
                (Kind::Number, "1")
            ]
        );
        assert_eq!(kinds("a@-1")[1], (Kind::Op, "@-"));
        assert_eq!(kinds("d->>'k'")[1], (Kind::Op, "->>"));
        assert_eq!(kinds("d #>> '{a}'")[1], (Kind::Op, "#>>"));
        assert_eq!(kinds("a<>b")[1], (Kind::Op, "<>"));
        assert_eq!(kinds("a ?| b")[1], (Kind::Op, "?|"));
    }

    #[test]
    fn comment_start_ends_an_operator() {
        assert_eq!(
            kinds("a=--c\n1"),
            vec![
                (Kind::Word, "a"),
                (Kind::Op, "="),
                (Kind::Comment, "--c"),
                (Kind::Number, "1")
            ]
        );
        assert_eq!(kinds("a+/*c*/1")[1], (Kind::Op, "+"));
    }

    #[test]
    fn gap_marks_whitespace_and_comments() {
        let t = lex(b"a  b/**/c(d)");
        let gaps: Vec<bool> = t.iter().map(|t| t.gap).collect();
        assert_eq!(gaps, vec![false, true, false, true, false, false, false]);
    }

    #[test]
    fn non_utf8_bytes_are_identifier_characters() {
        let t = lex(b"caf\xe9 = 'x\xff'");
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].kind, t[0].end), (Kind::Word, 4));
    }

    #[test]
    fn unterminated_literals_run_to_the_end() {
        for s in [
            "'abc", "E'abc\\", "\"abc", "$$abc", "/* abc", "U&'x", "B'01",
        ] {
            let t = lex(s.as_bytes());
            assert_eq!(t.len(), 1, "{s}");
            assert_eq!(t[0].end, s.len(), "{s}");
        }
    }
}
