//! The anti-patterns, each a small function over the tree.
//!
//! Two kinds of rule:
//! - about the result the client receives (`select_star`,
//!   `unbounded_select`): only the outermost query counts, since a `*` or
//!   an unfiltered read inside a subquery or CTE says nothing about what
//!   comes back;
//! - about how PostgreSQL must execute some part of the statement (all the
//!   others): they apply wherever that part appears, subqueries and CTEs
//!   included, found with sqlparser's visitor.
//!
//! Rules look at the text as given. Once a value is a `$n` parameter its
//! content is unknown, so `LIKE $1` or `OFFSET $2` never fire: the advice
//! is for what can be seen, and stays quiet otherwise.
//!
//! Everything here walks with loops or sqlparser's visitor (which grows the
//! stack as it recurses), never with plain recursion over expressions, and
//! never formats parts of the tree with `Display` (which recurses freely):
//! a chain like `a + b + c + ...` can be thousands of levels deep.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Delete, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, InTarget, LimitClause, ObjectName, ObjectNamePart, OrderByExpr, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, UnaryOperator, Value, Visit,
    Visitor,
};

use crate::tables::{ident_name, object_name};
use crate::Finding;

/// `OFFSET` above this reads and throws away enough rows to matter.
const LARGE_OFFSET: u64 = 1000;

pub(crate) fn findings(statement: &Statement) -> Vec<Finding> {
    let mut rules = Rules::default();
    if let Statement::Query(query) = statement {
        rules.select_star(query);
        rules.unbounded_select(query);
    }
    let _ = statement.visit(&mut rules);
    rules.found
}

#[derive(Default)]
struct Rules {
    found: Vec<Finding>,
}

impl Rules {
    /// Records a finding unless an identical one is already there (the same
    /// pattern in two subqueries is one piece of advice).
    fn report(&mut self, code: &'static str, message: String) {
        if !self
            .found
            .iter()
            .any(|f| f.code == code && f.message == message)
        {
            self.found.push(Finding { code, message });
        }
    }

    fn select_star(&mut self, query: &Query) {
        let star = outermost_selects(query).into_iter().any(|select| {
            select.projection.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            })
        });
        if star {
            self.report(
                "select_star",
                "SELECT * fetches every column, including large and later-added ones, \
                 which costs I/O and network and breaks callers that rely on column order; \
                 list the columns the caller uses."
                    .to_owned(),
            );
        }
    }

    fn unbounded_select(&mut self, query: &Query) {
        if has_limit(query) {
            return;
        }
        let ctes: Vec<String> = query
            .with
            .iter()
            .flat_map(|with| &with.cte_tables)
            .map(|cte| ident_name(&cte.alias.name))
            .collect();
        for select in outermost_selects(query) {
            if select.selection.is_some() || is_aggregate_only(select) {
                continue;
            }
            let tables = base_tables(&select.from, &ctes);
            if tables.is_empty() {
                continue;
            }
            self.report(
                "unbounded_select",
                format!(
                    "SELECT from {} has no WHERE, LIMIT or FETCH, so it reads the whole table \
                     and its result grows with it; filter it, page it with LIMIT, or \
                     aggregate in SQL.",
                    tables.join(", ")
                ),
            );
        }
    }

    fn update_or_delete(&mut self, statement: &Statement) {
        match statement {
            Statement::Update(update) => match &update.selection {
                Some(selection) => self.function_on_column(selection),
                None => self.report(
                    "update_without_where",
                    format!(
                        "UPDATE of {} has no WHERE, so it rewrites and locks every row \
                         (and bloats the table); add a WHERE clause, or write WHERE true \
                         if every row is really meant.",
                        object_name_of_factor(&update.table.relation)
                    ),
                ),
            },
            Statement::Delete(delete) => match &delete.selection {
                Some(selection) => self.function_on_column(selection),
                None => self.report(
                    "delete_without_where",
                    format!(
                        "DELETE from {} has no WHERE, so it removes every row one by one \
                         (locking and bloating the table); add a WHERE clause, or use \
                         TRUNCATE if emptying the table is intended.",
                        delete_target(delete)
                    ),
                ),
            },
            _ => {}
        }
    }

    fn large_offset(&mut self, query: &Query) {
        let offset = match &query.limit_clause {
            Some(LimitClause::LimitOffset {
                offset: Some(offset),
                ..
            }) => &offset.value,
            Some(LimitClause::OffsetCommaLimit { offset, .. }) => offset,
            _ => return,
        };
        if let Some(rows) = integer_literal(offset).filter(|&rows| rows > LARGE_OFFSET) {
            self.report(
                "large_offset",
                format!(
                    "OFFSET {rows} makes PostgreSQL produce and discard {rows} rows before \
                     returning any, so each later page is slower; paginate by key instead \
                     (WHERE id > $last ORDER BY id LIMIT n)."
                ),
            );
        }
    }

    fn leading_wildcard_like(&mut self, expr: &Expr) {
        let pattern = match expr {
            Expr::Like {
                negated: false,
                any: false,
                pattern,
                ..
            }
            | Expr::ILike {
                negated: false,
                any: false,
                pattern,
                ..
            } => pattern,
            Expr::BinaryOp {
                op: BinaryOperator::PGLikeMatch | BinaryOperator::PGILikeMatch,
                right,
                ..
            } => right,
            _ => return,
        };
        let leading = pattern_prefix(pattern);
        if leading.is_some_and(|p| p.starts_with('%') || p.starts_with('_')) {
            self.report(
                "leading_wildcard_like",
                "LIKE pattern starts with a wildcard (% or _), so no b-tree index can be \
                 used and every row is scanned; anchor the pattern at the start, or add a \
                 pg_trgm GIN index (or full-text search) for substring matches."
                    .to_owned(),
            );
        }
    }

    fn not_in_subquery(&mut self, expr: &Expr) {
        if let Expr::In {
            target: InTarget::Subquery(_),
            negated: true,
            ..
        } = expr
        {
            self.report(
                "not_in_subquery",
                "NOT IN (SELECT ...) returns no rows at all once the subquery yields a NULL \
                 and cannot be planned as an anti-join (it degrades to a per-row scan when \
                 the subquery is large); use NOT EXISTS (SELECT 1 ... WHERE ...) instead."
                    .to_owned(),
            );
        }
    }

    fn order_by_random(&mut self, order_by: &OrderByExpr) {
        let Expr::Function(function) = strip_nested(&order_by.expr) else {
            return;
        };
        if function_name(&function.name) == "random" && has_no_args(&function.args) {
            self.report(
                "order_by_random",
                "ORDER BY random() reads and sorts every candidate row on each call just to \
                 pick a few; use TABLESAMPLE SYSTEM_ROWS, or choose random ids in the \
                 application and fetch them by key."
                    .to_owned(),
            );
        }
    }

    /// Walks the boolean structure of a WHERE clause (AND, OR, NOT,
    /// parentheses) down to its comparisons and reports each side that
    /// wraps a column in a function or cast.
    fn function_on_column(&mut self, selection: &Expr) {
        let mut pending = vec![selection];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And | BinaryOperator::Or,
                    right,
                } => {
                    pending.push(right);
                    pending.push(left);
                }
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr,
                }
                | Expr::Nested(expr) => pending.push(expr),
                Expr::BinaryOp {
                    left,
                    op:
                        BinaryOperator::Eq
                        | BinaryOperator::NotEq
                        | BinaryOperator::Lt
                        | BinaryOperator::LtEq
                        | BinaryOperator::Gt
                        | BinaryOperator::GtEq
                        | BinaryOperator::PGLikeMatch
                        | BinaryOperator::PGILikeMatch,
                    right,
                }
                | Expr::IsDistinctFrom(left, right)
                | Expr::IsNotDistinctFrom(left, right) => {
                    self.wrapped_column(left);
                    self.wrapped_column(right);
                }
                Expr::Like { expr, .. }
                | Expr::ILike { expr, .. }
                | Expr::In { expr, .. }
                | Expr::Between { expr, .. }
                | Expr::AnyOp { left: expr, .. }
                | Expr::AllOp { left: expr, .. } => self.wrapped_column(expr),
                _ => {}
            }
        }
    }

    fn wrapped_column(&mut self, side: &Expr) {
        let (kind, wrapper, operands) = match strip_nested(side) {
            Expr::Function(function) if function.over.is_none() => {
                let name = function_name(&function.name);
                let kind = if DATE_FUNCTIONS.contains(&name.as_str()) {
                    Wrapper::Date
                } else {
                    Wrapper::Other
                };
                let operands = function_arg_exprs(&function.args);
                (kind, format!("applies {name}() to"), operands)
            }
            Expr::Cast { expr, .. } => (Wrapper::Cast, "casts".to_owned(), vec![&**expr]),
            Expr::Extract { expr, .. } => (
                Wrapper::Date,
                "applies extract() to".to_owned(),
                vec![&**expr],
            ),
            Expr::AtTimeZone { timestamp, .. } => (
                Wrapper::Date,
                "applies AT TIME ZONE to".to_owned(),
                vec![&**timestamp],
            ),
            Expr::Substring { expr, .. }
            | Expr::Trim { expr, .. }
            | Expr::Ceil { expr, .. }
            | Expr::Floor { expr, .. } => (
                Wrapper::Other,
                "applies a function to".to_owned(),
                vec![&**expr],
            ),
            _ => return,
        };
        let Some(column) = find_column(operands) else {
            return;
        };
        let fix = match kind {
            Wrapper::Cast => format!(
                "cast the other side to the column's type instead (for a date, compare \
                 with a range: {column} >= $1 AND {column} < $2), or index that exact \
                 expression"
            ),
            Wrapper::Date => format!(
                "compare the bare column with a range ({column} >= $1 AND {column} < $2), \
                 or index that exact expression"
            ),
            Wrapper::Other => "create an index on that exact expression, or store the value \
                 already transformed and compare the bare column"
                .to_owned(),
        };
        self.report(
            "function_on_column_in_where",
            format!(
                "WHERE {wrapper} column {column}, so a plain index on {column} cannot be \
                 used; {fix}."
            ),
        );
    }
}

/// How a column is wrapped, which decides the usual fix.
enum Wrapper {
    Cast,
    Date,
    Other,
}

/// Functions whose usual fix is a range on the bare column.
const DATE_FUNCTIONS: &[&str] = &["date", "date_trunc", "date_part", "to_char", "timezone"];

impl Visitor for Rules {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.update_or_delete(statement);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.large_offset(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(selection) = &select.selection {
            self.function_on_column(selection);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.leading_wildcard_like(expr);
        self.not_in_subquery(expr);
        ControlFlow::Continue(())
    }

    fn pre_visit_order_by_expr(&mut self, order_by: &OrderByExpr) -> ControlFlow<()> {
        self.order_by_random(order_by);
        ControlFlow::Continue(())
    }
}

/// The SELECTs whose rows are the query's result: through parentheses and
/// into both sides of UNION / INTERSECT / EXCEPT.
fn outermost_selects(query: &Query) -> Vec<&Select> {
    let mut selects = Vec::new();
    let mut pending = vec![&*query.body];
    while let Some(body) = pending.pop() {
        match body {
            SetExpr::Select(select) => selects.push(&**select),
            SetExpr::Query(inner) => pending.push(&inner.body),
            SetExpr::SetOperation { left, right, .. } => {
                pending.push(right);
                pending.push(left);
            }
            _ => {}
        }
    }
    selects
}

/// `LIMIT n` (including `LIMIT $1`) or `FETCH FIRST n ROWS`; `LIMIT ALL`
/// and a bare `OFFSET` bound nothing.
fn has_limit(query: &Query) -> bool {
    let limit = match &query.limit_clause {
        Some(LimitClause::LimitOffset { limit, .. }) => limit.is_some(),
        Some(LimitClause::OffsetCommaLimit { .. }) => true,
        None => false,
    };
    limit || query.fetch.is_some()
}

/// `SELECT count(*), max(x) FROM t` without GROUP BY returns one row
/// however large the table is. With GROUP BY there is a row per group,
/// which can be a row per table row, so that does not count.
fn is_aggregate_only(select: &Select) -> bool {
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    !grouped
        && select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(expr)
            | SelectItem::ExprWithAlias { expr, .. }
            | SelectItem::ExprWithAliases { expr, .. } => contains_aggregate(expr),
            _ => false,
        })
}

/// Whether an aggregate call (not a window function) appears in `expr`
/// outside subqueries: `(SELECT count(*) FROM x)` in a select list is one
/// value per row, not an aggregate of the outer query.
fn contains_aggregate(expr: &Expr) -> bool {
    struct Finder {
        subquery_depth: usize,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.subquery_depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.subquery_depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Function(function)
                    if self.subquery_depth == 0
                        && function.over.is_none()
                        && is_aggregate(&function_name(&function.name)) =>
                {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    expr.visit(&mut Finder { subquery_depth: 0 }).is_break()
}

fn is_aggregate(name: &str) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "xmlagg",
        "bool_and",
        "bool_or",
        "every",
        "bit_and",
        "bit_or",
        "bit_xor",
        "any_value",
        "range_agg",
        "range_intersect_agg",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "corr",
        "covar_pop",
        "covar_samp",
        "percentile_cont",
        "percentile_disc",
        "mode",
    ];
    AGGREGATES.contains(&name) || name.starts_with("regr_")
}

/// Plain tables read directly by a FROM list (joins included), formatted
/// for a message. Subqueries, table functions, CTEs and `TABLESAMPLE` are
/// left out: their size is not the size of a table.
fn base_tables(from: &[TableWithJoins], ctes: &[String]) -> Vec<String> {
    let mut factors: Vec<&TableFactor> = Vec::new();
    for table in from {
        factors.push(&table.relation);
        factors.extend(table.joins.iter().map(|join| &join.relation));
    }
    let mut tables = Vec::new();
    while let Some(factor) = factors.pop() {
        match factor {
            TableFactor::Table {
                name,
                args: None,
                sample: None,
                ..
            } => {
                let name = object_name(name);
                if !ctes.contains(&name) && !tables.contains(&name) {
                    tables.push(name);
                }
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                factors.push(&table_with_joins.relation);
                factors.extend(table_with_joins.joins.iter().map(|join| &join.relation));
            }
            _ => {}
        }
    }
    tables.sort();
    tables
}

fn delete_target(delete: &Delete) -> String {
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    match from.first() {
        Some(table) => object_name_of_factor(&table.relation),
        None => "the table".to_owned(),
    }
}

fn object_name_of_factor(factor: &TableFactor) -> String {
    match factor {
        TableFactor::Table { name, .. } => object_name(name),
        _ => "the table".to_owned(),
    }
}

/// The last part of a function's name, folded: `pg_catalog.lower` is
/// `lower`.
fn function_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident_name(ident),
        _ => String::new(),
    }
}

fn has_no_args(args: &FunctionArguments) -> bool {
    match args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    }
}

fn function_arg_exprs(args: &FunctionArguments) -> Vec<&Expr> {
    let FunctionArguments::List(list) = args else {
        return Vec::new();
    };
    list.args
        .iter()
        .filter_map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
            | FunctionArg::Named {
                arg: FunctionArgExpr::Expr(expr),
                ..
            }
            | FunctionArg::ExprNamed {
                arg: FunctionArgExpr::Expr(expr),
                ..
            } => Some(expr),
            _ => None,
        })
        .collect()
}

/// The first column referenced inside a function's or cast's operands,
/// looking through further functions, casts and operators (so
/// `lower(trim(email))` and `date(created_at + interval '1 h')` count) but
/// not into subqueries, whose columns are another query's business.
fn find_column(operands: Vec<&Expr>) -> Option<String> {
    let mut pending = operands;
    pending.reverse();
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::Identifier(ident) => return Some(ident_name(ident)),
            Expr::CompoundIdentifier(parts) => {
                return Some(parts.iter().map(ident_name).collect::<Vec<_>>().join("."))
            }
            Expr::Function(function) => {
                let mut args = function_arg_exprs(&function.args);
                args.reverse();
                pending.extend(args);
            }
            Expr::BinaryOp { left, right, .. } => {
                pending.push(right);
                pending.push(left);
            }
            Expr::Nested(expr)
            | Expr::UnaryOp { expr, .. }
            | Expr::Cast { expr, .. }
            | Expr::Extract { expr, .. }
            | Expr::Substring { expr, .. }
            | Expr::Trim { expr, .. }
            | Expr::Ceil { expr, .. }
            | Expr::Floor { expr, .. }
            | Expr::Collate { expr, .. }
            | Expr::AtTimeZone {
                timestamp: expr, ..
            } => pending.push(expr),
            _ => {}
        }
    }
    None
}

fn strip_nested(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

/// The literal text a LIKE pattern starts with, looking through
/// parentheses, casts, `upper()`/`lower()` (Django's case-insensitive
/// lookups) and concatenation: `'%' || $1 || '%'` starts with `%` even
/// though the whole pattern is not a literal.
fn pattern_prefix(pattern: &Expr) -> Option<&str> {
    let mut expr = pattern;
    loop {
        expr = match expr {
            Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => inner,
            Expr::Function(function)
                if matches!(function_name(&function.name).as_str(), "upper" | "lower") =>
            {
                function_arg_exprs(&function.args).first()?
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::StringConcat,
                ..
            } => left,
            Expr::Value(value) => return string_value(&value.value),
            _ => return None,
        };
    }
}

fn string_value(value: &Value) -> Option<&str> {
    match value {
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s) => Some(s),
        Value::DollarQuotedString(s) => Some(&s.value),
        _ => None,
    }
}

/// A non-negative integer literal, possibly in parentheses.
fn integer_literal(expr: &Expr) -> Option<u64> {
    match strip_nested(expr) {
        Expr::Value(value) => match &value.value {
            Value::Number(digits, _) => digits.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}
