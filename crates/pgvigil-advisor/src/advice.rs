//! One piece of advice, as `GET /api/advice` and `SHOW ADVICE` give it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceKind {
    CreateIndex,
    UnusedIndex,
    DuplicateIndex,
    InvalidIndex,
    FkWithoutIndex,
}

impl AdviceKind {
    pub const ALL: [AdviceKind; 5] = [
        AdviceKind::CreateIndex,
        AdviceKind::UnusedIndex,
        AdviceKind::DuplicateIndex,
        AdviceKind::InvalidIndex,
        AdviceKind::FkWithoutIndex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdviceKind::CreateIndex => "create_index",
            AdviceKind::UnusedIndex => "unused_index",
            AdviceKind::DuplicateIndex => "duplicate_index",
            AdviceKind::InvalidIndex => "invalid_index",
            AdviceKind::FkWithoutIndex => "fk_without_index",
        }
    }
}

/// How an index recommendation was reached: hypopg re-planned with the
/// index in place, or only the plan's shape suggested it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceMethod {
    Hypopg,
    Heuristic,
}

/// A fingerprint an index would help, with what it costs today.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HelpedFingerprint {
    /// 16 hex digits, as everywhere else in pgvigil.
    pub fingerprint: String,
    pub calls: u64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub kind: AdviceKind,
    pub database: String,
    /// Schema-qualified where the schema is not `public`.
    pub table: String,
    pub columns: Vec<String>,
    /// Ready to run: `CREATE INDEX CONCURRENTLY ...` or `DROP INDEX
    /// CONCURRENTLY ...`.
    pub ddl: String,
    pub cost_before: Option<f64>,
    pub cost_after: Option<f64>,
    /// 1 - cost_after / cost_before.
    pub improvement: Option<f64>,
    pub fingerprints: Vec<HelpedFingerprint>,
    pub saved_ms_per_hour: Option<f64>,
    pub reason: String,
    pub method: AdviceMethod,
}

/// One fingerprint's evidence for one index, before merging: what the
/// runner found when it planned that fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub database: String,
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub predicate: Option<String>,
    pub method: AdviceMethod,
    pub cost_before: f64,
    /// With hypopg only.
    pub cost_after: Option<f64>,
    pub fingerprint: u64,
}

/// A fingerprint's load now, to weigh the findings that name it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub calls: u64,
    pub total_ms: f64,
    /// Calls per hour over the time the fingerprint has been seen.
    pub calls_per_hour: f64,
}

impl Finding {
    fn improvement(&self) -> Option<f64> {
        let after = self.cost_after?;
        (self.cost_before > 0.0).then(|| 1.0 - after / self.cost_before)
    }
}

/// One advice per (database, table, columns, predicate): an index that
/// helps three statements is one advice naming the three. Ordered by the
/// time it would save (the statements' calls per hour x mean time x
/// improvement), heuristic advice (no improvement known) after, by the
/// time its statements take now.
pub fn merge(findings: &[Finding], load: impl Fn(u64) -> Option<Load>) -> Vec<Advice> {
    type Key<'a> = (&'a str, &'a str, &'a str, &'a [String], Option<&'a str>);
    let mut groups: Vec<(Key<'_>, Vec<&Finding>)> = Vec::new();
    for f in findings {
        let key: Key<'_> = (
            &f.database,
            &f.schema,
            &f.table,
            &f.columns,
            f.predicate.as_deref(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => {
                if !list.iter().any(|g| g.fingerprint == f.fingerprint) {
                    list.push(f);
                }
            }
            None => groups.push((key, vec![f])),
        }
    }
    let mut out: Vec<Advice> = groups
        .into_iter()
        .filter_map(|((database, schema, table, columns, predicate), list)| {
            let mut helped: Vec<(&Finding, Load)> = list
                .into_iter()
                .filter_map(|f| load(f.fingerprint).map(|l| (f, l)))
                .collect();
            if helped.is_empty() {
                // Its statements are no longer in the statistics (reset).
                return None;
            }
            helped.sort_by(|a, b| b.1.total_ms.total_cmp(&a.1.total_ms));
            let (lead, _) = helped[0];
            let hypopg = helped
                .iter()
                .any(|(f, _)| f.method == AdviceMethod::Hypopg);
            let saved: Option<f64> = hypopg.then(|| {
                helped
                    .iter()
                    .filter_map(|(f, l)| {
                        let mean = if l.calls > 0 {
                            l.total_ms / l.calls as f64
                        } else {
                            0.0
                        };
                        f.improvement().map(|i| l.calls_per_hour * mean * i.max(0.0))
                    })
                    .sum()
            });
            let n = helped.len();
            let reason = match (hypopg, lead.improvement()) {
                (true, Some(i)) => format!(
                    "hypopg: with this index the estimated cost of {} falls by {:.0}% ({:.2} -> {:.2}); it helps {n} statement{}",
                    fingerprint_hex(lead.fingerprint),
                    i * 100.0,
                    lead.cost_before,
                    lead.cost_after.unwrap_or(0.0),
                    if n == 1 { "" } else { "s" },
                ),
                _ => format!(
                    "hypopg was not available in this database, so this is a plan heuristic: a sequential scan of {} filters on columns no index leads with (plan cost {:.2}); it helps {n} statement{}",
                    crate::candidates::table_name(schema, table),
                    lead.cost_before,
                    if n == 1 { "" } else { "s" },
                ),
            };
            let method = if hypopg {
                AdviceMethod::Hypopg
            } else {
                AdviceMethod::Heuristic
            };
            let (cost_after, improvement) = if hypopg {
                (lead.cost_after, lead.improvement())
            } else {
                (None, None)
            };
            Some(Advice {
                kind: AdviceKind::CreateIndex,
                database: database.to_string(),
                table: crate::candidates::table_name(schema, table),
                columns: columns.to_vec(),
                ddl: crate::candidates::create_index_ddl(schema, table, columns, predicate),
                cost_before: Some(lead.cost_before),
                cost_after,
                improvement,
                fingerprints: helped
                    .iter()
                    .map(|(f, l)| HelpedFingerprint {
                        fingerprint: fingerprint_hex(f.fingerprint),
                        calls: l.calls,
                        total_ms: l.total_ms,
                    })
                    .collect(),
                saved_ms_per_hour: saved,
                reason,
                method,
            })
        })
        .collect();
    sort_advice(&mut out);
    out
}

/// Most time saved first; advice without an estimate after, by the time
/// its statements take now.
pub fn sort_advice(list: &mut [Advice]) {
    let total = |a: &Advice| a.fingerprints.iter().map(|f| f.total_ms).sum::<f64>();
    list.sort_by(|a, b| {
        let sa = a.saved_ms_per_hour.unwrap_or(-1.0);
        let sb = b.saved_ms_per_hour.unwrap_or(-1.0);
        sb.total_cmp(&sa).then(total(b).total_cmp(&total(a)))
    });
}

pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(fp: u64, table: &str, cols: &[&str], after: Option<f64>) -> Finding {
        Finding {
            database: "app".into(),
            schema: "public".into(),
            table: table.into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            predicate: None,
            method: if after.is_some() {
                AdviceMethod::Hypopg
            } else {
                AdviceMethod::Heuristic
            },
            cost_before: 1000.0,
            cost_after: after,
            fingerprint: fp,
        }
    }

    fn load(fp: u64) -> Option<Load> {
        Some(Load {
            calls: 100 * fp,
            total_ms: 1000.0 * fp as f64,
            calls_per_hour: 60.0 * fp as f64,
        })
    }

    #[test]
    fn one_index_helping_three_statements_is_one_advice() {
        let f = vec![
            finding(1, "orders", &["customer_id"], Some(100.0)),
            finding(2, "orders", &["customer_id"], Some(500.0)),
            finding(3, "orders", &["customer_id"], Some(10.0)),
        ];
        let a = merge(&f, load);
        assert_eq!(a.len(), 1);
        let a = &a[0];
        assert_eq!(a.fingerprints.len(), 3);
        // The statement taking the most time leads (and gives the costs).
        assert_eq!(a.fingerprints[0].fingerprint, "0000000000000003");
        assert_eq!(a.cost_after, Some(10.0));
        // Each statement: calls/h x mean (10 ms) x its own improvement.
        let expected = 60.0 * 10.0 * 0.9 + 120.0 * 10.0 * 0.5 + 180.0 * 10.0 * 0.99;
        assert!((a.saved_ms_per_hour.unwrap() - expected).abs() < 1e-6);
        assert_eq!(a.ddl, "CREATE INDEX CONCURRENTLY ON orders (customer_id)");
        assert_eq!(a.method, AdviceMethod::Hypopg);
    }

    #[test]
    fn different_columns_or_predicates_stay_apart_and_the_biggest_saving_comes_first() {
        let mut partial = finding(1, "orders", &["customer_id"], Some(900.0));
        partial.predicate = Some("status = 'x'::text".into());
        let f = vec![
            finding(1, "orders", &["customer_id"], Some(900.0)),
            partial,
            finding(2, "orders", &["status"], Some(0.0)),
            finding(3, "items", &["sku"], None),
        ];
        let a = merge(&f, load);
        assert_eq!(a.len(), 4);
        assert_eq!(a[0].columns, ["status"]);
        assert_eq!(a[3].method, AdviceMethod::Heuristic);
        assert!(a[3].reason.contains("hypopg was not available"));
        assert_eq!(a[3].saved_ms_per_hour, None);
        assert!(a
            .iter()
            .any(|x| x.ddl.ends_with("WHERE status = 'x'::text")));
    }

    #[test]
    fn findings_whose_statements_are_gone_give_no_advice() {
        let f = vec![finding(7, "orders", &["customer_id"], Some(1.0))];
        assert!(merge(&f, |_| None).is_empty());
    }
}
