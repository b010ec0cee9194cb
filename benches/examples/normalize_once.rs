//! One `normalize` call on the ~200-byte ORM query, for counting its
//! instructions with callgrind (see benches/README.md).

use std::hint::black_box;

fn main() {
    let statements = pgvigil_sql::normalize(black_box(pgvigil_benches::ORM_QUERY.as_bytes()));
    println!(
        "{}",
        statements
            .first()
            .map(|s| s.fingerprint.to_string())
            .unwrap_or_default()
    );
}
