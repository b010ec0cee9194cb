//! Who ran a statement: (database, user, application_name) interned to a
//! small id, so an execution carries four bytes instead of three strings.

use crate::insight::lock;
use crate::Insight;

/// Who ran a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub database: String,
    pub user: String,
    pub application_name: String,
}

/// Distinct callers kept; past the cap, everyone new shares id 0.
pub(crate) const MAX_CALLERS: usize = 10_000;

impl Insight {
    /// Interns a (database, user, application_name); ids are stable for
    /// the life of the process. Past the cap, everyone new shares id 0.
    pub fn caller(&self, database: &str, user: &str, application_name: &str) -> u32 {
        let key = Caller {
            database: database.to_string(),
            user: user.to_string(),
            application_name: application_name.to_string(),
        };
        let mut guard = lock(&self.callers);
        let (ids, list) = &mut *guard;
        if list.is_empty() {
            list.push(Caller {
                database: "(other)".into(),
                user: "(other)".into(),
                application_name: "(other)".into(),
            });
        }
        if let Some(&id) = ids.get(&key) {
            return id;
        }
        if list.len() >= MAX_CALLERS {
            return 0;
        }
        let id = list.len() as u32;
        list.push(key.clone());
        ids.insert(key, id);
        id
    }

    pub(crate) fn caller_by_id(&self, id: u32) -> Caller {
        lock(&self.callers)
            .1
            .get(id as usize)
            .cloned()
            .unwrap_or(Caller {
                database: String::new(),
                user: String::new(),
                application_name: String::new(),
            })
    }
}
