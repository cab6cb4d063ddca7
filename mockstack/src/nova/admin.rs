//! Mock-only compute routes under `/mockstack`: the domain XML of a server (the mock's `virsh dumpxml`) and the console pages.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::admin::require_admin;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/servers/{id}/domain.xml", get(domain_xml)).merge(super::consoles::pages())
}

/// `GET /mockstack/servers/{id}/domain.xml` (admin only): what `virsh dumpxml instance-…` prints.
async fn domain_xml(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    if state.nova().server(&id).is_none() {
        return Err(ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {id} could not be found.")));
    }
    match state.nova().domain_xml(&id) {
        Some(xml) => Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response()),
        None => Err(ApiError::compute(
            StatusCode::NOT_FOUND,
            format!("Domain not found: no domain with matching uuid '{id}'"),
        )),
    }
}
