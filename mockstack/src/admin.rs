//! The mock-only `/mockstack` API: the request journal, the clock, fault rules, and (from the compute side) domain XML.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/journal", get(journal).delete(clear_journal))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance_clock))
        .route("/faults", get(faults).put(replace_faults).delete(clear_faults))
        .merge(crate::nova::admin_router())
}

pub(crate) fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::identity(StatusCode::FORBIDDEN, "mockstack's admin API needs the admin role."))
    }
}

async fn journal(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(json!({ "journal": state.journal().entries() })))
}

async fn clear_journal(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    state.journal().clear();
    Ok(StatusCode::NO_CONTENT)
}

async fn clock(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!({
        "now": crate::clock::iso8601_micros(state.clock().now()),
        "elapsed_ms": state.clock().elapsed().as_millis() as u64,
        "mode": format!("{:?}", state.clock().mode()),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: f64,
}

async fn advance_clock(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let advance: Advance = serde_json::from_slice(&body)
        .map_err(|e| ApiError::identity(StatusCode::BAD_REQUEST, format!("expected {{\"seconds\": N}}: {e}")))?;
    let headroom = state.clock().headroom();
    if !(advance.seconds.is_finite() && advance.seconds >= 0.0 && advance.seconds <= headroom.as_secs_f64()) {
        return Err(ApiError::identity(
            StatusCode::BAD_REQUEST,
            format!(
                "seconds must be a number from 0 to {} (virtual time runs at most {} s past the start)",
                headroom.as_secs(),
                crate::clock::MAX_VIRTUAL_ELAPSED.as_secs()
            ),
        ));
    }
    state.clock().advance(Duration::from_secs_f64(advance.seconds));
    Ok(Json(json!({ "elapsed_ms": state.clock().elapsed().as_millis() as u64 })))
}

async fn faults(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(state.faults().report()))
}

/// Replaces every rule with the body's, the faults file's shape in JSON; counters start again.
async fn replace_faults(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let plan: crate::faults::FaultPlan = serde_json::from_slice(&body).map_err(|e| {
        ApiError::identity(
            StatusCode::BAD_REQUEST,
            format!("expected a fault plan ({{\"seed\": N, \"rules\": [...]}}): {e}"),
        )
    })?;
    state.faults().replace(plan);
    Ok(Json(state.faults().report()))
}

async fn clear_faults(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    state.faults().clear();
    Ok(StatusCode::NO_CONTENT)
}
