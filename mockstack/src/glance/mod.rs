//! Glance v2 (placeholder until the Glance module lands).

use std::path::Path;

use axum::Router;

use crate::state::AppState;

pub struct GlanceState {}

impl GlanceState {
    pub fn new(_dir: &Path) -> std::io::Result<GlanceState> {
        Ok(GlanceState {})
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
}
