//! Behaviour of `normalize` through the public API, one rule per test.

use pgvigil_sql::{normalize, Fingerprint, NormalizedStatement, StatementKind};

fn one(sql: &str) -> NormalizedStatement {
    let mut v = normalize(sql.as_bytes());
    assert_eq!(v.len(), 1, "{sql:?} gave {v:#?}");
    v.remove(0)
}

fn text(sql: &str) -> String {
    one(sql).text.to_string()
}

fn fp(sql: &str) -> Fingerprint {
    one(sql).fingerprint
}

fn constants(sql: &str) -> Vec<String> {
    one(sql)
        .constants
        .iter()
        .map(|r| sql[r.clone()].to_owned())
        .collect()
}

#[track_caller]
fn same_fingerprint(a: &str, b: &str) {
    assert_eq!(fp(a), fp(b), "\n  {a}\n  {b}\nshould share a fingerprint");
}

#[track_caller]
fn different_fingerprint(a: &str, b: &str) {
    assert_ne!(
        fp(a),
        fp(b),
        "\n  {a}\n  {b}\nshould not share a fingerprint"
    );
}

// ---------------------------------------------------------------- literals

#[test]
fn string_with_doubled_quote_is_one_constant() {
    assert_eq!(text("SELECT 'it''s'"), "SELECT $1");
    assert_eq!(constants("SELECT 'it''s', 'x'"), ["'it''s'", "'x'"]);
}

#[test]
fn escape_string_with_backslash_quote_is_one_constant() {
    assert_eq!(text(r"SELECT E'it\'s', e'\\', 1"), "SELECT $1, $2, $3");
    same_fingerprint(r"SELECT E'a\'b'", "SELECT 'x'");
}

#[test]
fn standard_string_backslash_does_not_escape_the_quote() {
    // standard_conforming_strings: 'a\' ends at the second quote.
    assert_eq!(text(r"SELECT 'a\', 1"), "SELECT $1, $2");
}

#[test]
fn unicode_escape_string_with_uescape_is_one_constant() {
    assert_eq!(text(r"SELECT U&'d\0061t\+000061'"), "SELECT $1");
    assert_eq!(
        text("SELECT U&'d!0061t' UESCAPE '!' AS x"),
        "SELECT $1 AS x"
    );
}

#[test]
fn unicode_quoted_identifier_is_an_identifier() {
    assert_eq!(
        text(r#"SELECT U&"d\0061t" FROM t"#),
        r#"SELECT U&"d\0061t" FROM t"#
    );
}

#[test]
fn bit_and_hex_strings_are_constants() {
    assert_eq!(text("SELECT B'1010', x'1F', X'ff'"), "SELECT $1, $2, $3");
}

#[test]
fn national_string_shows_as_n_followed_by_its_placeholder() {
    // pg_stat_statements shows N'abc' as N$1: the N is a type, not part of the literal.
    assert_eq!(text("SELECT N'abc'"), "SELECT N$1");
    assert_eq!(constants("SELECT N'abc'"), ["'abc'"]);
}

#[test]
fn string_continued_on_the_next_line_is_one_constant() {
    assert_eq!(text("SELECT 'a'\n  'b' AS x"), "SELECT $1 AS x");
}

#[test]
fn dollar_quoted_strings_are_constants_whatever_they_hold() {
    assert_eq!(
        text("SELECT $$it's; -- not a comment$$, $tag$ $$ ; $tag$ FROM t"),
        "SELECT $1, $2 FROM t"
    );
}

#[test]
fn quoted_identifier_with_doubled_quotes_is_kept_verbatim() {
    assert_eq!(
        text(r#"SELECT "a""b" FROM "My Table""#),
        r#"SELECT "a""b" FROM "My Table""#
    );
}

#[test]
fn numbers_in_every_notation_are_constants() {
    let sql = "SELECT 42, 3.14, 5., .5, 1e10, 2.5E-3, 1_000_000, 0x1F, 0o17, 0b1010";
    assert_eq!(text(sql), "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10");
    assert_eq!(constants(sql).len(), 10);
}

#[test]
fn number_with_trailing_junk_is_one_constant() {
    assert_eq!(text("SELECT 123abc"), "SELECT $1");
}

#[test]
fn cast_keeps_its_type_and_the_literal_becomes_a_placeholder() {
    assert_eq!(
        text("SELECT '1'::int, '{1,2}'::int[]"),
        "SELECT $1::int, $2::int[]"
    );
}

#[test]
fn existing_parameters_stay_and_constants_are_numbered_after_the_highest() {
    assert_eq!(
        text("SELECT * FROM t WHERE a = $2 AND b = 5 AND c = $1 AND d = 'x'"),
        "SELECT * FROM t WHERE a = $2 AND b = $3 AND c = $1 AND d = $4"
    );
}

#[test]
fn parameter_numbers_are_part_of_the_fingerprint() {
    different_fingerprint(
        "SELECT * FROM t WHERE a = $1 AND b = $2",
        "SELECT * FROM t WHERE a = $2 AND b = $1",
    );
}

#[test]
fn multi_character_operators_are_kept() {
    assert_eq!(
        text("SELECT d->>'a', d->0, d #>> '{a,b}', d @> '{}', d ? 'k', d ?| array['a'] FROM t"),
        "SELECT d->>$1, d->$2, d #>> $3, d @> $4, d ? $5, d ?| array[$6] FROM t"
    );
}

#[test]
fn operators_are_part_of_the_fingerprint() {
    different_fingerprint(
        "SELECT * FROM t WHERE d @> '{}'",
        "SELECT * FROM t WHERE d <@ '{}'",
    );
    different_fingerprint("SELECT d->'a' FROM t", "SELECT d->>'a' FROM t");
}

#[test]
fn not_equals_spellings_share_a_fingerprint() {
    same_fingerprint(
        "SELECT * FROM t WHERE a != 1",
        "SELECT * FROM t WHERE a <> 1",
    );
}

// --------------------------------------------------------------- constants

#[test]
fn true_and_false_are_constants_but_null_stays() {
    assert_eq!(
        text("UPDATE t SET a = TRUE, b = false, c = NULL"),
        "UPDATE t SET a = $1, b = $2, c = NULL"
    );
    same_fingerprint(
        "SELECT * FROM t WHERE a = true",
        "SELECT * FROM t WHERE a = FALSE",
    );
}

#[test]
fn is_true_and_is_not_false_are_tests_not_constants() {
    assert_eq!(
        text("SELECT * FROM t WHERE a IS TRUE AND b IS NOT FALSE"),
        "SELECT * FROM t WHERE a IS TRUE AND b IS NOT FALSE"
    );
    different_fingerprint(
        "SELECT * FROM t WHERE a IS TRUE",
        "SELECT * FROM t WHERE a IS FALSE",
    );
}

#[test]
fn unary_minus_folds_into_the_number() {
    assert_eq!(
        text("SELECT * FROM t WHERE a = -1"),
        "SELECT * FROM t WHERE a = $1"
    );
    assert_eq!(
        text("SELECT * FROM t WHERE a=-1"),
        "SELECT * FROM t WHERE a=$1"
    );
    assert_eq!(text("SELECT -1.5, - 2"), "SELECT $1, $2");
    assert_eq!(constants("SELECT * FROM t WHERE a = -1"), ["-1"]);
    same_fingerprint(
        "SELECT * FROM t WHERE a = -1",
        "SELECT * FROM t WHERE a = 7",
    );
    same_fingerprint(
        "SELECT * FROM t WHERE a BETWEEN -10 AND 10",
        "SELECT * FROM t WHERE a BETWEEN 0 AND 10",
    );
}

#[test]
fn binary_minus_stays_an_operator() {
    assert_eq!(
        text("SELECT a - 1, a-1, (a) -1, 3 - 1 FROM t"),
        "SELECT a - $1, a-$2, (a) -$3, $4 - $5 FROM t"
    );
    assert_eq!(text("SELECT a - -1 FROM t"), "SELECT a - $1 FROM t");
}

#[test]
fn minus_before_a_cast_is_not_folded() {
    // -1::int is -(1::int): PostgreSQL keeps the minus as an operator.
    assert_eq!(text("SELECT -1::int"), "SELECT -$1::int");
}

#[test]
fn typed_literals_keep_their_type_name() {
    assert_eq!(
        text("SELECT DATE '2024-01-01', interval '1 day', timestamp with time zone '2024-01-01 00:00'"),
        "SELECT DATE $1, interval $2, timestamp with time zone $3"
    );
}

#[test]
fn extract_field_is_a_constant_like_in_postgres() {
    assert_eq!(
        text("SELECT extract(year FROM ts) FROM t"),
        "SELECT extract($1 FROM ts) FROM t"
    );
    same_fingerprint(
        "SELECT extract(year FROM ts) FROM t",
        "SELECT EXTRACT(month FROM ts) FROM t",
    );
}

#[test]
fn order_by_and_group_by_positions_are_not_constants() {
    assert_eq!(
        text("SELECT a, count(*) FROM t GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"),
        "SELECT a, count(*) FROM t GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1"
    );
    different_fingerprint(
        "SELECT a, b FROM t ORDER BY 1",
        "SELECT a, b FROM t ORDER BY 2",
    );
    // An expression in ORDER BY still has constants.
    assert_eq!(
        text("SELECT a FROM t ORDER BY a + 1"),
        "SELECT a FROM t ORDER BY a + $1"
    );
}

#[test]
fn type_modifiers_are_not_constants_but_their_values_do_not_count() {
    assert_eq!(
        text("SELECT name::varchar(10), CAST(p AS numeric(10, 2)) FROM t"),
        "SELECT name::varchar(10), CAST(p AS numeric(10, 2)) FROM t"
    );
    // pg_stat_statements gives these one query id.
    same_fingerprint(
        "SELECT name::varchar(10) FROM t",
        "SELECT name::varchar(12) FROM t",
    );
    different_fingerprint(
        "SELECT name::varchar(10) FROM t",
        "SELECT name::varchar FROM t",
    );
}

#[test]
fn savepoint_names_are_constants() {
    assert_eq!(text("SAVEPOINT active_record_1"), "SAVEPOINT $1");
    assert_eq!(text("RELEASE SAVEPOINT s1"), "RELEASE SAVEPOINT $1");
    assert_eq!(
        text("ROLLBACK TO SAVEPOINT \"s 2\""),
        "ROLLBACK TO SAVEPOINT $1"
    );
    same_fingerprint("SAVEPOINT s140234_x1", "SAVEPOINT s140234_x2");
}

#[test]
fn transaction_commands_spelled_differently_share_a_fingerprint() {
    same_fingerprint("COMMIT", "end transaction");
    same_fingerprint("ROLLBACK", "ABORT WORK");
    same_fingerprint("BEGIN", "BEGIN TRANSACTION");
    same_fingerprint("ROLLBACK TO SAVEPOINT a", "rollback transaction to b");
    same_fingerprint("RELEASE SAVEPOINT a", "RELEASE b");
    different_fingerprint("BEGIN", "START TRANSACTION");
    different_fingerprint("BEGIN", "BEGIN ISOLATION LEVEL SERIALIZABLE");
    different_fingerprint("COMMIT", "ROLLBACK");
    assert_eq!(text("end work"), "end work");
}

#[test]
fn function_bodies_are_code_not_constants() {
    let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$";
    assert_eq!(text(sql), sql);
    different_fingerprint(
        sql,
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$",
    );
}

#[test]
fn do_block_literals_become_placeholders_in_every_quoting() {
    assert_eq!(
        text("DO $$BEGIN PERFORM 1; END$$"),
        "DO $$ BEGIN PERFORM $1; END $$"
    );
    assert_eq!(
        text("DO $$ BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''hunter2'''; END $$"),
        "DO $$ BEGIN EXECUTE $1; END $$"
    );
    assert_eq!(
        text("DO $body$ BEGIN INSERT INTO t VALUES ('secret', 42, $q$also$q$); END $body$"),
        "DO $body$ BEGIN INSERT INTO t VALUES ($1, $2, $3); END $body$"
    );
    assert_eq!(
        text("DO LANGUAGE plpgsql $$ BEGIN RAISE NOTICE 'secret'; END $$"),
        "DO LANGUAGE plpgsql $$ BEGIN RAISE NOTICE $1; END $$"
    );
    // A single-quoted body: its doubled quotes are the literal's own.
    assert_eq!(
        text("DO 'BEGIN RAISE NOTICE ''secret''; END'"),
        "DO ' BEGIN RAISE NOTICE $1; END '"
    );
    // Comments in the body may hold anything; they go.
    assert_eq!(
        text("DO $$ BEGIN /* key=secret */ PERFORM 1; -- secret\n END $$"),
        "DO $$ BEGIN PERFORM $1; END $$"
    );
}

#[test]
fn do_bodies_that_cannot_be_taken_apart_become_one_placeholder() {
    assert_eq!(text("DO $a$ never closed 'secret'"), "DO $1");
    assert_eq!(text(r"DO E'BEGIN RAISE NOTICE \'secret\'; END'"), "DO $1");
    // Elsewhere a dollar-quoted string is a value like any other.
    assert_eq!(text("SELECT $$secret$$, $t$x$t$"), "SELECT $1, $2");
}

#[test]
fn do_blocks_differing_only_in_values_share_a_fingerprint() {
    same_fingerprint(
        "DO $$ BEGIN INSERT INTO audit VALUES ('alice', 1); END $$",
        "DO $$ BEGIN INSERT INTO audit VALUES ('bob', 2); END $$",
    );
    different_fingerprint(
        "DO $$ BEGIN INSERT INTO audit VALUES ('alice'); END $$",
        "DO $$ BEGIN DELETE FROM audit WHERE who = 'alice'; END $$",
    );
}

#[test]
fn constants_hash_tells_values_apart_and_fingerprint_does_not() {
    let a = one("SELECT * FROM users WHERE id = 1");
    let b = one("SELECT * FROM users WHERE id = 2");
    let c = one("select *  from users where id = 1");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.constants_hash, b.constants_hash);
    assert_eq!(a.constants_hash, c.constants_hash);
    // The boundary between values counts.
    assert_ne!(
        one("SELECT 'ab', 'c'").constants_hash,
        one("SELECT 'a', 'bc'").constants_hash
    );
}

// ------------------------------------------------------------------- lists

#[test]
fn in_list_of_constants_collapses_whatever_its_length() {
    assert_eq!(
        text("SELECT * FROM t WHERE id IN (1, 2, 3)"),
        "SELECT * FROM t WHERE id IN ($1, ...)"
    );
    assert_eq!(
        text("SELECT * FROM t WHERE id IN (7)"),
        "SELECT * FROM t WHERE id IN ($1)"
    );
    same_fingerprint(
        "SELECT * FROM t WHERE id IN (7)",
        "SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5)",
    );
    same_fingerprint(
        "SELECT * FROM t WHERE id NOT IN ('a')",
        "SELECT * FROM t WHERE id NOT IN ('b', 'c')",
    );
    different_fingerprint(
        "SELECT * FROM t WHERE id IN (1)",
        "SELECT * FROM t WHERE id NOT IN (1)",
    );
}

#[test]
fn collapsed_list_keeps_every_value_in_the_constants() {
    let s = "SELECT * FROM t WHERE id IN (1, -2, '3') AND x = 4";
    assert_eq!(constants(s), ["1", "-2", "'3'", "4"]);
    assert_eq!(text(s), "SELECT * FROM t WHERE id IN ($1, ...) AND x = $2");
    assert_ne!(
        one("SELECT * FROM t WHERE id IN (1, 2)").constants_hash,
        one("SELECT * FROM t WHERE id IN (1, 3)").constants_hash
    );
}

#[test]
fn in_list_of_parameters_collapses() {
    assert_eq!(
        text("SELECT * FROM t WHERE id IN ($1, $2, $3)"),
        "SELECT * FROM t WHERE id IN ($1, ...)"
    );
    same_fingerprint(
        "SELECT * FROM t WHERE id IN ($1, $2)",
        "SELECT * FROM t WHERE id IN ($1, $2, $3, $4)",
    );
}

#[test]
fn list_elements_may_carry_casts() {
    assert_eq!(
        text("SELECT * FROM t WHERE id IN ('a'::text, 'b'::text)"),
        "SELECT * FROM t WHERE id IN ($1::text, ...)"
    );
    same_fingerprint(
        "SELECT * FROM t WHERE id IN ('a'::character varying)",
        "SELECT * FROM t WHERE id IN ('a'::character varying, 'b'::character varying)",
    );
}

#[test]
fn list_with_anything_but_constants_is_kept() {
    assert_eq!(
        text("SELECT * FROM t WHERE id IN (1, a + 1, NULL)"),
        "SELECT * FROM t WHERE id IN ($1, a + $2, NULL)"
    );
    assert_eq!(
        text("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE v = 1)"),
        "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE v = $1)"
    );
    different_fingerprint(
        "SELECT * FROM t WHERE id IN (a)",
        "SELECT * FROM t WHERE id IN (a, b)",
    );
}

#[test]
fn array_constructor_of_constants_collapses() {
    assert_eq!(
        text("SELECT * FROM t WHERE id = ANY(ARRAY[1, 2, 3])"),
        "SELECT * FROM t WHERE id = ANY(ARRAY[$1, ...])"
    );
    same_fingerprint("SELECT ARRAY[1]", "SELECT array[4, 5, 6, 7]");
    assert_eq!(
        text("SELECT ARRAY[a, 1] FROM t"),
        "SELECT ARRAY[a, $1] FROM t"
    );
}

#[test]
fn multi_row_values_of_constants_collapse() {
    assert_eq!(
        text("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')"),
        "INSERT INTO t (a, b) VALUES ($1, $2), ..."
    );
    assert_eq!(
        text("INSERT INTO t (a, b) VALUES (1, 'x')"),
        "INSERT INTO t (a, b) VALUES ($1, $2)"
    );
    same_fingerprint(
        "INSERT INTO t (a, b) VALUES (1, 'x')",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
    );
    different_fingerprint(
        "INSERT INTO t (a) VALUES (1)",
        "INSERT INTO t (a, b) VALUES (1, 2)",
    );
    assert_eq!(
        text("INSERT INTO t VALUES (1, 2), (3, 4) ON CONFLICT (a) DO NOTHING"),
        "INSERT INTO t VALUES ($1, $2), ... ON CONFLICT (a) DO NOTHING"
    );
}

#[test]
fn values_rows_with_expressions_or_defaults_are_kept() {
    assert_eq!(
        text("INSERT INTO t VALUES (1, now()), (2, now())"),
        "INSERT INTO t VALUES ($1, now()), ($2, now())"
    );
    assert_eq!(
        text("INSERT INTO t VALUES (DEFAULT, 1)"),
        "INSERT INTO t VALUES (DEFAULT, $1)"
    );
}

#[test]
fn values_in_from_clause_collapse_too() {
    assert_eq!(
        text("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)"),
        "SELECT * FROM (VALUES ($1, $2), ...) AS v(id, name)"
    );
}

#[test]
fn numbering_continues_after_a_collapsed_list() {
    assert_eq!(
        text("SELECT * FROM t WHERE a IN (1, 2, 3) AND b = 4 AND c IN (5, 6)"),
        "SELECT * FROM t WHERE a IN ($1, ...) AND b = $2 AND c IN ($3, ...)"
    );
}

// ---------------------------------------------------- comments and tags

#[test]
fn comments_are_dropped_from_the_text_and_the_fingerprint() {
    assert_eq!(
        text("SELECT /* hint */ a -- trailing\nFROM t /* a /* nested */ comment */ WHERE b = 1"),
        "SELECT a FROM t WHERE b = $1"
    );
    same_fingerprint(
        "SELECT a FROM t -- x",
        "/* leading */ SELECT a /* y */ FROM t",
    );
}

#[test]
fn comment_between_tokens_still_separates_them() {
    assert_eq!(text("SELECT/**/a/**/FROM/**/t"), "SELECT a FROM t");
}

#[test]
fn sqlcommenter_tags_are_returned_with_the_statement() {
    let s = one("SELECT * FROM orders WHERE id = 5 /*controller='orders',action='show',route='%2Forders%2F%3Aid'*/");
    assert_eq!(&*s.text, "SELECT * FROM orders WHERE id = $1");
    assert_eq!(
        s.tags,
        [
            ("controller".to_owned(), "orders".to_owned()),
            ("action".to_owned(), "show".to_owned()),
            ("route".to_owned(), "/orders/:id".to_owned()),
        ]
    );
    same_fingerprint(
        "SELECT * FROM orders WHERE id = 5 /*controller='orders'*/",
        "SELECT * FROM orders WHERE id = 6 /*controller='users',traceparent='00-abc-def-01'*/",
    );
}

#[test]
fn sqlcommenter_tags_after_the_semicolon_belong_to_the_statement() {
    let v = normalize(b"SELECT 1; /*action='index'*/");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].tags, [("action".to_owned(), "index".to_owned())]);
}

#[test]
fn ordinary_comments_give_no_tags() {
    assert!(one("SELECT 1 /* note: a = 'b' */").tags.is_empty());
}

// ------------------------------------------------------------ fingerprints

#[test]
fn fingerprint_ignores_whitespace_and_keyword_case() {
    same_fingerprint(
        "SELECT id, name FROM users WHERE id = 1",
        "select\n\tid ,name\r\nfrom   USERS where ID=1",
    );
}

#[test]
fn fingerprint_keeps_the_case_of_quoted_identifiers() {
    different_fingerprint(r#"SELECT * FROM "Users""#, r#"SELECT * FROM "users""#);
    same_fingerprint(r#"SELECT * FROM "users""#, "SELECT * FROM Users");
    different_fingerprint(r#"SELECT * FROM "Users""#, "SELECT * FROM Users");
}

#[test]
fn fingerprint_depends_on_identifiers_and_structure() {
    different_fingerprint("SELECT a FROM t", "SELECT b FROM t");
    different_fingerprint("SELECT a FROM t", "SELECT a FROM t WHERE true");
    different_fingerprint("SELECT ab FROM t", "SELECT a b FROM t");
}

#[test]
fn fingerprint_text_form_is_16_lowercase_hex_digits() {
    let f = fp("SELECT 1");
    let s = f.to_string();
    assert_eq!(s.len(), 16);
    assert!(s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(s.parse::<Fingerprint>(), Ok(f));
}

#[test]
fn fingerprints_are_pinned_across_versions() {
    // Stored fingerprints must keep matching after an upgrade: a change to
    // the hash or to what it covers fails here, and must not ship silently.
    let pinned = [
        ("SELECT 1", "a461c00c530a7033"),
        ("SELECT * FROM users WHERE id = $1", "9935fc563812d079"),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')",
            "affeae60fda7d201",
        ),
        (
            "select * from orders where customer_id in (1,2,3) order by created_at desc limit 10",
            "0b0f99ec3b3d8752",
        ),
        ("BEGIN", "6905bc3b626fbc31"),
    ];
    for (sql, want) in pinned {
        assert_eq!(fp(sql).to_string(), want, "{sql}");
    }
}

#[test]
fn text_that_is_not_sql_still_gets_a_fingerprint() {
    let a = one("this is } not { sql at all ' unterminated");
    assert_eq!(a.kind, StatementKind::Unknown);
    assert_eq!(&*a.text, "this is } not { sql at all $1");
    different_fingerprint("hello world", "hello there");
}

// -------------------------------------------------------------- splitting

#[test]
fn multi_statement_string_gives_one_entry_per_statement() {
    let sql = "BEGIN; UPDATE t SET a = 1 WHERE id = 2;\n  SELECT 'a;b' ; ; COMMIT;";
    let v = normalize(sql.as_bytes());
    let texts: Vec<&str> = v.iter().map(|s| &*s.text).collect();
    assert_eq!(
        texts,
        [
            "BEGIN",
            "UPDATE t SET a = $1 WHERE id = $2",
            "SELECT $1",
            "COMMIT"
        ]
    );
    let spans: Vec<&str> = v.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        spans,
        [
            "BEGIN",
            "UPDATE t SET a = 1 WHERE id = 2",
            "SELECT 'a;b'",
            "COMMIT"
        ]
    );
    // Each statement numbers its own constants.
    assert_eq!(&*v[2].text, "SELECT $1");
}

#[test]
fn semicolons_inside_quotes_comments_and_parentheses_do_not_split() {
    let sql = r#"SELECT ';', $$;$$, E'\';', "a;b" /* ; */ -- ;
        FROM t WHERE x IN (SELECT 1; SELECT 2)"#;
    assert_eq!(normalize(sql.as_bytes()).len(), 1);
}

#[test]
fn begin_atomic_body_is_one_statement() {
    let sql = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC \
               SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END; SELECT a + 1; END; SELECT 3";
    let v = normalize(sql.as_bytes());
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].kind, StatementKind::Ddl("CREATE FUNCTION"));
    assert!(v[0].text.ends_with("SELECT a + $4; END"), "{}", v[0].text);
    assert_eq!(&*v[1].text, "SELECT $1");
}

#[test]
fn begin_transaction_is_not_an_atomic_body() {
    assert_eq!(normalize(b"BEGIN; SELECT 1; END;").len(), 3);
}

#[test]
fn span_covers_the_statement_without_separator_or_whitespace() {
    let sql = "  /* c */ SELECT 1 ;\n\tSELECT 2\n";
    let v = normalize(sql.as_bytes());
    assert_eq!(&sql[v[0].span.clone()], "/* c */ SELECT 1");
    assert_eq!(&sql[v[1].span.clone()], "SELECT 2");
}

#[test]
fn empty_and_comment_only_input_has_no_statements() {
    for sql in ["", "   \n", ";;", "-- nothing", "/* nothing */ ;"] {
        assert!(normalize(sql.as_bytes()).is_empty(), "{sql:?}");
    }
}

#[test]
fn statement_kinds_are_reported() {
    let v = normalize(
        b"WITH x AS (SELECT 1) DELETE FROM t; SET search_path TO a; CREATE INDEX i ON t (a); SAVEPOINT s",
    );
    let kinds: Vec<&str> = v.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["DELETE", "SET", "CREATE INDEX", "SAVEPOINT"]);
}

// ----------------------------------------------------------- robustness

#[test]
fn latin1_bytes_never_fail_and_survive_in_fingerprints() {
    let a = normalize(b"SELECT caf\xe9 FROM t WHERE n = 'gar\xe7on'");
    assert_eq!(a.len(), 1);
    assert_eq!(&*a[0].text, "SELECT caf\u{fffd} FROM t WHERE n = $1");
    let b = normalize(b"SELECT caf\xe8 FROM t WHERE n = 'x'");
    assert_ne!(a[0].fingerprint, b[0].fingerprint);
}

#[test]
fn unterminated_constructs_run_to_the_end_without_failing() {
    for sql in [
        "SELECT 'abc",
        "SELECT $$abc",
        "SELECT /* abc",
        "SELECT \"abc",
        "SELECT E'\\",
        "SELECT (1, 2",
    ] {
        let v = normalize(sql.as_bytes());
        assert_eq!(v.len(), 1, "{sql}");
    }
}

#[test]
fn normalizing_is_deterministic() {
    let sql = b"SELECT a, b FROM t WHERE c IN (1, 2) AND d = 'x' /*k='v'*/";
    assert_eq!(normalize(sql), normalize(sql));
}
