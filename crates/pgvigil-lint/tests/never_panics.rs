//! `lint` never panics, whatever the text.
//!
//! `lint` catches panics (from sqlparser or its own rules) and reports the
//! statement as unparsed, so a panic would not fail these tests by itself.
//! A panic hook counts every panic instead, caught or not, so a rule that
//! panics on some input is found here rather than silently costing that
//! input its report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use pgvigil_lint::lint;
use proptest::prelude::*;

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Lints and checks the report's invariants, returning whether it parsed.
fn lint_checked(sql: &str) -> Result<bool, TestCaseError> {
    count_panics();
    let before = PANICS.load(Ordering::SeqCst);
    let report = lint(sql);
    prop_assert_eq!(
        PANICS.load(Ordering::SeqCst),
        before,
        "panicked on {:?}",
        sql
    );
    if !report.parsed {
        prop_assert!(report.statement.is_none());
        prop_assert!(report.tables.is_empty());
        prop_assert!(report.findings.is_empty());
    } else {
        prop_assert!(report.statement.is_some());
        let mut sorted = report.tables.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(&sorted, &report.tables);
    }
    Ok(report.parsed)
}

/// Statements in the shapes pgvigil sees: ORM queries, DDL, utilities,
/// and the syntax the rules look at.
const CORPUS: &[&str] = &[
    r#"SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2"#,
    r#"SELECT "app_article"."id", "app_article"."title" FROM "app_article" WHERE UPPER("app_article"."title"::text) LIKE UPPER('%rust%') ORDER BY "app_article"."id" DESC LIMIT 21"#,
    "WITH RECURSIVE tree AS (SELECT id, parent_id FROM categories WHERE id = $1 UNION ALL SELECT c.id, c.parent_id FROM categories c JOIN tree t ON c.parent_id = t.id) SELECT id FROM tree",
    "INSERT INTO archive.orders (id, total) SELECT o.id, o.total FROM orders o WHERE o.closed_at < $1 ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total RETURNING id",
    "UPDATE orders o SET paid = true FROM payments p WHERE p.order_id = o.id AND date_trunc('day', p.created_at) = $1",
    "DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.id NOT IN (SELECT user_id FROM admins)",
    "MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT (item, qty) VALUES (d.item, d.qty)",
    "SELECT id FROM quotes WHERE lang = $1 ORDER BY random() LIMIT 1 OFFSET 5000",
    "SELECT u.id, (SELECT count(*) FROM posts p WHERE p.user_id = u.id) FROM (SELECT id FROM users WHERE active) u CROSS JOIN LATERAL (SELECT 1 FROM follows f WHERE f.user_id = u.id LIMIT 1) l",
    "CREATE TABLE IF NOT EXISTS app.widgets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL DEFAULT '', created_at timestamptz DEFAULT now())",
    "CREATE UNIQUE INDEX CONCURRENTLY users_email ON users (lower(email)) WHERE deleted_at IS NULL",
    "ALTER TABLE users ADD COLUMN nickname text, DROP COLUMN legacy",
    "SELECT e.id, e.payload->>'kind' AS kind, e.created_at::date FROM events e WHERE e.created_at::date = $1::date AND e.payload @> '{\"a\": 1}'::jsonb",
    "SELECT $1::text || E'\\n' || $$dollar ' quoted$$ AS s",
    "SELECT CASE WHEN x BETWEEN 1 AND 10 THEN 'low' ELSE 'high' END, coalesce(y, 0) FROM t WHERE z IS DISTINCT FROM $1 GROUP BY 1, 2 HAVING count(*) > 1",
    "SET search_path = app, public",
    "COPY users (id, email) FROM STDIN WITH (FORMAT csv)",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM users",
    "SELECT * FROM ROWS FROM (generate_series(1, 3)) AS t(a)",
    "DO $$BEGIN PERFORM 1; END$$",
];

fn sql_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ILIKE",
        "ORDER",
        "BY",
        "LIMIT",
        "OFFSET",
        "WITH",
        "RECURSIVE",
        "AS",
        "UNION",
        "JOIN",
        "ON",
        "INSERT",
        "INTO",
        "VALUES",
        "UPDATE",
        "SET",
        "DELETE",
        "MERGE",
        "USING",
        "CREATE",
        "TABLE",
        "DROP",
        "*",
        "t",
        "u.id",
        "\"Q\"",
        "(",
        ")",
        "[",
        "]",
        ",",
        ";",
        "=",
        "::",
        "date",
        "||",
        "'%x'",
        "$1",
        "$$x$$",
        "1",
        "1000000",
        "random()",
        "lower(a)",
        "count(*)",
        "--",
        "/*",
        "*/",
        "'",
        "\"",
        "CASE",
        "WHEN",
        "THEN",
        "END",
        "NULL",
        "EXISTS",
        "->",
        "@>",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #[test]
    fn lint_never_panics_on_arbitrary_text(sql in any::<String>()) {
        lint_checked(&sql)?;
    }

    #[test]
    fn lint_never_panics_on_sql_shaped_token_soup(sql in sql_soup()) {
        lint_checked(&sql)?;
    }

    #[test]
    fn lint_never_panics_on_truncated_real_statements(
        index in 0..CORPUS.len(),
        cut in 0.0f64..1.0,
    ) {
        let sql = CORPUS[index];
        let mut end = (sql.len() as f64 * cut) as usize;
        while !sql.is_char_boundary(end) {
            end -= 1;
        }
        lint_checked(&sql[..end])?;
    }

    #[test]
    fn lint_never_panics_on_real_statements_with_a_byte_changed(
        index in 0..CORPUS.len(),
        at in 0.0f64..1.0,
        replacement in prop::sample::select(vec!["(", ")", "'", "\"", "$", "-", "/*", " ", ""]),
    ) {
        let sql = CORPUS[index];
        let mut at = (sql.len() as f64 * at) as usize;
        while !sql.is_char_boundary(at) {
            at -= 1;
        }
        let mut next = at + 1;
        while next < sql.len() && !sql.is_char_boundary(next) {
            next += 1;
        }
        let next = next.min(sql.len());
        let mutated = format!("{}{}{}", &sql[..at], replacement, &sql[next..]);
        lint_checked(&mutated)?;
    }
}

#[test]
fn every_corpus_statement_but_the_known_gaps_parses() {
    for sql in CORPUS {
        let parsed = lint_checked(sql).expect("invariants hold");
        let known_gap = sql.contains("ROWS FROM") || sql.starts_with("DO ");
        assert_eq!(parsed, !known_gap, "{sql}");
    }
}
