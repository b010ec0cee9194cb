//! Database health: what a DBA checks first (cache hit ratio, dead
//! tuples and autovacuum, connections by state, long and idle-in-
//! transaction sessions, lock waits, size), read from PostgreSQL's
//! statistics views with a handful of read-only statements.
//!
//! No `query` column is ever read from pg_stat_activity: it carries the
//! statements' literals, which pgvigil never shows unless asked to.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::{Advice, Database, Row};

/// pgvigil's own sessions are named so (the proxy's connector sets it):
/// they are left out of what they would distort.
pub const ADVISOR_APPLICATION_NAME: &str = "pgvigil-advisor";

#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// A transaction open longer than this is listed (idle in
    /// transaction or not).
    pub long_transaction: Duration,
    /// Tables listed (most dead tuples first); the rest are counted.
    pub max_tables: usize,
    /// Long transactions and blocked sessions listed, each; the rest are
    /// counted.
    pub max_sessions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableHealth {
    /// Schema-qualified where the schema is not `public`.
    pub table: String,
    pub live_tuples: u64,
    pub dead_tuples: u64,
    /// dead / (live + dead): the share of the heap's row versions that
    /// are garbage, a cheap stand-in for bloat that needs no extension
    /// (pgstattuple) and no table scan. It counts what VACUUM could free
    /// now, not space already freed but not returned to the OS.
    pub bloat_ratio: f64,
    /// RFC 3339, or null when autovacuum never ran on the table.
    pub last_autovacuum: Option<String>,
    pub last_vacuum: Option<String>,
    /// Dead tuples are over the point at which autovacuum should have
    /// started (autovacuum_vacuum_threshold + scale_factor * rows, table
    /// settings first): autovacuum is behind, or off for the table.
    pub autovacuum_due: bool,
    pub autovacuum_enabled: bool,
}

/// A session whose transaction has been open too long. No statement
/// text: it would carry literals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongTransaction {
    pub pid: i64,
    pub user: Option<String>,
    pub application_name: Option<String>,
    pub state: Option<String>,
    pub duration_s: f64,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
}

/// A session waiting for a lock, and the sessions it waits for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockedSession {
    pub pid: i64,
    pub user: Option<String>,
    pub application_name: Option<String>,
    pub state: Option<String>,
    /// Since its current statement started.
    pub waiting_s: f64,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub blocked_by: Vec<i64>,
}

/// One database's health at one moment. A field the sample could not
/// read stays empty and the reason is in `errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct HealthSample {
    pub database: String,
    /// RFC 3339; set by whoever took the sample.
    pub sampled_at: String,
    /// heap_blks_hit / (hit + read) over the database's tables; null
    /// until a block was read.
    pub cache_hit_ratio: Option<f64>,
    pub index_hit_ratio: Option<f64>,
    pub connections: BTreeMap<String, u64>,
    pub long_transactions: Vec<LongTransaction>,
    /// Long transactions beyond `max_sessions`, not listed.
    pub long_transactions_dropped: u64,
    /// Age of the oldest open transaction over the threshold, seconds.
    pub longest_transaction_s: Option<f64>,
    pub blocked: Vec<BlockedSession>,
    pub blocked_dropped: u64,
    pub tables: Vec<TableHealth>,
    pub tables_dropped: u64,
    pub database_size_bytes: Option<u64>,
    /// Index hygiene, refreshed with each sample.
    pub hygiene: Vec<Advice>,
    pub errors: Vec<String>,
}

impl HealthSample {
    pub fn long_transaction_count(&self) -> u64 {
        self.long_transactions.len() as u64 + self.long_transactions_dropped
    }

    pub fn blocked_count(&self) -> u64 {
        self.blocked.len() as u64 + self.blocked_dropped
    }
}

/// hit / (hit + read); None before the first block was read.
pub fn hit_ratio(hit: f64, read: f64) -> Option<f64> {
    let total = hit + read;
    (total > 0.0 && total.is_finite()).then(|| hit / total)
}

/// dead / (live + dead); 0 for an empty table.
pub fn bloat_ratio(live: u64, dead: u64) -> f64 {
    let total = live as f64 + dead as f64;
    if total == 0.0 {
        0.0
    } else {
        dead as f64 / total
    }
}

const RATIOS_SQL: &str = "\
SELECT (SELECT sum(heap_blks_hit)::float8 FROM pg_statio_user_tables),
       (SELECT sum(heap_blks_read)::float8 FROM pg_statio_user_tables),
       (SELECT sum(idx_blks_hit)::float8 FROM pg_statio_user_indexes),
       (SELECT sum(idx_blks_read)::float8 FROM pg_statio_user_indexes),
       pg_database_size(current_database())::int8";

/// Autovacuum's trigger point per table, with the table's own storage
/// parameters over the server's settings.
const TABLES_SQL: &str = "\
WITH t AS (
  SELECT s.schemaname::text AS schema, s.relname::text AS name,
         s.n_live_tup, s.n_dead_tup,
         to_char(s.last_autovacuum AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_autovacuum,
         to_char(s.last_vacuum AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_vacuum,
         greatest(c.reltuples, 0) AS reltuples,
         (SELECT option_value FROM pg_options_to_table(c.reloptions)
          WHERE option_name = 'autovacuum_enabled') AS av_enabled,
         (SELECT option_value FROM pg_options_to_table(c.reloptions)
          WHERE option_name = 'autovacuum_vacuum_threshold') AS av_threshold,
         (SELECT option_value FROM pg_options_to_table(c.reloptions)
          WHERE option_name = 'autovacuum_vacuum_scale_factor') AS av_scale
  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
)
SELECT schema, name, n_live_tup, n_dead_tup, last_autovacuum, last_vacuum,
       (n_dead_tup > coalesce(av_threshold::float8, current_setting('autovacuum_vacuum_threshold')::float8)
          + coalesce(av_scale::float8, current_setting('autovacuum_vacuum_scale_factor')::float8) * reltuples)::text,
       (current_setting('autovacuum')::bool AND coalesce(av_enabled::bool, true))::text,
       count(*) OVER ()
FROM t ORDER BY n_dead_tup DESC, schema, name LIMIT $1::text::int8";

const CONNECTIONS_SQL: &str = "\
SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND coalesce(application_name, '') <> $1::text
GROUP BY 1 ORDER BY 1";

const LONG_TRANSACTIONS_SQL: &str = "\
SELECT pid, usename::text, application_name, state,
       extract(epoch FROM now() - xact_start)::float8,
       wait_event_type, wait_event, count(*) OVER ()
FROM pg_stat_activity
WHERE datname = current_database() AND xact_start IS NOT NULL
  AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') <> $1::text
  AND now() - xact_start > make_interval(secs => $2::text::float8)
ORDER BY xact_start LIMIT $3::text::int8";

const BLOCKED_SQL: &str = "\
SELECT pid, usename::text, application_name, state,
       extract(epoch FROM now() - coalesce(query_start, xact_start, now()))::float8,
       wait_event_type, wait_event,
       array_to_string(pg_blocking_pids(pid), ','), count(*) OVER ()
FROM pg_stat_activity
WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0
ORDER BY query_start LIMIT $1::text::int8";

fn text(row: &Row, i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

fn num<T: std::str::FromStr>(row: &Row, i: usize) -> Option<T> {
    row.get(i)
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
}

fn flag(row: &Row, i: usize) -> bool {
    matches!(row.get(i).and_then(|v| v.as_deref()), Some("t" | "true"))
}

/// Takes one sample of `database` over `db`. Each part is its own
/// statement, so one that fails (permissions, statement_timeout) costs
/// only its fields.
pub async fn sample_health<D: Database>(
    db: &mut D,
    database: &str,
    settings: &HealthSettings,
) -> HealthSample {
    let mut s = HealthSample {
        database: database.to_string(),
        ..HealthSample::default()
    };
    let max_tables = settings.max_tables.to_string();
    let max_sessions = settings.max_sessions.to_string();
    let long_s = settings.long_transaction.as_secs_f64().to_string();

    match db.query(RATIOS_SQL, &[]).await {
        Ok(rows) => {
            if let Some(r) = rows.first() {
                let f = |i| num::<f64>(r, i).unwrap_or(0.0);
                s.cache_hit_ratio = hit_ratio(f(0), f(1));
                s.index_hit_ratio = hit_ratio(f(2), f(3));
                s.database_size_bytes = num(r, 4);
            }
        }
        Err(e) => s.errors.push(format!("cache hit ratio: {e}")),
    }
    match db.query(TABLES_SQL, &[Some(max_tables.as_str())]).await {
        Ok(rows) => {
            let total: u64 = rows.first().and_then(|r| num(r, 8)).unwrap_or(0);
            s.tables = rows.iter().map(table_row).collect();
            s.tables_dropped = total.saturating_sub(s.tables.len() as u64);
        }
        Err(e) => s.errors.push(format!("tables: {e}")),
    }
    match db
        .query(CONNECTIONS_SQL, &[Some(ADVISOR_APPLICATION_NAME)])
        .await
    {
        Ok(rows) => {
            for r in &rows {
                if let (Some(state), Some(n)) = (text(r, 0), num::<u64>(r, 1)) {
                    s.connections.insert(state, n);
                }
            }
        }
        Err(e) => s.errors.push(format!("connections: {e}")),
    }
    match db
        .query(
            LONG_TRANSACTIONS_SQL,
            &[
                Some(ADVISOR_APPLICATION_NAME),
                Some(long_s.as_str()),
                Some(max_sessions.as_str()),
            ],
        )
        .await
    {
        Ok(rows) => {
            let total: u64 = rows.first().and_then(|r| num(r, 7)).unwrap_or(0);
            s.long_transactions = rows
                .iter()
                .map(|r| LongTransaction {
                    pid: num(r, 0).unwrap_or(0),
                    user: text(r, 1),
                    application_name: text(r, 2),
                    state: text(r, 3),
                    duration_s: num(r, 4).unwrap_or(0.0),
                    wait_event_type: text(r, 5),
                    wait_event: text(r, 6),
                })
                .collect();
            s.long_transactions_dropped = total.saturating_sub(s.long_transactions.len() as u64);
            // Oldest first, so the first is the longest.
            s.longest_transaction_s = s.long_transactions.first().map(|t| t.duration_s);
        }
        Err(e) => s.errors.push(format!("long transactions: {e}")),
    }
    match db.query(BLOCKED_SQL, &[Some(max_sessions.as_str())]).await {
        Ok(rows) => {
            let total: u64 = rows.first().and_then(|r| num(r, 8)).unwrap_or(0);
            s.blocked = rows
                .iter()
                .map(|r| BlockedSession {
                    pid: num(r, 0).unwrap_or(0),
                    user: text(r, 1),
                    application_name: text(r, 2),
                    state: text(r, 3),
                    waiting_s: num(r, 4).unwrap_or(0.0),
                    wait_event_type: text(r, 5),
                    wait_event: text(r, 6),
                    blocked_by: text(r, 7)
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|p| p.trim().parse().ok())
                        .collect(),
                })
                .collect();
            s.blocked_dropped = total.saturating_sub(s.blocked.len() as u64);
        }
        Err(e) => s.errors.push(format!("blocked sessions: {e}")),
    }
    s
}

fn table_row(r: &Row) -> TableHealth {
    let schema = text(r, 0).unwrap_or_default();
    let name = text(r, 1).unwrap_or_default();
    let live = num(r, 2).unwrap_or(0);
    let dead = num(r, 3).unwrap_or(0);
    TableHealth {
        table: if schema == "public" {
            name
        } else {
            format!("{schema}.{name}")
        },
        live_tuples: live,
        dead_tuples: dead,
        bloat_ratio: bloat_ratio(live, dead),
        last_autovacuum: text(r, 4),
        last_vacuum: text(r, 5),
        autovacuum_due: flag(r, 6),
        autovacuum_enabled: flag(r, 7),
    }
}

/// The latest sample of each database, and how many samples failed:
/// written by the sampler, read by the API, the console and /metrics.
#[derive(Debug, Default)]
pub struct HealthBoard {
    samples: RwLock<BTreeMap<String, Arc<HealthSample>>>,
    /// Samples (or parts of one) that failed, per database.
    errors: RwLock<HashMap<String, u64>>,
}

impl HealthBoard {
    pub fn record(&self, sample: HealthSample) {
        if !sample.errors.is_empty() {
            let mut errors = self.errors.write().unwrap_or_else(|e| e.into_inner());
            *errors.entry(sample.database.clone()).or_default() += sample.errors.len() as u64;
        }
        let mut samples = self.samples.write().unwrap_or_else(|e| e.into_inner());
        samples.insert(sample.database.clone(), Arc::new(sample));
    }

    /// Every database's latest sample, by database name.
    pub fn samples(&self) -> Vec<Arc<HealthSample>> {
        let samples = self.samples.read().unwrap_or_else(|e| e.into_inner());
        samples.values().cloned().collect()
    }

    pub fn sample(&self, database: &str) -> Option<Arc<HealthSample>> {
        let samples = self.samples.read().unwrap_or_else(|e| e.into_inner());
        samples.get(database).cloned()
    }

    /// Sampling errors so far, per database.
    pub fn errors(&self) -> Vec<(String, u64)> {
        let errors = self.errors.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, u64)> = errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        out.sort();
        out
    }

    /// Index hygiene of every database, from the latest samples.
    pub fn hygiene(&self) -> Vec<Advice> {
        self.samples()
            .iter()
            .flat_map(|s| s.hygiene.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ratio_is_hits_over_all_reads_and_unknown_before_any() {
        assert_eq!(hit_ratio(99.0, 1.0), Some(0.99));
        assert_eq!(hit_ratio(0.0, 10.0), Some(0.0));
        assert_eq!(hit_ratio(0.0, 0.0), None);
    }

    #[test]
    fn bloat_ratio_is_dead_share_of_all_row_versions() {
        assert_eq!(bloat_ratio(20, 80), 0.8);
        assert_eq!(bloat_ratio(100, 0), 0.0);
        assert_eq!(bloat_ratio(0, 0), 0.0);
        assert_eq!(bloat_ratio(u64::MAX, u64::MAX), 0.5);
    }

    #[test]
    fn table_row_qualifies_other_schemas_and_reads_flags() {
        let row: Row = [
            Some("sales"),
            Some("orders"),
            Some("20"),
            Some("80"),
            None,
            Some("2026-01-01T00:00:00Z"),
            Some("true"),
            Some("false"),
            Some("3"),
        ]
        .iter()
        .map(|v| v.map(str::to_string))
        .collect();
        let t = table_row(&row);
        assert_eq!(t.table, "sales.orders");
        assert_eq!((t.live_tuples, t.dead_tuples), (20, 80));
        assert_eq!(t.bloat_ratio, 0.8);
        assert_eq!(t.last_autovacuum, None);
        assert!(t.autovacuum_due);
        assert!(!t.autovacuum_enabled);
    }

    #[test]
    fn board_keeps_the_latest_sample_per_database_and_counts_errors() {
        let board = HealthBoard::default();
        let mut a = HealthSample {
            database: "a".into(),
            errors: vec!["tables: 42501: permission denied".into()],
            ..HealthSample::default()
        };
        board.record(a.clone());
        a.errors.clear();
        a.cache_hit_ratio = Some(0.5);
        board.record(a);
        assert_eq!(board.sample("a").and_then(|s| s.cache_hit_ratio), Some(0.5));
        assert_eq!(board.errors(), [("a".to_string(), 1)]);
    }
}
