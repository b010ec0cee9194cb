//! Transaction mode and the state a session leaves on its server
//! connection. Statements that may change session state are spotted by
//! their first word (one comparison for the statements that cannot);
//! after a transaction that ran one, the server itself is asked what the
//! session holds (`PROBE_SQL`): its session-level settings, which then
//! follow the client to every connection it gets, and state no shared
//! connection can carry, which pins the client to this one until it is
//! released. No parsing of SQL decides what the server holds.

/// State that pins a client to its server connection, as the console,
/// the API and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PinReason {
    TemporaryTables,
    AdvisoryLocks,
    Listen,
    HeldCursors,
    PreparedStatements,
}

impl PinReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PinReason::TemporaryTables => "temporary tables",
            PinReason::AdvisoryLocks => "session advisory locks",
            PinReason::Listen => "LISTEN",
            PinReason::HeldCursors => "WITH HOLD cursors",
            PinReason::PreparedStatements => "SQL PREPARE",
        }
    }

    pub(crate) const ALL: [PinReason; 5] = [
        PinReason::TemporaryTables,
        PinReason::AdvisoryLocks,
        PinReason::Listen,
        PinReason::HeldCursors,
        PinReason::PreparedStatements,
    ];

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The reasons in a registry entry's bits, for the console and API.
    pub(crate) fn describe(bits: u8) -> String {
        let names: Vec<&str> = PinReason::ALL
            .iter()
            .filter(|r| bits & r.bit() != 0)
            .map(|r| r.as_str())
            .collect();
        names.join(", ")
    }

    fn from_probe(kind: &str) -> Option<PinReason> {
        Some(match kind {
            "temporary_tables" => PinReason::TemporaryTables,
            "advisory_locks" => PinReason::AdvisoryLocks,
            "listen" => PinReason::Listen,
            "held_cursors" => PinReason::HeldCursors,
            "prepared_statements" => PinReason::PreparedStatements,
            _ => return None,
        })
    }
}

/// One round trip: what pins the session (a count per kind) and its
/// session-level settings (`source = 'session'`: SET, and the client's
/// startup settings pgvigil applied with `set_config`).
pub(crate) const PROBE_SQL: &str = "\
SELECT 'temporary_tables', NULL, count(*)::text FROM pg_catalog.pg_class \
 WHERE relnamespace = pg_catalog.pg_my_temp_schema() \
UNION ALL SELECT 'advisory_locks', NULL, count(*)::text FROM pg_catalog.pg_locks \
 WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() \
UNION ALL SELECT 'listen', NULL, count(*)::text FROM pg_catalog.pg_listening_channels() \
UNION ALL SELECT 'held_cursors', NULL, count(*)::text FROM pg_catalog.pg_cursors WHERE is_holdable \
UNION ALL SELECT 'prepared_statements', NULL, count(*)::text FROM pg_catalog.pg_prepared_statements \
 WHERE from_sql \
UNION ALL SELECT 'setting', name, setting FROM pg_catalog.pg_settings WHERE source = 'session'";

/// What the probe found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionState {
    pub(crate) pins: Vec<PinReason>,
    pub(crate) settings: Vec<(String, String)>,
}

impl SessionState {
    pub(crate) fn from_rows(rows: &[Vec<Option<String>>]) -> SessionState {
        let mut state = SessionState::default();
        for row in rows {
            let (Some(Some(kind)), name, Some(Some(value))) = (row.first(), row.get(1), row.get(2))
            else {
                continue;
            };
            if kind == "setting" {
                if let Some(Some(name)) = name {
                    state.settings.push((name.clone(), value.clone()));
                }
            } else if let Some(reason) = PinReason::from_probe(kind) {
                if value.parse::<u64>().is_ok_and(|n| n > 0) {
                    state.pins.push(reason);
                }
            }
        }
        state
    }
}

/// Whether a statement text may change session state: its first word is
/// SET, RESET, CREATE (temporary tables), DROP, LISTEN, UNLISTEN, DECLARE,
/// CLOSE, PREPARE, DEALLOCATE or DISCARD, or it calls an advisory lock
/// function or `set_config`. False positives cost one probe; a statement
/// that changes state without these words (a function of the
/// application's that runs SET or creates a temporary table) is not seen.
pub(crate) fn may_change_session_state(text: &[u8]) -> bool {
    if starts_with_state_word(text) {
        return true;
    }
    // One vectorised pass finds what else could matter: the start of each
    // further statement (a `;` inside a literal only adds a look at the
    // word after it), and the underscore of the functions that change
    // session state from a SELECT: `pg_advisory_lock` and its kin,
    // `set_config(..., false)`.
    memchr::memchr2_iter(b';', b'_', text).any(|at| {
        if text[at] == b';' {
            return starts_with_state_word(&text[at + 1..]);
        }
        let after = &text[at + 1..];
        let starts = |word: &[u8]| {
            after
                .get(..word.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(word))
        };
        starts(b"advisory")
            || (at >= 3 && text[at - 3..at].eq_ignore_ascii_case(b"set") && starts(b"config"))
    })
}

fn starts_with_state_word(statement: &[u8]) -> bool {
    // Most texts start with their first word: no whitespace or comment
    // to skip.
    let s = if statement.first().is_some_and(u8::is_ascii_alphabetic) {
        statement
    } else {
        skip_blanks(statement)
    };
    // INSERT, UPDATE, BEGIN, COMMIT, WITH... are turned away by their
    // first letter, SELECT by its length.
    if !s
        .first()
        .is_some_and(|b| matches!(b | 0x20, b's' | b'r' | b'c' | b'd' | b'l' | b'u' | b'p'))
    {
        return false;
    }
    let mut len = 1;
    while len < s.len() && len <= 10 && s[len].is_ascii_alphabetic() {
        len += 1;
    }
    let is = |w: &[u8]| s[..len].eq_ignore_ascii_case(w);
    match len {
        3 => is(b"set"),
        4 => is(b"drop"),
        5 => is(b"reset") || is(b"close"),
        6 => is(b"create") || is(b"listen"),
        7 => is(b"declare") || is(b"prepare") || is(b"discard"),
        8 => is(b"unlisten"),
        10 => is(b"deallocate"),
        _ => false,
    }
}

/// Skips whitespace and comments.
fn skip_blanks(mut s: &[u8]) -> &[u8] {
    loop {
        let start = s
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(s.len());
        s = &s[start..];
        if let Some(rest) = s.strip_prefix(b"--") {
            s = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => &rest[end..],
                None => &[],
            };
        } else if let Some(rest) = s.strip_prefix(b"/*") {
            s = match memchr::memmem::find(rest, b"*/") {
                Some(end) => &rest[end + 2..],
                None => &[],
            };
        } else {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_may_change_session_state_are_spotted() {
        for text in [
            "SET search_path TO app",
            "  set time zone 'UTC'",
            "RESET ALL",
            "CREATE TEMP TABLE t (x int)",
            "/* app */ LISTEN jobs",
            "-- comment\nDECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "PREPARE p AS SELECT 1",
            "SELECT pg_advisory_lock(42)",
            "SELECT PG_ADVISORY_UNLOCK_ALL()",
            "SELECT pg_try_advisory_lock(1)",
            "SELECT set_config('app.user_id', '42', false)",
            "BEGIN; SET LOCAL x = 1; COMMIT",
            "discard all",
        ] {
            assert!(may_change_session_state(text.as_bytes()), "{text}");
        }
        for text in [
            "SELECT * FROM settings",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET x = 1",
            "BEGIN",
            "COMMIT",
            "select 1 -- set",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SETTLE", // not a word of ours
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "SELECT offset_value FROM t_config",
        ] {
            assert!(!may_change_session_state(text.as_bytes()), "{text}");
        }
    }

    fn row(kind: &str, name: Option<&str>, value: &str) -> Vec<Option<String>> {
        vec![
            Some(kind.to_string()),
            name.map(str::to_string),
            Some(value.to_string()),
        ]
    }

    #[test]
    fn the_probe_reads_as_pins_and_session_settings() {
        let rows = vec![
            row("temporary_tables", None, "2"),
            row("advisory_locks", None, "0"),
            row("listen", None, "1"),
            row("held_cursors", None, "0"),
            row("prepared_statements", None, "0"),
            row("setting", Some("search_path"), "app, public"),
            row("setting", Some("TimeZone"), "Europe/Rome"),
        ];
        assert_eq!(
            SessionState::from_rows(&rows),
            SessionState {
                pins: vec![PinReason::TemporaryTables, PinReason::Listen],
                settings: vec![
                    ("search_path".into(), "app, public".into()),
                    ("TimeZone".into(), "Europe/Rome".into())
                ],
            }
        );
        assert_eq!(SessionState::from_rows(&[]), SessionState::default());
    }
}
