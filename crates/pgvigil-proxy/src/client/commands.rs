//! The few simple-protocol commands transaction mode must understand:
//! the client's prepared statements live under other names on shared server
//! connections, so DEALLOCATE / DISCARD ALL are translated, and LISTEN is
//! refused with a clear error.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reset {
    DiscardAll,
    DeallocateAll,
}

/// Drivers also send DISCARD ALL and DEALLOCATE ALL through the extended
/// protocol (psycopg does, after a failed pipeline). What a portal runs is
/// only known from the Parse and Bind before its Execute, so the few
/// statements and portals that run these commands are remembered.
#[derive(Default)]
pub(crate) struct ResetTracker {
    /// Made on the first such statement: almost no session has one, and
    /// every session carries this tracker.
    seen: Option<Box<ResetsSeen>>,
}

#[derive(Default)]
struct ResetsSeen {
    statements: HashMap<Vec<u8>, Reset>,
    portals: HashMap<Vec<u8>, Reset>,
}

impl ResetTracker {
    pub(crate) fn on_parse(&mut self, name: &[u8], query: &[u8]) {
        let reset = match local_command(query) {
            Some(LocalCommand::DiscardAll) => Some(Reset::DiscardAll),
            Some(LocalCommand::Deallocate(None)) => Some(Reset::DeallocateAll),
            _ => None,
        };
        match (reset, &mut self.seen) {
            (Some(r), seen) => {
                seen.get_or_insert_with(Box::default)
                    .statements
                    .insert(name.to_vec(), r);
            }
            (None, Some(seen)) => {
                seen.statements.remove(name);
            }
            (None, None) => {}
        }
    }

    pub(crate) fn on_bind(&mut self, portal: &[u8], statement: &[u8]) {
        let Some(seen) = &mut self.seen else {
            return;
        };
        match seen.statements.get(statement) {
            Some(&r) => {
                seen.portals.insert(portal.to_vec(), r);
            }
            None => {
                seen.portals.remove(portal);
            }
        }
    }

    pub(crate) fn executes(&self, portal: &[u8]) -> Option<Reset> {
        self.seen.as_ref()?.portals.get(portal).copied()
    }
}

/// Simple-protocol commands transaction mode handles itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LocalCommand {
    /// DEALLOCATE [PREPARE] name; None means ALL.
    Deallocate(Option<Vec<u8>>),
    DiscardAll,
    Listen,
}

/// Recognises a few single statements by their leading words. Anything
/// else, including these inside a multi-statement string, is forwarded.
pub(crate) fn local_command(text: &[u8]) -> Option<LocalCommand> {
    // Every query passes here: most are turned away by their first letter.
    let first = text.iter().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(first | 0x20, b'd' | b'l') {
        return None;
    }
    let text = trim_statement(text);
    let mut words = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    if first.eq_ignore_ascii_case(b"listen") {
        return Some(LocalCommand::Listen);
    }
    if first.eq_ignore_ascii_case(b"discard") {
        let second = words.next()?;
        return (second.eq_ignore_ascii_case(b"all") && words.next().is_none())
            .then_some(LocalCommand::DiscardAll);
    }
    if !first.eq_ignore_ascii_case(b"deallocate") {
        return None;
    }
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case(b"prepare") {
        name = words.next()?;
    }
    if words.next().is_some() {
        return None;
    }
    if name.eq_ignore_ascii_case(b"all") {
        return Some(LocalCommand::Deallocate(None));
    }
    let name = if name.len() >= 2 && name[0] == b'"' && name[name.len() - 1] == b'"' {
        name[1..name.len() - 1].to_vec()
    } else {
        name.to_ascii_lowercase()
    };
    Some(LocalCommand::Deallocate(Some(name)))
}

fn trim_statement(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let mut end = text.len();
    while end > start && (text[end - 1].is_ascii_whitespace() || text[end - 1] == b';') {
        end -= 1;
    }
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deallocate_forms_are_recognised() {
        assert_eq!(
            local_command(b"  DEALLOCATE PREPARE S_1 ;"),
            Some(LocalCommand::Deallocate(Some(b"s_1".to_vec())))
        );
        assert_eq!(
            local_command(b"deallocate \"Mixed\""),
            Some(LocalCommand::Deallocate(Some(b"Mixed".to_vec())))
        );
        assert_eq!(
            local_command(b"DEALLOCATE ALL"),
            Some(LocalCommand::Deallocate(None))
        );
        assert_eq!(
            local_command(b"discard all"),
            Some(LocalCommand::DiscardAll)
        );
        assert_eq!(local_command(b"DISCARD PLANS"), None);
        assert_eq!(local_command(b"SELECT 1; DEALLOCATE x"), None);
        assert_eq!(local_command(b"listen chan"), Some(LocalCommand::Listen));
    }

    #[test]
    fn portals_of_reset_statements_are_followed_until_renamed() {
        let mut t = ResetTracker::default();
        t.on_parse(b"s", b"SELECT 1");
        t.on_bind(b"", b"s");
        assert!(t.seen.is_none(), "nothing kept for ordinary statements");
        assert_eq!(t.executes(b""), None);
        t.on_parse(b"d", b"DISCARD ALL");
        t.on_parse(b"a", b"deallocate all;");
        t.on_bind(b"p", b"d");
        t.on_bind(b"", b"a");
        assert!(matches!(t.executes(b"p"), Some(Reset::DiscardAll)));
        assert!(matches!(t.executes(b""), Some(Reset::DeallocateAll)));
        // The unnamed portal bound to another statement runs that one.
        t.on_bind(b"", b"s");
        assert_eq!(t.executes(b""), None);
        // A statement parsed again under the same name is what it is now.
        t.on_parse(b"d", b"SELECT 2");
        t.on_bind(b"p", b"d");
        assert_eq!(t.executes(b"p"), None);
    }
}
