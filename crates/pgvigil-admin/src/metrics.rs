//! `/metrics`: Prometheus exposition, built at scrape time from query
//! insight and the pools.
//!
//! prometheus-client (the Prometheus project's official Rust client) does
//! the encoding. pgvigil's series are not long-lived metric objects but a
//! view of state that changes shape (the top fingerprints by total time,
//! pool counts), so one `Collector` renders them on each scrape, and the
//! label sets are bounded by construction: at most `max_query_series`
//! fingerprints per family, the rest summed under `fingerprint="other"`.

mod health;

use std::fmt::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgvigil_insight::{Insight, Pattern};
use pgvigil_proxy::stats::{bytes_total, timeouts, WAIT_BUCKETS};
use pgvigil_proxy::ServerPool;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Statement text in `pgvigil_query_info` is cut to this many characters.
const QUERY_LABEL_CHARS: usize = 200;

pub struct PgvigilCollector {
    pub insight: Option<Arc<Insight>>,
    pub pools: Vec<Arc<ServerPool>>,
    pub max_query_series: usize,
    /// `metrics.duration_buckets`, seconds.
    pub duration_buckets: Arc<[f64]>,
    pub health: Option<Arc<pgvigil_advisor::HealthBoard>>,
    /// None when `[advisor]` is off.
    pub advisor: Option<Arc<pgvigil_advisor::AdvisorState>>,
}

// prometheus-client requires it of collectors.
impl std::fmt::Debug for PgvigilCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgvigilCollector")
            .field("pools", &self.pools.len())
            .field("max_query_series", &self.max_query_series)
            .finish()
    }
}

type Labels = Vec<(&'static str, String)>;

fn fp_label(fp: Option<u64>) -> String {
    fp.map_or_else(|| "other".to_string(), |f| format!("{f:016x}"))
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(QUERY_LABEL_CHARS) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Markers and regressions: counts only, no labels (a regression's
/// fingerprint is in `/api/regressions` and the log).
fn encode_markers(encoder: &mut DescriptorEncoder, insight: &Insight) -> Result<(), Error> {
    let c = insight.marker_counters();
    family(
        encoder,
        "pgvigil_regressions",
        "Fingerprints whose recent p95 reached advisor.regression_factor times their baseline p95",
        MetricType::Counter,
        [(vec![], Value::Counter(c.regressions))],
    )?;
    family(
        encoder,
        "pgvigil_markers",
        "Before/after markers kept",
        MetricType::Gauge,
        [(vec![], Value::Gauge(c.markers as i64))],
    )?;
    family(
        encoder,
        "pgvigil_markers_dropped",
        "Markers dropped past advisor.max_markers or skipped by the version-marker rate limit",
        MetricType::Counter,
        [(vec![], Value::Counter(c.markers_dropped))],
    )
}

/// Writes one family whose members are (labels, value) pairs.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    members: impl IntoIterator<Item = (Labels, Value<'a>)>,
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in members {
        let labels: Labels = labels
            .into_iter()
            .map(|(k, v)| (k, escape_label_value(&v)))
            .collect();
        let member = metric.encode_family(&labels)?;
        value.encode(member)?;
    }
    Ok(())
}

/// prometheus-client writes label values as given; both exposition
/// formats need `\`, `"` and newlines escaped, or one quoted identifier in
/// a query text would make the whole scrape unparsable.
fn escape_label_value(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

enum Value<'a> {
    Counter(u64),
    CounterF(f64),
    Gauge(i64),
    GaugeF(f64),
    Histogram {
        sum: f64,
        count: u64,
        bounds: &'a [f64],
        buckets: Vec<u64>,
    },
}

impl Value<'_> {
    fn encode(self, mut e: MetricEncoder) -> Result<(), Error> {
        match self {
            Value::Counter(v) => e.encode_counter::<NoLabelSet, _, f64>(&v, None),
            Value::CounterF(v) => e.encode_counter::<NoLabelSet, _, f64>(&v, None),
            Value::Gauge(v) => e.encode_gauge(&v),
            Value::GaugeF(v) => e.encode_gauge(&v),
            Value::Histogram {
                sum,
                count,
                bounds,
                buckets,
            } => {
                let pairs: Vec<(f64, u64)> = bounds
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(buckets)
                    .collect();
                e.encode_histogram::<NoLabelSet>(sum, count, &pairs, None)
            }
        }
    }
}

impl Collector for PgvigilCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        family(
            &mut encoder,
            "pgvigil_build_info",
            "pgvigil version",
            MetricType::Gauge,
            [(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                Value::Gauge(1),
            )],
        )?;
        if let Some(insight) = &self.insight {
            self.encode_queries(&mut encoder, insight)?;
            encode_markers(&mut encoder, insight)?;
        }
        if let Some(board) = &self.health {
            health::encode(&mut encoder, board)?;
        }
        if let Some(advisor) = &self.advisor {
            encode_advisor(&mut encoder, advisor)?;
        }
        self.encode_pools(&mut encoder)
    }
}

/// Advice entries by kind (every kind, zeros included, so a series drops
/// to 0 rather than vanishing), and what the advisor's EXPLAINs did.
fn encode_advisor(
    encoder: &mut DescriptorEncoder,
    advisor: &pgvigil_advisor::AdvisorState,
) -> Result<(), Error> {
    family(
        encoder,
        "pgvigil_advice",
        "Advice entries by kind (GET /api/advice)",
        MetricType::Gauge,
        advisor.advice_counts().into_iter().map(|(kind, n)| {
            (
                vec![("kind", kind.as_str().to_string())],
                Value::Gauge(n as i64),
            )
        }),
    )?;
    let c = advisor.counters();
    family(
        encoder,
        "pgvigil_advisor_plans",
        "The advisor's EXPLAINs of statements: taken, failed (timeout, error, lost connection), or not run because plans_per_minute was used up",
        MetricType::Counter,
        [
            ("taken", c.plans_taken),
            ("failed", c.plans_failed),
            ("rate_limited", c.plans_rate_limited),
        ]
        .into_iter()
        .map(|(r, n)| (vec![("result", r.to_string())], Value::Counter(n))),
    )?;
    family(
        encoder,
        "pgvigil_advisor_hypothetical_plans",
        "Re-plans with a hypothetical (hypopg) index in place; they count against plans_per_minute too",
        MetricType::Counter,
        [(vec![], Value::Counter(c.hypothetical_plans))],
    )?;
    family(
        encoder,
        "pgvigil_advisor_plans_dropped",
        "Plans evicted or not kept to stay within max_plans and max_plan_bytes",
        MetricType::Counter,
        [(vec![], Value::Counter(c.plans_dropped))],
    )?;
    family(
        encoder,
        "pgvigil_advisor_run_errors",
        "Advisor runs that could not reach a database",
        MetricType::Counter,
        [(vec![], Value::Counter(c.run_errors))],
    )
}

impl PgvigilCollector {
    fn encode_queries(
        &self,
        encoder: &mut DescriptorEncoder,
        insight: &Insight,
    ) -> Result<(), Error> {
        let bounds_us: Vec<u64> = self
            .duration_buckets
            .iter()
            .map(|s| (s * 1e6).round() as u64)
            .collect();
        let series = insight.export(self.max_query_series, &bounds_us);
        let name_of = |s: &pgvigil_insight::ExportedSeries| {
            (
                fp_label(s.info.as_ref().map(|i| i.fingerprint)),
                s.info
                    .as_ref()
                    .map_or_else(|| "other".to_string(), |i| i.kind.to_string()),
            )
        };
        family(
            encoder,
            "pgvigil_query_duration_seconds",
            "Statement execution time, from forwarding to completion, per fingerprint",
            MetricType::Histogram,
            series.iter().map(|s| {
                let (fp, statement) = name_of(s);
                (
                    vec![("fingerprint", fp), ("statement", statement)],
                    Value::Histogram {
                        sum: s.sum_seconds,
                        count: s.count,
                        bounds: &self.duration_buckets,
                        buckets: s.buckets.clone(),
                    },
                )
            }),
        )?;
        family(
            encoder,
            "pgvigil_query_info",
            "Normalized text of each exported fingerprint (value always 1)",
            MetricType::Gauge,
            series.iter().filter_map(|s| {
                let info = s.info.as_ref()?;
                Some((
                    vec![
                        ("fingerprint", fp_label(Some(info.fingerprint))),
                        ("statement", info.kind.to_string()),
                        ("query", cut(&info.query)),
                    ],
                    Value::Gauge(1),
                ))
            }),
        )?;
        family(
            encoder,
            "pgvigil_query_errors",
            "Failed executions per fingerprint and SQLSTATE class",
            MetricType::Counter,
            series.iter().flat_map(|s| {
                let fp = name_of(s).0;
                s.errors_by_class.iter().map(move |(class, n)| {
                    (
                        vec![
                            ("fingerprint", fp.clone()),
                            ("sqlstate_class", class.clone()),
                        ],
                        Value::Counter(*n),
                    )
                })
            }),
        )?;
        family(
            encoder,
            "pgvigil_query_rows",
            "Rows returned or affected per fingerprint (from command tags)",
            MetricType::Counter,
            series
                .iter()
                .map(|s| (vec![("fingerprint", name_of(s).0)], Value::Counter(s.rows))),
        )?;
        let exported: std::collections::HashSet<u64> = series
            .iter()
            .filter_map(|s| s.info.as_ref().map(|i| i.fingerprint))
            .collect();
        let label = |fp: Option<u64>| match fp {
            Some(f) if exported.contains(&f) => fp_label(Some(f)),
            _ => "other".to_string(),
        };
        let mut slow: std::collections::BTreeMap<(String, String), u64> = Default::default();
        // Each rule starts at 0 under "other" (the bounded label set known
        // before any event), so rate() and increase() see the first slow
        // execution instead of a series born at 1.
        for rule in insight.config().slow_rules.rule_names() {
            slow.insert((rule.to_string(), "other".to_string()), 0);
        }
        for (rule, fp, n) in insight.slow_counts() {
            *slow.entry((rule, label(fp))).or_insert(0) += n;
        }
        family(
            encoder,
            "pgvigil_slow_queries",
            "Slow executions per rule and fingerprint",
            MetricType::Counter,
            slow.into_iter().map(|((rule, fp), n)| {
                (vec![("rule", rule), ("fingerprint", fp)], Value::Counter(n))
            }),
        )?;
        // Zero series for both pattern kinds under "other" (parent "other"
        // for a loop, "" for repeated identical queries), for the same
        // reason as the slow-query counters above.
        let mut n1: std::collections::BTreeMap<(String, String), u64> = [
            (("other".to_string(), "other".to_string()), 0),
            (("other".to_string(), String::new()), 0),
        ]
        .into_iter()
        .collect();
        for d in insight.detections() {
            let parent = match d.pattern {
                Pattern::NPlusOne { parent } => label(Some(parent)),
                Pattern::RepeatedIdentical => String::new(),
            };
            *n1.entry((label(Some(d.child)), parent)).or_insert(0) += d.occurrences;
        }
        family(
            encoder,
            "pgvigil_n_plus_one",
            "N+1 loops detected, per child and parent fingerprint (parent empty for repeated identical queries)",
            MetricType::Counter,
            n1.into_iter().map(|((fp, parent), n)| {
                (
                    vec![("fingerprint", fp), ("parent_fingerprint", parent)],
                    Value::Counter(n),
                )
            }),
        )?;
        let c = insight.counters();
        family(
            encoder,
            "pgvigil_fingerprints_tracked",
            "Distinct statements in the statistics table",
            MetricType::Gauge,
            [(vec![], Value::Gauge(c.fingerprints as i64))],
        )?;
        family(
            encoder,
            "pgvigil_fingerprint_evictions",
            "Fingerprints evicted from the full statistics table",
            MetricType::Counter,
            [(vec![], Value::Counter(c.evictions))],
        )?;
        family(
            encoder,
            "pgvigil_executions_dropped",
            "Executions left out of the statistics: a thread's buffer was full while the table was held",
            MetricType::Counter,
            [(vec![], Value::Counter(c.executions_dropped))],
        )
    }

    fn encode_pools(&self, encoder: &mut DescriptorEncoder) -> Result<(), Error> {
        let who = |p: &ServerPool| {
            vec![
                ("database", p.database.to_string()),
                ("user", p.user.to_string()),
            ]
        };
        let snapshots: Vec<_> = self.pools.iter().map(|p| (p, p.snapshot())).collect();
        family(
            encoder,
            "pgvigil_pool_server_connections",
            "Server connections per pool: active (serving a client), idle, and overflow (above pool_size, also counted as active or idle)",
            MetricType::Gauge,
            snapshots.iter().flat_map(|(p, s)| {
                let overflow = s.total.saturating_sub(s.pool_size);
                [
                    ("active", s.total - s.idle),
                    ("idle", s.idle),
                    ("overflow", overflow),
                ]
                .map(|(state, n)| {
                    let mut labels = who(p);
                    labels.push(("state", state.to_string()));
                    (labels, Value::Gauge(n as i64))
                })
            }),
        )?;
        family(
            encoder,
            "pgvigil_pool_waiting_clients",
            "Clients waiting for a server connection",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(p, s)| (who(p), Value::Gauge(s.waiting as i64))),
        )?;
        family(
            encoder,
            "pgvigil_pool_utilization_ratio",
            "Active server connections over pool_size",
            MetricType::Gauge,
            snapshots.iter().map(|(p, s)| {
                let ratio = (s.total - s.idle) as f64 / s.pool_size.max(1) as f64;
                (who(p), Value::GaugeF(ratio))
            }),
        )?;
        family(
            encoder,
            "pgvigil_pool_paused",
            "1 while the pool is paused from the admin console (PAUSE), else 0",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(p, s)| (who(p), Value::Gauge(i64::from(s.paused)))),
        )?;
        family(
            encoder,
            "pgvigil_client_connections",
            "Logged-in clients per pool",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(p, s)| (who(p), Value::Gauge(s.clients as i64))),
        )?;
        family(
            encoder,
            "pgvigil_pool_pinned_clients",
            "Transaction mode: clients keeping their server connection for session state (temporary tables, advisory locks, LISTEN, held cursors, SQL PREPARE)",
            MetricType::Gauge,
            snapshots
                .iter()
                .map(|(p, s)| (who(p), Value::Gauge(s.pinned as i64))),
        )?;
        family(
            encoder,
            "pgvigil_pool_pins_refused",
            "Clients whose session state could not be kept because max_pinned_clients were pinned",
            MetricType::Counter,
            self.pools.iter().map(|p| {
                let n = p.counters.pins_refused.load(Ordering::Relaxed);
                (who(p), Value::Counter(n))
            }),
        )?;
        family(
            encoder,
            "pgvigil_pool_wait_seconds",
            "Time clients waited for a server connection",
            MetricType::Histogram,
            self.pools.iter().map(|p| {
                let (buckets, sum, count) = p.counters.wait.snapshot();
                (
                    who(p),
                    Value::Histogram {
                        sum,
                        count,
                        bounds: &WAIT_BUCKETS,
                        buckets,
                    },
                )
            }),
        )?;
        family(
            encoder,
            "pgvigil_server_connect_errors",
            "Failed attempts to open a server connection",
            MetricType::Counter,
            self.pools.iter().map(|p| {
                let n = p.counters.server_connect_errors.load(Ordering::Relaxed);
                (who(p), Value::Counter(n))
            }),
        )?;
        // A pool that never tried to log in has no series: claiming 1 for
        // it hid outages, and 0 would page for databases nobody uses. A
        // database is up when the latest attempt of any of its pools
        // succeeded, and 0 once every pool that tried failed its latest.
        let mut up: std::collections::BTreeMap<String, i64> = Default::default();
        let pool_up: Vec<_> = self
            .pools
            .iter()
            .filter_map(|p| Some((p, p.upstream_up()?)))
            .collect();
        for (p, v) in &pool_up {
            let slot = up.entry(p.database.to_string()).or_insert(0);
            *slot = (*slot).max(i64::from(*v));
        }
        family(
            encoder,
            "pgvigil_upstream_up",
            "1 when the latest login to the database's server of any of its pools succeeded, 0 when every pool's latest failed; absent until one was tried",
            MetricType::Gauge,
            up.into_iter()
                .map(|(db, v)| (vec![("database", db)], Value::Gauge(v))),
        )?;
        family(
            encoder,
            "pgvigil_pool_upstream_up",
            "1 when the pool's latest server login succeeded, 0 when it failed; absent until one was tried",
            MetricType::Gauge,
            pool_up
                .iter()
                .map(|(p, v)| (who(p), Value::Gauge(i64::from(*v)))),
        )?;
        family(
            encoder,
            "pgvigil_pool_acquire_timeouts",
            "Clients that gave up waiting for a server connection (acquire_timeout)",
            MetricType::Counter,
            self.pools.iter().map(|p| {
                let n = p.counters.acquire_timeouts.load(Ordering::Relaxed);
                (who(p), Value::Counter(n))
            }),
        )?;
        family(
            encoder,
            "pgvigil_pool_unshared_statements",
            "Prepared statements named for one client only because the pool's statement registry was full",
            MetricType::Counter,
            self.pools
                .iter()
                .map(|p| (who(p), Value::Counter(p.unshared_statements()))),
        )?;
        family(
            encoder,
            "pgvigil_timeouts",
            "Sessions or transactions ended by a timeout setting, per setting",
            MetricType::Counter,
            timeouts().into_iter().map(|(kind, n)| {
                (
                    vec![("timeout", kind.setting().to_string())],
                    Value::Counter(n),
                )
            }),
        )?;
        family(
            encoder,
            "pgvigil_failed_logins",
            "Client logins refused (wrong password, unknown user or database, bad login traffic)",
            MetricType::Counter,
            [(
                Vec::new(),
                Value::Counter(pgvigil_proxy::stats::failed_logins_total()),
            )],
        )?;
        let (to_server, to_client) = bytes_total();
        family(
            encoder,
            "pgvigil_bytes",
            "Bytes forwarded, per direction",
            MetricType::Counter,
            [
                (
                    vec![("direction", "client_to_server".to_string())],
                    Value::CounterF(to_server as f64),
                ),
                (
                    vec![("direction", "server_to_client".to_string())],
                    Value::CounterF(to_client as f64),
                ),
            ],
        )
    }
}

/// Renders OpenMetrics text, what Prometheus asks for.
pub fn render(collector: PgvigilCollector) -> Result<String, Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The same in the classic text format (0.0.4), for scrapers and tools
/// that do not ask for OpenMetrics (curl, `promtool check metrics`). The
/// formats differ only in how counters are named in HELP/TYPE lines
/// (`x` with samples `x_total` versus `x_total` throughout) and in the
/// OpenMetrics-only `# UNIT` and `# EOF` lines.
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_their_total_suffix() {
        let om = "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped_for_the_exposition_format() {
        assert_eq!(
            escape_label_value("SELECT \"t\".\"x\" FROM a\\b\nWHERE 1"),
            "SELECT \\\"t\\\".\\\"x\\\" FROM a\\\\b\\nWHERE 1"
        );
        assert_eq!(escape_label_value("plain"), "plain");
    }

    #[test]
    fn long_query_text_is_cut_for_the_label() {
        let text = "x".repeat(500);
        assert_eq!(cut(&text).chars().count(), QUERY_LABEL_CHARS + 3);
        assert_eq!(cut("SELECT 1"), "SELECT 1");
    }
}
