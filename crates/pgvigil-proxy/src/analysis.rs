//! Query insight's moving parts that need a runtime: the periodic merge of
//! per-thread buffers, and the lint worker that analyses each new
//! fingerprint once, off the forwarding path (a `Watcher`).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgvigil_config::{AdvisorSettings, InsightSettings};
use pgvigil_insight::{
    Annotation, Insight, InsightConfig, NPlusOneConfig, SlowRule, SlowRules, StatementInfo, Watcher,
};
use tokio::sync::mpsc;

/// How often per-thread buffers are merged: readers see figures at most
/// this old.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// New fingerprints waiting for lint; beyond, they go unlinted.
const LINT_QUEUE: usize = 1024;

/// A fingerprint whose total time reaches this matters to the advisor.
const ADVISOR_WATCH_TOTAL: Duration = Duration::from_secs(60);

pub(crate) fn insight_config(s: &InsightSettings, advisor: &AdvisorSettings) -> InsightConfig {
    let rules = s
        .slow_rules
        .iter()
        .map(|r| SlowRule {
            name: r.name.clone(),
            threshold_us: r.threshold.as_micros() as u64,
            fingerprint: r.fingerprint,
            statement: r.statement.clone(),
            table: r.table.clone(),
            database: r.database.clone(),
            user: r.user.clone(),
            application_name: r.application_name.clone(),
            // Validated when the config was loaded.
            query_regex: r
                .query_regex
                .as_deref()
                .and_then(|re| regex::Regex::new(re).ok()),
        })
        .collect();
    let n1 = &s.n_plus_one;
    InsightConfig {
        max_fingerprints: s.max_fingerprints,
        slow_rules: SlowRules::new(rules, s.slow_query.as_micros() as u64),
        max_slow_events: s.max_slow_events,
        n_plus_one: NPlusOneConfig {
            min_repeats: if n1.enabled {
                n1.min_repeats
            } else {
                usize::MAX
            },
            max_gap_us: n1.max_gap.as_micros() as u64,
            max_unit_statements: n1.max_unit_statements,
        },
        max_detections: s.max_detections,
        log_parameters: s.log_parameters,
        capture_parameters: advisor.enabled && advisor.capture_parameters,
        watch_slow_us: if advisor.enabled {
            advisor.plan_p95.as_micros() as u64
        } else {
            u64::MAX
        },
        watch_total_us: if advisor.enabled {
            ADVISOR_WATCH_TOTAL.as_micros() as u64
        } else {
            u64::MAX
        },
        wall_clock_ms: pgvigil_insight::time::unix_ms_now,
        markers: crate::history::marker_config(advisor),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) async fn flush_periodically(insight: Arc<Insight>) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        insight.flush(now_ms());
    }
}

/// Lint, as insight's watcher: each new fingerprint's normalized text
/// goes to a worker thread (sqlparser takes tens of microseconds per
/// statement and must never delay forwarding). The normalized text, not
/// the raw one: the raw text would hand literals (passwords in
/// `ALTER ROLE`) to a parser that may log what it parses.
struct LintWatcher {
    jobs: mpsc::Sender<(u64, String)>,
    insight: Weak<Insight>,
}

impl Watcher for LintWatcher {
    fn new_fingerprint(&self, info: &StatementInfo) {
        // Best effort: a full queue only loses the lint.
        if self
            .jobs
            .try_send((info.fingerprint, info.query.clone()))
            .is_err()
        {
            if let Some(insight) = self.insight.upgrade() {
                insight.count_lint_dropped();
            }
        }
    }
}

/// Starts the lint worker on its own thread and has insight tell it
/// about new fingerprints. The thread ends with insight.
pub(crate) fn start_lint(insight: &Arc<Insight>) {
    let (tx, mut rx) = mpsc::channel::<(u64, String)>(LINT_QUEUE);
    let weak = Arc::downgrade(insight);
    let spawned = std::thread::Builder::new()
        .name("pgvigil-lint".into())
        .spawn(move || {
            while let Some((fingerprint, sql)) = rx.blocking_recv() {
                let Some(insight) = weak.upgrade() else {
                    return;
                };
                let report = pgvigil_lint::lint(&sql);
                insight.annotate(
                    fingerprint,
                    Annotation {
                        parsed: report.parsed,
                        tables: report.tables,
                        findings: report
                            .findings
                            .into_iter()
                            .map(|f| (f.code.to_string(), f.message))
                            .collect(),
                    },
                );
            }
        });
    match spawned {
        Ok(_) => insight.watch(Arc::new(LintWatcher {
            jobs: tx,
            insight: Arc::downgrade(insight),
        })),
        Err(e) => tracing::warn!("could not start the lint worker, statements go unlinted: {e}"),
    }
}
