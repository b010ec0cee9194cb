//! Cost of turning SQL text into fingerprints on the proxy's hot path.
//!
//! `cargo bench -p pgvigil-benches --bench normalize`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgvigil_benches::{large_query, ORM_QUERY};
use pgvigil_sql::{normalize, NormalizeCache};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");

    g.throughput(Throughput::Bytes(ORM_QUERY.len() as u64));
    g.bench_function("orm_query_200b", |b| {
        b.iter(|| normalize(black_box(ORM_QUERY.as_bytes())))
    });

    let large = large_query();
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("report_query_2kb", |b| {
        b.iter(|| normalize(black_box(large.as_bytes())))
    });

    // A hit: hash the text, probe, compare the bytes, clone an Arc.
    let mut cache = NormalizeCache::new(1024);
    for i in 0..500 {
        cache.get_or_normalize(format!("SELECT * FROM t{i} WHERE id = {i}").as_bytes());
    }
    cache.get_or_normalize(ORM_QUERY.as_bytes());
    g.throughput(Throughput::Bytes(ORM_QUERY.len() as u64));
    g.bench_function("cache_hit_200b", |b| {
        b.iter(|| cache.get_or_normalize(black_box(ORM_QUERY.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
