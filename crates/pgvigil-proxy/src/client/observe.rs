//! The session's side of query recording: the replies that complete a
//! statement, read from the wire, as insight's `Outcome`. Everything
//! else about recording (normalizing, timing, slow rules, N+1 loops)
//! is `pgvigil_insight::Recorder`'s.

use pgvigil_insight::Outcome;
use pgvigil_wire::backend::{self, tag as be};

/// How a reply ends the statement it belongs to; None for replies that
/// end none (RowDescription, DataRow, ...).
#[inline]
pub(crate) fn outcome(tag: u8, frame: Option<&[u8]>) -> Option<Outcome> {
    Some(match tag {
        be::COMMAND_COMPLETE => Outcome::Completed {
            rows: frame.map_or(0, rows_of),
        },
        be::EMPTY_QUERY_RESPONSE => Outcome::Empty,
        be::PORTAL_SUSPENDED => Outcome::Suspended,
        be::ERROR_RESPONSE => Outcome::Failed(
            frame
                .and_then(|f| backend::error_fields(f).ok())
                .and_then(|f| <[u8; 5]>::try_from(f.code).ok())
                .unwrap_or(*b"XX000"),
        ),
        _ => return None,
    })
}

/// Rows from a command tag: the last number of `SELECT 5`, `INSERT 0 5`,
/// `UPDATE 5`, `COPY 5`...; 0 for tags without one.
fn rows_of(frame: &[u8]) -> u64 {
    let Ok(tag) = backend::command_tag(frame) else {
        return 0;
    };
    let last = tag.rsplit(|&b| b == b' ').next().unwrap_or_default();
    // Digits only, as PostgreSQL writes them; up to 19 cannot overflow.
    if last.is_empty() || !last.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    if last.len() > 19 {
        return std::str::from_utf8(last)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
    }
    last.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_from_the_last_number_of_the_tag() {
        assert_eq!(rows_of(&backend::command_complete("SELECT 12")), 12);
        assert_eq!(rows_of(&backend::command_complete("INSERT 0 3")), 3);
        assert_eq!(rows_of(&backend::command_complete("CREATE TABLE")), 0);
        assert_eq!(rows_of(&backend::command_complete("SELECT 0")), 0);
        assert_eq!(
            rows_of(&backend::command_complete("SELECT 18446744073709551615")),
            u64::MAX
        );
        assert_eq!(
            rows_of(&backend::command_complete("SELECT 18446744073709551616")),
            0
        );
        assert_eq!(
            rows_of(&backend::command_complete("COPY 1234567890123456789")),
            1_234_567_890_123_456_789
        );
    }

    #[test]
    fn errors_carry_their_sqlstate_and_other_replies_end_nothing() {
        let e = backend::error_response(backend::Severity::Error, "42P01", "no such table");
        assert_eq!(
            outcome(be::ERROR_RESPONSE, Some(&e)),
            Some(Outcome::Failed(*b"42P01"))
        );
        assert_eq!(outcome(be::DATA_ROW, None), None);
        assert_eq!(
            outcome(be::PORTAL_SUSPENDED, None),
            Some(Outcome::Suspended)
        );
    }
}
