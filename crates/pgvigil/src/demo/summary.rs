//! What the demo shows of pgvigil while it runs and when it ends, read
//! from the admin API as any other tool would, so the demo exercises the
//! same surface the dashboard and `pgvigil top` use; the answers are read
//! by `pgvigil top`'s parsers, so the two agree on the API's fields.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::top::api as top_api;

/// Answers larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// A GET of the local admin listener answers in milliseconds; the advisor's
/// refresh plans statements and may take seconds.
const GET_TIMEOUT: Duration = Duration::from_secs(10);
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin listener of the in-process pgvigil.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    addr: SocketAddr,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.request("GET", path, GET_TIMEOUT).await
    }

    /// A POST with the header the admin API asks of requests that change
    /// something.
    pub async fn post(&self, path: &str) -> Result<Value> {
        self.request("POST", path, REFRESH_TIMEOUT).await
    }

    /// One HTTP/1.0 exchange, asynchronous (`pgvigil top`'s client blocks
    /// and only GETs); its answer is split by top's `parse_response`.
    async fn request(&self, method: &str, path: &str, limit: Duration) -> Result<Value> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
            let request = format!(
                "{method} {path} HTTP/1.0\r\nHost: {}\r\nX-Pgvigil: 1\r\nContent-Length: 0\r\n\r\n",
                self.addr
            );
            stream.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            stream
                .take(MAX_RESPONSE_BYTES)
                .read_to_end(&mut response)
                .await?;
            Ok::<_, std::io::Error>(response)
        };
        let response = tokio::time::timeout(limit, exchange)
            .await
            .with_context(|| format!("{method} {path}: no answer within {limit:?}"))?
            .with_context(|| format!("{method} {path}"))?;
        let (status, body) = top_api::parse_response(&response)
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                truncate(String::from_utf8_lossy(&body).trim(), 200)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("{method} {path}: not JSON"))
    }
}

/// Figures behind the live line, as of one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub calls: u64,
    pub errors: u64,
    pub fingerprints: u64,
    pub n_plus_one: u64,
    pub slow: u64,
    pub active: u64,
    pub pool_size: u64,
    pub clients: u64,
}

impl Snapshot {
    pub async fn take(api: &Api) -> Result<Snapshot> {
        let queries = api.get("/api/queries?sort=calls&limit=10000").await?;
        let insight = api.get("/api/insight").await?;
        let detections = api.get("/api/n-plus-one").await?;
        let pools = api.get("/api/pools").await?;
        Ok(Snapshot::from_answers(
            &queries,
            &insight,
            &detections,
            &pools,
        ))
    }

    /// Missing fields count as zero: the line is a glance, not a report.
    fn from_answers(
        queries: &Value,
        insight: &Value,
        detections: &Value,
        pools: &Value,
    ) -> Snapshot {
        let queries = top_api::parse_queries(queries).unwrap_or_default();
        let detections = top_api::parse_detections(detections).unwrap_or_default();
        let pools = top_api::parse_pools(pools).unwrap_or_default();
        Snapshot {
            calls: queries.iter().map(|q| q.calls).sum(),
            errors: queries.iter().map(|q| q.errors).sum(),
            fingerprints: top_api::count(insight, "fingerprints"),
            n_plus_one: detections.iter().map(|d| d.occurrences).sum(),
            slow: top_api::count(insight, "slow_events")
                + top_api::count(insight, "slow_events_dropped"),
            active: pools.iter().map(|p| p.active).sum(),
            pool_size: pools.iter().map(|p| p.pool_size).sum(),
            clients: pools.iter().map(|p| p.clients).sum(),
        }
    }
}

/// The one-line summary: statements per second since `previous`, and the
/// totals.
pub fn live_line(previous: Option<(&Snapshot, Instant)>, now: (&Snapshot, Instant)) -> String {
    let rate = match previous {
        Some((before, at)) => {
            let secs = now.1.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                now.0.calls.saturating_sub(before.calls) as f64 / secs
            } else {
                0.0
            }
        }
        None => 0.0,
    };
    let s = now.0;
    format!(
        "{rate:.0} queries/s | {} fingerprints | {} N+1 | {} slow | {} errors | pool {}/{} in use, {} clients",
        s.fingerprints, s.n_plus_one, s.slow, s.errors, s.active, s.pool_size, s.clients
    )
}

/// What the demo saw, as scripts/demo.sh printed it: top statements,
/// N+1 loops with their parent, slow statements, errors, index advice and
/// pools. The advisor is run first, so its advice is current.
pub async fn final_report(api: &Api) -> Result<String> {
    let advice = api.post("/api/advice/refresh").await;
    let queries = api.get("/api/queries?sort=total_time&limit=8").await?;
    let by_errors = api.get("/api/queries?sort=errors&limit=5").await?;
    let detections = api.get("/api/n-plus-one").await?;
    let slow = api.get("/api/slow?limit=5").await?;
    let pools = api.get("/api/pools").await?;
    let mut out = String::new();

    out.push_str("top statements by total time (GET /api/queries):\n");
    out.push_str(&format!(
        "  {:>7} {:>10} {:>8} {:>8}  query\n",
        "calls", "total ms", "mean ms", "p95 ms"
    ));
    for q in top_api::parse_queries(&queries).unwrap_or_default() {
        out.push_str(&format!(
            "  {:>7} {:>10.1} {:>8.3} {:>8.3}  {}\n",
            q.calls,
            q.total_ms,
            q.mean_ms,
            q.p95_ms,
            truncate(&q.query, 90)
        ));
    }

    out.push_str("N+1 loops (GET /api/n-plus-one):\n");
    let detections = top_api::parse_detections(&detections).unwrap_or_default();
    if detections.is_empty() {
        out.push_str("  none\n");
    }
    for d in &detections {
        out.push_str(&format!(
            "  {}: {} repeats, seen {} times  {}\n",
            d.kind,
            d.repeats,
            d.occurrences,
            truncate(&d.query, 90)
        ));
        if !d.parent_query.is_empty() {
            out.push_str(&format!(
                "    after parent: {}\n",
                truncate(&d.parent_query, 90)
            ));
        }
        out.push_str(&format!(
            "    suggestion: {}\n",
            truncate(&d.suggestion, 160)
        ));
    }

    out.push_str("slow statements (GET /api/slow):\n");
    let slow = top_api::parse_slow(&slow).unwrap_or_default();
    if slow.is_empty() {
        out.push_str("  none\n");
    }
    for e in &slow {
        out.push_str(&format!(
            "  {:.0} ms  rule={}  {}  ({})\n",
            e.duration_ms,
            e.rule,
            truncate(&e.query, 80),
            e.application_name
        ));
    }

    out.push_str("statements with errors (GET /api/queries?sort=errors):\n");
    let failing: Vec<_> = top_api::parse_queries(&by_errors)
        .unwrap_or_default()
        .into_iter()
        .filter(|q| q.errors > 0)
        .collect();
    if failing.is_empty() {
        out.push_str("  none\n");
    }
    for q in &failing {
        out.push_str(&format!(
            "  {} errors in {} calls  {}\n",
            q.errors,
            q.calls,
            truncate(&q.query, 90)
        ));
    }

    // `pgvigil top` only counts the advice; the report shows each one.
    out.push_str("index advice (POST /api/advice/refresh):\n");
    match &advice {
        Ok(advice) => {
            let list: &[Value] = advice["advice"].as_array().map_or(&[], Vec::as_slice);
            if list.is_empty() {
                out.push_str("  none yet\n");
            }
            for a in list {
                let gain = match a["improvement"].as_f64() {
                    Some(g) if g > 0.0 => format!(", estimated cost -{:.0}%", g * 100.0),
                    _ => String::new(),
                };
                out.push_str(&format!(
                    "  {} ({}{gain}): {}\n",
                    top_api::text(a, "kind"),
                    top_api::text(a, "method"),
                    top_api::text(a, "ddl")
                ));
            }
        }
        Err(e) => out.push_str(&format!("  unavailable: {e:#}\n")),
    }

    out.push_str("pools (GET /api/pools):\n");
    for p in top_api::parse_pools(&pools).unwrap_or_default() {
        out.push_str(&format!(
            "  {}/{} ({}): {} of {} server connections in use, {} idle, {} clients, {} waiting\n",
            p.database, p.user, p.pool_mode, p.active, p.pool_size, p.idle, p.clients, p.waiting,
        ));
    }
    Ok(out)
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_live_line_sums_statements_loops_and_pools() {
        let s = Snapshot::from_answers(
            &json!({"queries": [{"calls": 10, "errors": 2}, {"calls": 5, "errors": 0}]}),
            &json!({"fingerprints": 2, "slow_events": 3, "slow_events_dropped": 1}),
            &json!({"detections": [{"occurrences": 4}, {"occurrences": 3}]}),
            &json!({"pools": [{"active": 2, "pool_size": 10, "clients": 300}]}),
        );
        assert_eq!(
            s,
            Snapshot {
                calls: 15,
                errors: 2,
                fingerprints: 2,
                n_plus_one: 7,
                slow: 4,
                active: 2,
                pool_size: 10,
                clients: 300,
            }
        );
        let t0 = Instant::now();
        let before = Snapshot {
            calls: 5,
            ..s.clone()
        };
        let line = live_line(Some((&before, t0)), (&s, t0 + Duration::from_secs(2)));
        assert_eq!(
            line,
            "5 queries/s | 2 fingerprints | 7 N+1 | 4 slow | 2 errors | pool 2/10 in use, 300 clients"
        );
    }

    #[test]
    fn answers_of_an_unexpected_shape_count_as_zero() {
        let s = Snapshot::from_answers(&json!({}), &json!([]), &json!(null), &json!({"pools": 3}));
        assert_eq!(s, Snapshot::default());
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("ééé", 2), "éé...");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
