//! N+1 detection, after Sentry's detector, from what a proxy sees.
//!
//! Per client connection, statements are grouped into units of work: an
//! explicit transaction, or a run of autocommit statements separated by
//! gaps shorter than `max_gap`. When a unit ends, a SELECT fingerprint
//! that ran at least `min_repeats` times with differing parameters, after
//! a different "parent" SELECT, is an N+1: the app fetched a list, then
//! one row per list item. The same statement re-run with identical
//! parameters is reported as a repeated identical query instead.

use std::collections::HashMap;

use crate::store::FingerprintHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NPlusOneConfig {
    pub min_repeats: usize,
    pub max_gap_us: u64,
    /// A unit longer than this is evaluated and a new one started, so one
    /// connection's memory stays bounded.
    pub max_unit_statements: usize,
}

impl Default for NPlusOneConfig {
    fn default() -> Self {
        NPlusOneConfig {
            min_repeats: 5,
            max_gap_us: 100_000,
            max_unit_statements: 512,
        }
    }
}

/// One finished statement on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub fingerprint: u64,
    pub is_select: bool,
    /// Digest of the statement's constants or bind parameters.
    pub params_hash: u64,
    /// Monotonic microseconds.
    pub started_us: u64,
    pub duration_us: u64,
    /// Inside an explicit transaction before / after this statement.
    pub in_transaction_before: bool,
    pub in_transaction_after: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Same child query per parent row, with differing parameters.
    NPlusOne { parent: u64 },
    /// The same statement with the same parameters, again and again.
    RepeatedIdentical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub pattern: Pattern,
    pub child: u64,
    pub repeats: usize,
    pub total_us: u64,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    fingerprint: u64,
    is_select: bool,
    params_hash: u64,
    duration_us: u64,
}

/// One connection's unit of work so far. The limits come with each call,
/// not kept here: every connected client carries a detector.
#[derive(Default)]
pub struct NPlusOneDetector {
    unit: Vec<Step>,
    unit_is_transaction: bool,
    last_end_us: u64,
}

impl NPlusOneDetector {
    /// Feeds one statement; returns what the unit it closed contained.
    pub fn observe(&mut self, o: &Observed, config: &NPlusOneConfig) -> Vec<Detection> {
        let mut found = Vec::new();
        let begins_transaction = !o.in_transaction_before && o.in_transaction_after;
        let autocommit = !o.in_transaction_before && !o.in_transaction_after;
        let gap = o.started_us.saturating_sub(self.last_end_us);
        let boundary = begins_transaction
            || (autocommit && (self.unit_is_transaction || gap > config.max_gap_us))
            || self.unit.len() >= config.max_unit_statements;
        if boundary {
            found = self.finish_unit(config);
        }
        if self.unit.is_empty() {
            self.unit_is_transaction = o.in_transaction_before || o.in_transaction_after;
        }
        // Room for one step at first, not the four a Vec starts with: an
        // autocommit client's unit is one statement, kept while the
        // client idles until its next, and thousands of clients idle.
        if self.unit.capacity() == 0 {
            self.unit.reserve_exact(1);
        }
        self.unit.push(Step {
            fingerprint: o.fingerprint,
            is_select: o.is_select,
            params_hash: o.params_hash,
            duration_us: o.duration_us,
        });
        self.last_end_us = o.started_us + o.duration_us;
        if o.in_transaction_before && !o.in_transaction_after {
            found.extend(self.finish_unit(config));
        }
        found
    }

    /// Evaluates and forgets the current unit (transaction end,
    /// connection close).
    pub fn finish_unit(&mut self, config: &NPlusOneConfig) -> Vec<Detection> {
        // Most units are shorter than `min_repeats`: nothing in them can
        // repeat often enough, and they are not worth a table.
        let found = if self.unit.len() < config.min_repeats {
            Vec::new()
        } else {
            evaluate(&self.unit, config.min_repeats)
        };
        self.unit.clear();
        // The buffer is reused by the next unit; a long one gives its
        // room back.
        if self.unit.capacity() > 64 {
            self.unit.shrink_to(16);
        }
        found
    }
}

struct Tally {
    first: usize,
    count: usize,
    total_us: u64,
    params: Vec<u64>,
}

fn evaluate(unit: &[Step], min_repeats: usize) -> Vec<Detection> {
    let mut tallies: HashMap<u64, Tally, FingerprintHash> = HashMap::default();
    for (i, s) in unit.iter().enumerate().filter(|(_, s)| s.is_select) {
        let t = tallies.entry(s.fingerprint).or_insert(Tally {
            first: i,
            count: 0,
            total_us: 0,
            params: Vec::new(),
        });
        t.count += 1;
        t.total_us += s.duration_us;
        if t.params.len() <= min_repeats && !t.params.contains(&s.params_hash) {
            t.params.push(s.params_hash);
        }
    }
    let repeated = |fp: &u64| tallies.get(fp).is_some_and(|t| t.count >= min_repeats);
    let mut found = Vec::new();
    let mut children: Vec<(&u64, &Tally)> = tallies
        .iter()
        .filter(|(_, t)| t.count >= min_repeats)
        .collect();
    children.sort_by_key(|(_, t)| t.first);
    for (&child, t) in children {
        if t.params.len() == 1 {
            found.push(Detection {
                pattern: Pattern::RepeatedIdentical,
                child,
                repeats: t.count,
                total_us: t.total_us,
            });
            continue;
        }
        // The parent is the nearest earlier SELECT that is neither this
        // query nor another repeated one (interleaved loops share it).
        let parent = unit[..t.first]
            .iter()
            .rev()
            .find(|s| s.is_select && s.fingerprint != child && !repeated(&s.fingerprint));
        if let Some(parent) = parent {
            found.push(Detection {
                pattern: Pattern::NPlusOne {
                    parent: parent.fingerprint,
                },
                child,
                repeats: t.count,
                total_us: t.total_us,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Feed {
        d: NPlusOneDetector,
        now: u64,
        found: Vec<Detection>,
    }

    impl Feed {
        fn new() -> Self {
            Feed {
                d: NPlusOneDetector::default(),
                now: 1_000_000,
                found: Vec::new(),
            }
        }
        fn run(&mut self, fp: u64, select: bool, params: u64, before: bool, after: bool) {
            let o = Observed {
                fingerprint: fp,
                is_select: select,
                params_hash: params,
                started_us: self.now,
                duration_us: 500,
                in_transaction_before: before,
                in_transaction_after: after,
            };
            self.now += 1_000;
            self.found
                .extend(self.d.observe(&o, &NPlusOneConfig::default()));
        }
        fn pause(&mut self, us: u64) {
            self.now += us;
        }
        fn end(mut self) -> Vec<Detection> {
            self.found
                .extend(self.d.finish_unit(&NPlusOneConfig::default()));
            self.found
        }
    }

    const PARENT: u64 = 1;
    const CHILD: u64 = 2;
    const OTHER_CHILD: u64 = 3;

    #[test]
    fn lazy_loading_loop_is_detected_with_its_parent() {
        let mut f = Feed::new();
        f.run(PARENT, true, 0, false, false);
        for id in 0..20 {
            f.run(CHILD, true, id, false, false);
        }
        let found = f.end();
        assert_eq!(
            found,
            vec![Detection {
                pattern: Pattern::NPlusOne { parent: PARENT },
                child: CHILD,
                repeats: 20,
                total_us: 20 * 500,
            }]
        );
    }

    #[test]
    fn an_idle_autocommit_client_keeps_room_for_one_step() {
        let mut f = Feed::new();
        for _ in 0..3 {
            f.run(PARENT, true, 0, false, false);
            f.pause(10_000_000);
        }
        assert_eq!(f.d.unit.len(), 1);
        assert_eq!(f.d.unit.capacity(), 1);
    }

    #[test]
    fn eager_loading_twin_is_not_detected() {
        let mut f = Feed::new();
        f.run(PARENT, true, 0, false, false);
        f.run(CHILD, true, 1, false, false); // WHERE id = ANY($1)
        assert!(f.end().is_empty());
    }

    #[test]
    fn interleaved_loops_report_both_children() {
        let mut f = Feed::new();
        f.run(PARENT, true, 0, false, false);
        for id in 0..10 {
            f.run(CHILD, true, id, false, false);
            f.run(OTHER_CHILD, true, id, false, false);
        }
        let found = f.end();
        let children: Vec<(u64, Pattern)> = found.iter().map(|d| (d.child, d.pattern)).collect();
        assert_eq!(
            children,
            vec![
                (CHILD, Pattern::NPlusOne { parent: PARENT }),
                (OTHER_CHILD, Pattern::NPlusOne { parent: PARENT })
            ]
        );
    }

    #[test]
    fn identical_reruns_are_a_different_finding() {
        let mut f = Feed::new();
        f.run(PARENT, true, 0, false, false);
        for _ in 0..6 {
            f.run(CHILD, true, 42, false, false);
        }
        assert_eq!(f.end()[0].pattern, Pattern::RepeatedIdentical);
    }

    #[test]
    fn select_only_benchmark_traffic_is_not_an_n_plus_one() {
        // pgbench -S: one SELECT per autocommit transaction, back to back.
        let mut f = Feed::new();
        for id in 0..2000 {
            f.run(CHILD, true, id, false, false);
        }
        assert!(f.end().is_empty());
    }

    #[test]
    fn tpcb_transactions_are_not_an_n_plus_one() {
        let mut f = Feed::new();
        for id in 0..200 {
            f.run(10, false, 0, false, true); // BEGIN
            f.run(11, false, id, true, true); // UPDATE accounts
            f.run(12, true, id, true, true); // SELECT abalance
            f.run(13, false, id, true, true); // UPDATE tellers
            f.run(14, false, id, true, true); // UPDATE branches
            f.run(15, false, id, true, true); // INSERT history
            f.run(16, false, 0, true, false); // END
        }
        assert!(f.end().is_empty());
    }

    #[test]
    fn a_pause_longer_than_max_gap_splits_autocommit_units() {
        let mut f = Feed::new();
        f.run(PARENT, true, 0, false, false);
        for id in 0..3 {
            f.run(CHILD, true, id, false, false);
        }
        f.pause(500_000);
        for id in 3..6 {
            f.run(CHILD, true, id, false, false);
        }
        assert!(f.end().is_empty());
    }

    #[test]
    fn detection_inside_a_transaction_is_reported_at_commit() {
        let mut f = Feed::new();
        f.run(10, false, 0, false, true);
        f.run(PARENT, true, 0, true, true);
        for id in 0..5 {
            f.run(CHILD, true, id, true, true);
        }
        f.run(16, false, 0, true, false);
        assert_eq!(f.found.len(), 1);
    }
}
