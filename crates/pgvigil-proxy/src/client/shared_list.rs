//! Lists of (name, value) pairs that most clients of a pool have alike:
//! the settings their startup packet asked for and the ParameterStatus
//! values they were told. One copy is shared instead of one per client;
//! with thousands of clients connected the copies were about a KiB each.

use std::sync::{Arc, Mutex};

pub(crate) type Pairs = Vec<(String, String)>;

/// The latest list a pool's clients shared: a client with the same list
/// shares it, one with another list takes the slot (drivers of one
/// application send the same startup packet, so one slot goes far).
#[derive(Debug, Default)]
pub(crate) struct ListCache(Mutex<Option<Arc<Pairs>>>);

impl ListCache {
    pub(crate) fn share(&self, list: Pairs) -> Arc<Pairs> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(cached) if **cached == list => cached.clone(),
            _ => {
                let list = Arc::new(list);
                *slot = Some(list.clone());
                list
            }
        }
    }
}

/// The ParameterStatus values a client has been told: what it was told at
/// login, shared, plus what changed since.
#[derive(Debug)]
pub(crate) struct ToldParams {
    at_login: Arc<Pairs>,
    /// Made on the first change: every connected client carries this.
    #[allow(clippy::box_collection)]
    since: Option<Box<Pairs>>,
}

impl ToldParams {
    pub(crate) fn new(at_login: Arc<Pairs>) -> ToldParams {
        ToldParams {
            at_login,
            since: None,
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.since
            .iter()
            .flat_map(|since| since.iter())
            .chain(self.at_login.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Records `value`; false when the client already had it.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> bool {
        if self.get(name) == Some(value) {
            return false;
        }
        let since = self.since.get_or_insert_with(Box::default);
        match since.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => since.push((name.to_string(), value.to_string())),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Pairs {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn clients_with_the_same_list_share_one_copy_and_a_different_list_gets_its_own() {
        let cache = ListCache::default();
        let a = cache.share(pairs(&[("TimeZone", "UTC")]));
        let b = cache.share(pairs(&[("TimeZone", "UTC")]));
        assert!(Arc::ptr_eq(&a, &b));
        let c = cache.share(pairs(&[("TimeZone", "Europe/Rome")]));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c[0].1, "Europe/Rome");
        assert_eq!(a[0].1, "UTC");
    }

    #[test]
    fn a_told_change_is_the_clients_own_and_telling_the_same_value_again_is_no_change() {
        let cache = ListCache::default();
        let shared = cache.share(pairs(&[("TimeZone", "UTC"), ("DateStyle", "ISO, MDY")]));
        let mut one = ToldParams::new(shared.clone());
        let other = ToldParams::new(shared);
        assert!(!one.set("TimeZone", "UTC"));
        assert!(one.set("TimeZone", "Asia/Tokyo"));
        assert!(!one.set("TimeZone", "Asia/Tokyo"));
        assert!(one.set("application_name", "web"));
        assert_eq!(one.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(one.get("DateStyle"), Some("ISO, MDY"));
        assert_eq!(one.get("application_name"), Some("web"));
        assert_eq!(other.get("TimeZone"), Some("UTC"));
        assert_eq!(other.get("application_name"), None);
    }
}
