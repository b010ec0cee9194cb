//! Properties of fingerprints over generated SQL-like token streams.

use pgvigil_sql::{normalize, Fingerprint};
use proptest::prelude::*;
use proptest::sample::select;

/// A token of the generated statements. Literals carry a kind and a seed
/// so the same stream can be rendered with different values.
#[derive(Clone, Debug)]
enum Tok {
    Keyword(&'static str),
    Ident(&'static str),
    QuotedIdent(&'static str),
    Op(&'static str),
    Punct(&'static str),
    Param(u8),
    Literal(LitKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LitKind {
    Integer,
    Decimal,
    String,
    Bool,
}

// No word that changes what a literal means: BY (positions), type names
// with modifiers, IS (IS TRUE), EXTRACT, SAVEPOINT/RELEASE/ROLLBACK,
// CREATE and DO (function bodies).
const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "values",
    "array",
    "insert",
    "into",
    "update",
    "set",
    "delete",
    "limit",
    "offset",
    "join",
    "left",
    "on",
    "as",
    "case",
    "when",
    "then",
    "else",
    "end",
    "null",
    "coalesce",
    "count",
    "returning",
    "with",
    "union",
    "all",
    "distinct",
    "exists",
    "any",
    "like",
    "between",
    "group",
    "order",
    "asc",
    "desc",
];
const IDENTS: &[&str] = &[
    "a",
    "b",
    "t",
    "users",
    "order_items",
    "created_at",
    "x1",
    "caf\u{e9}",
];
const QUOTED: &[&str] = &["\"Users\"", "\"a b\"", "\"x\"\"y\"", "\"id\""];
const OPS: &[&str] = &[
    "=", "<>", "!=", "<", ">=", "+", "-", "*", "/", "||", "->", "->>", "@>", "?", "#>>", "::",
];
const PUNCT: &[&str] = &["(", ")", "[", "]", ",", ";", "."];

fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        4 => select(KEYWORDS).prop_map(Tok::Keyword),
        4 => select(IDENTS).prop_map(Tok::Ident),
        1 => select(QUOTED).prop_map(Tok::QuotedIdent),
        3 => select(OPS).prop_map(Tok::Op),
        3 => select(PUNCT).prop_map(Tok::Punct),
        1 => (1u8..5).prop_map(Tok::Param),
        4 => select(&[LitKind::Integer, LitKind::Decimal, LitKind::String, LitKind::Bool][..])
            .prop_map(Tok::Literal),
    ]
}

fn stream() -> impl Strategy<Value = Vec<Tok>> {
    proptest::collection::vec(tok(), 1..40)
}

/// One spelling of a literal of `kind`, chosen by `seed`.
fn literal(kind: LitKind, seed: u32) -> String {
    let n = seed % 1000;
    match kind {
        LitKind::Integer => match seed % 4 {
            0 => n.to_string(),
            1 => format!("0x{n:X}"),
            2 => format!("{}_{:03}", n + 1, n),
            _ => format!("{}", u64::from(seed) * 7919),
        },
        LitKind::Decimal => match seed % 3 {
            0 => format!("{n}.{}", seed % 97),
            1 => format!(".{}", n + 1),
            _ => format!("{n}e{}", seed % 9),
        },
        LitKind::String => match seed % 6 {
            0 => format!("'v{n}'"),
            1 => "'it''s'".to_owned(),
            2 => format!("E'\\'{n}\\n'"),
            3 => format!("$$ {n} ' ; $$"),
            4 => format!("$q$ {n} $$ $q$"),
            _ => format!("U&'d\\00{}1'", n % 10),
        },
        LitKind::Bool => if seed & 1 == 0 { "TRUE" } else { "false" }.to_owned(),
    }
}

/// Renders tokens separated by `seps[i]` (which must hold whitespace or a
/// comment so tokens never glue), literal i taking `seeds[i]`.
fn render(toks: &[Tok], seeds: &[u32], seps: &[&str], upper: &[bool]) -> String {
    let mut out = String::new();
    for (i, t) in toks.iter().enumerate() {
        if i > 0 {
            out.push_str(seps.get(i % seps.len().max(1)).copied().unwrap_or(" "));
        }
        let case = |w: &str| {
            if upper.get(i % upper.len().max(1)).copied().unwrap_or(false) {
                w.to_ascii_uppercase()
            } else {
                w.to_owned()
            }
        };
        match t {
            Tok::Keyword(w) | Tok::Ident(w) => out.push_str(&case(w)),
            Tok::QuotedIdent(w) | Tok::Op(w) | Tok::Punct(w) => out.push_str(w),
            Tok::Param(n) => out.push_str(&format!("${n}")),
            Tok::Literal(k) => out.push_str(&literal(*k, seeds.get(i).copied().unwrap_or(0))),
        }
    }
    out
}

fn fingerprints(sql: &str) -> Vec<Fingerprint> {
    normalize(sql.as_bytes())
        .iter()
        .map(|s| s.fingerprint)
        .collect()
}

/// Separators that never change tokenization: no newline right before a
/// string (a newline between two strings continues the first one).
fn separator() -> impl Strategy<Value = &'static str> {
    select(
        &[
            " ",
            "  ",
            "\t",
            " /* c */ ",
            "/**/",
            " /* a /* nested */ b */ ",
        ][..],
    )
}

fn newline_separator() -> impl Strategy<Value = &'static str> {
    select(&[" ", "\n", "\r\n  ", " -- note\n", "\t\n\t"][..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn replacing_a_literal_by_one_of_the_same_kind_keeps_the_fingerprint(
        toks in stream(),
        a in proptest::collection::vec(any::<u32>(), 40),
        b in proptest::collection::vec(any::<u32>(), 40),
    ) {
        let x = render(&toks, &a, &[" "], &[false]);
        let y = render(&toks, &b, &[" "], &[false]);
        prop_assert_eq!(fingerprints(&x), fingerprints(&y), "\n{}\n{}", x, y);
    }

    #[test]
    fn whitespace_comments_and_keyword_case_never_change_the_fingerprint(
        toks in stream(),
        seeds in proptest::collection::vec(any::<u32>(), 40),
        seps in proptest::collection::vec(separator(), 1..8),
        upper in proptest::collection::vec(any::<bool>(), 1..8),
    ) {
        let x = render(&toks, &seeds, &[" "], &[false]);
        let y = render(&toks, &seeds, &seps, &upper);
        prop_assert_eq!(fingerprints(&x), fingerprints(&y), "\n{}\n{}", x, y);
    }

    #[test]
    fn newlines_between_non_string_tokens_never_change_the_fingerprint(
        toks in stream().prop_map(|v| v.into_iter()
            .filter(|t| !matches!(t, Tok::Literal(LitKind::String)))
            .collect::<Vec<_>>()),
        seeds in proptest::collection::vec(any::<u32>(), 40),
        seps in proptest::collection::vec(newline_separator(), 1..8),
    ) {
        let x = render(&toks, &seeds, &[" "], &[false]);
        let y = render(&toks, &seeds, &seps, &[false]);
        prop_assert_eq!(fingerprints(&x), fingerprints(&y), "\n{}\n{}", x, y);
    }

    #[test]
    fn list_length_never_changes_the_fingerprint(
        prefix in select(&[
            "SELECT * FROM t WHERE id IN (",
            "SELECT * FROM t WHERE id NOT IN (",
            "DELETE FROM t WHERE a = 1 AND b IN (",
            "SELECT * FROM t WHERE id = ANY(ARRAY[",
            "SELECT ARRAY[",
        ][..]),
        kind in select(&[LitKind::Integer, LitKind::Decimal, LitKind::String, LitKind::Bool][..]),
        n in 1usize..30,
        m in 1usize..30,
        seeds in proptest::collection::vec(any::<u32>(), 30),
        cast in select(&["", "::int", "::text[]", "::character varying"][..]),
    ) {
        let close = if prefix.contains("ANY(ARRAY[") {
            "])"
        } else if prefix.contains("ARRAY[") {
            "]"
        } else {
            ")"
        };
        let list = |len: usize| {
            let items: Vec<String> = (0..len)
                .map(|i| format!("{}{cast}", literal(kind, seeds[i])))
                .collect();
            format!("{prefix}{}{close} LIMIT 5", items.join(", "))
        };
        let (x, y) = (list(n), list(m));
        prop_assert_eq!(fingerprints(&x), fingerprints(&y), "\n{}\n{}", x, y);
        // Every value is still among the constants.
        let count = |sql: &str| normalize(sql.as_bytes())[0].constants.len();
        prop_assert_eq!(count(&y) - count(&list(1)), m - 1);
    }

    #[test]
    fn values_row_count_never_changes_the_fingerprint(
        arity in 1usize..5,
        n in 1usize..20,
        m in 1usize..20,
        seeds in proptest::collection::vec(any::<u32>(), 100),
        kinds in proptest::collection::vec(
            select(&[LitKind::Integer, LitKind::Decimal, LitKind::String, LitKind::Bool][..]), 5),
    ) {
        let stmt = |rows: usize| {
            let rows: Vec<String> = (0..rows)
                .map(|r| {
                    let vals: Vec<String> = (0..arity)
                        .map(|c| literal(kinds[c], seeds[(r * arity + c) % seeds.len()]))
                        .collect();
                    format!("({})", vals.join(", "))
                })
                .collect();
            format!("INSERT INTO t VALUES {} ON CONFLICT DO NOTHING", rows.join(", "))
        };
        let (x, y) = (stmt(n), stmt(m));
        prop_assert_eq!(fingerprints(&x), fingerprints(&y), "\n{}\n{}", x, y);
    }

    #[test]
    fn normalize_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_invariants(&bytes);
    }

    #[test]
    fn normalize_never_panics_on_sql_shaped_bytes(
        bytes in proptest::collection::vec(
            select(&b"'\"$$$1_aEeUuNnBbXx&\\-/*;:()[],.=<>!@#?+ \n0123456789"[..]), 0..300)
    ) {
        check_invariants(&bytes);
    }
}

fn check_invariants(bytes: &[u8]) {
    let stmts = normalize(bytes);
    let mut last_end = 0;
    for s in &stmts {
        assert!(s.span.start >= last_end && s.span.end <= bytes.len() && s.span.start < s.span.end);
        for c in &s.constants {
            assert!(c.start >= s.span.start && c.end <= s.span.end && c.start < c.end);
        }
        assert!(!s.text.is_empty());
        last_end = s.span.end;
    }
}
