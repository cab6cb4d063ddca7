//! Instance actions (`/servers/{id}/os-instance-actions`): what was done to a server, by whom, with the compute events, shaped per microversion (2.21 deleted servers, 2.51 events for everyone, 2.58 updated_at, 2.62 host/hostId, 2.84 details).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::microversion::ApiVersion;
use super::servers::{COMPUTE_HOST, Server};
use crate::auth::Caller;
use crate::clock::iso8601_micros;
use crate::error::ApiError;
use crate::state::AppState;

/// One compute-side event of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionEvent {
    pub event: String,
    pub start_time: Timestamp,
    pub finish_time: Option<Timestamp>,
    /// `Success` or `Error` once finished.
    pub result: Option<String>,
    pub traceback: Option<String>,
    pub host: String,
    pub details: Option<String>,
}

/// One action on a server, recorded with the request that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceAction {
    pub action: String,
    pub request_id: String,
    /// `None` for actions Nova takes by itself (the power-state sync), as with an admin context.
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub start_time: Timestamp,
    pub updated_at: Timestamp,
    pub message: Option<String>,
    pub events: Vec<ActionEvent>,
}

impl InstanceAction {
    pub fn start(action: &str, request_id: &str, caller: Option<&Caller>, at: Timestamp) -> InstanceAction {
        let request_id =
            if request_id.is_empty() { format!("req-{}", uuid::Uuid::new_v4()) } else { request_id.to_string() };
        InstanceAction {
            action: action.into(),
            request_id,
            user_id: caller.map(|c| c.user_id().to_string()),
            project_id: caller.map(|c| c.project_id().to_string()),
            start_time: at,
            updated_at: at,
            message: None,
            events: Vec::new(),
        }
    }

    /// Starts a compute event (`EventReporter.__enter__`).
    pub fn begin_event(&mut self, event: &str, at: Timestamp) {
        self.events.push(ActionEvent {
            event: event.into(),
            start_time: at,
            finish_time: None,
            result: None,
            traceback: None,
            host: COMPUTE_HOST.into(),
            details: None,
        });
        self.updated_at = at;
    }

    /// Finishes the open event `event`; on failure the action gets Nova's "Error" message.
    pub fn finish_event(&mut self, event: &str, at: Timestamp, failure: Option<&str>) {
        if let Some(e) = self.events.iter_mut().rev().find(|e| e.event == event && e.finish_time.is_none()) {
            e.finish_time = Some(at);
            e.result = Some(if failure.is_some() { "Error" } else { "Success" }.into());
            if let Some(message) = failure {
                e.traceback = Some(format!("Traceback (most recent call last):\n  mockstack compute\n{message}\n"));
                e.details = Some(message.to_string());
                self.message = Some("Error".into());
            }
        }
        self.updated_at = at;
    }
}

/// Formats Nova's instance-action timestamps (`datetime.isoformat()` of naive UTC).
fn time(ts: Timestamp) -> String {
    iso8601_micros(ts).trim_end_matches('Z').to_string()
}

fn summary(action: &InstanceAction, server: &Server, version: ApiVersion) -> Value {
    let mut v = json!({
        "action": action.action,
        "instance_uuid": server.id,
        "request_id": action.request_id,
        "user_id": action.user_id,
        "project_id": action.project_id,
        "start_time": time(action.start_time),
        "message": action.message,
    });
    if version.at_least(58) {
        v["updated_at"] = json!(time(action.updated_at));
    }
    v
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{id}/os-instance-actions", get(index))
        .route("/servers/{id}/os-instance-actions/{request_id}", get(show))
}

/// The server whose actions are asked for; deleted ones count from 2.21.
fn server_for(state: &AppState, caller: &Caller, id: &str, version: ApiVersion) -> Result<Server, ApiError> {
    let table = state.nova().servers();
    let found = table.live.get(id).or_else(|| if version.at_least(21) { table.deleted.get(id) } else { None });
    match found {
        Some(s) if caller.is_admin() || s.project_id == caller.project_id() => Ok(s.clone()),
        _ => Err(ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {id} could not be found."))),
    }
}

async fn index(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let server = server_for(&state, &caller, &id, version)?;
    let actions: Vec<Value> = server.actions.iter().rev().map(|a| summary(a, &server, version)).collect();
    Ok(Json(json!({ "instanceActions": actions })))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path((id, request_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let server = server_for(&state, &caller, &id, version)?;
    let action = server
        .actions
        .iter()
        .find(|a| a.request_id == request_id)
        .ok_or_else(|| ApiError::compute(StatusCode::NOT_FOUND, format!("Action {request_id} not found")))?;
    let mut v = summary(action, &server, version);
    let admin = caller.is_admin();
    if admin || version.at_least(51) {
        let project = action.project_id.clone().unwrap_or_else(|| server.project_id.clone());
        let events: Vec<Value> = action
            .events
            .iter()
            .rev()
            .map(|e| {
                let mut ev = json!({
                    "event": e.event,
                    "start_time": time(e.start_time),
                    "finish_time": e.finish_time.map(time),
                    "result": e.result,
                });
                if admin {
                    ev["traceback"] = json!(e.traceback);
                    if version.at_least(62) {
                        ev["host"] = json!(e.host);
                    }
                }
                if version.at_least(62) {
                    use sha2::Digest;
                    ev["hostId"] = json!(hex::encode(sha2::Sha224::digest(format!("{project}{}", e.host).as_bytes())));
                }
                if version.at_least(84) && admin {
                    ev["details"] = json!(e.details);
                }
                ev
            })
            .collect();
        v["events"] = json!(events);
    }
    Ok(Json(json!({ "instanceAction": v })))
}
