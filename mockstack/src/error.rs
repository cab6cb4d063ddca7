//! Error bodies exactly as each real service writes them: Keystone's `{"error": ...}`, Glance's webob JSON, Nova's named faults.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which service's error conventions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Identity,
    Image,
    Compute,
}

/// An error a mock service answers with; rendered in that service's own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub service: Service,
    pub status: StatusCode,
    pub message: String,
    /// Set on 401s: the `WWW-Authenticate` value keystonemiddleware sends.
    pub www_authenticate: Option<String>,
}

impl ApiError {
    pub fn new(service: Service, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { service, status, message: message.into(), www_authenticate: None }
    }

    pub fn identity(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(Service::Identity, status, message)
    }

    pub fn image(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(Service::Image, status, message)
    }

    pub fn compute(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(Service::Compute, status, message)
    }

    pub fn body(&self) -> serde_json::Value {
        let code = self.status.as_u16();
        let reason = self.status.canonical_reason().unwrap_or("Error");
        match self.service {
            Service::Identity => json!({
                "error": { "code": code, "message": self.message, "title": reason }
            }),
            // webob's JSON error body, which Glance sends to clients that accept JSON.
            Service::Image => json!({
                "message": self.message,
                "code": format!("{code} {reason}"),
                "title": reason,
            }),
            Service::Compute => json!({
                nova_fault_name(self.status): { "code": code, "message": self.message }
            }),
        }
    }
}

/// Nova's `wsgi.Fault` names by status code.
pub fn nova_fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        // Kept on the response, so that a layer that must write it another way (webob's formats, by `Accept`) reads
        // the error itself rather than its JSON.
        response.extensions_mut().insert(self.clone());
        if let Some(v) = &self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(v)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_each_service() {
        let k = ApiError::identity(StatusCode::UNAUTHORIZED, "The request you have made requires authentication.");
        assert_eq!(k.body()["error"]["title"], "Unauthorized");
        let g = ApiError::image(StatusCode::NOT_FOUND, "No image found with ID x");
        assert_eq!(g.body()["code"], "404 Not Found");
        let n = ApiError::compute(StatusCode::CONFLICT, "Cannot 'stop' instance");
        assert_eq!(n.body()["conflictingRequest"]["code"], 409);
    }
}
