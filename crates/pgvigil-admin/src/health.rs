//! `GET /api/health`: each database's latest health sample.
//!
//! The top level is one database's sample (`?database=` names it; else
//! the first by name, which is the only one in a one-database setup), so
//! the documented keys stay where scripts look for them; `databases`
//! holds every database's sample by name, the selected one included.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgvigil_advisor::HealthSample;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{error, AdminState};

#[derive(Deserialize)]
pub(crate) struct HealthParams {
    database: Option<String>,
}

fn sample_json(s: &HealthSample) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

pub(crate) async fn health(
    State(state): State<AdminState>,
    Query(params): Query<HealthParams>,
) -> Response {
    let Some(board) = state.health.as_ref() else {
        return error(
            StatusCode::NOT_FOUND,
            "health sampling is off (advisor.enabled = false)",
        );
    };
    let samples = board.samples();
    let selected = match &params.database {
        Some(name) => samples.iter().find(|s| &s.database == name),
        None => samples.first(),
    };
    let Some(selected) = selected else {
        return match &params.database {
            Some(name) => error(
                StatusCode::NOT_FOUND,
                format!("no health sample of database {name}"),
            ),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no health sample yet: the first is taken about a second after start",
            ),
        };
    };
    let mut top = match sample_json(selected) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let databases: Map<String, Value> = samples
        .iter()
        .map(|s| (s.database.clone(), sample_json(s)))
        .collect();
    top.insert("databases".into(), Value::Object(databases));
    Json(Value::Object(top)).into_response()
}
