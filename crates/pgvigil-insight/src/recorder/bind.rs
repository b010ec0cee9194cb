//! A Bind message's parameter values, read only when an operator asked
//! for them (`log_parameters`, `advisor.capture_parameters`): the hot
//! path hashes the bytes and reads nothing.

/// Hash of a Bind's parameter bytes; never 0, which stands for "no
/// parameters, use the constants' hash".
pub(super) fn params_hash(bytes: &[u8]) -> u64 {
    pgvigil_sql::bytes_hash(bytes) | 1
}

/// One bound value: its format (0 text, 1 binary) and bytes, None for NULL.
type Value<'a> = (i16, Option<&'a [u8]>);

/// The values of a Bind after its portal and statement names: format
/// codes, then values. None when the message is malformed.
fn values(rest: &[u8]) -> Option<Vec<Value<'_>>> {
    fn i16_at(b: &[u8], at: usize) -> Option<i16> {
        Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    fn i32_at(b: &[u8], at: usize) -> Option<i32> {
        Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    let nformats = i16_at(rest, 0)?.max(0) as usize;
    let formats: Vec<i16> = (0..nformats)
        .map(|i| i16_at(rest, 2 + 2 * i))
        .collect::<Option<_>>()?;
    let mut at = 2 + 2 * nformats;
    let nparams = i16_at(rest, at)?.max(0) as usize;
    at += 2;
    let mut out = Vec::with_capacity(nparams);
    for i in 0..nparams {
        let len = i32_at(rest, at)?;
        at += 4;
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => *formats.get(i)?,
        };
        if len < 0 {
            out.push((format, None));
        } else {
            let bytes = rest.get(at..at + len as usize)?;
            at += len as usize;
            out.push((format, Some(bytes)));
        }
    }
    Some(out)
}

/// Bind parameters as `$1 = '...'` text, for operators who opted in with
/// `log_parameters`; binary values are shown as hex.
pub(super) fn render(rest: &[u8]) -> String {
    let Some(values) = values(rest) else {
        return "(unreadable parameters)".to_string();
    };
    let shown: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (format, value))| {
            let value = match value {
                None => "NULL".to_string(),
                Some(bytes) if *format == 0 => {
                    format!("'{}'", String::from_utf8_lossy(bytes).replace('\'', "''"))
                }
                Some(bytes) => {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    format!("'\\x{hex}'")
                }
            };
            format!("${} = {value}", i + 1)
        })
        .collect();
    shown.join(", ")
}

/// The values as text, to bind again when planning; None when one is
/// binary (its type is unknown here, so it could not be sent as text).
pub(super) fn text_values(rest: &[u8]) -> Option<Vec<Option<String>>> {
    values(rest)?
        .into_iter()
        .map(|(format, value)| match (format, value) {
            (_, None) => Some(None),
            (0, Some(bytes)) => Some(Some(String::from_utf8_lossy(bytes).into_owned())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three parameters (text, binary, NULL) with a format code each.
    fn mixed() -> Vec<u8> {
        let mut rest = Vec::new();
        rest.extend_from_slice(&3i16.to_be_bytes());
        rest.extend_from_slice(&0i16.to_be_bytes());
        rest.extend_from_slice(&1i16.to_be_bytes());
        rest.extend_from_slice(&0i16.to_be_bytes());
        rest.extend_from_slice(&3i16.to_be_bytes());
        rest.extend_from_slice(&4i32.to_be_bytes());
        rest.extend_from_slice(b"it's");
        rest.extend_from_slice(&2i32.to_be_bytes());
        rest.extend_from_slice(&[0xde, 0xad]);
        rest.extend_from_slice(&(-1i32).to_be_bytes());
        rest.extend_from_slice(&0i16.to_be_bytes());
        rest
    }

    #[test]
    fn bind_parameters_render_text_binary_and_null() {
        assert_eq!(render(&mixed()), "$1 = 'it''s', $2 = '\\xdead', $3 = NULL");
        assert_eq!(render(b"\x00"), "(unreadable parameters)");
    }

    #[test]
    fn text_values_refuse_binary_ones_and_keep_nulls() {
        assert_eq!(text_values(&mixed()), None);
        // No format codes (all text), two values: "7" and NULL.
        let mut rest = vec![0, 0, 0, 2];
        rest.extend_from_slice(&1i32.to_be_bytes());
        rest.push(b'7');
        rest.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(text_values(&rest), Some(vec![Some("7".to_string()), None]));
    }
}
