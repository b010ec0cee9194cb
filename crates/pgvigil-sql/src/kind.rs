//! What sort of statement a token stream is, from its first keywords.
//!
//! Consumers branch on this (the N+1 detector only looks at reads; a
//! dashboard groups DDL apart from traffic), so it is an enum for the cases
//! code cares about plus PostgreSQL-style command tags for the long tail.

use std::fmt;

use crate::lexer::{Kind, Token};

/// The command a statement runs, named like PostgreSQL's command tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE`, and `WITH ... SELECT`.
    Select,
    /// `INSERT`, and `WITH ... INSERT`.
    Insert,
    /// `UPDATE`, and `WITH ... UPDATE`.
    Update,
    /// `DELETE`, and `WITH ... DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// A `WITH` whose main statement was not found (malformed text).
    With,
    /// Transaction control: `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`,
    /// `RELEASE`, `ROLLBACK TO SAVEPOINT`, `PREPARE TRANSACTION`, ...
    Transaction(&'static str),
    /// Schema changes: `CREATE TABLE`, `ALTER INDEX`, `DROP VIEW`, `GRANT`,
    /// `TRUNCATE TABLE`, `COMMENT`, ...
    Ddl(&'static str),
    /// Everything else PostgreSQL accepts: `SET`, `SHOW`, `COPY`, `EXPLAIN`,
    /// `VACUUM`, `DO`, `CALL`, `LISTEN`, ...
    Utility(&'static str),
    /// The first word is not a PostgreSQL command (or there is none).
    Unknown,
}

impl StatementKind {
    /// The command tag, e.g. `"SELECT"`, `"CREATE INDEX"`, `"SET"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatementKind::Select => "SELECT",
            StatementKind::Insert => "INSERT",
            StatementKind::Update => "UPDATE",
            StatementKind::Delete => "DELETE",
            StatementKind::Merge => "MERGE",
            StatementKind::With => "WITH",
            StatementKind::Transaction(s) | StatementKind::Ddl(s) | StatementKind::Utility(s) => s,
            StatementKind::Unknown => "UNKNOWN",
        }
    }

    /// Reads and writes of table data (what query statistics are mostly about).
    pub fn is_dml(&self) -> bool {
        matches!(
            self,
            StatementKind::Select
                | StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
                | StatementKind::Merge
                | StatementKind::With
        )
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `CREATE`/`ALTER`/`DROP` object names: (first word, optional second word, tag suffix).
macro_rules! ddl_objects {
    ($( ($w1:literal, $w2:literal, $tag:literal) ),* $(,)?) => {
        static CREATE: &[(&str, &str, &str)] = &[$( ($w1, $w2, concat!("CREATE ", $tag)) ),*];
        static ALTER: &[(&str, &str, &str)] = &[$( ($w1, $w2, concat!("ALTER ", $tag)) ),*];
        static DROP: &[(&str, &str, &str)] = &[$( ($w1, $w2, concat!("DROP ", $tag)) ),*];
    };
}

// Two-word objects come before their one-word prefixes.
ddl_objects![
    ("materialized", "view", "MATERIALIZED VIEW"),
    ("event", "trigger", "EVENT TRIGGER"),
    ("foreign", "table", "FOREIGN TABLE"),
    ("foreign", "data", "FOREIGN DATA WRAPPER"),
    ("user", "mapping", "USER MAPPING"),
    ("operator", "class", "OPERATOR CLASS"),
    ("operator", "family", "OPERATOR FAMILY"),
    ("text", "search", "TEXT SEARCH"),
    ("access", "method", "ACCESS METHOD"),
    ("default", "privileges", "DEFAULT PRIVILEGES"),
    ("large", "object", "LARGE OBJECT"),
    ("table", "", "TABLE"),
    ("index", "", "INDEX"),
    ("view", "", "VIEW"),
    ("sequence", "", "SEQUENCE"),
    ("schema", "", "SCHEMA"),
    ("function", "", "FUNCTION"),
    ("procedure", "", "PROCEDURE"),
    ("routine", "", "ROUTINE"),
    ("trigger", "", "TRIGGER"),
    ("extension", "", "EXTENSION"),
    ("type", "", "TYPE"),
    ("domain", "", "DOMAIN"),
    ("role", "", "ROLE"),
    ("user", "", "ROLE"),
    ("group", "", "ROLE"),
    ("database", "", "DATABASE"),
    ("tablespace", "", "TABLESPACE"),
    ("policy", "", "POLICY"),
    ("rule", "", "RULE"),
    ("aggregate", "", "AGGREGATE"),
    ("operator", "", "OPERATOR"),
    ("collation", "", "COLLATION"),
    ("conversion", "", "CONVERSION"),
    ("cast", "", "CAST"),
    ("server", "", "SERVER"),
    ("publication", "", "PUBLICATION"),
    ("subscription", "", "SUBSCRIPTION"),
    ("statistics", "", "STATISTICS"),
    ("transform", "", "TRANSFORM"),
    ("language", "", "LANGUAGE"),
    ("system", "", "SYSTEM"),
];

/// Words between `CREATE` and the object type.
const CREATE_MODIFIERS: &[&str] = &[
    "or",
    "replace",
    "temp",
    "temporary",
    "unlogged",
    "global",
    "local",
    "unique",
    "trusted",
    "procedural",
    "recursive",
    "constraint",
    "default",
];

/// Up to four leading words, lowercased, skipping comments and `(`.
pub(crate) struct Leading<'a> {
    words: [&'a [u8]; 4],
    n: usize,
}

impl<'a> Leading<'a> {
    pub(crate) fn new(src: &'a [u8], toks: &[Token]) -> Self {
        let mut words: [&[u8]; 4] = [b""; 4];
        let mut n = 0;
        for t in toks {
            match t.kind {
                Kind::Comment => continue,
                Kind::Punct if n == 0 && src.get(t.start) == Some(&b'(') => continue,
                Kind::Word if n < 4 => {
                    words[n] = src.get(t.start..t.end).unwrap_or(b"");
                    n += 1;
                }
                _ => break,
            }
            if n == 4 {
                break;
            }
        }
        Leading { words, n }
    }

    fn is(&self, i: usize, w: &str) -> bool {
        i < self.n && self.words[i].eq_ignore_ascii_case(w.as_bytes())
    }
}

pub(crate) fn classify(src: &[u8], toks: &[Token]) -> StatementKind {
    let lead = Leading::new(src, toks);
    if lead.n == 0 {
        return StatementKind::Unknown;
    }
    let first = lead.words[0];
    let mut buf = [0u8; 12];
    let Some(first) = lower(first, &mut buf) else {
        return StatementKind::Unknown;
    };
    use StatementKind::*;
    match first {
        b"select" | b"values" | b"table" => Select,
        b"insert" => Insert,
        b"update" => Update,
        b"delete" => Delete,
        b"merge" => Merge,
        b"with" => main_of_with(src, toks),
        b"begin" => Transaction("BEGIN"),
        b"start" => Transaction("START TRANSACTION"),
        b"commit" | b"end" if lead.is(1, "prepared") => Transaction("COMMIT PREPARED"),
        b"commit" | b"end" => Transaction("COMMIT"),
        b"rollback" | b"abort" if lead.is(1, "prepared") => Transaction("ROLLBACK PREPARED"),
        b"rollback" | b"abort"
            if lead.is(1, "to")
                || (lead.is(1, "transaction") || lead.is(1, "work")) && lead.is(2, "to") =>
        {
            Transaction("ROLLBACK TO SAVEPOINT")
        }
        b"rollback" | b"abort" => Transaction("ROLLBACK"),
        b"savepoint" => Transaction("SAVEPOINT"),
        b"release" => Transaction("RELEASE"),
        b"prepare" if lead.is(1, "transaction") => Transaction("PREPARE TRANSACTION"),
        b"prepare" => Utility("PREPARE"),
        b"create" => ddl(&lead, CREATE, "CREATE"),
        b"alter" => ddl(&lead, ALTER, "ALTER"),
        b"drop" if lead.is(1, "owned") => Ddl("DROP OWNED"),
        b"drop" => ddl(&lead, DROP, "DROP"),
        b"truncate" => Ddl("TRUNCATE TABLE"),
        b"grant" => Ddl("GRANT"),
        b"revoke" => Ddl("REVOKE"),
        b"comment" => Ddl("COMMENT"),
        b"security" => Ddl("SECURITY LABEL"),
        b"reassign" => Ddl("REASSIGN OWNED"),
        b"import" => Ddl("IMPORT FOREIGN SCHEMA"),
        b"refresh" => Utility("REFRESH MATERIALIZED VIEW"),
        b"set" => Utility("SET"),
        b"reset" => Utility("RESET"),
        b"show" => Utility("SHOW"),
        b"discard" => Utility("DISCARD"),
        b"deallocate" => Utility("DEALLOCATE"),
        b"execute" => Utility("EXECUTE"),
        b"explain" => Utility("EXPLAIN"),
        b"copy" => Utility("COPY"),
        b"vacuum" => Utility("VACUUM"),
        b"analyze" | b"analyse" => Utility("ANALYZE"),
        b"cluster" => Utility("CLUSTER"),
        b"reindex" => Utility("REINDEX"),
        b"checkpoint" => Utility("CHECKPOINT"),
        b"lock" => Utility("LOCK TABLE"),
        b"listen" => Utility("LISTEN"),
        b"notify" => Utility("NOTIFY"),
        b"unlisten" => Utility("UNLISTEN"),
        b"load" => Utility("LOAD"),
        b"do" => Utility("DO"),
        b"call" => Utility("CALL"),
        b"declare" => Utility("DECLARE CURSOR"),
        b"fetch" => Utility("FETCH"),
        b"move" => Utility("MOVE"),
        b"close" => Utility("CLOSE CURSOR"),
        _ => Unknown,
    }
}

fn lower<'b>(w: &[u8], buf: &'b mut [u8; 12]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..w.len())?;
    for (o, &c) in out.iter_mut().zip(w) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

fn ddl(
    lead: &Leading<'_>,
    table: &[(&str, &str, &'static str)],
    verb: &'static str,
) -> StatementKind {
    let mut i = 1;
    if verb == "CREATE" {
        while i < lead.n && CREATE_MODIFIERS.iter().any(|m| lead.is(i, m)) {
            i += 1;
        }
    }
    for &(w1, w2, tag) in table {
        if lead.is(i, w1) && (w2.is_empty() || lead.is(i + 1, w2)) {
            return StatementKind::Ddl(tag);
        }
    }
    StatementKind::Ddl(verb)
}

/// `WITH a AS (...), b AS (...) <main>`: the main statement is the first
/// command keyword outside every parenthesis.
fn main_of_with(src: &[u8], toks: &[Token]) -> StatementKind {
    let mut depth = 0usize;
    for t in toks.iter().skip(1) {
        match t.kind {
            Kind::Punct => match src.get(t.start) {
                Some(b'(') => depth += 1,
                Some(b')') => depth = depth.saturating_sub(1),
                _ => {}
            },
            Kind::Word if depth == 0 => {
                let w = src.get(t.start..t.end).unwrap_or(b"");
                let kind = [
                    ("select", StatementKind::Select),
                    ("values", StatementKind::Select),
                    ("table", StatementKind::Select),
                    ("insert", StatementKind::Insert),
                    ("update", StatementKind::Update),
                    ("delete", StatementKind::Delete),
                    ("merge", StatementKind::Merge),
                ]
                .into_iter()
                .find(|(k, _)| w.eq_ignore_ascii_case(k.as_bytes()));
                if let Some((_, kind)) = kind {
                    return kind;
                }
            }
            _ => {}
        }
    }
    StatementKind::With
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::lex;

    fn kind(sql: &str) -> StatementKind {
        classify(sql.as_bytes(), &lex(sql.as_bytes()))
    }

    #[test]
    fn dml_kinds_come_from_the_first_keyword_in_any_case() {
        assert_eq!(kind("select 1"), StatementKind::Select);
        assert_eq!(
            kind("/* c */ (SELECT 1) UNION (SELECT 2)"),
            StatementKind::Select
        );
        assert_eq!(kind("VALUES (1)"), StatementKind::Select);
        assert_eq!(kind("Insert into t values (1)"), StatementKind::Insert);
        assert_eq!(kind("UPDATE t SET a = 1"), StatementKind::Update);
        assert_eq!(kind("DELETE FROM t"), StatementKind::Delete);
        assert_eq!(
            kind("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE"),
            StatementKind::Merge
        );
    }

    #[test]
    fn with_takes_the_kind_of_its_main_statement() {
        assert_eq!(
            kind("WITH RECURSIVE a(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM a) SELECT * FROM a"),
            StatementKind::Select
        );
        assert_eq!(
            kind("WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved"),
            StatementKind::Insert
        );
        assert_eq!(
            kind("WITH x AS MATERIALIZED (SELECT 1) UPDATE t SET a = (SELECT * FROM x)"),
            StatementKind::Update
        );
        assert_eq!(kind("WITH x AS (SELECT 1)"), StatementKind::With);
    }

    #[test]
    fn transaction_control_kinds() {
        assert_eq!(kind("BEGIN"), StatementKind::Transaction("BEGIN"));
        assert_eq!(
            kind("start transaction isolation level serializable").as_str(),
            "START TRANSACTION"
        );
        assert_eq!(kind("END").as_str(), "COMMIT");
        assert_eq!(kind("abort").as_str(), "ROLLBACK");
        assert_eq!(
            kind("ROLLBACK TO SAVEPOINT s1").as_str(),
            "ROLLBACK TO SAVEPOINT"
        );
        assert_eq!(
            kind("rollback work to s1").as_str(),
            "ROLLBACK TO SAVEPOINT"
        );
        assert_eq!(kind("RELEASE SAVEPOINT s1").as_str(), "RELEASE");
        assert_eq!(
            kind("PREPARE TRANSACTION 'x'").as_str(),
            "PREPARE TRANSACTION"
        );
        assert_eq!(kind("COMMIT PREPARED 'x'").as_str(), "COMMIT PREPARED");
    }

    #[test]
    fn ddl_kinds_name_the_object_past_modifiers() {
        assert_eq!(
            kind("CREATE TABLE t (a int)"),
            StatementKind::Ddl("CREATE TABLE")
        );
        assert_eq!(kind("create temp table t (a int)").as_str(), "CREATE TABLE");
        assert_eq!(
            kind("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)").as_str(),
            "CREATE INDEX"
        );
        assert_eq!(
            kind("CREATE OR REPLACE FUNCTION f() RETURNS int").as_str(),
            "CREATE FUNCTION"
        );
        assert_eq!(
            kind("create materialized view v as select 1").as_str(),
            "CREATE MATERIALIZED VIEW"
        );
        assert_eq!(
            kind("ALTER TABLE t ADD COLUMN b int").as_str(),
            "ALTER TABLE"
        );
        assert_eq!(kind("DROP INDEX IF EXISTS i").as_str(), "DROP INDEX");
        assert_eq!(
            kind("CREATE CONSTRAINT TRIGGER x").as_str(),
            "CREATE TRIGGER"
        );
        assert_eq!(kind("CREATE WIDGET x").as_str(), "CREATE");
        assert_eq!(kind("TRUNCATE t").as_str(), "TRUNCATE TABLE");
    }

    #[test]
    fn utility_kinds_and_unknown() {
        assert_eq!(kind("SET work_mem = '8MB'"), StatementKind::Utility("SET"));
        assert_eq!(kind("explain analyze select 1").as_str(), "EXPLAIN");
        assert_eq!(kind("VACUUM (ANALYZE) t").as_str(), "VACUUM");
        assert_eq!(
            kind("REFRESH MATERIALIZED VIEW v").as_str(),
            "REFRESH MATERIALIZED VIEW"
        );
        assert_eq!(kind("frobnicate"), StatementKind::Unknown);
        assert_eq!(kind("'just a string'"), StatementKind::Unknown);
        assert!(StatementKind::Select.is_dml());
        assert!(!StatementKind::Utility("SET").is_dml());
    }
}
