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
