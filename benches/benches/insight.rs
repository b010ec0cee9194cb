//! Cost of recording one execution on the hot path: the per-thread buffer
//! push (with its amortized merge into the global table), and the N+1
//! detector's per-statement step.
//!
//! `cargo bench -p pgvigil-benches --bench insight`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use pgvigil_insight::{
    Execution, Insight, InsightConfig, NPlusOneConfig, NPlusOneDetector, Observed, StatementInfo,
};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("insight");

    let insight = Insight::new(InsightConfig::default());
    for fp in 0..100u64 {
        insight.register(Arc::new(StatementInfo {
            fingerprint: fp,
            query: format!("SELECT * FROM t{fp} WHERE id = $1"),
            kind: "SELECT".into(),
        }));
    }
    let mut n = 0u64;
    // Includes the amortized merge every 8192 records (the buffer drains
    // itself), so this is the steady-state cost per statement.
    g.bench_function("record_execution", |b| {
        b.iter(|| {
            n += 1;
            insight.record(black_box(Execution {
                fingerprint: n % 100,
                duration_us: 150 + n % 700,
                rows: 1,
                sqlstate: None,
                caller: 1,
            }))
        })
    });

    let mut detector = NPlusOneDetector::default();
    let config = NPlusOneConfig::default();
    let mut t = 0u64;
    g.bench_function("n_plus_one_observe", |b| {
        b.iter(|| {
            t += 1;
            detector.observe(
                black_box(&Observed {
                    fingerprint: 7,
                    is_select: true,
                    params_hash: t,
                    started_us: t * 1_000,
                    duration_us: 200,
                    in_transaction_before: false,
                    in_transaction_after: false,
                }),
                &config,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
