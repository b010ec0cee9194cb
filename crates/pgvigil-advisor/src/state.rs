//! What the advisor knows, shared with the admin API, the console and
//! `/metrics`: the latest plans (bounded), the advice, and counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::advice::{sort_advice, Advice, AdviceKind};
use crate::plan::PlanSummary;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Real parameter values of one execution, to plan with instead of a
/// generic plan. Held in memory only, never logged or shown.
#[derive(Clone)]
pub struct Sample {
    /// `$1`, `$2`, ... as text; `None` is NULL.
    pub params: Vec<Option<String>>,
}

impl std::fmt::Debug for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sample({} params)", self.params.len())
    }
}

/// Gives the advisor a fingerprint's parameter sample, when
/// `capture_parameters` is on and one was kept.
pub type Sampler = Arc<dyn Fn(u64) -> Option<Sample> + Send + Sync>;

/// One plan as taken.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    #[serde(skip)]
    pub fingerprint: u64,
    pub database: String,
    pub taken_at_ms: u64,
    /// Planned without parameter values (a generic plan).
    pub generic: bool,
    /// EXPLAIN ANALYZE: the figures are actual ones.
    pub analyze: bool,
    /// The `EXPLAIN (FORMAT JSON)` output as PostgreSQL sent it.
    pub plan: String,
    pub summary: PlanSummary,
}

#[derive(Default)]
struct PlanStore {
    by_fp: HashMap<u64, PlanRecord>,
    /// Oldest first.
    order: VecDeque<u64>,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AdvisorCounters {
    /// Plans taken of statements (EXPLAIN of a fingerprint).
    pub plans_taken: u64,
    /// EXPLAINs that failed (timeout, error, lost connection).
    pub plans_failed: u64,
    /// EXPLAINs not run because `plans_per_minute` was used up.
    pub plans_rate_limited: u64,
    /// Plans evicted or never kept for `max_plans` / `max_plan_bytes`.
    pub plans_dropped: u64,
    /// Re-plans with a hypothetical index in place.
    pub hypothetical_plans: u64,
    pub runs: u64,
    /// Runs in which a database could not be reached.
    pub run_errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) plans_taken: AtomicU64,
    pub(crate) plans_failed: AtomicU64,
    pub(crate) plans_rate_limited: AtomicU64,
    pub(crate) plans_dropped: AtomicU64,
    pub(crate) hypothetical_plans: AtomicU64,
    pub(crate) runs: AtomicU64,
    pub(crate) run_errors: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub struct AdvisorState {
    max_plans: usize,
    max_plan_bytes: usize,
    max_advice: usize,
    plans: Mutex<PlanStore>,
    create_index: Mutex<Vec<Advice>>,
    /// Another producer's advice (index hygiene), by database.
    hygiene: Mutex<BTreeMap<String, Vec<Advice>>>,
    pending: Mutex<VecDeque<u64>>,
    sampler: Mutex<Option<Sampler>>,
    pub(crate) counters: Counters,
}

impl AdvisorState {
    pub fn new(max_plans: usize, max_plan_bytes: usize, max_advice: usize) -> AdvisorState {
        AdvisorState {
            max_plans,
            max_plan_bytes,
            max_advice,
            plans: Mutex::default(),
            create_index: Mutex::default(),
            hygiene: Mutex::default(),
            pending: Mutex::default(),
            sampler: Mutex::default(),
            counters: Counters::default(),
        }
    }

    /// All advice, index creation and hygiene alike: the most time saved
    /// first, at most `max_advice`.
    pub fn advice(&self) -> Vec<Advice> {
        let mut all = lock(&self.create_index).clone();
        for list in lock(&self.hygiene).values() {
            all.extend(list.iter().cloned());
        }
        sort_advice(&mut all);
        all.truncate(self.max_advice);
        all
    }

    /// Entries per kind, every kind listed (zeros included) so a gauge
    /// falls back to 0 when advice is taken.
    pub fn advice_counts(&self) -> Vec<(AdviceKind, usize)> {
        let all = self.advice();
        AdviceKind::ALL
            .iter()
            .map(|k| (*k, all.iter().filter(|a| a.kind == *k).count()))
            .collect()
    }

    /// Replaces the index-creation advice (every database), as the
    /// runner recomputes it each run.
    pub fn set_create_index(&self, advice: Vec<Advice>) {
        *lock(&self.create_index) = advice;
    }

    /// The seam for index hygiene (unused, duplicate, invalid indexes,
    /// foreign keys without one): its producer replaces one database's
    /// entries at a time; they are listed with the rest.
    pub fn set_hygiene(&self, database: &str, advice: Vec<Advice>) {
        let mut h = lock(&self.hygiene);
        if advice.is_empty() {
            h.remove(database);
        } else {
            h.insert(database.to_string(), advice);
        }
    }

    pub fn plan(&self, fingerprint: u64) -> Option<PlanRecord> {
        lock(&self.plans).by_fp.get(&fingerprint).cloned()
    }

    /// Keeps the latest plan of a fingerprint; the oldest plans go first
    /// when `max_plans` or `max_plan_bytes` would be exceeded.
    pub fn store_plan(&self, record: PlanRecord) {
        let size = record.plan.len();
        if size > self.max_plan_bytes || self.max_plans == 0 {
            bump(&self.counters.plans_dropped);
            return;
        }
        let mut s = lock(&self.plans);
        if let Some(old) = s.by_fp.remove(&record.fingerprint) {
            s.bytes -= old.plan.len();
            s.order.retain(|f| *f != record.fingerprint);
        }
        while s.by_fp.len() >= self.max_plans || s.bytes + size > self.max_plan_bytes {
            let Some(oldest) = s.order.pop_front() else {
                break;
            };
            if let Some(old) = s.by_fp.remove(&oldest) {
                s.bytes -= old.plan.len();
                bump(&self.counters.plans_dropped);
            }
        }
        s.bytes += size;
        s.order.push_back(record.fingerprint);
        s.by_fp.insert(record.fingerprint, record);
    }

    pub fn plan_count(&self) -> (usize, usize) {
        let s = lock(&self.plans);
        (s.by_fp.len(), s.bytes)
    }

    /// Asks for a fingerprint to be planned at the next run, ahead of
    /// the ones picked by time (a "crossed a threshold" notification or
    /// the plan endpoint).
    pub fn request_plan(&self, fingerprint: u64) {
        let mut p = lock(&self.pending);
        if !p.contains(&fingerprint) && p.len() < self.max_plans.max(1) {
            p.push_back(fingerprint);
        }
    }

    pub(crate) fn take_requests(&self) -> Vec<u64> {
        lock(&self.pending).drain(..).collect()
    }

    /// Where parameter samples come from (only asked when
    /// `capture_parameters` is on).
    pub fn set_sampler(&self, sampler: Sampler) {
        *lock(&self.sampler) = Some(sampler);
    }

    pub(crate) fn sample(&self, fingerprint: u64) -> Option<Sample> {
        let s = lock(&self.sampler).clone()?;
        s(fingerprint)
    }

    pub fn counters(&self) -> AdvisorCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdvisorCounters {
            plans_taken: get(&c.plans_taken),
            plans_failed: get(&c.plans_failed),
            plans_rate_limited: get(&c.plans_rate_limited),
            plans_dropped: get(&c.plans_dropped),
            hypothetical_plans: get(&c.hypothetical_plans),
            runs: get(&c.runs),
            run_errors: get(&c.run_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::summarize;

    fn record(fp: u64, bytes: usize) -> PlanRecord {
        let summary = summarize(&serde_json::json!([{"Plan": {"Node Type": "Result"}}])).unwrap();
        PlanRecord {
            fingerprint: fp,
            database: "db".into(),
            taken_at_ms: fp,
            generic: true,
            analyze: false,
            plan: "x".repeat(bytes),
            summary,
        }
    }

    #[test]
    fn oldest_plans_are_evicted_past_max_plans_and_bytes_and_counted() {
        let s = AdvisorState::new(2, 100, 10);
        s.store_plan(record(1, 10));
        s.store_plan(record(2, 10));
        s.store_plan(record(3, 10));
        assert!(s.plan(1).is_none());
        assert_eq!(s.plan_count(), (2, 20));
        s.store_plan(record(4, 85));
        assert_eq!(s.plan_count(), (2, 95));
        s.store_plan(record(5, 101));
        assert!(s.plan(5).is_none(), "larger than max_plan_bytes alone");
        // Re-planning a fingerprint replaces its plan, not another's.
        s.store_plan(record(4, 50));
        assert_eq!(s.plan_count(), (2, 60));
        // Bytes alone force out both older plans.
        s.store_plan(record(6, 60));
        assert_eq!(s.plan_count(), (1, 60));
        assert!(s.plan(6).is_some());
        assert_eq!(s.counters().plans_dropped, 5);
    }

    #[test]
    fn hygiene_entries_join_the_list_and_the_cap_keeps_the_biggest_savings() {
        let s = AdvisorState::new(2, 100, 2);
        let advice = |kind, saved| Advice {
            kind,
            database: "db".into(),
            table: "t".into(),
            columns: vec!["c".into()],
            ddl: String::new(),
            cost_before: None,
            cost_after: None,
            improvement: None,
            fingerprints: vec![],
            saved_ms_per_hour: saved,
            reason: String::new(),
            method: crate::AdviceMethod::Heuristic,
        };
        s.set_create_index(vec![
            advice(AdviceKind::CreateIndex, Some(5.0)),
            advice(AdviceKind::CreateIndex, Some(50.0)),
        ]);
        s.set_hygiene("db", vec![advice(AdviceKind::UnusedIndex, None)]);
        let all = s.advice();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].saved_ms_per_hour, Some(50.0));
        s.set_create_index(vec![]);
        assert_eq!(s.advice()[0].kind, AdviceKind::UnusedIndex);
        let counts = s.advice_counts();
        assert_eq!(counts.len(), AdviceKind::ALL.len());
        assert!(counts.contains(&(AdviceKind::UnusedIndex, 1)));
        assert!(counts.contains(&(AdviceKind::CreateIndex, 0)));
    }
}
