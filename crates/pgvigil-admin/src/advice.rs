//! `/api/advice`, `/api/advice/refresh` and `/api/queries/{fp}/plan`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::{error, rfc3339_ms, AdminState};

fn advisor_off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "the advisor is off ([advisor] enabled = false)",
    )
}

pub(crate) async fn list(State(state): State<AdminState>) -> Response {
    let Some(advisor) = state.advisor.as_ref() else {
        return advisor_off();
    };
    Json(json!({ "advice": advisor.state.advice() })).into_response()
}

/// Runs the advisor now and answers when the run is over, so a script
/// can create an index and check the advice right after.
pub(crate) async fn refresh(State(state): State<AdminState>) -> Response {
    let Some(advisor) = state.advisor.as_ref() else {
        return advisor_off();
    };
    match advisor.refresh().await {
        Ok(advice) => Json(json!({ "advice": advice })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub(crate) async fn plan(State(state): State<AdminState>, Path(fp): Path<String>) -> Response {
    let Some(advisor) = state.advisor.as_ref() else {
        return advisor_off();
    };
    let Ok(fingerprint) = u64::from_str_radix(&fp, 16) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{fp}` is not a fingerprint (16 hex digits)"),
        );
    };
    let Some(p) = advisor.state.plan(fingerprint) else {
        // Asked for: it is planned first at the next run.
        advisor.state.request_plan(fingerprint);
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no plan of {fp} yet; it is queued for the advisor's next run (POST /api/advice/refresh runs it now)"
            ),
        );
    };
    let plan: Value = serde_json::from_str(&p.plan).unwrap_or(Value::Null);
    Json(json!({
        "fingerprint": format!("{fingerprint:016x}"),
        "database": p.database,
        "taken_at": rfc3339_ms(p.taken_at_ms),
        "generic": p.generic,
        "analyze": p.analyze,
        "summary": p.summary,
        "plan": plan,
    }))
    .into_response()
}
