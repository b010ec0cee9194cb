//! The admin listener: health endpoints and the JSON API over query
//! insight. The API's field names are a contract (dashboards and scripts
//! read them): times are RFC 3339 strings, durations milliseconds.

mod advice;
mod dashboard;
mod health;
mod markers;
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

pub type PoolList = Arc<dyn Fn() -> Vec<Arc<pgvigil_proxy::ServerPool>> + Send + Sync>;

#[derive(Clone)]
pub struct AdminState {
    /// None when analytics are off.
    pub insight: Option<Arc<Insight>>,
    /// Every pool at the time of asking: auth_query makes pools as users
    /// log in, so a list taken at start would miss them.
    pub pools: PoolList,
    /// Fingerprints with their own `/metrics` series; the rest are "other".
    pub max_query_series: usize,
    /// `metrics.duration_buckets`: upper bounds, seconds, strictly increasing.
    pub duration_buckets: Arc<[f64]>,
    /// When set, `/api/*` (and `/metrics` if `metrics_require_token`) need
    /// `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    pub metrics_require_token: bool,
    /// The address the listener is bound to: a request's `Host` must name
    /// it (or localhost, or one of `allowed_hosts`).
    pub listen: SocketAddr,
    /// `admin_allowed_hosts`: `name` (any port) or `name:port`.
    pub allowed_hosts: Arc<[String]>,
    /// Database health samples; None when the advisor is off.
    pub health: Option<Arc<pgvigil_advisor::HealthBoard>>,
    /// Plans and advice; None when `[advisor]` is off.
    pub advisor: Option<pgvigil_advisor::AdvisorHandle>,
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/queries", get(queries))
        .route("/api/queries/{fingerprint}", get(query_detail))
        .route("/api/slow", get(slow))
        .route("/api/n-plus-one", get(n_plus_one))
        .route("/api/reset", post(reset))
        .route("/api/insight", get(insight_status))
        .route("/api/latency", get(latency))
        .route("/api/pools", get(pools))
        .route("/api/health", get(health::health))
        .route("/api/markers", get(markers::list).post(markers::create))
        .route("/api/markers/{id}", get(markers::detail))
        .route("/api/regressions", get(markers::regressions))
        .route("/api/advice", get(advice::list))
        .route("/api/advice/refresh", post(advice::refresh))
        .route("/api/queries/{fingerprint}/plan", get(advice::plan))
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
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_site_only,
        ))
        .with_state(state)
}

/// A browser on some web page can be made to talk to this listener: a
/// DNS-rebinding page reads the API under its own host name, and any page
/// can submit a form to `/api/reset`. Neither needs the token when none is
/// set. So every request must name this listener in `Host`, and a request
/// that changes something must carry what no plain form can: a JSON
/// content type or an `X-Pgvigil` header (either makes a cross-site
/// browser request ask first, which this listener never grants).
async fn same_site_only(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .map(|h| h.to_str().unwrap_or_default().to_string())
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if let Some(host) = host {
        if !host_allowed(&host, state.listen, &state.allowed_hosts) {
            return error(
                StatusCode::MISDIRECTED_REQUEST,
                "this admin listener does not answer to that Host: add the name to admin_allowed_hosts",
            );
        }
    }
    let method = request.method();
    let changes_something = !matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if changes_something && !deliberate(request.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            "send Content-Type: application/json or an X-Pgvigil: 1 header with this request",
        );
    }
    next.run(request).await
}

/// What a browser only sends after a CORS preflight, and a script or tool
/// sends on purpose.
fn deliberate(headers: &HeaderMap) -> bool {
    if headers.contains_key("x-pgvigil") {
        return true;
    }
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `host` (a `Host` header: name or IP, optional port) names this
/// listener: a loopback name or address, the listen address (any IP when
/// it listens on all of them), with the listen port; or an entry of
/// `allowed` (`name` for any port, `name:port`).
fn host_allowed(host: &str, listen: SocketAddr, allowed: &[String]) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let listed = allowed.iter().any(|entry| match split_host(entry) {
        Some((n, p)) => {
            n.trim_end_matches('.').eq_ignore_ascii_case(&name) && (p.is_none() || p == port)
        }
        None => false,
    });
    if listed {
        return true;
    }
    let port_ok = port.unwrap_or(80) == listen.port();
    let ip = name.parse::<std::net::IpAddr>().ok();
    let ours = name == "localhost"
        || ip.is_some_and(|ip| {
            ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified()
        });
    port_ok && ours
}

/// `name[:port]` or `[v6][:port]`; None when malformed.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') => (n, Some(p)),
            Some(_) => return None,
            None => (host, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((name, port))
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
        pools: (state.pools)(),
        max_query_series: state.max_query_series,
        duration_buckets: state.duration_buckets.clone(),
        health: state.health.clone(),
        advisor: state.advisor.as_ref().map(|a| a.state.clone()),
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
    // A load balancer stops sending clients while pgvigil drains.
    if pgvigil_proxy::draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let mut databases: std::collections::BTreeMap<&str, Vec<&pgvigil_proxy::ServerPool>> =
        Default::default();
    let all = (state.pools)();
    for pool in &all {
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
        "h" => n.saturating_mul(60),
        "s" => n.div_ceil(60),
        _ => return Err(format!("bad window `{text}`: use e.g. 5m or 1h")),
    };
    // Up to the day of hourly history: longer than an hour, windows are
    // whole hours.
    let longest = pgvigil_insight::HISTORY_HOURS * 60;
    if minutes == 0 || minutes > longest {
        return Err(format!(
            "window `{text}` must be between 1m and {}h",
            pgvigil_insight::HISTORY_HOURS
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
        map.insert("recent".into(), minutes_json(&d.minutes));
        map.insert("slow_events".into(), slow.into());
    }
    Json(body).into_response()
}

fn minutes_json(minutes: &[pgvigil_insight::MinuteRow]) -> Value {
    minutes
        .iter()
        .map(|m| {
            json!({"start": rfc3339_ms(m.minute_start_ms), "minutes": m.minutes, "calls": m.calls,
                   "p50_ms": m.p50_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms})
        })
        .collect()
}

/// Every statement together over the last hour, in the slices of a
/// query's `recent`: the dashboard's latency-over-time chart.
async fn latency(State(state): State<AdminState>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let recent = insight.recent_overall(now_ms());
    Json(json!({ "recent": minutes_json(&recent) })).into_response()
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
        "executions_dropped": c.executions_dropped,
    }))
    .into_response()
}

/// Server connection pools per (database, user): utilization is active
/// connections over `pool_size`, as `pgvigil_pool_utilization_ratio`.
async fn pools(State(state): State<AdminState>) -> Response {
    let pools: Vec<Value> = (state.pools)()
        .iter()
        .map(|p| {
            let s = p.snapshot();
            let active = s.total.saturating_sub(s.idle);
            json!({
                "database": &*p.database,
                "user": &*p.user,
                "pool_mode": p.mode().as_str(),
                "pool_size": s.pool_size,
                "active": active,
                "idle": s.idle,
                "overflow": s.total.saturating_sub(s.pool_size),
                "waiting": s.waiting,
                "clients": s.clients,
                "pinned_clients": s.pinned,
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
    fn host_must_name_this_listener_or_an_allowed_host() {
        let listen: SocketAddr = "127.0.0.1:9930".parse().unwrap();
        let none: [String; 0] = [];
        for ok in [
            "127.0.0.1:9930",
            "localhost:9930",
            "LOCALHOST:9930",
            "[::1]:9930",
            "127.0.0.2:9930",
        ] {
            assert!(host_allowed(ok, listen, &none), "{ok}");
        }
        for bad in [
            "evil.example:9930",
            "localhost:80",
            "127.0.0.1",
            "10.0.0.5:9930",
            "localhost.evil.example:9930",
            "",
            "[::1",
            "a:b:c",
        ] {
            assert!(!host_allowed(bad, listen, &none), "{bad}");
        }
        let allowed = [
            "pgvigil.internal".to_string(),
            "proxy.example:8443".to_string(),
        ];
        assert!(host_allowed("pgvigil.internal", listen, &allowed));
        assert!(host_allowed("PGVIGIL.internal:9930", listen, &allowed));
        assert!(host_allowed("proxy.example:8443", listen, &allowed));
        assert!(!host_allowed("proxy.example:9930", listen, &allowed));

        let everywhere: SocketAddr = "0.0.0.0:9930".parse().unwrap();
        assert!(host_allowed("10.0.0.5:9930", everywhere, &none));
        assert!(!host_allowed("db-admin.example:9930", everywhere, &none));
        let own: SocketAddr = "10.0.0.5:9930".parse().unwrap();
        assert!(host_allowed("10.0.0.5:9930", own, &none));
        assert!(!host_allowed("10.0.0.6:9930", own, &none));
    }

    #[test]
    fn only_json_or_the_custom_header_marks_a_deliberate_request() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            deliberate(&h)
        };
        assert!(with("content-type", "application/json"));
        assert!(with("content-type", "Application/JSON; charset=utf-8"));
        assert!(with("x-pgvigil", "1"));
        assert!(!with("content-type", "application/x-www-form-urlencoded"));
        assert!(!with("content-type", "text/plain"));
        assert!(!with("content-type", "multipart/form-data; boundary=x"));
        assert!(!deliberate(&HeaderMap::new()));
    }

    #[test]
    fn windows_parse_to_minutes() {
        assert_eq!(parse_window("5m"), Ok(5));
        assert_eq!(parse_window("1h"), Ok(60));
        assert_eq!(parse_window("90s"), Ok(2));
        assert_eq!(parse_window("24h"), Ok(24 * 60));
        assert!(parse_window("25h").is_err());
        assert!(parse_window("0m").is_err());
        assert!(parse_window("999999999999999999h").is_err());
        assert!(parse_window("five").is_err());
    }
}
