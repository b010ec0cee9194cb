//! Advice on one SQL statement: what it is, which tables it touches, and
//! which well-known anti-patterns it contains.
//!
//! pgvigil runs [`lint`] once per new query fingerprint, on a background
//! thread, never on the forwarding path: a full parse costs tens of
//! microseconds, which the proxy cannot spend per query but can easily spend
//! per distinct statement. That is why this crate uses a real parser
//! (sqlparser, PostgreSQL dialect) where `pgvigil-sql` gets by with a lexer:
//! table names and "is there a WHERE clause" need the statement's structure.
//!
//! The contract is that [`lint`] always returns a report. Text it cannot
//! analyse (sqlparser does not know all of PostgreSQL's grammar: `ROWS
//! FROM`, `VACUUM (...)`, `REINDEX`, `DO`, `WHERE CURRENT OF`, ...) is
//! reported as `parsed: false` with nothing else, because a half-understood
//! statement would produce wrong advice. Hostile or absurd input (deep
//! nesting, huge text) is refused before parsing, so a query that a client
//! sent can never take the analysis thread down.
//!
//! Pure library: no I/O, no clocks, no global state.

mod rules;
mod scan;
mod tables;
mod tag;

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Longer statements are not parsed. Real statements above this size are
/// bulk loads with inlined data, where advice is useless and parsing is
/// slow; the limit also bounds the worst case of everything below.
pub const MAX_SQL_LEN: usize = 64 * 1024;

/// Statements nested deeper than this (counting `(` and `[`) are not parsed.
/// ORM-generated SQL stays well under 20; thousands of nested parentheses
/// are an attack on the parser, whose recursion would otherwise run out of
/// stack before its own limit is reached.
pub const MAX_NESTING: usize = 64;

/// sqlparser's own recursion budget. A nested subquery spends two units per
/// level, so this admits everything [`MAX_NESTING`] admits, and it also
/// stops nesting that has no brackets (`NOT NOT NOT ...`, `CASE` in `CASE`).
const RECURSION_LIMIT: usize = 2 * MAX_NESTING + 64;

/// Above this length the syntax tree is dropped on a thread with a large
/// stack. Some constructs (`a + b + c + ...`, `x::int[][][]...`) are parsed
/// in a loop but nest in the tree, and Rust drops a nested tree
/// recursively, so 64 KiB of `+1` would overflow an ordinary 2 MiB stack.
/// Below this length the depth is bounded by the text (a few thousand
/// levels at most) and dropping in place is safe.
const INLINE_DROP_MAX_LEN: usize = 4 * 1024;

/// Stack for dropping large trees: the deepest tree [`MAX_SQL_LEN`] allows
/// needs a few MiB; the rest is margin. Only touched pages cost memory.
const DROP_STACK_SIZE: usize = 64 * 1024 * 1024;

/// What [`lint`] found out about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LintReport {
    /// Whether sqlparser understood the statement. When false, every other
    /// field is empty: nothing is guessed from text that did not parse.
    pub parsed: bool,
    /// The command, named like PostgreSQL's command tags: `SELECT`,
    /// `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `CREATE TABLE`, `DROP INDEX`,
    /// `SET`, ... A `WITH` query is named for its main statement.
    pub statement: Option<String>,
    /// Tables (and views) the statement reads or changes, as written
    /// (schema-qualified only where the text qualifies them), lower-cased
    /// unless quoted, deduplicated and sorted. CTE names, table functions
    /// and subquery aliases are not tables and are left out.
    pub tables: Vec<String>,
    /// Anti-patterns, at most one per code and message, outermost first.
    pub findings: Vec<Finding>,
}

/// One piece of advice about a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable snake_case identifier (`select_star`, `unbounded_select`,
    /// ...): dashboards and suppression lists key on it, so codes are never
    /// renamed.
    pub code: &'static str,
    /// One sentence for a person: what is wrong, why it matters, and the
    /// usual fix. Never quotes literal values from the statement, which may
    /// hold personal data.
    pub message: String,
}

/// Analyses one statement's SQL text (with literals or `$n` parameters).
///
/// Never panics and never fails: anything it cannot analyse comes back as
/// `parsed: false`. When the text holds several statements, only the first
/// is analysed (pgvigil passes one statement at a time).
pub fn lint(sql: &str) -> LintReport {
    if sql.len() > MAX_SQL_LEN || scan::max_nesting(sql) > MAX_NESTING {
        return LintReport::default();
    }
    // sqlparser is a large third-party grammar: should it (or a rule here)
    // panic on some input, that must cost one report, not the analysis
    // thread. The panic hook still runs, so such a bug is not silent. Stack
    // overflow aborts instead of unwinding, which the checks above and
    // `teardown` are for.
    let parsed = panic::catch_unwind(AssertUnwindSafe(|| parse(sql)));
    let statements = match parsed {
        Ok(Some(statements)) => statements,
        Ok(None) | Err(_) => return LintReport::default(),
    };
    let report = panic::catch_unwind(AssertUnwindSafe(|| {
        statements.first().map(|statement| analyse(statement, sql))
    }));
    teardown(statements, sql.len());
    match report {
        Ok(Some(report)) => report,
        Ok(None) | Err(_) => LintReport::default(),
    }
}

fn parse(sql: &str) -> Option<Vec<Statement>> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .ok()
}

fn analyse(statement: &Statement, sql: &str) -> LintReport {
    LintReport {
        parsed: true,
        statement: Some(tag::command_tag(statement, sql)),
        tables: tables::tables(statement),
        findings: rules::findings(statement),
    }
}

/// Drops the syntax tree where its depth cannot overflow the stack (see
/// [`INLINE_DROP_MAX_LEN`]).
fn teardown(statements: Vec<Statement>, sql_len: usize) {
    if sql_len <= INLINE_DROP_MAX_LEN {
        drop(statements);
        return;
    }
    // ManuallyDrop because a failed spawn drops its closure on this thread,
    // which is exactly what must not happen to a deep tree.
    let statements = ManuallyDrop::new(statements);
    let dropper = std::thread::Builder::new()
        .name("pgvigil-lint-drop".into())
        .stack_size(DROP_STACK_SIZE)
        .spawn(move || drop(ManuallyDrop::into_inner(statements)));
    if let Ok(handle) = dropper {
        // Joining keeps at most one such thread per caller at a time.
        let _ = handle.join();
    }
    // Otherwise no thread could be had (the process is at its limits), and
    // the tree leaks: a few MiB at most, for one rare large statement, beats
    // aborting the process.
}
