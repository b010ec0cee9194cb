//! Inputs shared by pgvigil's micro-benchmarks and the instruction-count
//! example, so every measurement runs on the same text.

/// A typical ORM query (ActiveRecord style), about 200 bytes.
pub const ORM_QUERY: &str = "SELECT \"orders\".\"id\", \"orders\".\"user_id\", \"orders\".\"status\", \"orders\".\"total\" FROM \"orders\" WHERE \"orders\".\"user_id\" = 42 AND \"orders\".\"status\" IN ('paid', 'shipped') ORDER BY \"orders\".\"created_at\" DESC LIMIT 20";

/// A reporting query of about 2 KB: joins, a CTE, a window function, JSON
/// operators, a long IN list and a sqlcommenter comment.
pub fn large_query() -> String {
    let mut columns = String::new();
    for (i, c) in [
        "id",
        "user_id",
        "status",
        "total",
        "currency",
        "created_at",
        "shipped_at",
        "metadata",
    ]
    .iter()
    .enumerate()
    {
        for t in ["o", "h"] {
            columns.push_str(&format!("{t}.{c} AS {t}_{c}_{i}, "));
        }
    }
    let ids: Vec<String> = (1..=130).map(|i| (i * 37).to_string()).collect();
    format!(
        "WITH recent AS (SELECT user_id, sum(total) AS spent, count(*) AS n FROM orders \
         WHERE created_at > now() - interval '30 days' AND status <> 'cancelled' GROUP BY user_id) \
         SELECT {columns}u.email, u.settings->>'theme' AS theme, r.spent, \
         row_number() OVER (PARTITION BY u.org_id ORDER BY r.spent DESC) AS rank \
         FROM orders o JOIN orders h ON h.user_id = o.user_id AND h.id <> o.id \
         JOIN users u ON u.id = o.user_id LEFT JOIN recent r ON r.user_id = u.id \
         WHERE o.id IN ({ids}) AND u.settings @> '{{\"beta\": true}}' AND o.total > -1.5 \
         AND coalesce(o.metadata->>'source', 'web') = 'app' AND u.email LIKE 'user%@example.com' \
         ORDER BY r.spent DESC NULLS LAST, o.created_at DESC LIMIT 100 OFFSET 0 \
         /*controller='reports',action='revenue',traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01'*/",
        ids = ids.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_have_the_advertised_sizes() {
        assert!(
            (190..=230).contains(&ORM_QUERY.len()),
            "{}",
            ORM_QUERY.len()
        );
        let n = large_query().len();
        assert!((1900..=2300).contains(&n), "{n}");
    }
}
