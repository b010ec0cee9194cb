//! Which tables a statement touches, and what kind of statement it is.

use pgvigil_lint::lint;

fn tables(sql: &str) -> Vec<String> {
    let report = lint(sql);
    assert!(report.parsed, "expected {sql:?} to parse");
    report.tables
}

fn statement(sql: &str) -> String {
    let report = lint(sql);
    assert!(report.parsed, "expected {sql:?} to parse");
    report.statement.expect("a parsed statement has a tag")
}

#[test]
fn joins_are_collected_qualified_as_written_sorted_and_deduplicated() {
    assert_eq!(
        tables(
            r#"SELECT o.id FROM public.orders o
               JOIN "Customers" c ON c.id = o.customer_id
               LEFT JOIN order_items i ON i.order_id = o.id
               LEFT JOIN Order_Items i2 ON i2.order_id = o.id
               CROSS JOIN (regions r JOIN public.orders o2 ON true)
               WHERE o.id = $1"#
        ),
        ["\"Customers\"", "order_items", "public.orders", "regions"]
    );
}

#[test]
fn unquoted_names_fold_to_lower_case_and_needless_quotes_are_dropped() {
    assert_eq!(
        tables(r#"SELECT 1 FROM Users, "users", "Users", App."Order Items""#),
        ["\"Users\"", "app.\"Order Items\"", "users"]
    );
}

#[test]
fn cte_names_are_not_tables_but_their_bodies_are_read() {
    assert_eq!(
        tables(
            "WITH recent AS (SELECT user_id FROM orders WHERE created_at > $1), \
                  buyers AS (SELECT id FROM users WHERE id IN (SELECT user_id FROM recent)) \
             SELECT b.id FROM buyers b JOIN recent r ON r.user_id = b.id"
        ),
        ["orders", "users"]
    );
}

#[test]
fn a_cte_body_reading_a_table_of_the_same_name_reads_the_table() {
    assert_eq!(
        tables("WITH users AS (SELECT * FROM users WHERE active) SELECT id FROM users"),
        ["users"]
    );
    // ...but a later CTE and the main query see the CTE.
    assert_eq!(
        tables(
            "WITH orders AS (SELECT * FROM invoices), late AS (SELECT * FROM orders) \
             SELECT * FROM late"
        ),
        ["invoices"]
    );
}

#[test]
fn a_recursive_cte_referring_to_itself_is_not_a_table() {
    assert_eq!(
        tables(
            "WITH RECURSIVE tree AS (SELECT id, parent_id FROM categories WHERE id = $1 \
             UNION ALL SELECT c.id, c.parent_id FROM categories c JOIN tree t ON c.parent_id = t.id) \
             SELECT id FROM tree"
        ),
        ["categories"]
    );
}

#[test]
fn subqueries_anywhere_contribute_their_tables() {
    assert_eq!(
        tables(
            "SELECT u.id, (SELECT count(*) FROM posts p WHERE p.user_id = u.id) \
             FROM (SELECT id FROM users WHERE active) u \
             CROSS JOIN LATERAL (SELECT 1 FROM follows f WHERE f.user_id = u.id LIMIT 1) l \
             WHERE EXISTS (SELECT 1 FROM bans b WHERE b.user_id = u.id) \
               AND u.id IN (SELECT user_id FROM admins)"
        ),
        ["admins", "bans", "follows", "posts", "users"]
    );
}

#[test]
fn insert_select_collects_target_and_sources() {
    assert_eq!(
        tables(
            "INSERT INTO archive.orders (id, total) \
             SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE o.closed_at < $1 \
             ON CONFLICT (id) DO NOTHING"
        ),
        ["archive.orders", "customers", "orders"]
    );
    assert_eq!(
        tables(r#"INSERT INTO "users" ("email") VALUES ($1) RETURNING "id""#),
        ["users"]
    );
}

#[test]
fn update_delete_and_merge_collect_targets_and_sources() {
    assert_eq!(
        tables("UPDATE orders o SET paid = true FROM payments p WHERE p.order_id = o.id"),
        ["orders", "payments"]
    );
    assert_eq!(
        tables("DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.banned"),
        ["sessions", "users"]
    );
    assert_eq!(
        tables(
            "MERGE INTO stock s USING deliveries d ON s.item = d.item \
             WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty \
             WHEN NOT MATCHED THEN INSERT (item, qty) VALUES (d.item, d.qty)"
        ),
        ["deliveries", "stock"]
    );
}

#[test]
fn ddl_targets_are_tables() {
    assert_eq!(
        tables("CREATE TABLE IF NOT EXISTS app.widgets (id bigint PRIMARY KEY)"),
        ["app.widgets"]
    );
    assert_eq!(
        tables("CREATE TABLE big_orders AS SELECT * FROM orders WHERE total > 100"),
        ["big_orders", "orders"]
    );
    assert_eq!(
        tables("CREATE UNIQUE INDEX CONCURRENTLY users_email ON users (lower(email))"),
        ["users"]
    );
    assert_eq!(
        tables("ALTER TABLE users ADD COLUMN nickname text"),
        ["users"]
    );
    assert_eq!(tables("DROP TABLE IF EXISTS a, s.b CASCADE"), ["a", "s.b"]);
    assert_eq!(
        tables("TRUNCATE TABLE logs, audit.events"),
        ["audit.events", "logs"]
    );
    assert_eq!(
        tables("CREATE VIEW active_users AS SELECT id FROM users WHERE active"),
        ["active_users", "users"]
    );
    assert_eq!(tables("COPY users (id, email) FROM STDIN"), ["users"]);
    assert_eq!(tables("LOCK TABLE accounts IN SHARE MODE"), ["accounts"]);
}

#[test]
fn table_functions_are_not_tables() {
    assert_eq!(
        tables("SELECT g FROM generate_series(1, 10) AS g JOIN t ON t.id = g"),
        ["t"]
    );
    assert_eq!(
        tables("SELECT * FROM unnest($1::int[]) AS u(id)"),
        Vec::<String>::new()
    );
}

#[test]
fn statements_are_named_like_postgres_command_tags() {
    let cases = [
        ("SELECT 1", "SELECT"),
        ("(SELECT 1)", "SELECT"),
        ("VALUES (1), (2)", "SELECT"),
        ("SELECT 1 UNION SELECT 2", "SELECT"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "SELECT"),
        (
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "INSERT",
        ),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("UPDATE t SET a = 1 WHERE id = 2", "UPDATE"),
        ("DELETE FROM t WHERE id = 2", "DELETE"),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "MERGE",
        ),
        ("CREATE TABLE t (id int)", "CREATE TABLE"),
        ("CREATE TEMP TABLE t (id int)", "CREATE TABLE"),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE VIEW"),
        (
            "CREATE MATERIALIZED VIEW v AS SELECT 1",
            "CREATE MATERIALIZED VIEW",
        ),
        ("CREATE UNIQUE INDEX i ON t (a)", "CREATE INDEX"),
        ("ALTER TABLE t ADD COLUMN b int", "ALTER TABLE"),
        ("DROP TABLE t", "DROP TABLE"),
        ("DROP INDEX IF EXISTS i", "DROP INDEX"),
        ("TRUNCATE t", "TRUNCATE TABLE"),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
            "CREATE FUNCTION",
        ),
        ("CREATE EXTENSION IF NOT EXISTS pg_trgm", "CREATE EXTENSION"),
        ("BEGIN", "BEGIN"),
        ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("SAVEPOINT s1", "SAVEPOINT"),
        ("SET search_path = app, public", "SET"),
        ("SET LOCAL statement_timeout = '5s'", "SET"),
        ("SHOW server_version", "SHOW"),
        ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
        ("COPY t FROM STDIN", "COPY"),
        ("LISTEN jobs", "LISTEN"),
        ("GRANT SELECT ON t TO app", "GRANT"),
        (
            "REFRESH MATERIALIZED VIEW CONCURRENTLY stats",
            "REFRESH MATERIALIZED VIEW",
        ),
    ];
    for (sql, tag) in cases {
        assert_eq!(statement(sql), tag, "{sql}");
    }
}
