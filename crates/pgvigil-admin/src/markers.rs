//! `/api/markers` and `/api/regressions`: before/after markers and the
//! regressions found against the day's baseline.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgvigil_insight::{Figures, Marker, RegressionEvent, MAX_MARKER_NAME};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{analytics_off, error, fingerprint_hex, now_ms, rfc3339_ms, AdminState, LimitParams};

fn marker_json(m: &Marker) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "kind": m.kind.as_str(),
        "at": rfc3339_ms(m.at_ms),
        "statement": m.statement,
        "objects": m.objects,
        "tag": m.tag.as_ref().map(|(k, v)| json!({ "key": k, "value": v })),
        "fingerprints": m.fingerprints,
    })
}

fn figures_json(f: &Figures) -> Value {
    json!({
        "calls": f.calls,
        "mean_ms": f.mean_ms,
        "p50_ms": f.p50_ms,
        "p95_ms": f.p95_ms,
    })
}

pub(crate) async fn list(State(state): State<AdminState>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let markers: Vec<Value> = insight.markers().iter().map(marker_json).collect();
    let c = insight.marker_counters();
    Json(json!({
        "markers": markers,
        "dropped": c.markers_dropped,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct NewMarker {
    name: String,
}

pub(crate) async fn create(State(state): State<AdminState>, body: Bytes) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let new: NewMarker = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": \"...\"}}: {e}"),
            )
        }
    };
    let name = new.name.trim();
    if name.is_empty() || name.len() > MAX_MARKER_NAME {
        return error(
            StatusCode::BAD_REQUEST,
            format!("a marker's name has 1 to {MAX_MARKER_NAME} bytes"),
        );
    }
    let marker = insight.add_manual_marker(name, now_ms());
    (StatusCode::CREATED, Json(marker_json(&marker))).into_response()
}

pub(crate) async fn detail(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "a marker id is a number");
    };
    let Some(r) = insight.marker(id) else {
        return error(StatusCode::NOT_FOUND, format!("no marker {id}"));
    };
    let queries: Vec<Value> = r
        .comparisons
        .iter()
        .map(|c| {
            json!({
                "fingerprint": fingerprint_hex(c.fingerprint),
                "query": c.query,
                "related": c.related,
                "before": figures_json(&c.before),
                "after": figures_json(&c.after),
            })
        })
        .collect();
    let mut out = marker_json(&r.marker);
    out["summary"] = json!(r.summary);
    out["queries"] = json!(queries);
    Json(out).into_response()
}

fn regression_json(e: &RegressionEvent) -> Value {
    json!({
        "fingerprint": fingerprint_hex(e.fingerprint),
        "query": e.query,
        "at": rfc3339_ms(e.at_ms),
        "window_calls": e.window_calls,
        "window_p95_ms": e.window_p95_ms,
        "baseline_calls": e.baseline_calls,
        "baseline_p95_ms": e.baseline_p95_ms,
        "factor": e.factor,
    })
}

pub(crate) async fn regressions(
    State(state): State<AdminState>,
    Query(p): Query<LimitParams>,
) -> Response {
    let Some(insight) = state.insight.as_ref() else {
        return analytics_off();
    };
    let events: Vec<Value> = insight
        .regressions(p.limit.unwrap_or(100))
        .iter()
        .map(regression_json)
        .collect();
    let c = insight.marker_counters();
    Json(json!({
        "regressions": events,
        "total": c.regressions,
        "dropped": c.regression_events_dropped,
    }))
    .into_response()
}
