//! What one `lint` call costs for a typical statement. Printed, not
//! asserted (timings depend on the machine and build profile); run with
//! `cargo test --release -p pgvigil-lint --test cost -- --nocapture`.

use std::time::Instant;

use pgvigil_lint::lint;

#[test]
fn time_per_lint_call_for_a_typical_orm_query() {
    let sql = r#"SELECT "orders"."id", "orders"."total" FROM "orders" INNER JOIN "customers" ON "customers"."id" = "orders"."customer_id" WHERE "customers"."email" = $1 AND "orders"."state" = $2 ORDER BY "orders"."id" DESC LIMIT $3"#;
    assert!((180..=230).contains(&sql.len()), "{}", sql.len());
    assert!(lint(sql).parsed);
    let iterations = 2_000;
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(lint(std::hint::black_box(sql)));
    }
    let per_call = start.elapsed() / iterations;
    println!(
        "lint: {per_call:?} per call for a {}-byte query ({iterations} calls)",
        sql.len()
    );
}
