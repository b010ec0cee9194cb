//! The session settings a client asked for at startup, which must hold on
//! every server connection it is given, in transaction mode too.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use super::shared_list::{ListCache, Pairs};

use pgvigil_wire::startup::{parse_options, StartupParams};

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSettings {
    /// What the startup packet asked for: RESET and RESET ALL come back
    /// to these, as on a direct connection. Shared with the pool's other
    /// clients that asked for the same.
    startup: Arc<Pairs>,
    /// The settings the session changed since, all of them (None: the
    /// startup ones, as for most clients; boxed, as every connected
    /// client carries the field).
    #[allow(clippy::box_collection)]
    changed: Option<Box<Pairs>>,
    /// Digest of the desired settings, so a server connection already
    /// configured for this client's settings is recognised with one
    /// comparison.
    signature: u64,
}

impl ClientSettings {
    pub(crate) fn from_startup(params: &StartupParams, shared: &ListCache) -> ClientSettings {
        let mut desired: Pairs = Vec::new();
        let mut add = |name: &str, value: &str| {
            if NOT_SETTINGS.contains(&name) || name.starts_with("_pq_.") {
                return;
            }
            match desired
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
            {
                Some(slot) => slot.1 = value.to_string(),
                None => desired.push((name.to_string(), value.to_string())),
            }
        };
        for (k, v) in &params.params {
            add(k, v);
        }
        if let Some(options) = params.get("options") {
            for (k, v) in parse_options(options) {
                add(&k, &v);
            }
        }
        let mut s = ClientSettings {
            startup: shared.share(desired),
            changed: None,
            signature: 0,
        };
        s.resign();
        s
    }

    fn desired(&self) -> &[(String, String)] {
        match &self.changed {
            Some(changed) => changed,
            None => &self.startup,
        }
    }

    fn resign(&mut self) {
        let mut sorted: Vec<_> = self.desired().iter().collect();
        sorted.sort();
        let mut h = DefaultHasher::new();
        sorted.hash(&mut h);
        // 0 is what a fresh server connection carries: "nothing applied".
        self.signature = h.finish() | 1;
    }

    pub(crate) fn signature(&self) -> u64 {
        self.signature
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.desired()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The client changed a reported setting itself (e.g. SET
    /// application_name): carry the new value to its next server.
    pub(crate) fn record_change(&mut self, name: &str, value: &str) {
        if self.get(name) == Some(value) {
            return;
        }
        let startup = &self.startup;
        let changed = self
            .changed
            .get_or_insert_with(|| Box::new(startup.to_vec()));
        if let Some(slot) = changed
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            slot.1 = value.to_string();
        } else {
            changed.push((name.to_string(), value.to_string()));
        }
        self.resign();
    }

    /// The session-level settings a server connection holds for this
    /// client (its `source = 'session'` settings, read after a SET or
    /// RESET): they follow the client to its next connection; a startup
    /// setting the session no longer overrides is the startup value again.
    pub(crate) fn adopt_session(&mut self, session: &[(String, String)]) {
        let mut desired = session.to_vec();
        for (k, v) in self.startup.iter() {
            if !desired.iter().any(|(d, _)| d.eq_ignore_ascii_case(k)) {
                desired.push((k.clone(), v.clone()));
            }
        }
        self.changed = (desired != *self.startup).then(|| Box::new(desired));
        self.resign();
    }

    /// SQL that brings a server connection from `applied` to this
    /// client's settings, or None when nothing differs.
    pub(crate) fn sql_to_apply(&self, applied: &HashMap<String, String>) -> Option<String> {
        let mut sql = String::new();
        let mut sets = Vec::new();
        for (k, v) in self.desired() {
            if applied.get(k) != Some(v) {
                sets.push(format!(
                    "pg_catalog.set_config({}, {}, false)",
                    quote_literal(k),
                    quote_literal(v)
                ));
            }
        }
        if !sets.is_empty() {
            sql.push_str("SELECT ");
            sql.push_str(&sets.join(", "));
            sql.push(';');
        }
        for k in applied.keys() {
            if self.get(k).is_none() {
                sql.push_str(&format!("RESET {};", quote_ident(k)));
            }
        }
        (!sql.is_empty()).then_some(sql)
    }

    pub(crate) fn as_applied(&self) -> HashMap<String, String> {
        self.desired().iter().cloned().collect()
    }
}

fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_startup(params: &StartupParams) -> ClientSettings {
        ClientSettings::from_startup(params, &ListCache::default())
    }

    fn startup(params: &[(&str, &str)]) -> StartupParams {
        StartupParams {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..StartupParams::default()
        }
    }

    #[test]
    fn options_and_parameters_become_settings_but_identity_does_not() {
        let s = from_startup(&startup(&[
            ("user", "app"),
            ("database", "db"),
            ("application_name", "web"),
            ("options", "-c search_path=a,b"),
        ]));
        assert_eq!(s.get("application_name"), Some("web"));
        assert_eq!(s.get("search_path"), Some("a,b"));
        assert_eq!(s.get("user"), None);
    }

    #[test]
    fn nothing_to_apply_once_applied_and_resets_what_only_others_set() {
        let s = from_startup(&startup(&[("application_name", "it's")]));
        let sql = s.sql_to_apply(&HashMap::new()).unwrap();
        assert!(sql.contains("'it''s'"), "{sql}");
        assert_eq!(s.sql_to_apply(&s.as_applied()), None);
        let mut other = s.as_applied();
        other.insert("search_path".into(), "x".into());
        assert_eq!(s.sql_to_apply(&other).unwrap(), "RESET \"search_path\";");
    }

    #[test]
    fn session_settings_override_startup_ones_and_a_reset_brings_those_back() {
        let mut s = from_startup(&startup(&[
            ("application_name", "web"),
            ("DateStyle", "ISO, DMY"),
        ]));
        s.adopt_session(&[
            ("DateStyle".into(), "SQL, DMY".into()),
            ("search_path".into(), "app".into()),
        ]);
        assert_eq!(s.get("datestyle"), Some("SQL, DMY"));
        assert_eq!(s.get("search_path"), Some("app"));
        assert_eq!(s.get("application_name"), Some("web"));
        let set = s.signature();
        // RESET ALL: the server holds no session settings any more.
        s.adopt_session(&[]);
        assert_eq!(s.get("DateStyle"), Some("ISO, DMY"));
        assert_eq!(s.get("search_path"), None);
        assert_ne!(s.signature(), set);
    }

    #[test]
    fn a_changed_setting_changes_the_signature() {
        let mut s = from_startup(&startup(&[("application_name", "a")]));
        let before = s.signature();
        s.record_change("application_name", "b");
        assert_ne!(before, s.signature());
    }
}
