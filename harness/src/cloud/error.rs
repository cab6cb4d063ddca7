//! The client's error type, and the reading of Keystone/Glance/Nova error bodies into one human message.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::config::ConfigError;

/// One failed HTTP exchange: what was asked, what came back, and the service's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub method: String,
    /// The URL without credentials (tokens travel in headers, never in URLs).
    pub url: String,
    pub status: u16,
    /// `x-openstack-request-id` (or `x-compute-request-id`), to look the call up in the service's logs.
    pub request_id: Option<String>,
    /// The message from the service's error body.
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {} returned {}", self.message, self.method, self.url, self.status)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request id {id}")?;
        }
        f.write_str(")")
    }
}

/// Everything that can go wrong talking to a cloud.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The configuration could not be resolved.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// 404.
    #[error("not found: {0}")]
    NotFound(Box<ApiFailure>),
    /// 409: the resource is in the wrong state, or a name is taken.
    #[error("conflict: {0}")]
    Conflict(Box<ApiFailure>),
    /// 401: bad credentials, or a token the service no longer accepts.
    #[error("unauthorized: {0}")]
    Unauthorized(Box<ApiFailure>),
    /// 403: policy forbids the call.
    #[error("forbidden: {0}")]
    Forbidden(Box<ApiFailure>),
    /// 400 (and 415/422): the request was malformed.
    #[error("bad request: {0}")]
    BadRequest(Box<ApiFailure>),
    /// 413/429: a quota or rate limit.
    #[error("over limit: {0}")]
    OverLimit(Box<ApiFailure>),
    /// 5xx, after any retries.
    #[error("server error: {0}")]
    Server(Box<ApiFailure>),
    /// Any other status the client did not expect.
    #[error("unexpected response: {0}")]
    Unexpected(Box<ApiFailure>),
    /// No response within the configured time.
    #[error("timed out after {timeout:?}: {method} {url}")]
    Timeout { method: String, url: String, timeout: Duration },
    /// The connection failed (refused, reset, TLS).
    #[error("cannot reach {method} {url}: {source}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A response body that does not have the shape the client expects.
    #[error("malformed response body from {method} {url}{}: at {path}: {message}", request_id.as_ref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    Decode { method: String, url: String, request_id: Option<String>, path: String, message: String },
    /// The catalog or a version document does not offer what the client needs.
    #[error("endpoint discovery for {service}: {message}")]
    Discovery { service: String, message: String },
    /// The compute API's microversion range does not overlap the client's.
    #[error(
        "compute API microversions {cloud_min}..={cloud_max} do not overlap what isoharness understands ({ours_min}..={ours_max})"
    )]
    Microversion { cloud_min: String, cloud_max: String, ours_min: String, ours_max: String },
    /// Local file trouble during an upload or download.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A wait ran out of time.
    #[error("gave up waiting for {what} after {waited:?}")]
    WaitTimeout { what: String, waited: Duration },
    /// The libvirt domain XML could not be had from the source the user configured (a command on the compute host).
    #[error("{0}")]
    DomainXml(String),
}

impl CloudError {
    /// The failed exchange, for the variants that come from an HTTP status.
    pub fn api_failure(&self) -> Option<&ApiFailure> {
        match self {
            CloudError::NotFound(f)
            | CloudError::Conflict(f)
            | CloudError::Unauthorized(f)
            | CloudError::Forbidden(f)
            | CloudError::BadRequest(f)
            | CloudError::OverLimit(f)
            | CloudError::Server(f)
            | CloudError::Unexpected(f) => Some(f),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.api_failure().map(|f| f.status)
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            CloudError::Decode { request_id, .. } => request_id.as_deref(),
            other => other.api_failure().and_then(|f| f.request_id.as_deref()),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound(_))
    }

    /// Whether the cloud refused the request itself (the `rejected` outcome of a build), rather than failing it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CloudError::BadRequest(_) | CloudError::Forbidden(_) | CloudError::Conflict(_) | CloudError::OverLimit(_)
        )
    }

    /// Sorts a non-success response into its variant.
    pub(crate) fn from_status(failure: ApiFailure) -> CloudError {
        let failure = Box::new(failure);
        match failure.status {
            400 | 415 | 422 => CloudError::BadRequest(failure),
            401 => CloudError::Unauthorized(failure),
            403 => CloudError::Forbidden(failure),
            404 => CloudError::NotFound(failure),
            409 => CloudError::Conflict(failure),
            413 | 429 => CloudError::OverLimit(failure),
            500..=599 => CloudError::Server(failure),
            _ => CloudError::Unexpected(failure),
        }
    }
}

/// The longest service message kept; HTML pages and tracebacks can be long.
const MAX_MESSAGE_CHARS: usize = 1000;

/// The human message in an error body, whichever service and framework wrote it:
/// Keystone `{"error": {"message": ..}}`, Nova `{"itemNotFound": {"message": ..}}` (any fault name),
/// webob JSON `{"message": .., "title": ..}` (Glance), webob HTML (Glance's default), or plain text.
pub fn service_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty response body)".to_string();
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        if let Some(message) = json_message(&value) {
            return clip(&clean_markup(&message));
        }
        return clip(text);
    }
    if text.starts_with('<') {
        return clip(&html_message(text));
    }
    clip(text)
}

fn json_message(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    if let Some(error) = object.get("error") {
        return match error {
            Value::String(s) => Some(s.clone()),
            Value::Object(e) => e.get("message").and_then(Value::as_str).map(String::from),
            _ => None,
        };
    }
    if let Some(message) = object.get("message").and_then(Value::as_str) {
        return Some(message.to_string());
    }
    if let Some(explanation) = object.get("explanation").and_then(Value::as_str) {
        return Some(explanation.to_string());
    }
    if object.len() == 1 {
        let (_fault, inner) = object.iter().next()?;
        return inner.get("message").and_then(Value::as_str).map(String::from);
    }
    None
}

/// webob's HTML error page: `<title>404 Not Found</title> ... <h1>404 Not Found</h1> message<br /><br />`.
fn html_message(html: &str) -> String {
    let body = match (html.find("</h1>"), html.rfind("</body>")) {
        (Some(start), Some(end)) if start + 5 <= end => &html[start + 5..end],
        _ => html,
    };
    let cleaned = clean_markup(body);
    if cleaned.is_empty() { clean_markup(html) } else { cleaned }
}

/// Drops tags and collapses whitespace.
fn clean_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::service_message;

    fn check(body: &str, expected: &str) {
        assert_eq!(service_message(body.as_bytes()), expected, "body: {body}");
    }

    #[test]
    fn messages_from_each_service_shape() {
        check(
            r#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#,
            "The request you have made requires authentication.",
        );
        check(
            r#"{"itemNotFound": {"code": 404, "message": "Flavor m1.x could not be found."}}"#,
            "Flavor m1.x could not be found.",
        );
        check(
            r#"{"conflictingRequest": {"code": 409, "message": "Cannot 'stop' instance 1 while it is in vm_state stopped"}}"#,
            "Cannot 'stop' instance 1 while it is in vm_state stopped",
        );
        check(
            r#"{"message": "No image found with ID abc<br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"}"#,
            "No image found with ID abc",
        );
        check(
            "<html>\n <head>\n  <title>409 Conflict</title>\n </head>\n <body>\n  <h1>409 Conflict</h1>\n  Image status transition from saving to saving is not allowed<br /><br />\n\n\n\n </body>\n</html>",
            "Image status transition from saving to saving is not allowed",
        );
        check("Service Unavailable", "Service Unavailable");
        check("", "(empty response body)");
        check(r#"{"unexpected": 1, "shape": 2}"#, r#"{"unexpected": 1, "shape": 2}"#);
    }
}
