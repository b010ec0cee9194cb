//! Database health gauges, from each database's latest sample. Labels are
//! bounded: one series per database, per connection state (PostgreSQL's
//! few states), and per table for the `advisor.health_max_tables` tables
//! with the most dead tuples.

use std::fmt::Error;

use pgvigil_advisor::HealthBoard;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{family, Labels, Value};

pub(super) fn encode(encoder: &mut DescriptorEncoder, board: &HealthBoard) -> Result<(), Error> {
    let samples = board.samples();
    let db = |name: &str| -> Labels { vec![("database", name.to_string())] };
    family(
        encoder,
        "pgvigil_db_cache_hit_ratio",
        "Share of table block reads served from shared buffers (pg_statio_user_tables), per database",
        MetricType::Gauge,
        samples
            .iter()
            .filter_map(|s| Some((db(&s.database), Value::GaugeF(s.cache_hit_ratio?)))),
    )?;
    family(
        encoder,
        "pgvigil_db_index_hit_ratio",
        "Share of index block reads served from shared buffers (pg_statio_user_indexes), per database",
        MetricType::Gauge,
        samples
            .iter()
            .filter_map(|s| Some((db(&s.database), Value::GaugeF(s.index_hit_ratio?)))),
    )?;
    family(
        encoder,
        "pgvigil_db_dead_tuples",
        "Dead row versions per table (pg_stat_user_tables.n_dead_tup), the tables with the most only",
        MetricType::Gauge,
        samples.iter().flat_map(|s| {
            s.tables.iter().map(|t| {
                (
                    vec![
                        ("database", s.database.clone()),
                        ("table", t.table.clone()),
                    ],
                    Value::Gauge(i64::try_from(t.dead_tuples).unwrap_or(i64::MAX)),
                )
            })
        }),
    )?;
    family(
        encoder,
        "pgvigil_db_connections",
        "Client backends of the database by state (pg_stat_activity), pgvigil's own advisor sessions left out",
        MetricType::Gauge,
        samples.iter().flat_map(|s| {
            s.connections.iter().map(|(state, n)| {
                (
                    vec![
                        ("database", s.database.clone()),
                        ("state", state.clone()),
                    ],
                    Value::Gauge(*n as i64),
                )
            })
        }),
    )?;
    family(
        encoder,
        "pgvigil_db_long_transactions",
        "Transactions open longer than advisor.long_transaction_s, idle in transaction or not",
        MetricType::Gauge,
        samples.iter().map(|s| {
            (
                db(&s.database),
                Value::Gauge(s.long_transaction_count() as i64),
            )
        }),
    )?;
    family(
        encoder,
        "pgvigil_db_longest_transaction_seconds",
        "Age of the oldest transaction open longer than advisor.long_transaction_s (0 when none)",
        MetricType::Gauge,
        samples.iter().map(|s| {
            (
                db(&s.database),
                Value::GaugeF(s.longest_transaction_s.unwrap_or(0.0)),
            )
        }),
    )?;
    family(
        encoder,
        "pgvigil_db_blocked_sessions",
        "Sessions waiting for a lock another session holds (pg_blocking_pids)",
        MetricType::Gauge,
        samples
            .iter()
            .map(|s| (db(&s.database), Value::Gauge(s.blocked_count() as i64))),
    )?;
    family(
        encoder,
        "pgvigil_db_size_bytes",
        "Database size on disk (pg_database_size)",
        MetricType::Gauge,
        samples.iter().filter_map(|s| {
            Some((
                db(&s.database),
                Value::Gauge(i64::try_from(s.database_size_bytes?).unwrap_or(i64::MAX)),
            ))
        }),
    )?;
    family(
        encoder,
        "pgvigil_db_health_errors",
        "Health sample parts that failed (connection, permission, statement_timeout); the log says which",
        MetricType::Counter,
        board
            .errors()
            .into_iter()
            .map(|(name, n)| (db(&name), Value::Counter(n))),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use pgvigil_advisor::{HealthSample, TableHealth};

    use super::super::{render, PgvigilCollector};
    use super::*;

    fn scrape(board: HealthBoard) -> String {
        render(PgvigilCollector {
            insight: None,
            pools: Vec::new(),
            max_query_series: 10,
            duration_buckets: vec![0.1, 1.0].into(),
            health: Some(Arc::new(board)),
            advisor: None,
        })
        .expect("renders")
    }

    #[test]
    fn each_database_sample_becomes_gauges_with_bounded_labels() {
        let board = HealthBoard::default();
        board.record(HealthSample {
            database: "app\"db".into(),
            cache_hit_ratio: Some(0.75),
            index_hit_ratio: None,
            connections: BTreeMap::from([("idle in transaction".to_string(), 2)]),
            long_transactions_dropped: 3,
            longest_transaction_s: Some(90.5),
            blocked_dropped: 1,
            tables: vec![TableHealth {
                table: "sales.orders".into(),
                live_tuples: 20,
                dead_tuples: 80,
                bloat_ratio: 0.8,
                last_autovacuum: None,
                last_vacuum: None,
                autovacuum_due: true,
                autovacuum_enabled: false,
            }],
            database_size_bytes: Some(4096),
            errors: vec!["tables: 57014: canceling statement".into()],
            ..HealthSample::default()
        });
        let text = scrape(board);
        for line in [
            "pgvigil_db_cache_hit_ratio{database=\"app\\\"db\"} 0.75",
            "pgvigil_db_dead_tuples{database=\"app\\\"db\",table=\"sales.orders\"} 80",
            "pgvigil_db_connections{database=\"app\\\"db\",state=\"idle in transaction\"} 2",
            "pgvigil_db_long_transactions{database=\"app\\\"db\"} 3",
            "pgvigil_db_longest_transaction_seconds{database=\"app\\\"db\"} 90.5",
            "pgvigil_db_blocked_sessions{database=\"app\\\"db\"} 1",
            "pgvigil_db_size_bytes{database=\"app\\\"db\"} 4096",
            "pgvigil_db_health_errors_total{database=\"app\\\"db\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Unknown before any block was read: no series rather than 0.
        assert!(!text.contains("pgvigil_db_index_hit_ratio{"), "{text}");
    }
}
