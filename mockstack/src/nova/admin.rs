//! Mock-only compute routes under `/mockstack`: the domain XML of a server (the mock's `virsh dumpxml`), the compute host's options, and the console pages.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::admin::require_admin;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{id}/domain.xml", get(domain_xml))
        .route("/compute/options", get(options).put(set_options))
        .merge(super::consoles::pages())
}

/// `GET /mockstack/servers/{id}/domain.xml` (admin only): what `virsh dumpxml instance-…` prints. Like virsh, it
/// takes the server's uuid or its instance name (`OS-EXT-SRV-ATTR:instance_name`), so that a `virsh dumpxml
/// {instance}`-style command can fetch it.
async fn domain_xml(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let Some(uuid) = state.nova().server_by_uuid_or_instance_name(&id) else {
        return Err(ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {id} could not be found.")));
    };
    match state.nova().domain_xml(&uuid) {
        Some(xml) => Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response()),
        None => Err(ApiError::compute(
            StatusCode::NOT_FOUND,
            format!("Domain not found: no domain with matching uuid '{uuid}'"),
        )),
    }
}

fn options_view(state: &AppState) -> Value {
    json!({
        "layout": state.config().layout.as_str(),
        "virtio_win_image": super::compute::virtio_win_image(state),
        "driver_floppy_image": super::compute::driver_floppy_image(state),
    })
}

/// `GET /mockstack/compute/options` (admin only): the layout and the driver-media image names.
async fn options(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(options_view(&state)))
}

/// `PUT /mockstack/compute/options` (admin only): names the driver-media images (or `null` for none)
/// for instances built from now on; the layout is fixed when mockstack starts.
async fn set_options(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let bad = |m: String| ApiError::identity(StatusCode::BAD_REQUEST, m);
    let value: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("expected a JSON object: {e}")))?;
    let Value::Object(fields) = value else { return Err(bad("expected a JSON object".into())) };
    let mut next = state.nova().media_overrides().clone();
    for (key, v) in fields {
        let name = match v {
            Value::Null => None,
            Value::String(s) if !s.is_empty() => Some(s),
            other => return Err(bad(format!("{key}: expected an image name or id, or null, got {other}"))),
        };
        match key.as_str() {
            "virtio_win_image" => next.virtio_win_image = Some(name),
            "driver_floppy_image" => next.driver_floppy_image = Some(name),
            "layout" => return Err(bad("layout: fixed when mockstack starts (--layout)".into())),
            _ => return Err(bad(format!("{key}: unknown option (virtio_win_image, driver_floppy_image)"))),
        }
    }
    *state.nova().media_overrides() = next;
    Ok(Json(options_view(&state)))
}
