//! One `normalize` call, for counting its instructions with callgrind (see
//! benches/README.md): the ~200-byte ORM query, or the ~2 KB report query
//! with the argument `large`.

use std::hint::black_box;

fn main() {
    let sql = match std::env::args().nth(1).as_deref() {
        Some("large") => pgvigil_benches::large_query(),
        _ => pgvigil_benches::ORM_QUERY.to_owned(),
    };
    let statements = pgvigil_sql::normalize(black_box(sql.as_bytes()));
    let first = statements.first().map(|s| s.fingerprint.to_string());
    println!("{} bytes -> {}", sql.len(), first.unwrap_or_default());
}
