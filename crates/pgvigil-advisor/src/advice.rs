//! One piece of advice, as `GET /api/advice` and `SHOW ADVICE` give it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceKind {
    CreateIndex,
    UnusedIndex,
    DuplicateIndex,
    InvalidIndex,
    FkWithoutIndex,
}

impl AdviceKind {
    pub const ALL: [AdviceKind; 5] = [
        AdviceKind::CreateIndex,
        AdviceKind::UnusedIndex,
        AdviceKind::DuplicateIndex,
        AdviceKind::InvalidIndex,
        AdviceKind::FkWithoutIndex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdviceKind::CreateIndex => "create_index",
            AdviceKind::UnusedIndex => "unused_index",
            AdviceKind::DuplicateIndex => "duplicate_index",
            AdviceKind::InvalidIndex => "invalid_index",
            AdviceKind::FkWithoutIndex => "fk_without_index",
        }
    }
}

/// How an index recommendation was reached: hypopg re-planned with the
/// index in place, or only the plan's shape suggested it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceMethod {
    Hypopg,
    Heuristic,
}

/// A fingerprint an index would help, with what it costs today.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HelpedFingerprint {
    /// 16 hex digits, as everywhere else in pgvigil.
    pub fingerprint: String,
    pub calls: u64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub kind: AdviceKind,
    pub database: String,
    /// Schema-qualified where the schema is not `public`.
    pub table: String,
    pub columns: Vec<String>,
    /// Ready to run: `CREATE INDEX CONCURRENTLY ...` or `DROP INDEX
    /// CONCURRENTLY ...`.
    pub ddl: String,
    pub cost_before: Option<f64>,
    pub cost_after: Option<f64>,
    /// 1 - cost_after / cost_before.
    pub improvement: Option<f64>,
    pub fingerprints: Vec<HelpedFingerprint>,
    pub saved_ms_per_hour: Option<f64>,
    pub reason: String,
    pub method: AdviceMethod,
}
