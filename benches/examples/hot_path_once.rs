//! The per-statement hot-path operations, for counting their instructions
//! with callgrind (see benches/README.md): 10,000 normalization-cache hits
//! and 10,000 `Insight::record` calls (which include one amortized merge
//! of the thread's buffer into the table).

use std::hint::black_box;
use std::sync::Arc;

use pgvigil_insight::{Execution, Insight, InsightConfig, StatementInfo};
use pgvigil_sql::NormalizeCache;

const N: u64 = 10_000;

fn main() {
    let mut cache = NormalizeCache::new(1024);
    cache.get_or_normalize(pgvigil_benches::ORM_QUERY.as_bytes());
    let mut hits = 0;
    for _ in 0..N {
        hits += cache
            .get_or_normalize(black_box(pgvigil_benches::ORM_QUERY.as_bytes()))
            .len();
    }

    let insight = Insight::new(InsightConfig::default());
    insight.register(Arc::new(StatementInfo {
        fingerprint: 1,
        query: "SELECT $1".into(),
        kind: "SELECT".into(),
    }));
    for n in 0..N {
        insight.record(black_box(Execution {
            fingerprint: 1 + n % 50,
            duration_us: 100 + n % 900,
            rows: 1,
            sqlstate: None,
            caller: 0,
        }));
    }
    println!("{hits} cache hits, {N} executions recorded");
}
