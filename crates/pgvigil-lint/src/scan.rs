//! A few facts read straight from the text, before (or instead of) parsing:
//! how deeply brackets nest, and the leading keywords.
//!
//! Both skip what PostgreSQL's lexer skips or treats as opaque: string
//! literals (`'...'`, `E'...'`), quoted identifiers, dollar-quoted bodies
//! and comments, so a `(` inside `'(:'` neither counts as nesting nor hides
//! the keywords after a leading comment. Text that ends inside a literal or
//! comment simply ends there; the parser reports it as invalid later.

/// The deepest nesting of `(` and `[` outside literals and comments.
pub(crate) fn max_nesting(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = skip_opaque(bytes, i) {
            i = end;
            continue;
        }
        match bytes[i] {
            b'(' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// The first `limit` words of the statement, skipping leading whitespace
/// and comments and stopping at the first thing that is not a word.
pub(crate) fn leading_words(sql: &str, limit: usize) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() && words.len() < limit {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
        } else if is_comment_start(bytes, i) {
            match skip_opaque(bytes, i) {
                Some(end) => i = end,
                None => break,
            }
        } else if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            // Only ASCII bytes were consumed, so these are char boundaries.
            words.push(&sql[start..i]);
        } else {
            break;
        }
    }
    words
}

fn is_comment_start(bytes: &[u8], i: usize) -> bool {
    matches!(
        (bytes.get(i), bytes.get(i + 1)),
        (Some(b'-'), Some(b'-')) | (Some(b'/'), Some(b'*'))
    )
}

/// If a literal, quoted identifier or comment starts at `i`, the index just
/// past its end (or the end of the text when it is unterminated).
fn skip_opaque(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes[i] {
        b'-' if bytes.get(i + 1) == Some(&b'-') => Some(
            bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| i + p + 1),
        ),
        b'/' if bytes.get(i + 1) == Some(&b'*') => Some(skip_block_comment(bytes, i)),
        b'\'' => {
            // E'...' strings take backslash escapes; the E must be a word
            // of its own (not the end of an identifier like `some'`).
            let escaped = i > 0
                && bytes[i - 1].eq_ignore_ascii_case(&b'e')
                && (i < 2 || !is_ident_byte(bytes[i - 2]));
            Some(skip_quoted(bytes, i, b'\'', escaped))
        }
        b'"' => Some(skip_quoted(bytes, i, b'"', false)),
        b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => skip_dollar_quoted(bytes, i),
        _ => None,
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// `/* ... */`, which nests in PostgreSQL.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// A literal or identifier closed by `quote`, where a doubled quote stands
/// for itself (and, with `backslash`, `\x` escapes anything).
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$` (the tag may be empty). `$1` is a parameter, not a
/// quote: a tag cannot start with a digit.
fn skip_dollar_quoted(bytes: &[u8], start: usize) -> Option<usize> {
    let tag_len = bytes[start + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80))?;
    let close = start + 1 + tag_len;
    if bytes[close] != b'$' || bytes.get(start + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let delimiter = &bytes[start..=close];
    let body = close + 1;
    Some(
        bytes[body..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)
            .map_or(bytes.len(), |p| body + p + delimiter.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_parentheses_and_brackets() {
        assert_eq!(max_nesting("SELECT 1"), 0);
        assert_eq!(max_nesting("SELECT (1 + (2))"), 2);
        assert_eq!(max_nesting("SELECT a[(1)] FROM t WHERE x IN (1, 2)"), 2);
        assert_eq!(max_nesting(")))(("), 2);
    }

    #[test]
    fn nesting_ignores_literals_identifiers_and_comments() {
        assert_eq!(max_nesting("SELECT '((((' , \"(((\" -- ((((\n"), 0);
        assert_eq!(max_nesting("SELECT /* ( /* (( */ ( */ 1"), 0);
        assert_eq!(max_nesting("SELECT E'\\'((' , 'it''s ((('"), 0);
        assert_eq!(max_nesting("SELECT $$ ((( $$, $fn$ (( $fn$ (1)"), 1);
        assert_eq!(max_nesting("SELECT $1 + ($2)"), 1);
    }

    #[test]
    fn leading_words_skip_comments() {
        assert_eq!(
            leading_words("/* app */ -- x\n  create Unique index i", 3),
            ["create", "Unique", "index"]
        );
        assert_eq!(leading_words("(SELECT 1)", 2), Vec::<&str>::new());
        assert_eq!(leading_words("DROP TABLE t;", 5), ["DROP", "TABLE", "t"]);
    }
}
