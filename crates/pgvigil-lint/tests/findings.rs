//! Each rule fires on the query an ORM really sends and stays quiet on the
//! corrected version of the same query.

use pgvigil_lint::{lint, Finding};

fn codes(sql: &str) -> Vec<&'static str> {
    let report = lint(sql);
    assert!(report.parsed, "expected {sql:?} to parse");
    report.findings.iter().map(|f| f.code).collect()
}

fn fires(code: &str, sql: &str) {
    let found = codes(sql);
    assert!(
        found.contains(&code),
        "{code} should fire on {sql:?}, got {found:?}"
    );
}

fn quiet(code: &str, sql: &str) {
    let found = codes(sql);
    assert!(
        !found.contains(&code),
        "{code} should not fire on {sql:?}, got {found:?}"
    );
}

fn finding(code: &str, sql: &str) -> Finding {
    lint(sql)
        .findings
        .into_iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("{code} should fire on {sql:?}"))
}

#[test]
fn select_star_fires_on_rails_style_star_and_not_on_listed_columns() {
    fires(
        "select_star",
        r#"SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2"#,
    );
    fires("select_star", "SELECT * FROM users WHERE id = $1");
    quiet(
        "select_star",
        r#"SELECT "users"."id", "users"."email" FROM "users" WHERE "users"."id" = $1 LIMIT $2"#,
    );
}

#[test]
fn select_star_ignores_stars_that_do_not_reach_the_client() {
    quiet(
        "select_star",
        "SELECT id FROM users WHERE EXISTS (SELECT * FROM bans WHERE bans.user_id = users.id)",
    );
    quiet("select_star", "SELECT count(*) FROM users WHERE active");
    quiet(
        "select_star",
        "WITH recent AS (SELECT * FROM orders WHERE created_at > $1) SELECT id FROM recent",
    );
    fires(
        "select_star",
        "SELECT id FROM a WHERE x = 1 UNION ALL SELECT * FROM b WHERE y = 2",
    );
}

#[test]
fn unbounded_select_fires_on_a_whole_table_read_and_not_when_filtered_or_paged() {
    let all = r#"SELECT "app_article"."id", "app_article"."title" FROM "app_article""#;
    fires("unbounded_select", all);
    quiet(
        "unbounded_select",
        r#"SELECT "app_article"."id", "app_article"."title" FROM "app_article" WHERE "app_article"."author_id" = $1"#,
    );
    quiet(
        "unbounded_select",
        r#"SELECT "app_article"."id", "app_article"."title" FROM "app_article" ORDER BY "app_article"."id" LIMIT 21"#,
    );
    quiet(
        "unbounded_select",
        "SELECT id, title FROM app_article ORDER BY id FETCH FIRST 20 ROWS ONLY",
    );
    assert!(finding("unbounded_select", all)
        .message
        .contains("app_article"));
}

#[test]
fn unbounded_select_accepts_aggregates_but_not_groups_or_limit_all() {
    quiet(
        "unbounded_select",
        r#"SELECT COUNT(*) AS "__count" FROM "app_article""#,
    );
    quiet("unbounded_select", "SELECT max(id), min(id) FROM orders");
    // A row per group can be a row per table row.
    fires(
        "unbounded_select",
        "SELECT user_id, count(*) FROM orders GROUP BY user_id",
    );
    // LIMIT ALL and a bare OFFSET bound nothing; a window function is not
    // an aggregate.
    fires("unbounded_select", "SELECT id FROM orders LIMIT ALL");
    fires("unbounded_select", "SELECT id FROM orders OFFSET 10");
    fires(
        "unbounded_select",
        "SELECT id, count(*) OVER () FROM orders",
    );
    // A scalar subquery's aggregate is per row of the outer query.
    fires(
        "unbounded_select",
        "SELECT id, (SELECT count(*) FROM items WHERE items.order_id = orders.id) FROM orders",
    );
}

#[test]
fn unbounded_select_needs_a_real_table() {
    quiet("unbounded_select", "SELECT 1");
    quiet("unbounded_select", "SELECT now()");
    quiet(
        "unbounded_select",
        "SELECT * FROM generate_series(1, 10) AS g",
    );
    quiet(
        "unbounded_select",
        "SELECT * FROM unnest($1::int[]) AS u(id)",
    );
    quiet(
        "unbounded_select",
        "SELECT id FROM quotes TABLESAMPLE SYSTEM (1)",
    );
    quiet(
        "unbounded_select",
        "WITH r AS (SELECT id FROM orders WHERE paid) SELECT id FROM r",
    );
    fires(
        "unbounded_select",
        "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
    );
}

#[test]
fn update_without_where_fires_on_a_bare_update_and_not_on_a_keyed_one() {
    fires(
        "update_without_where",
        r#"UPDATE "accounts" SET "balance" = $1"#,
    );
    quiet(
        "update_without_where",
        r#"UPDATE "accounts" SET "balance" = $1 WHERE "accounts"."id" = $2"#,
    );
    assert!(
        finding("update_without_where", "UPDATE accounts SET balance = 0")
            .message
            .contains("accounts")
    );
}

#[test]
fn delete_without_where_fires_on_a_bare_delete_including_inside_a_cte() {
    fires("delete_without_where", r#"DELETE FROM "sessions""#);
    quiet(
        "delete_without_where",
        r#"DELETE FROM "sessions" WHERE "sessions"."expires_at" < $1"#,
    );
    fires(
        "delete_without_where",
        "WITH gone AS (DELETE FROM jobs RETURNING id) SELECT count(*) FROM gone",
    );
    quiet(
        "delete_without_where",
        "WITH gone AS (DELETE FROM jobs WHERE done RETURNING id) SELECT count(*) FROM gone",
    );
}

#[test]
fn leading_wildcard_like_fires_on_contains_patterns_and_not_on_prefix_patterns() {
    fires(
        "leading_wildcard_like",
        r#"SELECT "users"."id" FROM "users" WHERE "users"."name" ILIKE '%smith%' LIMIT 20"#,
    );
    quiet(
        "leading_wildcard_like",
        r#"SELECT "users"."id" FROM "users" WHERE "users"."name" ILIKE 'smith%' LIMIT 20"#,
    );
    fires(
        "leading_wildcard_like",
        "SELECT id FROM users WHERE code LIKE '_BC%'",
    );
    fires(
        "leading_wildcard_like",
        "SELECT id FROM users WHERE name LIKE '%' || $1 || '%'",
    );
    quiet(
        "leading_wildcard_like",
        "SELECT id FROM users WHERE name LIKE $1 || '%'",
    );
    // Django's icontains with the value inlined.
    fires(
        "leading_wildcard_like",
        r#"SELECT "app_user"."id" FROM "app_user" WHERE UPPER("app_user"."email"::text) LIKE UPPER('%@example.com%')"#,
    );
    fires(
        "leading_wildcard_like",
        "SELECT id FROM users WHERE name ~~ '%x'",
    );
}

#[test]
fn leading_wildcard_like_is_quiet_when_the_pattern_is_unknown_or_negated() {
    quiet(
        "leading_wildcard_like",
        "SELECT id FROM users WHERE name LIKE $1",
    );
    quiet(
        "leading_wildcard_like",
        "SELECT id FROM users WHERE name NOT LIKE '%test%' AND id = $1",
    );
    quiet(
        "leading_wildcard_like",
        r"SELECT id FROM users WHERE name LIKE '\%literal%'",
    );
}

#[test]
fn large_offset_fires_on_deep_pages_and_not_on_keyset_pagination() {
    let deep = r#"SELECT "posts"."id" FROM "posts" ORDER BY "posts"."id" LIMIT 20 OFFSET 20000"#;
    fires("large_offset", deep);
    assert!(finding("large_offset", deep).message.contains("20000"));
    quiet(
        "large_offset",
        r#"SELECT "posts"."id" FROM "posts" WHERE "posts"."id" > $1 ORDER BY "posts"."id" LIMIT 20"#,
    );
    quiet(
        "large_offset",
        "SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET 1000",
    );
    quiet(
        "large_offset",
        "SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET $1",
    );
    fires(
        "large_offset",
        "SELECT id FROM (SELECT id FROM posts ORDER BY id OFFSET 5000 ROWS) p WHERE id > 0",
    );
}

#[test]
fn order_by_random_fires_on_random_sampling_and_not_on_ordered_reads() {
    fires(
        "order_by_random",
        r#"SELECT "quotes".* FROM "quotes" ORDER BY RANDOM() LIMIT 1"#,
    );
    quiet(
        "order_by_random",
        r#"SELECT "quotes".* FROM "quotes" WHERE "quotes"."id" >= $1 ORDER BY "quotes"."id" LIMIT 1"#,
    );
    fires(
        "order_by_random",
        "SELECT id FROM quotes WHERE lang = $1 ORDER BY pg_catalog.random() LIMIT 3",
    );
}

#[test]
fn not_in_subquery_fires_on_not_in_select_and_not_on_not_exists() {
    fires(
        "not_in_subquery",
        r#"SELECT "users"."id" FROM "users" WHERE "users"."id" NOT IN (SELECT "bans"."user_id" FROM "bans")"#,
    );
    quiet(
        "not_in_subquery",
        r#"SELECT "users"."id" FROM "users" WHERE NOT EXISTS (SELECT 1 FROM "bans" WHERE "bans"."user_id" = "users"."id")"#,
    );
    quiet(
        "not_in_subquery",
        "SELECT id FROM users WHERE id IN (SELECT user_id FROM admins)",
    );
    quiet(
        "not_in_subquery",
        "SELECT id FROM users WHERE id NOT IN ($1, $2, $3)",
    );
}

#[test]
fn function_on_column_in_where_fires_on_wrapped_columns_and_not_on_bare_ones() {
    fires(
        "function_on_column_in_where",
        r#"SELECT "users"."id" FROM "users" WHERE LOWER("users"."email") = LOWER($1) LIMIT 1"#,
    );
    quiet(
        "function_on_column_in_where",
        r#"SELECT "users"."id" FROM "users" WHERE "users"."email" = $1 LIMIT 1"#,
    );
    fires(
        "function_on_column_in_where",
        r#"SELECT "events"."id" FROM "events" WHERE "events"."created_at"::date = $1"#,
    );
    quiet(
        "function_on_column_in_where",
        r#"SELECT "events"."id" FROM "events" WHERE "events"."created_at" >= $1 AND "events"."created_at" < $2"#,
    );
    fires(
        "function_on_column_in_where",
        "SELECT id FROM events WHERE tenant_id = $1 AND date_trunc('day', created_at) = $2",
    );
    fires(
        "function_on_column_in_where",
        "SELECT id FROM events WHERE EXTRACT(YEAR FROM created_at) = 2024",
    );
    fires(
        "function_on_column_in_where",
        "UPDATE users SET seen = true WHERE lower(email) IN ($1, $2)",
    );
}

#[test]
fn function_on_column_in_where_ignores_functions_of_parameters_and_select_lists() {
    quiet(
        "function_on_column_in_where",
        "SELECT id FROM users WHERE id = $1::bigint",
    );
    quiet(
        "function_on_column_in_where",
        "SELECT id FROM events WHERE created_at > now() - interval '1 day'",
    );
    quiet(
        "function_on_column_in_where",
        "SELECT lower(email) FROM users WHERE id = $1",
    );
    quiet(
        "function_on_column_in_where",
        "SELECT id FROM docs WHERE tenant_id = current_setting('app.tenant')::uuid",
    );
}

#[test]
fn function_on_column_message_names_the_column_and_the_fix() {
    let message = finding(
        "function_on_column_in_where",
        "SELECT id FROM users WHERE lower(email) = $1",
    )
    .message;
    assert!(message.contains("lower()"), "{message}");
    assert!(message.contains("email"), "{message}");
    assert!(message.contains("index"), "{message}");
    let message = finding(
        "function_on_column_in_where",
        "SELECT id FROM events WHERE created_at::date = $1",
    )
    .message;
    assert!(message.contains("created_at >= $1"), "{message}");
}

#[test]
fn messages_are_single_sentences_that_never_quote_literals() {
    let statements = [
        "SELECT * FROM users",
        "UPDATE accounts SET balance = 0",
        "DELETE FROM sessions",
        "SELECT id FROM users WHERE email ILIKE '%secret@example.com' AND id = 1",
        "SELECT id FROM posts WHERE x = 1 ORDER BY id OFFSET 5000",
        "SELECT id FROM quotes WHERE x = 1 ORDER BY random() LIMIT 1",
        "SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM bans WHERE reason = 'secret')",
        "SELECT id FROM users WHERE lower(email) = 'secret@example.com'",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for sql in statements {
        let report = lint(sql);
        assert!(!report.findings.is_empty(), "{sql}");
        for f in report.findings {
            seen.insert(f.code);
            let m = &f.message;
            assert!(m.ends_with('.') && !m.contains('\n'), "{m}");
            let without_ellipses = m.replace("...", "");
            assert!(!without_ellipses.contains(". "), "one sentence: {m}");
            assert!(!m.contains("secret"), "literal leaked into {m}");
        }
    }
    assert_eq!(seen.len(), 9, "every rule covered: {seen:?}");
}

#[test]
fn the_same_finding_in_two_places_is_reported_once() {
    let report =
        lint("SELECT id FROM a WHERE id NOT IN (SELECT x FROM b) AND id NOT IN (SELECT y FROM c)");
    let n = report
        .findings
        .iter()
        .filter(|f| f.code == "not_in_subquery")
        .count();
    assert_eq!(n, 1);
}

#[test]
fn a_clean_orm_query_has_no_findings() {
    let report = lint(
        r#"SELECT "orders"."id", "orders"."total" FROM "orders" INNER JOIN "customers" ON "customers"."id" = "orders"."customer_id" WHERE "customers"."email" = $1 AND "orders"."created_at" >= $2 ORDER BY "orders"."created_at" DESC LIMIT $3"#,
    );
    assert!(report.parsed);
    assert_eq!(report.findings, Vec::new());
}
