//! The tables a statement touches.
//!
//! sqlparser's visitor already reaches every relation name in the tree
//! (`FROM`, joins, subqueries at any depth, `INSERT INTO`, `UPDATE`,
//! `DELETE FROM`, `MERGE`, `CREATE`/`ALTER TABLE`, `CREATE INDEX ... ON`,
//! `TRUNCATE`, `LOCK`, ...), so this module only has to drop the names that
//! are not tables: references to CTEs, and table functions such as
//! `generate_series(...)`, which sqlparser files as relations with
//! arguments. It adds the few targets the visitor does not report as
//! relations (`DROP TABLE`, `COPY`, `VACUUM`).

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Ident, ObjectName, ObjectNamePart, ObjectType, Query, Statement, TableFactor,
    Visit, Visitor,
};

/// Names the statement touches, formatted by [`object_name`], sorted.
pub(crate) fn tables(statement: &Statement) -> Vec<String> {
    let mut collector = Collector::default();
    let _ = statement.visit(&mut collector);
    collector.found.into_iter().collect()
}

/// A name as PostgreSQL resolves it, qualified only as written: unquoted
/// parts fold to lower case; quoted parts keep their quotes only when they
/// are needed to mean the same thing (`"Users"` stays `"Users"`, while
/// `"users"` is just `users`, the same table as unquoted `users`).
pub(crate) fn object_name(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(ident) => out.push_str(&ident_name(ident)),
            // Not PostgreSQL syntax (Snowflake's IDENTIFIER(...)); keep
            // something recognisable rather than dropping the table.
            ObjectNamePart::Function(function) => out.push_str(&ident_name(&function.name)),
        }
    }
    out
}

/// One identifier, folded and quoted the way [`object_name`] describes.
pub(crate) fn ident_name(ident: &Ident) -> String {
    match ident.quote_style {
        // PostgreSQL folds only ASCII letters of unquoted names.
        None => ident.value.to_ascii_lowercase(),
        Some(_) if is_plain_identifier(&ident.value) => ident.value.clone(),
        Some(_) => format!("\"{}\"", ident.value.replace('"', "\"\"")),
    }
}

/// Whether a name reads the same unquoted: lower-case ASCII letters,
/// digits, `_` and `$`, not starting with a digit or `$`.
fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
}

#[derive(Default)]
struct Collector {
    found: BTreeSet<String>,
    /// One entry per query being visited, innermost last.
    scopes: Vec<Scope>,
    /// Relation names that belong to table functions (`FROM f(...)`), by
    /// address: the visitor reports them as relations right after the
    /// table factor that says they have arguments.
    functions: HashSet<*const ObjectName>,
}

/// The CTEs of one query and how many of them are visible at this point of
/// the walk. In `WITH a AS (...), b AS (...) SELECT ...`, the body of `a`
/// sees no CTE (a `FROM a` there means a real table `a`), the body of `b`
/// sees `a`, and the main query sees both; `WITH RECURSIVE` lets a body see
/// itself too.
struct Scope {
    query: *const Query,
    /// Each CTE's name and the address of its body, which is how the walk
    /// recognises that it has entered or left that body.
    ctes: Vec<(String, *const Query)>,
    recursive: bool,
    visible: usize,
}

impl Collector {
    fn is_visible_cte(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return false;
        };
        let name = ident_name(ident);
        self.scopes.iter().any(|scope| {
            scope.ctes[..scope.visible]
                .iter()
                .any(|(cte, _)| *cte == name)
        })
    }

    /// If `query` is the body of a CTE of the enclosing query, its index.
    fn cte_index(&self, query: &Query) -> Option<usize> {
        let scope = self.scopes.last()?;
        scope
            .ctes
            .iter()
            .position(|(_, body)| std::ptr::eq(*body, query))
    }

    fn add(&mut self, name: &ObjectName) {
        self.found.insert(object_name(name));
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(index) = self.cte_index(query) {
            if let Some(scope) = self.scopes.last_mut() {
                scope.visible = index + usize::from(scope.recursive);
            }
        }
        let (ctes, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| (ident_name(&cte.alias.name), &*cte.query as *const Query))
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), false),
        };
        self.scopes.push(Scope {
            query,
            ctes,
            recursive,
            visible: 0,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self
            .scopes
            .last()
            .is_some_and(|scope| std::ptr::eq(scope.query, query))
        {
            self.scopes.pop();
        }
        // Leaving CTE number `index`: it is visible from here on.
        if let Some(index) = self.cte_index(query) {
            if let Some(scope) = self.scopes.last_mut() {
                scope.visible = index + 1;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
        {
            self.functions.insert(name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        if !self.functions.contains(&(name as *const ObjectName)) && !self.is_visible_cte(name) {
            self.add(name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Drop {
                object_type:
                    ObjectType::Table
                    | ObjectType::View
                    | ObjectType::MaterializedView
                    | ObjectType::ForeignTable,
                names,
                ..
            } => names.iter().for_each(|name| self.add(name)),
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                ..
            } => self.add(table_name),
            Statement::Vacuum(vacuum) => {
                if let Some(name) = &vacuum.table_name {
                    self.add(name);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
