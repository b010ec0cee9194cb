//! The advisor's only way to a database: text rows from one statement at
//! a time, with parameters bound (never spliced into SQL).

use std::future::Future;

/// One row in text format; NULL is `None`.
pub type Row = Vec<Option<String>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// PostgreSQL answered with an ErrorResponse; the connection is
    /// still usable once the statement's transaction is closed.
    #[error("{code}: {message}")]
    Server { code: String, message: String },
    /// The connection is gone or could not be opened.
    #[error("{0}")]
    Connection(String),
}

impl DbError {
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Server { code, .. } => Some(code),
            DbError::Connection(_) => None,
        }
    }
}

/// A connection the advisor may run its own statements on.
pub trait Database: Send {
    /// Runs one statement (extended protocol, text results); `params`
    /// bind `$1`, `$2`, ... as text.
    fn query(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;
}

/// Opens connections for the advisor, as the proxy's pools would, but
/// outside them: the advisor never takes a client's slot.
pub trait Connector: Send + Sync + 'static {
    type Db: Database;
    /// Databases the advisor should look at (each configured or
    /// discovered pool's database, once).
    fn databases(&self) -> Vec<String>;
    fn connect(&self, database: &str) -> impl Future<Output = Result<Self::Db, DbError>> + Send;
}
