//! What to change, not only what is slow: plans of the statements that
//! matter, indexes to add or drop, and the health of each database.
//!
//! Everything here runs off the hot path, on a connection of pgvigil's
//! own that the proxy opens (`Connector`): this crate speaks SQL through
//! `Database` and never opens a socket, so its rules are tested on plain
//! rows and its SQL against a real PostgreSQL in `tests/`.

mod advice;
pub mod candidates;
mod db;
mod health;
mod hygiene;
pub mod plan;
mod runner;
mod state;

pub use advice::{
    fingerprint_hex, merge, sort_advice, Advice, AdviceKind, AdviceMethod, Finding,
    HelpedFingerprint, Load,
};
pub use db::{Connector, Database, DbError, Row};
pub use health::{
    bloat_ratio, hit_ratio, sample_health, BlockedSession, HealthBoard, HealthSample,
    HealthSettings, LongTransaction, TableHealth, ADVISOR_APPLICATION_NAME,
};
pub use hygiene::{hygiene, hygiene_rules, ForeignKeyInfo, HygieneSettings, IndexInfo};
pub use plan::{summarize, PlanSummary};
pub use runner::{advisor, Advisor, AdvisorHandle, AdvisorStopped, StatementStats, Statements};
pub use state::{AdvisorCounters, AdvisorState, PlanRecord, Sample, Sampler};
