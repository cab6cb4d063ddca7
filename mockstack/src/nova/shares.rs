//! Server shares (2.97): `GET`/`POST /servers/{id}/shares` and `GET`/`DELETE /servers/{id}/shares/{share_id}`, answered as Nova answers them on a cloud without Manila.
//!
//! mockstack has no shared file system service, so no share is ever attached: the list is empty,
//! a share is never found, and attaching one gets as far as Nova gets before it asks Manila. The
//! simulated compute host is a libvirt one with Nova's default `[libvirt] file_backed_memory = 0`:
//! it reports `COMPUTE_STORAGE_VIRTIO_FS` but not `COMPUTE_MEM_BACKING_FILE`, so only a flavor
//! with `hw:mem_page_size` passes `check_shares_supported`; then Nova's Manila client finds no
//! `shared-file-system` endpoint in the catalog and keystoneauth's `EndpointNotFound` escapes
//! the API method as a 500 (what Nova 34 does, checked against its own code with mockstack's
//! catalog).

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::flavors::policy_forbidden;
use super::lifecycle::VmState;
use super::microversion::ApiVersion;
use super::request::{NovaBody, check, not_found, query_pairs, unexpected_error};
use super::servers::Server;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Server shares arrive in this microversion; before it the routes answer Nova's bare 404.
const SHARES_FROM: u32 = 97;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{id}/shares", get(index).post(create))
        .route("/servers/{id}/shares/{share_id}", get(show).delete(delete))
}

/// What each route may do: its policy rule (`os_compute_api:os-server-shares:NAME`), and whether a reader may.
#[derive(Clone, Copy, strum::Display)]
#[strum(serialize_all = "lowercase")]
enum SharePolicy {
    Index,
    Create,
    Show,
    Delete,
}

impl SharePolicy {
    /// `PROJECT_MEMBER_OR_ADMIN` for changes, `PROJECT_READER_OR_ADMIN` for reads.
    fn allows(self, caller: &Caller, project_id: &str) -> bool {
        let role = if matches!(self, SharePolicy::Create | SharePolicy::Delete) { "member" } else { "reader" };
        caller.is_admin() || (caller.project_id() == project_id && caller.has_role(role))
    }
}

/// The server's project from its instance mapping (kept after a delete), then the policy check
/// against it: another project's server is a 403 here, not the 404 the server routes give.
fn authorize(state: &AppState, caller: &Caller, id: &str, rule: SharePolicy) -> Result<(), ApiError> {
    let project_id = {
        let table = state.nova().servers();
        table.live.get(id).or_else(|| table.deleted.get(id)).map(|s| s.project_id.clone())
    };
    let project_id = project_id
        .ok_or_else(|| ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {id} has no mapping to a cell.")))?;
    if rule.allows(caller, &project_id) {
        Ok(())
    } else {
        Err(policy_forbidden(&format!("os_compute_api:os-server-shares:{rule}")))
    }
}

/// `common.get_instance`: a deleted server is gone.
fn instance(state: &AppState, id: &str) -> Result<Server, ApiError> {
    state
        .nova()
        .server(id)
        .ok_or_else(|| ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {id} could not be found.")))
}

/// `_check_instance_in_valid_state`: attaching needs a stopped server, detaching a stopped or
/// errored one.
fn instance_in_valid_state(state: &AppState, id: &str, rule: SharePolicy) -> Result<Server, ApiError> {
    let server = instance(state, id)?;
    let (valid, action) = match rule {
        SharePolicy::Create => (server.vm_state == VmState::Stopped, "create share"),
        _ => (matches!(server.vm_state, VmState::Stopped | VmState::Error), "delete share"),
    };
    if !valid {
        return Err(ApiError::compute(
            StatusCode::CONFLICT,
            format!("Cannot '{action}' instance {id} while it is in vm_state {}", server.vm_state),
        ));
    }
    Ok(server)
}

/// The routes take no query parameters (`additionalProperties: false` on the query schema).
fn check_no_query(uri: &Uri) -> Result<(), ApiError> {
    let mut query = Map::new();
    for (key, value) in query_pairs(uri.query()) {
        let values = query.entry(key).or_insert_with(|| json!([]));
        if let Value::Array(values) = values {
            values.push(Value::String(value));
        }
    }
    check(&json!({"type": "object", "properties": {}, "additionalProperties": false}), &Value::Object(query))
}

fn share_not_found(share_id: &str) -> ApiError {
    ApiError::compute(StatusCode::NOT_FOUND, format!("Share {share_id} could not be found."))
}

/// `GET /servers/{id}/shares`: no share is ever attached.
async fn index(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    if !version.at_least(SHARES_FROM) {
        return Err(not_found());
    }
    check_no_query(&uri)?;
    authorize(&state, &caller, &id, SharePolicy::Index)?;
    instance(&state, &id)?;
    Ok(Json(json!({ "shares": [] })))
}

/// `GET /servers/{id}/shares/{share_id}`.
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path((id, share_id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    if !version.at_least(SHARES_FROM) {
        return Err(not_found());
    }
    check_no_query(&uri)?;
    authorize(&state, &caller, &id, SharePolicy::Show)?;
    instance(&state, &id)?;
    Err(share_not_found(&share_id))
}

/// `POST /servers/{id}/shares`: refused before Manila when the host cannot share into the guest,
/// a 500 when Nova looks for Manila.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
    NovaBody(body): NovaBody,
) -> Result<Json<Value>, ApiError> {
    if !version.at_least(SHARES_FROM) {
        return Err(not_found());
    }
    let schema = json!({
        "type": "object",
        "properties": {"share": {
            "type": "object",
            "properties": {
                "share_id": {"type": "string", "format": "uuid"},
                "tag": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-]*$"},
            },
            "required": ["share_id"],
            "additionalProperties": false,
        }},
        "required": ["share"],
        "additionalProperties": false,
    });
    check(&schema, &body)?;
    authorize(&state, &caller, &id, SharePolicy::Create)?;
    let server = instance_in_valid_state(&state, &id, SharePolicy::Create)?;
    if !server.flavor.extra_specs.contains_key("hw:mem_page_size") {
        return Err(ApiError::compute(
            StatusCode::CONFLICT,
            "Feature not supported because either compute or instance are not configured correctly.",
        ));
    }
    Err(unexpected_error("<class 'keystoneauth1.exceptions.catalog.EndpointNotFound'>"))
}

/// `DELETE /servers/{id}/shares/{share_id}`.
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path((id, share_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !version.at_least(SHARES_FROM) {
        return Err(not_found());
    }
    authorize(&state, &caller, &id, SharePolicy::Delete)?;
    instance_in_valid_state(&state, &id, SharePolicy::Delete)?;
    Err(share_not_found(&share_id))
}
