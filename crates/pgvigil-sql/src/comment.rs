//! sqlcommenter tags (<https://google.github.io/sqlcommenter/spec/>).
//!
//! ORMs and tracing libraries append `/*key='value',key2='value2'*/` to
//! statements so that whoever sees the SQL can tell which controller, route
//! or trace issued it. pgvigil attaches these tags to events for
//! attribution. They are high-cardinality by design (trace ids), so they
//! never become metric labels and never reach the fingerprint.
//!
//! Format: comma-separated `key='value'` pairs; key and value are
//! URL-encoded, then `'` inside the value is escaped as `\'`. A comment
//! that does not follow the format in full yields no tags: an ordinary
//! comment that happens to contain `=` must not produce garbage.

/// Tags of one block comment (`/* ... */`, delimiters included), or none.
pub(crate) fn parse_tags(comment: &[u8], out: &mut Vec<(String, String)>) {
    let Some(inner) = comment
        .strip_prefix(b"/*")
        .and_then(|c| c.strip_suffix(b"*/"))
    else {
        return;
    };
    let inner = trim(inner);
    if inner.is_empty() {
        return;
    }
    let mut tags = Vec::new();
    let mut rest = inner;
    loop {
        let Some(eq) = rest.iter().position(|&c| c == b'=') else {
            return;
        };
        let key = &rest[..eq];
        if key.is_empty()
            || key
                .iter()
                .any(|&c| c == b'\'' || c == b',' || c.is_ascii_whitespace())
        {
            return;
        }
        rest = &rest[eq + 1..];
        let Some(after_quote) = rest.strip_prefix(b"'") else {
            return;
        };
        // The value runs to the first `'` not escaped by a backslash.
        let mut value = Vec::with_capacity(after_quote.len().min(64));
        let mut i = 0;
        let mut closed = false;
        while let Some(&c) = after_quote.get(i) {
            match c {
                b'\\' if after_quote.get(i + 1) == Some(&b'\'') => {
                    value.push(b'\'');
                    i += 2;
                }
                b'\'' => {
                    closed = true;
                    i += 1;
                    break;
                }
                _ => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        if !closed {
            return;
        }
        tags.push((decode(key), decode(&value)));
        rest = trim(&after_quote[i..]);
        if rest.is_empty() {
            break;
        }
        match rest.strip_prefix(b",") {
            Some(r) => rest = trim(r),
            None => return,
        }
    }
    out.append(&mut tags);
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Percent-decoding; invalid escapes stay as written, invalid UTF-8 is
/// replaced (tags are for display and attribution, never for matching).
fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            let hex = s
                .get(i + 1)
                .and_then(|&h| hex_val(h))
                .zip(s.get(i + 2).and_then(|&l| hex_val(l)));
            if let Some((h, l)) = hex {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(c: &str) -> Vec<(String, String)> {
        let mut v = Vec::new();
        parse_tags(c.as_bytes(), &mut v);
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sqlcommenter_pairs_are_parsed_in_order() {
        assert_eq!(
            tags("/*controller='orders',action='show'*/"),
            pairs(&[("controller", "orders"), ("action", "show")])
        );
        assert_eq!(
            tags("/* a='1' , b='2' */"),
            pairs(&[("a", "1"), ("b", "2")])
        );
    }

    #[test]
    fn sqlcommenter_values_are_url_decoded_and_unescaped() {
        assert_eq!(
            tags("/*route='%2Fpolls%201000',traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01',q='it\\'s'*/"),
            pairs(&[
                ("route", "/polls 1000"),
                ("traceparent", "00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01"),
                ("q", "it's")
            ])
        );
        assert_eq!(
            tags("/*db%20driver='x%zz'*/"),
            pairs(&[("db driver", "x%zz")])
        );
    }

    #[test]
    fn ordinary_comments_yield_no_tags() {
        for c in [
            "/* just a note */",
            "/* a = 1 */",
            "/*a='1' b='2'*/",
            "/*a='unterminated*/",
            "/*='x'*/",
            "/**/",
            "-- a='1'",
        ] {
            assert_eq!(tags(c), Vec::new(), "{c}");
        }
    }
}
