//! Harness for pgvigil's integration tests.
//!
//! * [`PgCluster`]: a throwaway PostgreSQL 15 server in a temporary directory.
//! * [`Pgvigil`]: the real `pgvigil` binary, spawned as a subprocess in front of a cluster.
//! * [`raw`]: a minimal hand-rolled wire-protocol client for the cases where a
//!   real driver hides what the test needs to see (auth request codes, a client
//!   that stops reading).
//! * [`api`]: requests to pgvigil's admin JSON API (`Pgvigil::api_get` and friends).
//! * [`python`]: the Python scripts under `tests/python/` (ORM, drivers).
//! * [`certs`]: a CA and certificates signed by it, for the TLS tests.
//! * [`browser`]: Chromium and the `tests/e2e` scripts; [`books`]: the N+1
//!   workload the dashboard's browser tests show.
//!
//! Every long-lived child process (postgres, pgvigil) is tied to the test process
//! with `PR_SET_PDEATHSIG`, so a crashed or killed test binary leaves nothing behind.
//!
//! Running:
//! ```text
//! cargo build -p pgvigil && cargo test -p pgvigil-integration -- --test-threads 4
//! ```
//! Needs PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin (or
//! `PG_BINDIR`) and psql/pgbench in /usr/bin. As root, the server runs as the
//! `postgres` system user. `PGVIGIL_BIN` overrides the binary under test.
//! A failing test prints the tail of pgvigil's stderr.

pub mod api;
pub mod books;
pub mod browser;
pub mod certs;
pub mod cluster;
pub mod orders;
pub mod python;
pub mod raw;
pub mod repo;
mod spawn;
pub mod util;
pub mod vigil;

pub use api::ApiResponse;
pub use cluster::{shared_cluster, PgCluster};
pub use util::{sqlstate, timed, unique_name, wait_until};
pub use vigil::{PgbenchReport, Pgvigil, PgvigilBuilder, PoolMode};

/// Re-exported so tests use the same versions as the harness.
pub use serde_json;
pub use tokio_postgres;

/// Generates one test per pool mode from an async fn taking a [`PoolMode`] and
/// returning `anyhow::Result<()>`:
///
/// ```text
/// both_modes!(simple_query, check_simple_query);
/// ```
/// defines `simple_query::session_mode` and `simple_query::transaction_mode`.
#[macro_export]
macro_rules! both_modes {
    ($name:ident, $body:ident) => {
        mod $name {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn session_mode() -> ::anyhow::Result<()> {
                super::$body($crate::PoolMode::Session).await
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn transaction_mode() -> ::anyhow::Result<()> {
                super::$body($crate::PoolMode::Transaction).await
            }
        }
    };
}
