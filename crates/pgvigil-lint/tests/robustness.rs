//! What `lint` does with text it cannot or should not analyse: it says so
//! (`parsed: false`) and never panics or overflows its stack.
//!
//! The stack tests run on threads with an explicit 2 MiB stack, the Rust
//! default for spawned threads and so what pgvigil's analysis thread has
//! unless it asks for more.

use pgvigil_lint::{lint, LintReport, MAX_SQL_LEN};

const STACK: usize = 2 * 1024 * 1024;

/// Lints on a fresh thread with an ordinary stack. A stack overflow aborts
/// the whole test binary, which fails the run loudly.
fn lint_on_small_stack(sql: String) -> LintReport {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || lint(&sql))
        .expect("spawn")
        .join()
        .expect("lint does not panic")
}

fn assert_unparsed(sql: &str) {
    let report = lint(sql);
    assert_eq!(
        report,
        LintReport::default(),
        "{sql:?} should be reported as unparsed with nothing else"
    );
}

#[test]
fn postgres_syntax_sqlparser_lacks_is_reported_unparsed() {
    let statements = [
        "SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY[1, 2])) AS t(a, b)",
        "VACUUM (VERBOSE, ANALYZE) users",
        "REINDEX TABLE users",
        "REINDEX INDEX CONCURRENTLY users_pkey",
        "DO $$BEGIN PERFORM pg_sleep(0); END$$",
        "DO LANGUAGE plpgsql $$ BEGIN RAISE NOTICE 'hi'; END $$",
        "UPDATE jobs SET state = 'running' WHERE CURRENT OF job_cursor",
        "DELETE FROM jobs WHERE CURRENT OF job_cursor",
        "CLUSTER users USING users_pkey",
        "CHECKPOINT",
        "TABLE users",
    ];
    for sql in statements {
        assert_unparsed(sql);
    }
}

#[test]
fn postgres_syntax_newer_sqlparser_understands_is_analysed() {
    // On the list of statements older sqlparser releases rejected; pinned so
    // an upgrade that changes this is noticed.
    let report = lint("REFRESH MATERIALIZED VIEW CONCURRENTLY daily_stats");
    assert!(report.parsed);
    assert_eq!(report.tables, ["daily_stats"]);
    let report = lint("VACUUM users");
    assert!(report.parsed);
    assert_eq!(report.tables, ["users"]);
}

#[test]
fn garbage_and_empty_input_are_unparsed() {
    for sql in [
        "",
        "   ",
        "-- only a comment",
        "/* unterminated",
        "SELECT * FROM",
        "SELEC 1",
        "SELECT 'unterminated",
        "\0\u{feff}\u{1F600}",
        ")))",
    ] {
        assert_unparsed(sql);
    }
}

#[test]
fn only_the_first_of_several_statements_is_analysed() {
    let report = lint("DELETE FROM sessions; SELECT * FROM users");
    assert!(report.parsed);
    assert_eq!(report.statement.as_deref(), Some("DELETE"));
    assert_eq!(report.tables, ["sessions"]);
    assert!(report.findings.iter().all(|f| f.code != "select_star"));
}

#[test]
fn ten_thousand_nested_parentheses_do_not_overflow_the_stack() {
    let sql = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
    let sql = format!("SELECT {}", "(".repeat(10_000));
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
    let sql = format!("SELECT ARRAY{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
}

#[test]
fn deeply_nested_subqueries_are_unparsed() {
    let depth = 2_000;
    let sql = format!(
        "SELECT * FROM t WHERE a IN {}SELECT 1{}",
        "(SELECT a FROM t WHERE a IN ".repeat(depth) + "(",
        ")".repeat(depth + 1)
    );
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
}

#[test]
fn moderate_nesting_still_parses() {
    let sql = format!(
        "SELECT {}x{} FROM t WHERE id = 1",
        "(".repeat(60),
        ")".repeat(60)
    );
    assert!(lint_on_small_stack(sql).parsed);
    let sql = format!(
        "SELECT id FROM t WHERE a IN {}SELECT 1{}",
        "(SELECT a FROM t WHERE a IN ".repeat(30) + "(",
        ")".repeat(31)
    );
    assert!(lint_on_small_stack(sql).parsed);
}

#[test]
fn deep_nesting_without_brackets_hits_the_parser_recursion_limit() {
    let sql = format!("SELECT {}true", "NOT ".repeat(10_000));
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
    let sql = format!("SELECT {}1", "- ".repeat(10_000));
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
    let sql = format!(
        "SELECT {}1{}",
        "CASE WHEN true THEN ".repeat(3_000),
        " END".repeat(3_000)
    );
    assert_eq!(lint_on_small_stack(sql), LintReport::default());
}

/// The longest text of `unit` repeated that still fits `MAX_SQL_LEN`.
fn longest(prefix: &str, unit: &str, suffix: &str) -> String {
    let n = (MAX_SQL_LEN - prefix.len() - suffix.len()) / unit.len();
    format!("{prefix}{}{suffix}", unit.repeat(n))
}

#[test]
fn the_longest_operator_chains_allowed_do_not_overflow_the_stack() {
    // These parse in a loop but nest in the tree, 30 000+ levels deep.
    for sql in [
        longest("SELECT 1", "+1", " FROM t"),
        longest("SELECT a FROM t WHERE a = 1", " OR a=1", ""),
        longest("SELECT x", "::int", " FROM t"),
        longest("SELECT x::int", "[]", " FROM t"),
        longest("SELECT x FROM t WHERE lower(a", "||a", ") = $1"),
        longest("SELECT j", "->0", " FROM t"),
    ] {
        assert!(sql.len() <= MAX_SQL_LEN);
        let head: String = sql.chars().take(30).collect();
        let report = lint_on_small_stack(sql);
        assert!(report.parsed, "{head}...");
    }
}

#[test]
fn a_long_union_chain_does_not_overflow_the_stack() {
    let sql = longest("SELECT 1", " UNION SELECT 1", "");
    assert!(lint_on_small_stack(sql).parsed);
}

#[test]
fn text_over_the_size_limit_is_unparsed() {
    let values = ", ($1, $2)".repeat(MAX_SQL_LEN / 10);
    let sql = format!("INSERT INTO t (a, b) VALUES ($1, $2){values}");
    assert!(sql.len() > MAX_SQL_LEN);
    assert_unparsed(&sql);
}

#[test]
fn a_large_statement_under_the_limit_is_analysed() {
    let values: String = (0..2_000).map(|i| format!(", ({i}, 'name {i}')")).collect();
    let sql = format!("INSERT INTO public.people (id, name) VALUES (0, 'x'){values}");
    assert!(sql.len() > 16 * 1024 && sql.len() <= MAX_SQL_LEN);
    let report = lint_on_small_stack(sql);
    assert!(report.parsed);
    assert_eq!(report.statement.as_deref(), Some("INSERT"));
    assert_eq!(report.tables, ["public.people"]);
}
