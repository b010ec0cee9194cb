//! The statement's command tag, named like PostgreSQL's (`SELECT`,
//! `CREATE INDEX`, `DROP TABLE`, ...).
//!
//! The tree decides where the text alone would be wrong: a `WITH` query is
//! named for its main statement, `VALUES` and `(SELECT ...)` are `SELECT`,
//! and `CREATE OR REPLACE VIEW` is `CREATE VIEW`. For the long tail of
//! utility statements the leading keywords of the text are the tag, which
//! is also how PostgreSQL names most of them.

use sqlparser::ast::{Query, SetExpr, Statement};

use crate::scan;

pub(crate) fn command_tag(statement: &Statement, sql: &str) -> String {
    let tag = match statement {
        Statement::Query(query) => query_tag(query),
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateView(view) if view.materialized => "CREATE MATERIALIZED VIEW",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::Drop { object_type, .. } => return format!("DROP {object_type}"),
        Statement::Truncate(_) => "TRUNCATE TABLE",
        Statement::Copy { .. } => "COPY",
        Statement::Explain { .. } => "EXPLAIN",
        Statement::Set(_) => "SET",
        Statement::ShowVariable { .. } => "SHOW",
        Statement::Commit { .. } => "COMMIT",
        Statement::Rollback { .. } => "ROLLBACK",
        Statement::RefreshMaterializedView(_) => "REFRESH MATERIALIZED VIEW",
        _ => return textual_tag(sql),
    };
    tag.to_owned()
}

/// `WITH ... INSERT` is an INSERT; everything else a query can be
/// (`SELECT`, `VALUES`, `TABLE`, set operations) is a `SELECT`.
fn query_tag(query: &Query) -> &'static str {
    let mut body = &*query.body;
    // Parenthesised queries nest; the walk is a loop so its depth costs
    // no stack.
    while let SetExpr::Query(inner) = body {
        body = &inner.body;
    }
    match body {
        SetExpr::Insert(_) => "INSERT",
        SetExpr::Update(_) => "UPDATE",
        SetExpr::Delete(_) => "DELETE",
        SetExpr::Merge(_) => "MERGE",
        _ => "SELECT",
    }
}

/// Words that sit between `CREATE` / `ALTER` / `DROP` and the kind of
/// object, which PostgreSQL leaves out of the tag.
const MODIFIERS: &[&str] = &[
    "OR",
    "REPLACE",
    "TEMP",
    "TEMPORARY",
    "UNLOGGED",
    "UNIQUE",
    "GLOBAL",
    "LOCAL",
    "TRUSTED",
    "PROCEDURAL",
    "RECURSIVE",
    "CONSTRAINT",
];

/// Object kinds spelled with two words.
const TWO_WORD_OBJECTS: &[(&str, &str)] = &[
    ("MATERIALIZED", "VIEW"),
    ("FOREIGN", "TABLE"),
    ("FOREIGN", "DATA"),
    ("EVENT", "TRIGGER"),
    ("TEXT", "SEARCH"),
    ("ACCESS", "METHOD"),
    ("OPERATOR", "CLASS"),
    ("OPERATOR", "FAMILY"),
    ("USER", "MAPPING"),
    ("DEFAULT", "PRIVILEGES"),
];

fn textual_tag(sql: &str) -> String {
    let words: Vec<String> = scan::leading_words(sql, 8)
        .into_iter()
        .map(str::to_ascii_uppercase)
        .collect();
    let Some(first) = words.first() else {
        return "UNKNOWN".to_owned();
    };
    if !matches!(first.as_str(), "CREATE" | "ALTER" | "DROP") {
        return first.clone();
    }
    let mut rest = words[1..]
        .iter()
        .skip_while(|word| MODIFIERS.contains(&word.as_str()));
    let Some(object) = rest.next() else {
        return first.clone();
    };
    match rest.next() {
        Some(second) if TWO_WORD_OBJECTS.contains(&(object.as_str(), second.as_str())) => {
            format!("{first} {object} {second}")
        }
        _ => format!("{first} {object}"),
    }
}

#[cfg(test)]
mod tests {
    use super::textual_tag;

    #[test]
    fn textual_tag_skips_modifiers_and_keeps_two_word_objects() {
        assert_eq!(
            textual_tag("create or replace function f() ..."),
            "CREATE FUNCTION"
        );
        assert_eq!(
            textual_tag("CREATE UNIQUE INDEX i ON t (a)"),
            "CREATE INDEX"
        );
        assert_eq!(
            textual_tag("ALTER MATERIALIZED VIEW v RENAME TO w"),
            "ALTER MATERIALIZED VIEW"
        );
        assert_eq!(textual_tag("CREATE USER bob"), "CREATE USER");
        assert_eq!(textual_tag("/* x */ begin"), "BEGIN");
        assert_eq!(textual_tag("  "), "UNKNOWN");
    }
}
