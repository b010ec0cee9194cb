//! The advisor's connections: opened like a pool's (same address, login,
//! TLS and `server_require_auth`), but outside every pool, so advice work
//! never takes a slot a client could be waiting for.

use std::sync::Arc;
use std::time::Duration;

use pgvigil_advisor::{Connector, Database, DbError, Row, StatementStats, Statements};
use pgvigil_insight::{Crossing, Insight, ParameterSample, SortBy, Watcher};

use crate::server::ServerConn;
use crate::{ProxyError, Shared};

pub(crate) struct AdvisorLink {
    shared: Arc<Shared>,
    statement_timeout: Duration,
}

impl AdvisorLink {
    pub(crate) fn new(shared: Arc<Shared>, statement_timeout: Duration) -> AdvisorLink {
        AdvisorLink {
            shared,
            statement_timeout,
        }
    }
}

/// One of the advisor's own server connections.
pub struct AdvisorConn {
    conn: Option<ServerConn>,
    patience: Duration,
}

fn db_error(e: ProxyError) -> DbError {
    match e {
        ProxyError::ServerLogin { code, message } => DbError::Server { code, message },
        other => DbError::Connection(other.to_string()),
    }
}

impl Database for AdvisorConn {
    async fn query(&mut self, sql: &str, params: &[Option<&str>]) -> Result<Vec<Row>, DbError> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| DbError::Connection("connection closed".into()))?;
        // PostgreSQL ends a statement at statement_timeout; a server that
        // stops answering altogether (a network partition) would not, and
        // the advisor would hang with it.
        let answered =
            tokio::time::timeout(self.patience, conn.run_own_extended_query(sql, params)).await;
        let Ok(answered) = answered else {
            self.conn = None;
            return Err(DbError::Connection(format!(
                "no answer within {:?} (twice statement_timeout)",
                self.patience
            )));
        };
        match answered {
            Ok(rows) => Ok(rows),
            Err(e @ ProxyError::ServerLogin { .. }) => Err(db_error(e)),
            Err(e) => {
                // The connection's state is unknown: never use it again.
                self.conn = None;
                Err(db_error(e))
            }
        }
    }
}

impl Drop for AdvisorConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(conn.terminate());
            }
        }
    }
}

impl Connector for AdvisorLink {
    type Db = AdvisorConn;

    fn databases(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .all_pools()
            .iter()
            .map(|p| p.database.to_string())
            .collect();
        names.dedup();
        names
    }

    async fn connect(&self, database: &str) -> Result<AdvisorConn, DbError> {
        // The first pool of the database (by user name) lends its login.
        let pool = self
            .shared
            .all_pools()
            .into_iter()
            .find(|p| &*p.database == database)
            .ok_or_else(|| DbError::Connection(format!("no pool for database {database}")))?;
        let mut conn = ServerConn::connect(&pool.login_target(), 0)
            .await
            .map_err(db_error)?;
        let ms = self.statement_timeout.as_millis().max(1);
        conn.run_own_query(&format!(
            "SET statement_timeout = {ms}; SET application_name = 'pgvigil-advisor'"
        ))
        .await
        .map_err(db_error)?;
        Ok(AdvisorConn {
            conn: Some(conn),
            patience: self.statement_timeout.max(Duration::from_millis(1)) * 2,
        })
    }
}

/// The advisor's view of query insight: which statements run, how much
/// they cost, and in which databases.
pub(crate) struct InsightStatements {
    pub(crate) insight: Option<Arc<pgvigil_insight::Insight>>,
}

fn stats(row: pgvigil_insight::QueryRow) -> StatementStats {
    StatementStats {
        fingerprint: row.fingerprint,
        query: row.query,
        kind: row.statement,
        calls: row.calls,
        total_ms: row.total_ms,
        p95_ms: row.p95_ms,
        first_seen_ms: row.first_seen_ms,
        last_seen_ms: row.last_seen_ms,
    }
}

impl InsightStatements {
    fn top(&self, sort: SortBy, limit: usize) -> Vec<StatementStats> {
        match &self.insight {
            Some(i) => i
                .queries(sort, limit, None, crate::analysis::now_ms())
                .into_iter()
                .map(stats)
                .collect(),
            None => Vec::new(),
        }
    }
}

impl Statements for InsightStatements {
    fn top_by_total_time(&self, limit: usize) -> Vec<StatementStats> {
        self.top(SortBy::TotalTime, limit)
    }

    fn top_by_p95(&self, limit: usize) -> Vec<StatementStats> {
        self.top(SortBy::P95, limit)
    }

    fn get(&self, fingerprint: u64) -> Option<StatementStats> {
        let detail = self
            .insight
            .as_ref()?
            .query(fingerprint, crate::analysis::now_ms())?;
        (detail.row.calls > 0).then(|| stats(detail.row))
    }

    fn databases(&self, fingerprint: u64) -> Vec<String> {
        let Some(detail) = self
            .insight
            .as_ref()
            .and_then(|i| i.query(fingerprint, crate::analysis::now_ms()))
        else {
            return Vec::new();
        };
        let mut dbs: Vec<String> = detail.callers.into_iter().map(|c| c.database).collect();
        dbs.sort();
        dbs.dedup();
        dbs
    }

    fn now_ms(&self) -> u64 {
        crate::analysis::now_ms()
    }
}

/// Tells the advisor about statements as insight learns they matter (a
/// slow execution, a large total time), so their plans are taken at its
/// next run instead of waiting to reach its top list; and lends it the
/// parameter samples insight keeps (`capture_parameters`).
pub(crate) fn connect_insight(insight: &Arc<Insight>, advisor: &pgvigil_advisor::AdvisorHandle) {
    struct PlanRequests(pgvigil_advisor::AdvisorHandle);
    impl Watcher for PlanRequests {
        fn crossed(&self, fingerprint: u64, _crossing: Crossing) {
            self.0.request_plan(fingerprint);
        }
    }
    insight.watch(Arc::new(PlanRequests(advisor.clone())));
    let weak = Arc::downgrade(insight);
    advisor.state.set_sampler(Arc::new(move |fingerprint| {
        let insight = weak.upgrade()?;
        let params = match insight.sample(fingerprint)? {
            ParameterSample::Bound(values) => values,
            ParameterSample::Statement(text) => literal_values(&text)?,
        };
        Some(pgvigil_advisor::Sample { params })
    }));
}

/// The values of a statement's literals, in the order normalization
/// numbers them (`$1`, `$2`, ...), as text: a simple-protocol sample
/// becomes bound values for its normalized text. None when a literal is
/// not a plain number or standard string (escape strings, dollar quotes,
/// collapsed lists), which would not map one to one onto placeholders.
fn literal_values(text: &str) -> Option<Vec<Option<String>>> {
    let statement = pgvigil_sql::normalize(text.as_bytes()).into_iter().next()?;
    if statement.text.contains(", ...") {
        return None;
    }
    statement
        .constants
        .iter()
        .map(|range| {
            let literal = text.get(range.clone())?;
            if let Some(inner) = literal
                .strip_prefix('\'')
                .and_then(|l| l.strip_suffix('\''))
            {
                return Some(Some(inner.replace("\'\'", "\'")));
            }
            let numeric = !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
            numeric.then(|| Some(literal.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_values_in_placeholder_order() {
        assert_eq!(
            literal_values("SELECT * FROM t WHERE a = 42 AND b = 'it''s' AND c > 1.5"),
            Some(vec![
                Some("42".to_string()),
                Some("it's".to_string()),
                Some("1.5".to_string())
            ])
        );
        assert_eq!(literal_values("SELECT 1 FROM t WHERE a = E'\\n'"), None);
        assert_eq!(literal_values("SELECT 1 FROM t WHERE a IN (1, 2, 3)"), None);
        assert_eq!(literal_values("SELECT * FROM t"), Some(vec![]));
    }
}
