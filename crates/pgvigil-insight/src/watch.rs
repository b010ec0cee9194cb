//! The one hook for work that must not run on the hot path: lint reads
//! each new statement once, the advisor plans the statements that
//! matter. Watchers hear about a fingerprint when insight first learns
//! its text and when its figures first cross a threshold, and do their
//! work elsewhere (a queue, a task): a watcher that blocks delays the
//! thread that recorded the statement.

use std::sync::{Arc, Mutex};

use crate::insight::lock;
use crate::{Insight, StatementInfo};

/// A threshold a fingerprint crossed, reported once per fingerprint for
/// as long as it stays in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// An execution took at least `InsightConfig::watch_slow_us`.
    SlowExecution { duration_us: u64 },
    /// Its total time since start or reset reached
    /// `InsightConfig::watch_total_us`.
    TotalTime { total_us: u64 },
}

pub trait Watcher: Send + Sync {
    /// Insight learnt this statement's normalized text for the first
    /// time. Called on the recording thread: must not block.
    fn new_fingerprint(&self, _info: &StatementInfo) {}
    /// Called from `Insight::flush`, outside insight's locks.
    fn crossed(&self, _fingerprint: u64, _crossing: Crossing) {}
}

/// A real parameter sample of a statement that matters, kept in memory
/// only and only with `InsightConfig::capture_parameters`, so its plan
/// can be taken with values the application really uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterSample {
    /// The statement as the client sent it (simple protocol): literals
    /// included.
    Statement(String),
    /// The values bound to `$1`, `$2`, ... (extended protocol), as text.
    Bound(Vec<Option<String>>),
}

/// Samples kept at most; a new one replaces nothing once full (the
/// first ones are the statements that mattered first).
pub(crate) const MAX_SAMPLES: usize = 256;

#[derive(Default)]
pub(crate) struct Watchers {
    list: Mutex<Vec<Arc<dyn Watcher>>>,
}

impl Watchers {
    pub(crate) fn all(&self) -> Vec<Arc<dyn Watcher>> {
        lock(&self.list).clone()
    }
}

impl Insight {
    /// Adds a watcher; it hears about fingerprints registered from now on.
    pub fn watch(&self, watcher: Arc<dyn Watcher>) {
        lock(&self.watchers.list).push(watcher);
        self.has_watchers
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The parameter sample kept for a fingerprint, if any.
    pub fn sample(&self, fingerprint: u64) -> Option<ParameterSample> {
        lock(&self.samples).get(&fingerprint).cloned()
    }

    /// Keeps a sample unless one is kept already or the table is full.
    pub(crate) fn keep_sample(
        &self,
        fingerprint: u64,
        sample: impl FnOnce() -> Option<ParameterSample>,
    ) {
        let mut samples = lock(&self.samples);
        if samples.len() >= MAX_SAMPLES || samples.contains_key(&fingerprint) {
            return;
        }
        if let Some(s) = sample() {
            samples.insert(fingerprint, s);
        }
    }

    pub(crate) fn notify_new(&self, info: &StatementInfo) {
        if !self.has_watchers.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        for w in self.watchers.all() {
            w.new_fingerprint(info);
        }
    }

    pub(crate) fn notify_crossings(&self, crossings: &[(u64, Crossing)]) {
        if crossings.is_empty() {
            return;
        }
        let watchers = self.watchers.all();
        for (fp, c) in crossings {
            for w in &watchers {
                w.crossed(*fp, *c);
            }
        }
    }
}
