//! `ShapeCache::normalize` returns exactly what `normalize` returns, for
//! every text, whichever texts of the same shape came before.

use pgvigil_sql::{normalize, NormalizeCache, NormalizedStatement, ShapeCache};
use proptest::prelude::*;
use proptest::sample::select;

/// What `get_or_normalize_example` says of `sql`, made comparable with
/// `normalize`: each statement with its hash from `hashes` when there are
/// any, and without the parts an example does not vouch for (`constants`,
/// `span`).
fn example_view(
    texts: &mut NormalizeCache,
    shapes: &mut ShapeCache,
    sql: &[u8],
) -> Vec<NormalizedStatement> {
    let mut hashes = vec![u64::MAX; 3];
    let got = texts.get_or_normalize_example(sql, shapes, &mut hashes);
    assert!(hashes.is_empty() || hashes.len() == got.len(), "{hashes:?}");
    got.iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = without_places(s);
            s.constants_hash = hashes.get(i).copied().unwrap_or(s.constants_hash);
            s
        })
        .collect()
}

fn without_places(s: &NormalizedStatement) -> NormalizedStatement {
    let mut s = s.clone();
    s.constants.clear();
    s.span = 0..0;
    s
}

/// Every variant of the pg_stat_statements corpus (groups of statements
/// that differ only in constants), twice over, through one cache.
#[test]
fn corpus_variants_agree_with_normalize() {
    let corpus = include_str!("corpus/statements.sql");
    let mut variants = Vec::new();
    let mut pending = String::new();
    for line in corpus.lines() {
        if pending.is_empty() && (line.starts_with("--") || line.trim().is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix(" \\") {
            pending.push_str(head);
            pending.push('\n');
            continue;
        }
        pending.push_str(line);
        variants.push(std::mem::take(&mut pending));
    }
    assert!(variants.len() > 100, "corpus read: {}", variants.len());
    let mut shapes = ShapeCache::new(4096);
    let mut texts = NormalizeCache::new(16);
    let mut example_shapes = ShapeCache::new(4096).without_constant_places();
    let mut example_texts = NormalizeCache::new(16);
    for round in 0..2 {
        for v in &variants {
            let expected = normalize(v.as_bytes());
            assert_eq!(
                &shapes.normalize(v.as_bytes())[..],
                &expected[..],
                "round {round}: {v}"
            );
            let cached = texts.get_or_normalize_with(v.as_bytes(), &mut shapes);
            assert_eq!(&cached[..], &expected[..], "{v}");
            let seen = example_view(&mut example_texts, &mut example_shapes, v.as_bytes());
            let want: Vec<_> = expected.iter().map(without_places).collect();
            assert_eq!(seen, want, "example, round {round}: {v}");
        }
    }
    assert!(example_shapes.unlexed_hits() > 100);
    assert!(shapes.hits() > variants.len() as u64, "{}", shapes.hits());
}

/// pgbench's TPC-B-like script adds a delta that is negative half the
/// time: `+ 5` and `+ -5` are two shapes with one beginning. Alternating
/// between them (and a third shape with the same beginning) must still
/// be answered from the text's beginning, without lexing, and exactly.
#[test]
fn shapes_sharing_a_beginning_alternate_without_lexing() {
    let mut shapes = ShapeCache::new(64);
    let forms = [
        "UPDATE pgbench_tellers SET tbalance = tbalance + {} WHERE tid = {};",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -{} WHERE tid = {};",
    ];
    let mut n = 0;
    for round in 0..3 {
        for i in 0..20u32 {
            let form = forms[(i as usize + round) % 2];
            let text =
                form.replacen("{}", &(i * 37 + 1).to_string(), 1)
                    .replacen("{}", &i.to_string(), 1);
            assert_eq!(
                &shapes.normalize(text.as_bytes())[..],
                &normalize(text.as_bytes())[..],
                "{text}"
            );
            n += 1;
        }
    }
    assert_eq!(shapes.misses(), 2, "one miss per shape");
    // The first sight of each shape is lexed, and so is the second shape's
    // first sight after the first (the beginning knew only one shape).
    assert_eq!(shapes.unlexed_hits(), n - 2, "hits: {}", shapes.hits());
    let third = "UPDATE pgbench_tellers SET tbalance = tbalance - 3 WHERE tid = 4;";
    assert_eq!(
        &shapes.normalize(third.as_bytes())[..],
        &normalize(third.as_bytes())[..]
    );
    for text in [
        "UPDATE pgbench_tellers SET tbalance = tbalance - 8 WHERE tid = 9;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -8 WHERE tid = 9;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + 8 WHERE tid = 9;",
    ] {
        assert_eq!(
            &shapes.normalize(text.as_bytes())[..],
            &normalize(text.as_bytes())[..],
            "{text}"
        );
    }
}

/// Texts that begin alike and differ around their literals: kinds,
/// prefixes, adjacency, continuation lines, whitespace.
#[test]
fn look_alike_texts_agree_with_normalize() {
    let texts = [
        "SELECT x=1",
        "SELECT x=.5",
        "SELECT x=E'a'",
        "SELECT x='a'",
        "SELECT x=1e5",
        "SELECT x=1.",
        "SELECT x=1..2",
        "SELECT x=12abc",
        "SELECT x=0x1F",
        "SELECT x=$1",
        "SELECT x=$$a$$",
        "SELECT x=$q$a$q$",
        "SELECT x=$",
        "SELECT aE'x'",
        "SELECT a'x'",
        "SELECT a 'x'",
        "SELECT 1'x'",
        "SELECT 2'y'",
        "SELECT x-1",
        "SELECT x--1",
        "SELECT x- -1",
        "SELECT 'a'\n'b'",
        "SELECT 'a' 'b'",
        "SELECT 'c'\n'd'",
        "SELECT 'a''b'",
        "SELECT  1",
        "SELECT 1 ",
        "SELECT 1;",
        "SELECT 1; SELECT 2",
        "SELECT 3; SELECT 4",
        "SELECT b'01'",
        "SELECT x'1F'",
        "SELECT B'01'",
        "SELECT U&'a'",
        "SELECT N'a'",
        "SELECT n'b'",
        "SELECT 1::int",
        "SELECT 2::int",
        "SELECT t.1",
        "SELECT t.2",
        "SELECT 1 /* c */",
        "SELECT 2 /* c */",
        "SELECT 3 -- c",
        "SELECT 4 -- d",
        "SELECT varchar(10)",
        "SELECT x::varchar(10)",
        "SELECT x::varchar(20)",
        "SELECT a FROM t ORDER BY 1",
        "SELECT a FROM t ORDER BY 2",
        "SELECT 'it''s'",
        "SELECT E'a\\'b'",
        "SELECT E'a\\'",
        "SELECT 5 FROM t",
        "SELECT 6FROM t",
    ];
    let mut shapes = ShapeCache::new(64);
    for round in 0..3 {
        for t in texts {
            let t = t.replace("\\n", "\n");
            assert_eq!(
                &shapes.normalize(t.as_bytes())[..],
                &normalize(t.as_bytes())[..],
                "round {round}: {t:?}"
            );
        }
    }
    assert!(shapes.hits() > 0);
}

/// Statements whose literals the generator fills in: values that are
/// constants, and the places where a literal's bytes are kept.
const TEMPLATES: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
    "select * from t where a = {} and b in ({}, {}, {}) order by {} limit {}",
    "SELECT a, b FROM t ORDER BY {}, 2 DESC",
    "SELECT a::varchar({}) FROM t WHERE x = {}",
    "SELECT {}; SELECT -{} /* app='{}' */; UPDATE t SET v = {} WHERE id = {}",
    "INSERT INTO t (a, b) VALUES ({}, {}), ({}, {}) RETURNING id",
    "SELECT ARRAY[{}, -{}]::int[], x IS TRUE, {}::numeric(10, {})",
    "DO $$BEGIN PERFORM {}; END$$",
    "SAVEPOINT s{}",
    "SELECT extract(epoch FROM now()) + {} -- {}\n, 'x' || {}",
    "SELECT {} FROM t GROUP BY {} HAVING count(*) > {}",
];

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        (0u32..1000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b}")),
        "[a-z' ]{0,6}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        select(vec![
            "true", "false", "NULL", "1e5", "0x1F", "$1", "E'\\n'", "$$x$$"
        ])
        .prop_map(String::from),
    ]
}

fn render(template: &str, values: &[String]) -> String {
    let mut out = String::new();
    let mut values = values.iter().cycle();
    let mut parts = template.split("{}").peekable();
    while let Some(p) = parts.next() {
        out.push_str(p);
        if parts.peek().is_some() {
            out.push_str(values.next().map_or("0", String::as_str));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn renderings_of_one_template_agree_with_normalize(
        template in select(TEMPLATES),
        runs in prop::collection::vec(prop::collection::vec(literal(), 1..8), 1..6),
    ) {
        let mut shapes = ShapeCache::new(8);
        let (mut ex_texts, mut ex_shapes) = (NormalizeCache::new(4), ShapeCache::new(8));
        for values in &runs {
            let sql = render(template, values);
            let expected = normalize(sql.as_bytes());
            prop_assert_eq!(&shapes.normalize(sql.as_bytes())[..], &expected[..], "{}", sql);
            let want: Vec<_> = expected.iter().map(without_places).collect();
            prop_assert_eq!(example_view(&mut ex_texts, &mut ex_shapes, sql.as_bytes()), want, "{}", sql);
        }
    }

    #[test]
    fn arbitrary_bytes_agree_with_normalize(
        texts in prop::collection::vec(prop::collection::vec(
            select(b"ab1 2'\"$;:(),-/*e.\n\x80".to_vec()), 0..24), 1..8),
    ) {
        let mut shapes = ShapeCache::new(4);
        let mut cached = NormalizeCache::new(4);
        let mut via_texts = ShapeCache::new(4);
        // Each text twice: a repeat is answered from its own shape (or a
        // shared result), which must still be exact.
        let (mut ex_texts, mut ex_shapes) = (NormalizeCache::new(4), ShapeCache::new(4));
        for t in texts.iter().chain(&texts) {
            let expected = normalize(t);
            prop_assert_eq!(&shapes.normalize(t)[..], &expected[..]);
            prop_assert_eq!(&cached.get_or_normalize_with(t, &mut via_texts)[..], &expected[..]);
            let want: Vec<_> = expected.iter().map(without_places).collect();
            prop_assert_eq!(example_view(&mut ex_texts, &mut ex_shapes, t), want);
        }
    }
}
