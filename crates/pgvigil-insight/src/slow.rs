//! Slow-query rules and the bounded log of slow executions.

use std::collections::{HashMap, VecDeque};

use regex::Regex;

/// One named rule; every matcher that is set must match. The first
/// matching rule decides the threshold, so specific rules go first.
#[derive(Debug, Clone)]
pub struct SlowRule {
    pub name: String,
    pub threshold_us: u64,
    pub fingerprint: Option<u64>,
    pub statement: Option<String>,
    pub table: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    pub query_regex: Option<Regex>,
}

/// What a rule can look at.
pub struct SlowContext<'a> {
    pub fingerprint: u64,
    pub statement: &'a str,
    pub tables: &'a [String],
    pub database: &'a str,
    pub user: &'a str,
    pub application_name: &'a str,
    pub query: &'a str,
}

impl SlowRule {
    fn matches(&self, c: &SlowContext<'_>) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.fingerprint.is_none_or(|f| f == c.fingerprint)
            && self
                .statement
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(c.statement))
            && self
                .table
                .as_deref()
                .is_none_or(|t| c.tables.iter().any(|x| x.eq_ignore_ascii_case(t)))
            && eq(&self.database, c.database)
            && eq(&self.user, c.user)
            && eq(&self.application_name, c.application_name)
            && self
                .query_regex
                .as_ref()
                .is_none_or(|r| r.is_match(c.query))
    }
}

#[derive(Debug, Clone)]
pub struct SlowRules {
    rules: Vec<SlowRule>,
    default_threshold_us: u64,
    /// Below this no rule can fire, so most statements cost one compare.
    floor_us: u64,
}

/// The global threshold's rule name in events.
pub const DEFAULT_RULE: &str = "slow_query_ms";

impl SlowRules {
    pub fn new(rules: Vec<SlowRule>, default_threshold_us: u64) -> Self {
        let floor_us = rules
            .iter()
            .map(|r| r.threshold_us)
            .chain([default_threshold_us])
            .min()
            .unwrap_or(default_threshold_us);
        SlowRules {
            rules,
            default_threshold_us,
            floor_us,
        }
    }

    /// Every rule name an event can carry, the global one included: the
    /// set is fixed by configuration, so each can be exported at 0.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.name.as_str())
            .chain([DEFAULT_RULE])
    }

    pub fn could_be_slow(&self, duration_us: u64) -> bool {
        duration_us >= self.floor_us
    }

    /// The rule this execution breaks, if any.
    pub fn classify(&self, duration_us: u64, c: &SlowContext<'_>) -> Option<&str> {
        if !self.could_be_slow(duration_us) {
            return None;
        }
        match self.rules.iter().find(|r| r.matches(c)) {
            Some(rule) => (duration_us >= rule.threshold_us).then_some(rule.name.as_str()),
            None => (duration_us >= self.default_threshold_us).then_some(DEFAULT_RULE),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub rule: String,
    pub fingerprint: u64,
    pub query: String,
    pub duration_us: u64,
    pub database: String,
    pub user: String,
    pub application_name: String,
    pub client_addr: String,
    pub tags: Vec<(String, String)>,
    /// Only when the operator opted in with `log_parameters`.
    pub parameters: Option<String>,
}

/// The most recent slow events, bounded; older ones are dropped and
/// counted.
#[derive(Debug)]
pub struct SlowLog {
    events: VecDeque<SlowEvent>,
    cap: usize,
    pub(crate) dropped: u64,
    pub(crate) total: u64,
    /// Per (rule, fingerprint) counts for metrics, bounded; a pair beyond
    /// the cap counts under fingerprint None.
    counts: HashMap<(String, Option<u64>), u64>,
}

/// Distinct (rule, fingerprint) pairs counted before new ones go to
/// "other".
const MAX_COUNTED_PAIRS: usize = 10_000;

impl SlowLog {
    pub fn new(cap: usize) -> Self {
        SlowLog {
            events: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
            total: 0,
            counts: HashMap::new(),
        }
    }

    pub(crate) fn count(&mut self, rule: &str, fingerprint: u64) {
        let key = (rule.to_string(), Some(fingerprint));
        let key = if self.counts.contains_key(&key) || self.counts.len() < MAX_COUNTED_PAIRS {
            key
        } else {
            (rule.to_string(), None)
        };
        *self.counts.entry(key).or_insert(0) += 1;
    }

    pub(crate) fn counts(&self) -> Vec<(String, Option<u64>, u64)> {
        self.counts
            .iter()
            .map(|((rule, fp), n)| (rule.clone(), *fp, *n))
            .collect()
    }

    pub fn push(&mut self, e: SlowEvent) {
        if self.events.len() == self.cap {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.total += 1;
        self.events.push_back(e);
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Vec<SlowEvent> {
        self.events.iter().rev().take(limit).cloned().collect()
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(statement: &'a str, database: &'a str, query: &'a str) -> SlowContext<'a> {
        SlowContext {
            fingerprint: 9,
            statement,
            tables: &[],
            database,
            user: "app",
            application_name: "web",
            query,
        }
    }

    fn rule(name: &str, ms: u64) -> SlowRule {
        SlowRule {
            name: name.into(),
            threshold_us: ms * 1000,
            fingerprint: None,
            statement: None,
            table: None,
            database: None,
            user: None,
            application_name: None,
            query_regex: None,
        }
    }

    #[test]
    fn first_matching_rule_wins_even_when_it_does_not_fire() {
        let mut reports = rule("reports", 5_000);
        reports.database = Some("reporting".into());
        let rules = SlowRules::new(vec![reports, rule("catch_all", 100)], 500_000);
        let c = ctx("SELECT", "reporting", "SELECT 1");
        assert_eq!(rules.classify(1_000_000, &c), None);
        assert_eq!(rules.classify(6_000_000, &c), Some("reports"));
        let c = ctx("SELECT", "appdb", "SELECT 1");
        assert_eq!(rules.classify(200_000, &c), Some("catch_all"));
    }

    #[test]
    fn default_threshold_applies_when_no_rule_matches() {
        let mut updates = rule("updates", 10);
        updates.statement = Some("UPDATE".into());
        updates.query_regex = Some(Regex::new("accounts").unwrap());
        let rules = SlowRules::new(vec![updates], 500_000);
        assert_eq!(
            rules.classify(20_000, &ctx("update", "db", "UPDATE accounts SET x = $1")),
            Some("updates")
        );
        assert_eq!(
            rules.classify(20_000, &ctx("SELECT", "db", "SELECT 1")),
            None
        );
        assert_eq!(
            rules.classify(600_000, &ctx("SELECT", "db", "SELECT 1")),
            Some(DEFAULT_RULE)
        );
    }

    #[test]
    fn log_keeps_the_newest_and_counts_drops() {
        let mut log = SlowLog::new(2);
        for i in 0..5 {
            log.push(SlowEvent {
                at_ms: i,
                rule: "r".into(),
                fingerprint: 1,
                query: String::new(),
                duration_us: 1,
                database: String::new(),
                user: String::new(),
                application_name: String::new(),
                client_addr: String::new(),
                tags: vec![],
                parameters: None,
            });
        }
        let recent = log.recent(10);
        assert_eq!(
            recent.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![4, 3]
        );
        assert_eq!(log.dropped, 3);
    }
}
