//! Nova v2.1 (placeholder until the Nova module lands).

use std::path::Path;

use axum::Router;

use crate::state::AppState;

pub struct NovaState {}

impl NovaState {
    pub fn new(_dir: &Path) -> std::io::Result<NovaState> {
        Ok(NovaState {})
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
}

/// Mock-only admin routes that belong to the compute side (domain XML).
pub fn admin_router() -> Router<AppState> {
    Router::new()
}
