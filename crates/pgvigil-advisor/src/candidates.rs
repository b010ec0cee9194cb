//! Index candidates read off a plan.
//!
//! The plan, not the SQL, is the source: PostgreSQL has already resolved
//! every column of a scan's `Filter`, a join's `Hash Cond` / `Merge Cond` /
//! `Join Filter` and a `Sort Key` to a column of one relation (through
//! views, CTEs and aliases), and deparsed it in a small, regular grammar.
//! Reading that grammar needs no SQL parser, where parsing the client's
//! text would need PostgreSQL's own (pg_query, a C build) to get the same
//! resolution.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::plan::{children, root, LARGE_TABLE_ROWS};

/// An index worth trying on one relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The relation as the plan names it (unqualified; resolved against
    /// the search path by the runner).
    pub relation: String,
    /// Equality columns first, then one range column, then sort columns.
    pub columns: Vec<String>,
    /// A partial index's predicate, in SQL ready for `WHERE`.
    pub predicate: Option<String>,
    /// The leading column is one the scan filters on (not only a join
    /// or sort column): the heuristic judges only these.
    pub from_filter: bool,
    /// Rows the scan is estimated to return (per loop or worker).
    pub scan_rows: f64,
}

/// How a column is compared in one conjunct.
#[derive(Debug, Clone, PartialEq)]
enum Use {
    /// `col = $n`, `col = ANY ($n)`, `col IS NULL`.
    Equality,
    /// `col = 'constant'`: also a partial index's predicate.
    Constant(String),
    Range,
    /// `col = other.col`: a join key.
    Join,
}

#[derive(Debug, Default)]
struct Relation {
    name: String,
    rows: f64,
    equality: Vec<String>,
    constants: Vec<(String, String)>,
    range: Vec<String>,
    join: Vec<String>,
    sort: Vec<String>,
}

impl Relation {
    fn add(list: &mut Vec<String>, col: &str) {
        if !list.iter().any(|c| c == col) {
            list.push(col.to_string());
        }
    }
}

/// Candidates for every relation the plan reads with a sequential scan
/// over many rows: an index cannot help a relation already read through
/// one, and a small table is read faster whole.
pub fn candidates(explain: &Value) -> Vec<Candidate> {
    let Some(top) = root(explain) else {
        return Vec::new();
    };
    // alias -> relation, for every large sequential scan.
    let mut scans: BTreeMap<String, Relation> = BTreeMap::new();
    collect_scans(top, &mut scans);
    if scans.is_empty() {
        return Vec::new();
    }
    let only_alias = (scans.len() == 1).then(|| scans.keys().next().cloned().unwrap_or_default());
    collect_uses(top, &mut scans, only_alias.as_deref());

    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |r: &Relation, columns: Vec<String>, predicate: Option<String>| {
        let Some(first) = columns.first() else {
            return;
        };
        let from_filter = r.equality.contains(first)
            || r.range.contains(first)
            || r.constants.iter().any(|(c, _)| c == first);
        let c = Candidate {
            relation: r.name.clone(),
            from_filter,
            scan_rows: r.rows,
            columns,
            predicate,
        };
        if !out.contains(&c) {
            out.push(c);
        }
    };
    for r in scans.values() {
        let constants: Vec<String> = r.constants.iter().map(|(c, _)| c.clone()).collect();
        let tail: Vec<String> = match r.range.first() {
            Some(range) => vec![range.clone()],
            None => r.sort.clone(),
        };
        let mut full: Vec<String> = r.equality.clone();
        full.extend(constants.iter().cloned());
        full.extend(tail.iter().cloned());
        dedup(&mut full);
        push(r, full, None);
        if !r.constants.is_empty() {
            let mut rest = r.equality.clone();
            rest.extend(tail.iter().cloned());
            dedup(&mut rest);
            let predicate = r
                .constants
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join(" AND ");
            push(r, rest, Some(predicate));
        }
        for col in r
            .equality
            .iter()
            .chain(constants.iter())
            .chain(r.range.iter())
        {
            push(r, vec![col.clone()], None);
        }
        for col in &r.join {
            let mut cols = r.equality.clone();
            cols.push(col.clone());
            dedup(&mut cols);
            push(r, cols, None);
            push(r, vec![col.clone()], None);
        }
        if !r.sort.is_empty() {
            push(r, r.sort.clone(), None);
        }
    }
    out
}

fn dedup(cols: &mut Vec<String>) {
    let mut seen = Vec::new();
    cols.retain(|c| {
        if seen.contains(c) {
            false
        } else {
            seen.push(c.clone());
            true
        }
    });
}

fn num(node: &Value, key: &str) -> Option<f64> {
    node.get(key).and_then(Value::as_f64)
}

fn collect_scans(node: &Value, scans: &mut BTreeMap<String, Relation>) {
    if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
        let rows = match num(node, "Actual Rows") {
            Some(r) => {
                (r + num(node, "Rows Removed by Filter").unwrap_or(0.0))
                    * num(node, "Actual Loops").unwrap_or(1.0)
            }
            None => num(node, "Plan Rows").unwrap_or(0.0),
        };
        // Without actuals, rows out of a filtered scan say nothing of the
        // rows read; its cost does.
        let large = rows >= LARGE_TABLE_ROWS || num(node, "Total Cost").unwrap_or(0.0) >= 1_000.0;
        if let (true, Some(name)) = (large, node.get("Relation Name").and_then(Value::as_str)) {
            let alias = node
                .get("Alias")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string();
            scans.entry(alias).or_insert_with(|| Relation {
                name: name.to_string(),
                rows: num(node, "Plan Rows").unwrap_or(0.0),
                ..Relation::default()
            });
        }
    }
    for c in children(node) {
        collect_scans(c, scans);
    }
}

fn collect_uses(node: &Value, scans: &mut BTreeMap<String, Relation>, only: Option<&str>) {
    let text = |k: &str| node.get(k).and_then(Value::as_str);
    // A scan's own filter: unqualified columns are its own.
    if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan") {
        if let (Some(alias), Some(filter)) = (text("Alias"), text("Filter")) {
            for (alias_of, col, usage) in conjuncts(filter) {
                let a = alias_of.unwrap_or_else(|| alias.to_string());
                if let Some(r) = scans.get_mut(&a) {
                    record(r, &col, usage);
                }
            }
        }
    }
    for key in ["Hash Cond", "Merge Cond", "Join Filter"] {
        if let Some(cond) = text(key) {
            for (alias_of, col, usage) in conjuncts(cond) {
                if let Some(a) = alias_of.or_else(|| only.map(str::to_string)) {
                    if let Some(r) = scans.get_mut(&a) {
                        record(r, &col, usage);
                    }
                }
            }
        }
    }
    if let Some(keys) = node.get("Sort Key").and_then(Value::as_array) {
        let mut cols: Vec<(String, String)> = Vec::new();
        for k in keys.iter().filter_map(Value::as_str) {
            let k = k
                .trim_end_matches(" NULLS FIRST")
                .trim_end_matches(" NULLS LAST")
                .trim_end_matches(" DESC");
            match column_ref(k) {
                Some((alias, col)) => match alias.or_else(|| only.map(str::to_string)) {
                    Some(a) => cols.push((a, col)),
                    None => {
                        cols.clear();
                        break;
                    }
                },
                // An expression: an index on the leading keys still helps,
                // later keys would not.
                None => break,
            }
        }
        // Only keys of one relation make an index that yields the order.
        if let Some((first, _)) = cols.first() {
            if cols.iter().all(|(a, _)| a == first) {
                if let Some(r) = scans.get_mut(first) {
                    for (_, c) in &cols {
                        Relation::add(&mut r.sort, c);
                    }
                }
            }
        }
    }
    for c in children(node) {
        collect_uses(c, scans, only);
    }
}

fn record(r: &mut Relation, col: &str, usage: Use) {
    match usage {
        Use::Equality => Relation::add(&mut r.equality, col),
        Use::Range => Relation::add(&mut r.range, col),
        Use::Join => Relation::add(&mut r.join, col),
        Use::Constant(pred) => {
            if !r.constants.iter().any(|(c, _)| c == col) {
                r.constants.push((col.to_string(), pred));
            }
        }
    }
}

/// Splits a deparsed condition into its top-level AND terms and keeps
/// those of the form `column op value`: (alias if qualified, column,
/// how it is used). Any top-level OR makes the whole condition unusable
/// for a plain btree index.
fn conjuncts(cond: &str) -> Vec<(Option<String>, String, Use)> {
    let cond = strip_parens(cond.trim());
    if split_top(cond, " OR ").len() > 1 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for term in split_top(cond, " AND ") {
        let term = strip_parens(term.trim());
        out.extend(term_use(term));
    }
    out
}

fn term_use(term: &str) -> Vec<(Option<String>, String, Use)> {
    if let Some(lhs) = term.strip_suffix(" IS NULL") {
        return column_ref(lhs)
            .map(|(a, c)| {
                let pred = format!("{} IS NULL", quote_ident(&c));
                vec![(a, c, Use::Constant(pred))]
            })
            .unwrap_or_default();
    }
    let Some((lhs, op, rhs)) = split_operator(term) else {
        return Vec::new();
    };
    let (l, r) = (column_ref(lhs), column_ref(rhs));
    let equality = op == "=";
    let range = matches!(op, "<" | "<=" | ">" | ">=");
    if !equality && !range {
        return Vec::new();
    }
    match (l, r) {
        (Some((la, lc)), Some((ra, rc))) => {
            if la == ra {
                return Vec::new();
            }
            vec![(la, lc, Use::Join), (ra, rc, Use::Join)]
        }
        (Some((a, c)), None) | (None, Some((a, c))) => {
            let value = if column_ref(lhs).is_some() { rhs } else { lhs };
            let usage = if range {
                Use::Range
            } else if is_constant(value) {
                let (col_side, val_side) = (quote_ident(&c), value.trim());
                Use::Constant(format!("{col_side} = {val_side}"))
            } else {
                Use::Equality
            };
            vec![(a, c, usage)]
        }
        (None, None) => Vec::new(),
    }
}

/// A literal the client wrote (pgvigil's normalization turns most into
/// `$n`, but not in every position): `'pending'::text`, `42`, `true`.
fn is_constant(value: &str) -> bool {
    let v = strip_parens(value.trim());
    let v = v.split("::").next().unwrap_or(v).trim();
    let v = strip_parens(v);
    v.starts_with('\'')
        || v == "true"
        || v == "false"
        || (!v.is_empty()
            && v.trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.'))
}

/// `col`, `alias.col`, `"Col"`, `(col)::text`: the alias (if any) and the
/// unquoted column name. Anything else (a function call, an expression)
/// is not a plain column.
pub(crate) fn column_ref(text: &str) -> Option<(Option<String>, String)> {
    let mut t = strip_parens(text.trim());
    // A cast on the column itself: `(name)::text`.
    if let Some(at) = find_top(t, "::") {
        t = strip_parens(t[..at].trim());
    }
    let parts = split_ident_path(t)?;
    match parts.as_slice() {
        [c] => Some((None, c.clone())),
        [a, c] => Some((Some(a.clone()), c.clone())),
        _ => None,
    }
}

/// `a.b` with each part a plain or double-quoted identifier.
fn split_ident_path(t: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = t.chars().peekable();
    loop {
        let mut part = String::new();
        match chars.peek() {
            Some('"') => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        '"' => break,
                        c => part.push(c),
                    }
                }
            }
            Some(c) if c.is_alphabetic() || *c == '_' => {
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        part.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if matches!(part.as_str(), "true" | "false" | "NULL") {
                    return None;
                }
            }
            _ => return None,
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// Strips parentheses that enclose the whole text.
fn strip_parens(mut t: &str) -> &str {
    loop {
        let trimmed = t.trim();
        if trimmed.starts_with('(') && trimmed.ends_with(')') {
            // The opening parenthesis must close at the very end.
            if let Some(close) = matching_close(trimmed) {
                if close == trimmed.len() - 1 {
                    t = &trimmed[1..trimmed.len() - 1];
                    continue;
                }
            }
        }
        return trimmed;
    }
}

fn matching_close(t: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in t.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Byte offsets where `pat` occurs outside quotes and parentheses.
fn top_positions(t: &str, pat: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let bytes = t.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                _ => {
                    if depth == 0 && t[i..].starts_with(pat) {
                        out.push(i);
                        i += pat.len();
                        continue;
                    }
                }
            },
        }
        i += 1;
    }
    out
}

fn find_top(t: &str, pat: &str) -> Option<usize> {
    top_positions(t, pat).first().copied()
}

fn split_top<'a>(t: &'a str, sep: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut start = 0;
    for at in top_positions(t, sep) {
        out.push(&t[start..at]);
        start = at + sep.len();
    }
    out.push(&t[start..]);
    out
}

/// `lhs op rhs` at the top level, for the comparison operators a btree
/// serves; `= ANY (...)` counts as `=`.
fn split_operator(term: &str) -> Option<(&str, &'static str, &str)> {
    for op in [" = ANY ", " <= ", " >= ", " <> ", " = ", " < ", " > "] {
        if let Some(at) = find_top(term, op) {
            let name = match op.trim() {
                "= ANY" | "=" => "=",
                "<=" => "<=",
                ">=" => ">=",
                "<" => "<",
                ">" => ">",
                _ => "<>",
            };
            return Some((&term[..at], name, &term[at + op.len()..]));
        }
    }
    None
}

/// PostgreSQL's reserved key words (and those that cannot be a column
/// name): an identifier that is one must be quoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// As PostgreSQL's `quote_ident`: bare when it is a lower-case name that
/// is not a reserved word, double-quoted (inner quotes doubled) otherwise.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `schema.table` as advice shows it: the schema only when not `public`.
pub fn table_name(schema: &str, table: &str) -> String {
    if schema == "public" {
        quote_ident(table)
    } else {
        format!("{}.{}", quote_ident(schema), quote_ident(table))
    }
}

/// The index definition without `CONCURRENTLY`, as hypopg takes it.
pub fn index_definition(
    schema: &str,
    table: &str,
    columns: &[String],
    predicate: Option<&str>,
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let mut sql = format!(
        "CREATE INDEX ON {} ({})",
        table_name(schema, table),
        cols.join(", ")
    );
    if let Some(p) = predicate {
        sql.push_str(" WHERE ");
        sql.push_str(p);
    }
    sql
}

/// The statement an operator runs: built concurrently so the table stays
/// writable while it builds.
pub fn create_index_ddl(
    schema: &str,
    table: &str,
    columns: &[String],
    predicate: Option<&str>,
) -> String {
    index_definition(schema, table, columns, predicate).replacen(
        "CREATE INDEX ON",
        "CREATE INDEX CONCURRENTLY ON",
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn cols(c: &Candidate) -> Vec<&str> {
        c.columns.iter().map(String::as_str).collect()
    }

    #[test]
    fn unindexed_equality_filter_gives_exactly_that_column() {
        let c = candidates(&fixture(include_str!("fixtures/generic_seq_scan.json")));
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].relation, "orders");
        assert_eq!(cols(&c[0]), ["customer_id"]);
        assert_eq!(c[0].predicate, None);
    }

    #[test]
    fn constant_predicate_suggests_a_partial_index_and_join_and_sort_columns_come_in() {
        let c = candidates(&fixture(include_str!("fixtures/join_sort.json")));
        let orders: Vec<&Candidate> = c.iter().filter(|c| c.relation == "orders").collect();
        // Equality (constant) first, then the range column.
        assert_eq!(cols(orders[0]), ["status", "amount"]);
        assert_eq!(orders[0].predicate, None);
        let partial = orders
            .iter()
            .find(|c| c.predicate.is_some())
            .expect("a partial candidate");
        assert_eq!(cols(partial), ["amount"]);
        assert_eq!(
            partial.predicate.as_deref(),
            Some("status = 'pending'::text")
        );
        assert!(orders.iter().any(|c| cols(c) == ["customer_id"]), "{c:?}");
        let customers: Vec<&Candidate> = c.iter().filter(|c| c.relation == "customers").collect();
        assert_eq!(customers.len(), 1);
        assert_eq!(cols(customers[0]), ["id"]);
    }

    #[test]
    fn sort_keys_follow_equality_columns_when_there_is_no_range() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Sort", "Total Cost": 9000.0, "Sort Key": ["created_at DESC"],
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "orders",
                       "Total Cost": 5000.0, "Plan Rows": 30,
                       "Filter": "(customer_id = $1)"}]}}]);
        let c = candidates(&plan);
        assert_eq!(cols(&c[0]), ["customer_id", "created_at"]);
    }

    #[test]
    fn or_conditions_and_expressions_give_no_candidate() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Seq Scan", "Relation Name": "t", "Alias": "t",
            "Total Cost": 5000.0, "Plan Rows": 30,
            "Filter": "((a = $1) OR (b = $2))"}}]);
        assert!(candidates(&plan).is_empty());
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Seq Scan", "Relation Name": "t", "Alias": "t",
            "Total Cost": 5000.0, "Plan Rows": 30,
            "Filter": "(lower(email) = $1)"}}]);
        assert!(candidates(&plan).is_empty());
    }

    #[test]
    fn small_tables_get_no_candidate() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Seq Scan", "Relation Name": "t", "Alias": "t",
            "Total Cost": 20.0, "Plan Rows": 3, "Filter": "(a = $1)"}}]);
        assert!(candidates(&plan).is_empty());
    }

    #[test]
    fn quoted_and_cast_columns_are_read_back_unquoted() {
        assert_eq!(
            column_ref("(\"Weird \"\"Col\")::text"),
            Some((None, "Weird \"Col".to_string()))
        );
        assert_eq!(
            column_ref("o.customer_id"),
            Some((Some("o".into()), "customer_id".into()))
        );
        assert_eq!(column_ref("'x'::text"), None);
        assert_eq!(column_ref("lower(email)"), None);
    }

    #[test]
    fn ddl_quotes_identifiers_and_qualifies_non_public_schemas() {
        assert_eq!(
            create_index_ddl("public", "orders", &["customer_id".into()], None),
            "CREATE INDEX CONCURRENTLY ON orders (customer_id)"
        );
        assert_eq!(
            create_index_ddl(
                "Sales",
                "order",
                &["User Id".into(), "a\"b".into(), "user".into()],
                Some("status = 'pending'::text")
            ),
            "CREATE INDEX CONCURRENTLY ON \"Sales\".\"order\" (\"User Id\", \"a\"\"b\", \"user\") WHERE status = 'pending'::text"
        );
        assert_eq!(quote_ident("x1$"), "x1$");
        assert_eq!(quote_ident("1x"), "\"1x\"");
    }
}
