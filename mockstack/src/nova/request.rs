//! Reading compute requests as nova-api does: JSON bodies with Nova's "Malformed request body" and 415 answers, schema checks, and `/action` dispatch by the body's single key.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::schema;
use crate::error::ApiError;

/// A compute request body parsed as JSON. An empty body is `null`, as Nova passes `body=None`.
pub struct NovaBody(pub Value);

fn malformed() -> ApiError {
    ApiError::compute(StatusCode::BAD_REQUEST, "Malformed request body")
}

impl<S: Send + Sync> FromRequest<S> for NovaBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let essence =
                content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if !essence.is_empty()
                && essence != "application/json"
                && essence != "application/vnd.openstack.compute+json"
            {
                return Err(ApiError::compute(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Content-Type"));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| malformed())?;
        if bytes.is_empty() {
            return Ok(NovaBody(Value::Null));
        }
        serde_json::from_slice(&bytes).map(NovaBody).map_err(|_| malformed())
    }
}

/// Checks a body against one of Nova's schemas, answering 400 with Nova's wording.
pub fn check(schema_value: &Value, body: &Value) -> Result<(), ApiError> {
    schema::validate(schema_value, body).map_err(|e| ApiError::compute(StatusCode::BAD_REQUEST, e.body_detail()))
}

/// The action a `POST /servers/{id}/action` body names (`wsgi.action_peek`).
pub fn action_name(body: &Value) -> Result<String, ApiError> {
    match body {
        Value::Object(map) if map.len() == 1 => Ok(map.keys().next().cloned().unwrap_or_default()),
        _ => Err(malformed()),
    }
}

/// The 404 every unknown compute route (or a method outside its microversion range) gets.
pub fn not_found() -> ApiError {
    ApiError::compute(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// What `wsgi.expected_errors` turns an exception the API method did not expect into: a 500 naming
/// only the exception's class (`<class 'module.Name'>`), after nova's default support string.
pub fn unexpected_error(exception_class: &str) -> ApiError {
    ApiError::compute(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Unexpected API Error. Please contact the administrator\n{exception_class}"),
    )
}

/// Nova's `strutils.bool_from_string` for values the `boolean` schema type already admitted.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes"),
        _ => false,
    }
}

/// An integer given as a JSON number or a numeric string (both pass Nova's schemas).
pub fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A query string's `key=value` pairs, decoded as a form (`+` is a space), in order; never fails.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_as_forms() {
        let pairs = query_pairs(Some("name=a%20b+c&status=ACTIVE&x&bad=%zz"));
        let expected = [("name", "a b c"), ("status", "ACTIVE"), ("x", ""), ("bad", "%zz")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
