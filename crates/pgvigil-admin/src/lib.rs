//! The admin listener: health endpoints and the JSON API over query
//! insight. The API's field names are a contract (dashboards and scripts
//! read them): times are RFC 3339 strings, durations milliseconds.

mod dashboard;
mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pgvigil_insight::{DetectionRow, Insight, Pattern, QueryRow, SlowEvent, SortBy};
use serde::Deserialize;
use serde_json::{json, Value};

pub use pgvigil_insight::time::rfc3339_ms;

#[derive(Clone)]
pub struct AdminState {
    /// None when analytics are off.
    pub insight: Option<Arc<Insight>>,
    pub pools: Vec<Arc<pgvigil_proxy::ServerPool>>,
    /// Fingerprints with their own `/metrics` series; the rest are "other".
    pub max_query_series: usize,
    /// When set, `/api/*` (and `/metrics` if `metrics_require_token`) need
    /// `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    pub metrics_require_token: bool,
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/queries", get(queries))
        .route("/api/queries/{fingerprint}", get(query_detail))
        .route("/api/slow", get(slow))
        .route("/api/n-plus-one", get(n_plus_one))
        .route("/api/reset", post(reset))
        .route("/api/insight", get(insight_status))
        .route("/api/pools", get(pools))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let metrics = Router::new().route("/metrics", get(metrics_text));
    let metrics = if state.metrics_require_token {
        metrics.route_layer(middleware::from_fn_with_state(state.clone(), require_token))
    } else {
        metrics
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .merge(metrics)
        .merge(dashboard::routes())
        .with_state(state)
}

/// Checks the bearer token, when one is configured.
async fn require_token(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send Authorization: Bearer <admin_token>",
        )
    }
}

/// Serves the admin API until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

pub fn local_addr(listener: &tokio::net::TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the
/// classic text format otherwise.
async fn metrics_text(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let collector = metrics::PgvigilCollector {
        insight: state.insight.clone(),
        pools: state.pools.clone(),
        max_query_series: state.max_query_series,
    };
    let Ok(text) = metrics::render(collector) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode metrics",
        );
    };
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::to_classic_text(&text),
        )
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// How long a login attempt's outcome answers `/readyz` before the next
/// probe logs in again: probes come every few seconds from load balancers
/// and Kubernetes, and each login costs PostgreSQL a backend process.
const READY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a readiness probe waits for a login.
const READY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ready when every configured upstream accepts a login; 503 with the
/// reasons otherwise, for load balancers and Kubernetes. A login that
/// succeeded or failed less than `READY_MAX_AGE` ago (by a client's pool
/// or an earlier probe) answers without a new one.
async fn readyz(State(state): State<AdminState>) -> Response {
    let mut databases: std::collections::BTreeMap<&str, Vec<&pgvigil_proxy::ServerPool>> =
        Default::default();
    for pool in &state.pools {
        databases.entry(&pool.database).or_default().push(pool);
    }
    let mut problems = Vec::new();
    for (database, pools) in databases {
        if pools.iter().any(|p| p.recently_up(READY_MAX_AGE)) {
            continue;
        }
        // One login per database is enough.
        if let Err(e) = pools[0].readiness(READY_MAX_AGE, READY_PROBE_TIMEOUT).await {
            problems.push(format!("database {database}: {e}"));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "problems": problems })),
        )
            .into_response()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn analytics_off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "query analytics are off (analytics = false)",
    )
}

#[derive(Deserialize)]
struct QueriesParams {
    sort: Option<String>,
    limit: Option<usize>,
    window: Option<String>,
}

/// "5m", "1h", "90s" (rounded up to minutes), or a bare number of minutes.
fn parse_window(text: &str) -> Result<u64, String> {
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad window `{text}`: use e.g. 5m or 1h"))?;
    let minutes = match unit {
        "" | "m" => n,
        "h" => n * 60,
        "s" => n.div_ceil(60),
        _ => return Err(format!("bad window `{text}`: use e.g. 5m or 1h")),
    };
    if minutes == 0 || minutes > pgvigil_insight::HISTORY_MINUTES {
        return Err(format!(
            "window `{text}` must be between 1m and {}m",
            pgvigil_insight::HISTORY_MINUTES
        ));
    }
    Ok(minutes)
}

async fn queries(State(state): State<AdminState>, Query(p): Query<QueriesParams>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let sort: SortBy = match p.sort.as_deref().unwrap_or("total_time").parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let window = match p.window.as_deref().map(parse_window).transpose() {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let rows = insight.queries(sort, p.limit.unwrap_or(50).min(10_000), window, now_ms());
    let rows: Vec<Value> = rows.iter().map(query_json).collect();
    Json(json!({ "queries": rows })).into_response()
}

fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

fn query_json(r: &QueryRow) -> Value {
    json!({
        "fingerprint": fingerprint_hex(r.fingerprint),
        "query": r.query,
        "statement": r.statement,
        "calls": r.calls,
        "errors": r.errors,
        "rows": r.rows,
        "total_ms": r.total_ms,
        "mean_ms": r.mean_ms,
        "min_ms": r.min_ms,
        "max_ms": r.max_ms,
        "stddev_ms": r.stddev_ms,
        "p50_ms": r.p50_ms,
        "p90_ms": r.p90_ms,
        "p95_ms": r.p95_ms,
        "p99_ms": r.p99_ms,
        "p999_ms": r.p999_ms,
        "first_seen": rfc3339_ms(r.first_seen_ms),
        "last_seen": rfc3339_ms(r.last_seen_ms),
        "tables": r.tables,
        "lint": r.lint.iter().map(|(code, message)| json!({"code": code, "message": message})).collect::<Vec<_>>(),
    })
}

async fn query_detail(State(state): State<AdminState>, Path(fp): Path<String>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let Ok(fingerprint) = u64::from_str_radix(&fp, 16) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{fp}` is not a fingerprint (16 hex digits)"),
        );
    };
    let Some(d) = insight.query(fingerprint, now_ms()) else {
        return error(StatusCode::NOT_FOUND, format!("no statistics for {fp}"));
    };
    let mut body = query_json(&d.row);
    let slow: Vec<Value> = insight
        .slow_events(usize::MAX)
        .iter()
        .filter(|e| e.fingerprint == fingerprint)
        .take(20)
        .map(slow_json)
        .collect();
    if let Value::Object(map) = &mut body {
        map.insert(
            "histogram".into(),
            d.histogram
                .iter()
                .map(|(lo, hi, n)| {
                    json!({"le_ms": *hi as f64 / 1000.0, "ge_ms": *lo as f64 / 1000.0, "count": n})
                })
                .collect(),
        );
        map.insert(
            "errors_by_sqlstate".into(),
            d.errors_by_sqlstate
                .iter()
                .map(|(code, n)| (code.clone(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        map.insert(
            "callers".into(),
            d.callers
                .iter()
                .map(|c| json!({"database": c.database, "user": c.user, "application_name": c.application_name}))
                .collect(),
        );
        map.insert(
            "recent".into(),
            d.minutes
                .iter()
                .map(|m| {
                    json!({"start": rfc3339_ms(m.minute_start_ms), "minutes": m.minutes, "calls": m.calls,
                           "p50_ms": m.p50_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms})
                })
                .collect(),
        );
        map.insert("slow_events".into(), slow.into());
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
struct LimitParams {
    limit: Option<usize>,
}

fn tags_json(tags: &[(String, String)]) -> Value {
    tags.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

fn slow_json(e: &SlowEvent) -> Value {
    json!({
        "at": rfc3339_ms(e.at_ms),
        "rule": e.rule,
        "fingerprint": fingerprint_hex(e.fingerprint),
        "query": e.query,
        "duration_ms": e.duration_us as f64 / 1000.0,
        "database": e.database,
        "user": e.user,
        "application_name": e.application_name,
        "client_addr": e.client_addr,
        "tags": tags_json(&e.tags),
        "parameters": e.parameters,
    })
}

async fn slow(State(state): State<AdminState>, Query(p): Query<LimitParams>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let events: Vec<Value> = insight
        .slow_events(p.limit.unwrap_or(100))
        .iter()
        .map(slow_json)
        .collect();
    Json(json!({ "events": events })).into_response()
}

fn detection_json(d: &DetectionRow) -> Value {
    let (kind, parent) = match d.pattern {
        Pattern::NPlusOne { parent } => ("n_plus_one", Some(fingerprint_hex(parent))),
        Pattern::RepeatedIdentical => ("repeated_identical", None),
    };
    json!({
        "kind": kind,
        "fingerprint": fingerprint_hex(d.child),
        "query": d.child_query,
        "parent_fingerprint": parent,
        "parent_query": d.parent_query,
        "repeats": d.repeats,
        "total_ms": d.total_ms,
        "occurrences": d.occurrences,
        "first_seen": rfc3339_ms(d.first_seen_ms),
        "last_seen": rfc3339_ms(d.last_seen_ms),
        "database": d.caller.database,
        "user": d.caller.user,
        "application_name": d.caller.application_name,
        "tags": tags_json(&d.tags),
        "suggestion": d.suggestion,
    })
}

async fn n_plus_one(State(state): State<AdminState>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let rows: Vec<Value> = insight.detections().iter().map(detection_json).collect();
    Json(json!({ "detections": rows })).into_response()
}

/// The table's size and what every bounded buffer dropped.
async fn insight_status(State(state): State<AdminState>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let c = insight.counters();
    let cfg = insight.config();
    Json(json!({
        "fingerprints": c.fingerprints,
        "max_fingerprints": cfg.max_fingerprints,
        "fingerprint_evictions": c.evictions,
        "slow_events": c.slow_events,
        "slow_events_dropped": c.slow_events_dropped,
        "max_slow_events": cfg.max_slow_events,
        "detections": c.detections,
        "detections_dropped": c.detections_dropped,
        "max_detections": cfg.max_detections,
        "lint_dropped": c.lint_dropped,
    }))
    .into_response()
}

/// Server connection pools per (database, user): utilization is active
/// connections over `pool_size`, as `pgvigil_pool_utilization_ratio`.
async fn pools(State(state): State<AdminState>) -> Response {
    let pools: Vec<Value> = state
        .pools
        .iter()
        .map(|p| {
            let s = p.snapshot();
            let active = s.total.saturating_sub(s.idle);
            json!({
                "database": p.database,
                "user": p.user,
                "pool_mode": p.mode().as_str(),
                "pool_size": s.pool_size,
                "active": active,
                "idle": s.idle,
                "overflow": s.total.saturating_sub(s.pool_size),
                "waiting": s.waiting,
                "clients": s.clients,
                "paused": s.paused,
                "utilization": active as f64 / s.pool_size.max(1) as f64,
            })
        })
        .collect();
    Json(json!({ "pools": pools })).into_response()
}

async fn reset(State(state): State<AdminState>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    insight.reset();
    Json(json!({ "reset": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_to_minutes() {
        assert_eq!(parse_window("5m"), Ok(5));
        assert_eq!(parse_window("1h"), Ok(60));
        assert_eq!(parse_window("90s"), Ok(2));
        assert!(parse_window("2h").is_err());
        assert!(parse_window("five").is_err());
    }
}
