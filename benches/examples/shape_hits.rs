//! Shape-cache hits, for counting their instructions with callgrind (see
//! benches/README.md): pgbench's select-only statement with 100,000
//! different account ids, after one miss that stores its shape. Total
//! instructions / 100,000 is the cost of normalizing one inlined-value
//! statement on the proxy's hot path.

use std::hint::black_box;

fn main() {
    let mut cache = pgvigil_sql::ShapeCache::new(256);
    let texts: Vec<String> = (0..100_000)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 7 + 1
            )
        })
        .collect();
    let mut fingerprints = 0u64;
    for t in &texts {
        let s = cache.normalize(black_box(t.as_bytes()));
        fingerprints ^= s[0].fingerprint.0;
    }
    println!(
        "{} texts, {} shapes, {fingerprints:x}",
        texts.len(),
        cache.len()
    );
}
