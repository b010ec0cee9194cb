//! What a plan says at a glance. Pure functions over PostgreSQL's
//! `EXPLAIN (FORMAT JSON)` output, so they are tested on captured plans
//! without a server.

use serde::Serialize;
use serde_json::Value;

/// A sequential scan is worth mentioning from this many rows (estimated,
/// or actual with ANALYZE): below it, an index rarely pays for itself.
pub const LARGE_TABLE_ROWS: f64 = 10_000.0;
/// A nested loop whose inner side runs this many times is flagged.
pub const MANY_LOOPS: f64 = 1_000.0;
/// Estimates this many times off the actual row count are flagged.
pub const MISESTIMATE_FACTOR: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeqScan {
    pub table: String,
    /// Actual rows read (ANALYZE) or the planner's estimate of rows out
    /// plus rows filtered.
    pub rows: f64,
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Misestimate {
    pub node: String,
    pub estimated_rows: f64,
    pub actual_rows: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spill {
    /// "Sort", "Hash" or "Aggregate".
    pub node: String,
    /// As EXPLAIN reports it (a Hash node only reports its batches).
    pub disk_kb: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopNode {
    pub node: String,
    /// How often the inner side ran.
    pub loops: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowestNode {
    pub node: String,
    pub relation: Option<String>,
    /// Milliseconds of its own (children's time taken off), with ANALYZE.
    pub self_ms: Option<f64>,
    /// Its own share of the total cost, without ANALYZE.
    pub self_cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    pub total_cost: f64,
    /// With ANALYZE only.
    pub execution_ms: Option<f64>,
    pub seq_scans: Vec<SeqScan>,
    pub misestimates: Vec<Misestimate>,
    pub spills: Vec<Spill>,
    pub nested_loops: Vec<LoopNode>,
    pub slowest: Option<SlowestNode>,
}

/// The top plan node of `EXPLAIN (FORMAT JSON)` output: `[{"Plan": ...}]`.
pub fn root(explain: &Value) -> Option<&Value> {
    explain.get(0)?.get("Plan")
}

fn num(node: &Value, key: &str) -> Option<f64> {
    node.get(key).and_then(Value::as_f64)
}

fn text<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Value::as_str)
}

pub(crate) fn children(node: &Value) -> &[Value] {
    node.get("Plans")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn node_type(node: &Value) -> String {
    text(node, "Node Type").unwrap_or("?").to_string()
}

/// Everything worth flagging in a plan, as the issue lists it: large
/// sequential scans, estimates 10x off, spills to disk, nested loops with
/// many iterations, and the node that costs the most.
pub fn summarize(explain: &Value) -> Option<PlanSummary> {
    let top = root(explain)?;
    let mut s = PlanSummary {
        total_cost: num(top, "Total Cost").unwrap_or(0.0),
        execution_ms: explain.get(0).and_then(|e| num(e, "Execution Time")),
        seq_scans: Vec::new(),
        misestimates: Vec::new(),
        spills: Vec::new(),
        nested_loops: Vec::new(),
        slowest: None,
    };
    let mut best: Option<(f64, SlowestNode)> = None;
    walk(top, &mut s, &mut best);
    s.slowest = best.map(|(_, n)| n);
    Some(s)
}

fn walk(node: &Value, s: &mut PlanSummary, best: &mut Option<(f64, SlowestNode)>) {
    let kind = node_type(node);
    let analyzed = num(node, "Actual Loops").is_some();
    // Actual figures are per loop; a parallel node's loops are its workers.
    let loops = num(node, "Actual Loops").unwrap_or(1.0).max(1.0);
    let actual_rows = num(node, "Actual Rows").map(|r| r * loops);

    if kind == "Seq Scan" {
        let removed = num(node, "Rows Removed by Filter").unwrap_or(0.0) * loops;
        let rows = match actual_rows {
            Some(r) => r + removed,
            None => num(node, "Plan Rows").unwrap_or(0.0),
        };
        if rows >= LARGE_TABLE_ROWS || has_large_cost(node) {
            s.seq_scans.push(SeqScan {
                table: text(node, "Relation Name").unwrap_or("?").to_string(),
                rows: rows.round(),
                filter: text(node, "Filter").map(str::to_string),
            });
        }
    }

    if let (Some(actual), Some(est)) = (actual_rows, num(node, "Plan Rows")) {
        // Plan Rows is per loop too; compare like with like, and never
        // call 0 vs 1 a misestimate.
        let est = est * loops;
        let (a, e) = (actual.max(1.0), est.max(1.0));
        if a / e >= MISESTIMATE_FACTOR || e / a >= MISESTIMATE_FACTOR {
            s.misestimates.push(Misestimate {
                node: kind.clone(),
                estimated_rows: est.round(),
                actual_rows: actual.round(),
            });
        }
    }

    if text(node, "Sort Space Type") == Some("Disk") {
        s.spills.push(Spill {
            node: kind.clone(),
            disk_kb: num(node, "Sort Space Used"),
        });
    }
    if num(node, "Original Hash Batches").unwrap_or(1.0) > 1.0
        || num(node, "Hash Batches").unwrap_or(1.0) > 1.0
    {
        s.spills.push(Spill {
            node: kind.clone(),
            disk_kb: None,
        });
    }
    if num(node, "Disk Usage").unwrap_or(0.0) > 0.0 {
        s.spills.push(Spill {
            node: kind.clone(),
            disk_kb: num(node, "Disk Usage"),
        });
    }

    if kind == "Nested Loop" {
        // The inner side is the second child; its loops are the outer
        // side's rows (estimated rows without ANALYZE).
        if let Some(inner) = children(node).get(1) {
            let inner_loops = num(inner, "Actual Loops").or_else(|| {
                children(node)
                    .first()
                    .and_then(|outer| num(outer, "Plan Rows"))
            });
            if let Some(l) = inner_loops.filter(|l| *l >= MANY_LOOPS) {
                s.nested_loops.push(LoopNode {
                    node: node_type(inner),
                    loops: l,
                });
            }
        }
    }

    let (weight, candidate) = if analyzed {
        let own = num(node, "Actual Total Time").unwrap_or(0.0) * loops
            - children(node)
                .iter()
                .map(|c| {
                    num(c, "Actual Total Time").unwrap_or(0.0)
                        * num(c, "Actual Loops").unwrap_or(1.0).max(1.0)
                })
                .sum::<f64>();
        let own = own.max(0.0);
        (
            own,
            SlowestNode {
                node: kind.clone(),
                relation: text(node, "Relation Name").map(str::to_string),
                self_ms: Some(round3(own)),
                self_cost: None,
            },
        )
    } else {
        let own = num(node, "Total Cost").unwrap_or(0.0)
            - children(node)
                .iter()
                .filter(|c| text(c, "Parent Relationship") != Some("InitPlan"))
                .map(|c| num(c, "Total Cost").unwrap_or(0.0))
                .sum::<f64>();
        let own = own.max(0.0);
        (
            own,
            SlowestNode {
                node: kind.clone(),
                relation: text(node, "Relation Name").map(str::to_string),
                self_ms: None,
                self_cost: Some(round3(own)),
            },
        )
    };
    if best.as_ref().is_none_or(|(w, _)| weight > *w) {
        *best = Some((weight, candidate));
    }

    for c in children(node) {
        walk(c, s, best);
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Without ANALYZE, a filtered scan's rows out say little about the rows
/// read; its cost does (about one unit per page plus 0.01 per row), so a
/// scan costing this much reads a large table whatever it returns.
fn has_large_cost(node: &Value) -> bool {
    num(node, "Actual Loops").is_none() && num(node, "Total Cost").unwrap_or(0.0) >= 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "generic_seq_scan" => include_str!("fixtures/generic_seq_scan.json"),
            "join_sort" => include_str!("fixtures/join_sort.json"),
            "analyze_sort_disk" => include_str!("fixtures/analyze_sort_disk.json"),
            "analyze_nested_loop" => include_str!("fixtures/analyze_nested_loop.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).expect("fixture is JSON")
    }

    #[test]
    fn generic_plan_of_an_unindexed_filter_reports_the_seq_scan() {
        let s = summarize(&fixture("generic_seq_scan")).unwrap();
        assert_eq!(s.seq_scans.len(), 1);
        assert_eq!(s.seq_scans[0].table, "orders");
        assert_eq!(s.seq_scans[0].filter.as_deref(), Some("(customer_id = $1)"));
        assert!(s.misestimates.is_empty(), "no actuals, no misestimate");
        assert!(s.spills.is_empty());
        assert_eq!(s.total_cost, 5445.88);
        let slowest = s.slowest.unwrap();
        assert_eq!(slowest.node, "Seq Scan");
        assert!(slowest.self_ms.is_none());
    }

    #[test]
    fn small_tables_are_not_called_large_seq_scans() {
        let s = summarize(&fixture("join_sort")).unwrap();
        let tables: Vec<&str> = s.seq_scans.iter().map(|x| x.table.as_str()).collect();
        assert_eq!(tables, ["orders", "customers"]);
        assert!(s.nested_loops.is_empty());
    }

    #[test]
    fn sort_spilling_to_disk_is_reported_with_its_size() {
        let s = summarize(&fixture("analyze_sort_disk")).unwrap();
        assert_eq!(s.spills.len(), 1);
        assert_eq!(s.spills[0].node, "Sort");
        assert!(s.spills[0].disk_kb.unwrap() > 1000.0);
        assert!(s.execution_ms.is_some());
        // With actuals, the slowest node is judged by time: the sort.
        assert_eq!(s.slowest.as_ref().unwrap().node, "Sort");
        assert!(s.slowest.unwrap().self_ms.unwrap() > 0.0);
    }

    #[test]
    fn nested_loop_with_many_iterations_and_a_misestimate_are_reported() {
        let s = summarize(&fixture("analyze_nested_loop")).unwrap();
        assert_eq!(s.nested_loops.len(), 1);
        assert!(s.nested_loops[0].loops >= MANY_LOOPS);
        assert!(
            s.misestimates.iter().any(|m| m.node == "Nested Loop"),
            "{:?}",
            s.misestimates
        );
    }

    #[test]
    fn hashes_in_batches_and_aggregates_on_disk_are_spills() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "Aggregate", "Strategy": "Hashed", "Total Cost": 10.0,
            "Actual Total Time": 5.0, "Actual Rows": 1, "Actual Loops": 1, "Plan Rows": 1,
            "Disk Usage": 2048, "HashAgg Batches": 5,
            "Plans": [{"Node Type": "Hash", "Total Cost": 5.0, "Actual Total Time": 2.0,
                       "Actual Rows": 1, "Actual Loops": 1, "Plan Rows": 1,
                       "Hash Batches": 8, "Original Hash Batches": 1}]}}]);
        let s = summarize(&plan).unwrap();
        assert_eq!(
            s.spills,
            [
                Spill {
                    node: "Aggregate".into(),
                    disk_kb: Some(2048.0)
                },
                Spill {
                    node: "Hash".into(),
                    disk_kb: None
                },
            ]
        );
    }

    #[test]
    fn not_explain_output_has_no_summary() {
        assert!(summarize(&serde_json::json!({"x": 1})).is_none());
    }
}

/// Replaces the constants in a plan's expressions (`Filter`, `Index Cond`,
/// `Sort Key`, ...) with `$n`, as statements are shown everywhere else: a
/// plan taken with a parameter sample prints the sample's values there,
/// and those stay in memory only.
pub fn redact_constants(plan: &mut Value) {
    match plan {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_expression_key(key) {
                    redact_strings(value);
                } else {
                    redact_constants(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_constants),
        _ => {}
    }
}

fn is_expression_key(key: &str) -> bool {
    key.ends_with("Cond")
        || key.ends_with("Filter")
        || key.ends_with("Key")
        || matches!(
            key,
            "Output"
                | "Function Call"
                | "Table Function Call"
                | "Sampling Parameters"
                | "Repeatable Seed"
                | "Order By"
                | "Cache Key"
        )
}

fn redact_strings(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Some(s) = pgvigil_sql::normalize(text.as_bytes()).into_iter().next() {
                *text = s.text.to_string();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_strings),
        Value::Object(_) => redact_constants(value),
        _ => {}
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn a_sampled_plan_shows_placeholders_not_the_sample() {
        let mut plan = serde_json::json!([{"Plan": {
            "Node Type": "Seq Scan",
            "Relation Name": "orders",
            "Filter": "((customer_id = 77) AND (status = 'pending'::text))",
            "Sort Key": ["(amount * 3)"],
            "Plans": [{"Node Type": "Index Scan", "Index Cond": "(id = 5)"}]
        }}]);
        redact_constants(&mut plan);
        let p = &plan[0]["Plan"];
        assert_eq!(p["Filter"], "((customer_id = $1) AND (status = $2::text))");
        assert_eq!(p["Sort Key"][0], "(amount * $1)");
        assert_eq!(p["Plans"][0]["Index Cond"], "(id = $1)");
        assert_eq!(p["Relation Name"], "orders");
    }
}
