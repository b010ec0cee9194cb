//! Shape-cache hits, for counting their instructions with callgrind (see
//! benches/README.md): pgbench's select-only statement with 100,000
//! different account ids, after one miss that stores its shape. Total
//! instructions / 100,000 is the cost of normalizing one inlined-value
//! statement on the proxy's hot path. With the argument `tpcb`: the five
//! statements with values of pgbench's TPC-B-like script instead, 20,000
//! of each (deltas negative half the time).

use std::hint::black_box;

fn main() {
    let mut cache = pgvigil_sql::ShapeCache::new(256);
    let tpcb = std::env::args().nth(1).as_deref() == Some("tpcb");
    let texts: Vec<String> = (0..100_000)
        .map(|i: i64| {
            if !tpcb {
                return format!(
                    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                    i * 7 + 1
                );
            }
            let (aid, tid, bid) = (i * 7919 % 1_000_000 + 1, i % 100 + 1, i % 10 + 1);
            let delta = (i * 31 % 10_000) - 5_000;
            match i % 5 {
                0 => format!("UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"),
                1 => format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
                2 => format!("UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};"),
                3 => format!("UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid};"),
                _ => format!("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"),
            }
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
