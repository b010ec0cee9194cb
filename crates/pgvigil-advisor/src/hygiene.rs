//! Index hygiene: indexes that cost every write and help no read (unused,
//! duplicate or prefix-redundant, invalid), and foreign keys whose
//! referencing side has no index, so every DELETE or key UPDATE on the
//! referenced table scans the referencing one.
//!
//! The catalog is read in two statements that return JSON (arrays and
//! names with any characters survive that way without a text-array
//! parser); the rules are plain functions over the decoded rows.

use std::time::Duration;

use serde::Deserialize;

use crate::{Advice, AdviceKind, AdviceMethod, Database, DbError};

#[derive(Debug, Clone, PartialEq)]
pub struct HygieneSettings {
    /// Statistics must have been collected at least this long before a
    /// never-scanned index is called unused (see [`stats_age_sql`]).
    pub unused_index_min_age: Duration,
}

/// One index, as [`INDEXES_SQL`] describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IndexInfo {
    pub schema: String,
    pub table: String,
    pub index: String,
    pub table_oid: i64,
    pub index_oid: i64,
    /// `schema.index`, quoted by PostgreSQL as DDL needs it.
    pub index_sql: String,
    /// pg_index.indkey: table column numbers, 0 for an expression; key
    /// columns first, then INCLUDE columns.
    pub keys: Vec<i64>,
    /// Key columns (without INCLUDE).
    pub key_count: usize,
    pub opclasses: Vec<i64>,
    pub collations: Vec<i64>,
    pub expressions: Option<String>,
    pub predicate: Option<String>,
    /// Access method: btree, hash, gin, ...
    pub method: String,
    /// Key columns for people (expressions as PostgreSQL prints them).
    pub columns: Vec<String>,
    pub primary: bool,
    pub unique: bool,
    pub valid: bool,
    /// Backs a constraint (pg_constraint.conindid).
    pub constraint: bool,
    /// A CREATE INDEX CONCURRENTLY is building it right now: invalid
    /// until it finishes, which is not a failure.
    pub building: bool,
    /// An index of a partitioned table, or a partition's index attached to
    /// one: it has no scan statistics of its own and cannot be dropped by
    /// itself, so only foreign-key coverage looks at it.
    #[serde(default)]
    pub partition: bool,
    pub scans: i64,
    /// As of the last VACUUM or ANALYZE (pg_class.relpages): reading the
    /// real size would lock the index, which a DROP INDEX may be waiting
    /// for.
    pub size_bytes: i64,
}

/// One foreign key, as [`FOREIGN_KEYS_SQL`] describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ForeignKeyInfo {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub table_oid: i64,
    /// `schema.table`, quoted.
    pub table_sql: String,
    /// Referencing column numbers, in constraint order.
    pub keys: Vec<i64>,
    pub columns: Vec<String>,
    /// The same columns, quoted.
    pub columns_sql: Vec<String>,
    pub referenced: String,
}

/// Every index outside the system schemas. pg_stat_user_indexes.idx_scan
/// counts scans since the statistics were last reset.
pub const INDEXES_SQL: &str = "\
SELECT coalesce(json_agg(x ORDER BY x.schema, x.table, x.index), '[]'::json)::text FROM (
  SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
         i.indrelid::int8 AS table_oid, i.indexrelid::int8 AS index_oid,
         format('%I.%I', n.nspname, c.relname) AS index_sql,
         i.indkey::int2[]::int8[] AS keys, i.indnkeyatts::int8 AS key_count,
         i.indclass::oid[]::int8[] AS opclasses,
         i.indcollation::oid[]::int8[] AS collations,
         pg_get_expr(i.indexprs, i.indrelid) AS expressions,
         pg_get_expr(i.indpred, i.indrelid) AS predicate,
         am.amname::text AS method,
         ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
               FROM generate_series(1, i.indnkeyatts) AS k) AS columns,
         i.indisprimary AS primary, i.indisunique AS unique, i.indisvalid AS valid,
         EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid) AS constraint,
         EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                 WHERE p.index_relid = i.indexrelid) AS building,
         (c.relkind = 'I' OR c.relispartition) AS partition,
         coalesce(s.idx_scan, 0)::int8 AS scans,
         c.relpages::int8 * current_setting('block_size')::int8 AS size_bytes
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = c.relam
  LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
) x";

/// Every foreign key outside the system schemas (a partition's copy of
/// its parent's key is left out: the parent's is the one to index).
pub const FOREIGN_KEYS_SQL: &str = "\
SELECT coalesce(json_agg(x ORDER BY x.schema, x.table, x.name), '[]'::json)::text FROM (
  SELECT co.conname::text AS name, n.nspname::text AS schema, t.relname::text AS table,
         co.conrelid::int8 AS table_oid,
         format('%I.%I', n.nspname, t.relname) AS table_sql,
         co.conkey::int8[] AS keys,
         ARRAY(SELECT a.attname::text FROM unnest(co.conkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum
               ORDER BY k.ord) AS columns,
         ARRAY(SELECT quote_ident(a.attname) FROM unnest(co.conkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum
               ORDER BY k.ord) AS columns_sql,
         CASE WHEN rn.nspname = 'public' THEN r.relname::text
              ELSE rn.nspname || '.' || r.relname END AS referenced
  FROM pg_constraint co
  JOIN pg_class t ON t.oid = co.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_class r ON r.oid = co.confrelid
  JOIN pg_namespace rn ON rn.oid = r.relnamespace
  WHERE co.contype = 'f' AND co.conparentid = 0
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
) x";

/// How long this database's statistics have been collected, in seconds.
///
/// PostgreSQL 15 records no creation time for an index, so "older than
/// unused_index_min_age" is judged on the statistics instead: idx_scan = 0
/// means unused only if counting started at least that long ago (the last
/// `pg_stat_reset()`, or the server's start when never reset). An index
/// created after that point is judged by the same clock, which is the
/// known limit of this rule: a brand-new index on a server whose
/// statistics are old may be reported before it had a chance to be used.
pub fn stats_age_sql() -> &'static str {
    "SELECT extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time()))::float8 \
     FROM pg_stat_database WHERE datname = current_database()"
}

/// Reads the catalog of `database` (the connection's) and applies the
/// rules; read-only.
pub async fn hygiene<D: Database>(
    db: &mut D,
    database: &str,
    settings: &HygieneSettings,
) -> Result<Vec<Advice>, DbError> {
    let indexes: Vec<IndexInfo> = json_rows(db, INDEXES_SQL).await?;
    let fks: Vec<ForeignKeyInfo> = json_rows(db, FOREIGN_KEYS_SQL).await?;
    let rows = db.query(stats_age_sql(), &[]).await?;
    let stats_age = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_default();
    Ok(hygiene_rules(database, &indexes, &fks, stats_age, settings))
}

async fn json_rows<D: Database, T: for<'de> Deserialize<'de>>(
    db: &mut D,
    sql: &str,
) -> Result<Vec<T>, DbError> {
    let rows = db.query(sql, &[]).await?;
    let text = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_else(|| "[]".to_string());
    serde_json::from_str(&text).map_err(|e| DbError::Server {
        code: "XX000".into(),
        message: format!("unexpected catalog row shape: {e}"),
    })
}

/// Advice for one database's indexes and foreign keys, at most one entry
/// per index: invalid before duplicate before unused (the more specific
/// reason is the more useful one).
pub fn hygiene_rules(
    database: &str,
    indexes: &[IndexInfo],
    fks: &[ForeignKeyInfo],
    stats_age: Duration,
    settings: &HygieneSettings,
) -> Vec<Advice> {
    let mut out = Vec::new();
    let mut reported: Vec<i64> = Vec::new();
    for ix in indexes
        .iter()
        .filter(|ix| !ix.valid && !ix.building && !ix.partition)
    {
        reported.push(ix.index_oid);
        out.push(drop_advice(
            database,
            ix,
            AdviceKind::InvalidIndex,
            format!(
                "{} is invalid (a CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY that failed \
                 left it): it is updated on every write but never used by a query; drop it and \
                 build it again if it is needed",
                ix.index
            ),
        ));
    }
    for (ix, reason) in redundant(indexes) {
        if reported.contains(&ix.index_oid) {
            continue;
        }
        reported.push(ix.index_oid);
        out.push(drop_advice(
            database,
            ix,
            AdviceKind::DuplicateIndex,
            reason,
        ));
    }
    if stats_age >= settings.unused_index_min_age {
        for ix in indexes {
            if ix.scans != 0 || !droppable(ix) || reported.contains(&ix.index_oid) {
                continue;
            }
            reported.push(ix.index_oid);
            out.push(drop_advice(
                database,
                ix,
                AdviceKind::UnusedIndex,
                format!(
                    "{} (about {} kB) was never scanned in the {} s statistics have been \
                     collected; it still costs every INSERT and UPDATE of {}",
                    ix.index,
                    ix.size_bytes / 1024,
                    stats_age.as_secs(),
                    display_table(&ix.schema, &ix.table)
                ),
            ));
        }
    }
    for fk in fks {
        if !fk_covered(fk, indexes) {
            out.push(fk_advice(database, fk));
        }
    }
    out
}

/// Whether an index may be dropped at all: not what backs a primary
/// key, a unique rule or a constraint (dropping those changes behaviour,
/// not only speed), and for an index still being built.
fn droppable(ix: &IndexInfo) -> bool {
    !ix.primary && !ix.unique && !ix.constraint && ix.valid && !ix.building && !ix.partition
}

/// Exact duplicates (same table, method, columns or expressions, operator
/// classes, collations and predicate) and btree indexes whose key columns
/// are a leading prefix of another plain btree index of the same table.
/// Of a duplicate group, the index backing a constraint or uniqueness is
/// kept, else the oldest (lowest oid).
fn redundant(indexes: &[IndexInfo]) -> Vec<(&IndexInfo, String)> {
    let valid: Vec<&IndexInfo> = indexes.iter().filter(|i| i.valid).collect();
    let mut out: Vec<(&IndexInfo, String)> = Vec::new();
    let same = |a: &IndexInfo, b: &IndexInfo| {
        a.table_oid == b.table_oid
            && a.method == b.method
            && a.keys == b.keys
            && a.key_count == b.key_count
            && a.opclasses == b.opclasses
            && a.collations == b.collations
            && a.expressions == b.expressions
            && a.predicate == b.predicate
    };
    // Lower keeps first: constraint/unique-backing, then lower oid.
    let rank = |i: &IndexInfo| (droppable(i), i.index_oid);
    for ix in &valid {
        if !droppable(ix) {
            continue;
        }
        if let Some(keeper) = valid
            .iter()
            .filter(|o| o.index_oid != ix.index_oid && same(o, ix))
            .min_by_key(|o| rank(o))
        {
            if rank(keeper) < rank(ix) {
                out.push((
                    ix,
                    format!(
                        "{} duplicates {} (same columns ({}), same definition): one of the two \
                         serves every query, both cost every write",
                        ix.index,
                        keeper.index,
                        ix.columns.join(", ")
                    ),
                ));
                continue;
            }
        }
        // INCLUDE columns may be what makes its index-only scans work.
        if ix.method != "btree"
            || ix.predicate.is_some()
            || ix.keys.contains(&0)
            || ix.keys.len() > ix.key_count
        {
            continue;
        }
        let n = ix.key_count;
        let longer = valid.iter().find(|o| {
            o.index_oid != ix.index_oid
                && o.table_oid == ix.table_oid
                && o.method == "btree"
                && o.predicate.is_none()
                && o.key_count > n
                && o.keys.len() >= n
                && ix.keys.len() >= n
                && o.keys[..n] == ix.keys[..n]
                && o.opclasses.get(..n) == ix.opclasses.get(..n)
                && o.collations.get(..n) == ix.collations.get(..n)
        });
        if let Some(longer) = longer {
            out.push((
                ix,
                format!(
                    "the columns of {} ({}) are a leading prefix of {} ({}), which serves the \
                     same lookups and sorts",
                    ix.index,
                    ix.columns.join(", "),
                    longer.index,
                    longer.columns.join(", ")
                ),
            ));
        }
    }
    out
}

/// A foreign key is covered when some valid, non-partial index of the
/// referencing table starts with its columns, in any order (an equality
/// lookup on all of them can use it).
fn fk_covered(fk: &ForeignKeyInfo, indexes: &[IndexInfo]) -> bool {
    let n = fk.keys.len();
    indexes.iter().any(|ix| {
        ix.table_oid == fk.table_oid
            && ix.valid
            && ix.predicate.is_none()
            && ix.key_count >= n
            && ix.keys.len() >= n
            && {
                let mut lead: Vec<i64> = ix.keys[..n].to_vec();
                let mut want = fk.keys.clone();
                lead.sort_unstable();
                want.sort_unstable();
                lead == want
            }
    })
}

fn display_table(schema: &str, table: &str) -> String {
    if schema == "public" {
        table.to_string()
    } else {
        format!("{schema}.{table}")
    }
}

fn drop_advice(database: &str, ix: &IndexInfo, kind: AdviceKind, reason: String) -> Advice {
    Advice {
        kind,
        database: database.to_string(),
        table: display_table(&ix.schema, &ix.table),
        columns: ix.columns.clone(),
        ddl: format!("DROP INDEX CONCURRENTLY {}", ix.index_sql),
        cost_before: None,
        cost_after: None,
        improvement: None,
        fingerprints: Vec::new(),
        saved_ms_per_hour: None,
        reason,
        method: AdviceMethod::Heuristic,
    }
}

fn fk_advice(database: &str, fk: &ForeignKeyInfo) -> Advice {
    Advice {
        kind: AdviceKind::FkWithoutIndex,
        database: database.to_string(),
        table: display_table(&fk.schema, &fk.table),
        columns: fk.columns.clone(),
        ddl: format!(
            "CREATE INDEX CONCURRENTLY ON {} ({})",
            fk.table_sql,
            fk.columns_sql.join(", ")
        ),
        cost_before: None,
        cost_after: None,
        improvement: None,
        fingerprints: Vec::new(),
        saved_ms_per_hour: None,
        reason: format!(
            "foreign key {} references {} but no index starts with ({}): every DELETE or key \
             UPDATE on {} scans {} to check it, and joins on the key cannot use an index",
            fk.name,
            fk.referenced,
            fk.columns.join(", "),
            fk.referenced,
            display_table(&fk.schema, &fk.table)
        ),
        method: AdviceMethod::Heuristic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn settings() -> HygieneSettings {
        HygieneSettings {
            unused_index_min_age: 7 * DAY,
        }
    }

    /// A valid, plain, never-scanned btree index on table 100.
    fn index(oid: i64, name: &str, keys: &[i64]) -> IndexInfo {
        IndexInfo {
            schema: "public".into(),
            table: "orders".into(),
            index: name.into(),
            table_oid: 100,
            index_oid: oid,
            index_sql: format!("public.{name}"),
            keys: keys.to_vec(),
            key_count: keys.len(),
            opclasses: keys.iter().map(|_| 1978).collect(),
            collations: keys.iter().map(|_| 0).collect(),
            expressions: None,
            predicate: None,
            method: "btree".into(),
            columns: keys.iter().map(|k| format!("c{k}")).collect(),
            primary: false,
            unique: false,
            valid: true,
            constraint: false,
            building: false,
            partition: false,
            scans: 0,
            size_bytes: 8192,
        }
    }

    fn fk(keys: &[i64]) -> ForeignKeyInfo {
        ForeignKeyInfo {
            name: "orders_customer_fk".into(),
            schema: "public".into(),
            table: "orders".into(),
            table_oid: 100,
            table_sql: "public.orders".into(),
            keys: keys.to_vec(),
            columns: keys.iter().map(|k| format!("c{k}")).collect(),
            columns_sql: keys.iter().map(|k| format!("c{k}")).collect(),
            referenced: "customers".into(),
        }
    }

    fn kinds(advice: &[Advice]) -> Vec<(AdviceKind, String)> {
        advice.iter().map(|a| (a.kind, a.ddl.clone())).collect()
    }

    fn run(indexes: &[IndexInfo], fks: &[ForeignKeyInfo], age: Duration) -> Vec<Advice> {
        hygiene_rules("app", indexes, fks, age, &settings())
    }

    #[test]
    fn never_scanned_index_is_unused_once_statistics_are_old_enough() {
        let ix = index(1, "orders_note_idx", &[3]);
        let advice = run(std::slice::from_ref(&ix), &[], 8 * DAY);
        assert_eq!(
            kinds(&advice),
            [(
                AdviceKind::UnusedIndex,
                "DROP INDEX CONCURRENTLY public.orders_note_idx".to_string()
            )]
        );
        assert_eq!(advice[0].table, "orders");
        assert_eq!(advice[0].method, AdviceMethod::Heuristic);
        // Statistics younger than the minimum age prove nothing.
        assert!(run(&[ix], &[], 6 * DAY).is_empty());
    }

    #[test]
    fn scanned_primary_unique_and_constraint_indexes_are_never_unused() {
        let mut scanned = index(1, "a", &[1]);
        scanned.scans = 5;
        let mut pk = index(2, "pk", &[2]);
        pk.primary = true;
        pk.unique = true;
        let mut unique = index(3, "u", &[3]);
        unique.unique = true;
        let mut excl = index(4, "x", &[4]);
        excl.constraint = true;
        assert!(run(&[scanned, pk, unique, excl], &[], 30 * DAY).is_empty());
    }

    #[test]
    fn exact_duplicate_is_reported_and_the_older_one_kept() {
        let a = index(10, "orders_c1_idx", &[1]);
        let mut b = index(11, "orders_c1_idx1", &[1]);
        b.scans = 3;
        let mut a_used = a.clone();
        a_used.scans = 3;
        let advice = run(&[a_used, b], &[], 30 * DAY);
        assert_eq!(
            kinds(&advice),
            [(
                AdviceKind::DuplicateIndex,
                "DROP INDEX CONCURRENTLY public.orders_c1_idx1".to_string()
            )]
        );
        assert!(advice[0].reason.contains("duplicates orders_c1_idx"));
    }

    #[test]
    fn duplicate_of_a_unique_index_drops_the_plain_one_never_the_unique() {
        let plain = index(10, "plain", &[1]);
        let mut unique = index(11, "uniq", &[1]);
        unique.unique = true;
        unique.constraint = true;
        let advice = run(&[plain, unique], &[], Duration::ZERO);
        assert_eq!(
            kinds(&advice),
            [(
                AdviceKind::DuplicateIndex,
                "DROP INDEX CONCURRENTLY public.plain".to_string()
            )]
        );
    }

    #[test]
    fn indexes_differing_in_predicate_opclass_or_method_are_not_duplicates() {
        let scanned = |oid, name: &str| {
            let mut ix = index(oid, name, &[1]);
            ix.scans = 1;
            ix
        };
        let a = scanned(10, "a");
        let mut partial = scanned(11, "partial");
        partial.predicate = Some("(c1 > 0)".into());
        let mut pattern = scanned(12, "pattern");
        pattern.opclasses = vec![3128];
        let mut hash = scanned(13, "hash");
        hash.method = "hash".into();
        assert!(run(&[a, partial, pattern, hash], &[], 30 * DAY).is_empty());
    }

    #[test]
    fn leading_prefix_of_another_btree_index_is_redundant() {
        let mut short = index(10, "orders_c1_idx", &[1]);
        short.scans = 9;
        let mut long = index(11, "orders_c1_c2_idx", &[1, 2]);
        long.scans = 9;
        let mut other = index(12, "orders_c2_c1_idx", &[2, 1]);
        other.scans = 9;
        let advice = run(&[short, long, other], &[], 30 * DAY);
        assert_eq!(
            kinds(&advice),
            [(
                AdviceKind::DuplicateIndex,
                "DROP INDEX CONCURRENTLY public.orders_c1_idx".to_string()
            )]
        );
        assert!(advice[0]
            .reason
            .contains("leading prefix of orders_c1_c2_idx"));
    }

    #[test]
    fn prefix_of_a_partial_index_or_a_unique_prefix_is_kept() {
        let mut short = index(10, "short", &[1]);
        short.scans = 1;
        let mut partial_long = index(11, "partial_long", &[1, 2]);
        partial_long.predicate = Some("(c2 IS NOT NULL)".into());
        partial_long.scans = 1;
        assert!(run(&[short.clone(), partial_long], &[], 30 * DAY).is_empty());
        let mut unique_short = short;
        unique_short.unique = true;
        let mut long = index(12, "long", &[1, 2]);
        long.scans = 1;
        assert!(run(&[unique_short, long], &[], 30 * DAY).is_empty());
    }

    #[test]
    fn invalid_index_is_reported_once_and_one_being_built_is_not() {
        let mut broken = index(10, "broken", &[1]);
        broken.valid = false;
        broken.unique = true;
        let mut building = index(11, "building", &[2]);
        building.valid = false;
        building.building = true;
        let advice = run(&[broken, building], &[], 30 * DAY);
        assert_eq!(
            kinds(&advice),
            [(
                AdviceKind::InvalidIndex,
                "DROP INDEX CONCURRENTLY public.broken".to_string()
            )]
        );
    }

    #[test]
    fn foreign_key_without_a_leading_index_gets_create_index() {
        let mut trailing = index(10, "orders_c1_c5_idx", &[1, 5]);
        trailing.scans = 1;
        let advice = run(&[trailing], &[fk(&[5])], 30 * DAY);
        assert_eq!(
            kinds(&advice),
            [(
                AdviceKind::FkWithoutIndex,
                "CREATE INDEX CONCURRENTLY ON public.orders (c5)".to_string()
            )]
        );
        assert_eq!(advice[0].columns, ["c5"]);
        assert!(advice[0].reason.contains("references customers"));
    }

    #[test]
    fn foreign_key_is_covered_by_leading_columns_in_any_order_but_not_by_partial_or_invalid() {
        let mut covering = index(10, "i", &[6, 5, 1]);
        covering.scans = 1;
        assert!(run(&[covering], &[fk(&[5, 6])], 30 * DAY).is_empty());

        let mut partial = index(11, "p", &[5]);
        partial.predicate = Some("(c5 IS NOT NULL)".into());
        partial.scans = 1;
        let mut other_table = index(12, "o", &[5]);
        other_table.table_oid = 200;
        other_table.scans = 1;
        let advice = run(&[partial, other_table], &[fk(&[5])], 30 * DAY);
        assert_eq!(advice.len(), 1);
        assert_eq!(advice[0].kind, AdviceKind::FkWithoutIndex);
    }

    #[test]
    fn partitioned_indexes_are_never_dropped_but_cover_foreign_keys() {
        let mut parent = index(10, "parent_idx", &[5]);
        parent.partition = true;
        let mut twin = index(11, "parent_idx1", &[5]);
        twin.partition = true;
        let mut broken = index(12, "broken_parent_idx", &[6]);
        broken.partition = true;
        broken.valid = false;
        assert!(run(&[parent, twin, broken], &[fk(&[5])], 30 * DAY).is_empty());
    }

    #[test]
    fn catalog_rows_decode_from_the_json_the_sql_returns() {
        let text = r#"[{"schema":"s","table":"t","index":"t_a_idx","table_oid":1,"index_oid":2,
            "index_sql":"s.t_a_idx","keys":[1,0],"key_count":2,"opclasses":[1978,1978],
            "collations":[0,0],"expressions":"lower(b)","predicate":null,"method":"btree",
            "columns":["a","lower(b)"],"primary":false,"unique":false,"valid":true,
            "constraint":false,"building":false,"scans":0,"size_bytes":16384}]"#;
        let rows: Vec<IndexInfo> = serde_json::from_str(text).expect("decodes");
        assert_eq!(rows[0].keys, [1, 0]);
        let advice = run(&rows, &[], 30 * DAY);
        assert_eq!(advice[0].table, "s.t");
    }
}
