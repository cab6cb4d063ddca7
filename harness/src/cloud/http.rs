//! The request layer: one reqwest client, timeouts, retries with backoff and `Retry-After`, request ids, and the
//! in-memory call log every run can report.
//!
//! Retry rules (see [`retry_delay`]):
//! - a connection that could not be made is retried for any method: nothing reached the server;
//! - 429, and 503 carrying `Retry-After`, are retried for any method: the service says it did not act;
//! - other 5xx, timeouts and broken connections are retried only for idempotent methods (GET, HEAD, PUT, DELETE,
//!   OPTIONS): a POST that timed out may have created something, and repeating it could create it twice.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::TlsVerify;
use super::error::{ApiFailure, CloudError, service_message};
use super::secret::Secret;

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it, up to `max_delay`, with random jitter (half to all of it).
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Timeouts and retries of the HTTP client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Whole-request limit for ordinary API calls (not for uploads and downloads, which can take hours).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest silence while reading or writing a body: what limits uploads and downloads.
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            user_agent: format!("isoharness/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One HTTP attempt, as the call log keeps it. Never holds a token or a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// `identity`, `image`, `compute`.
    pub service: String,
    pub method: String,
    pub url: String,
    /// `None` when no response came back.
    pub status: Option<u16>,
    pub request_id: Option<String>,
    pub duration_ms: u64,
    /// 1 for the first try of a request, 2 for its first retry, and so on.
    pub attempt: u32,
    /// What went wrong when there was no response.
    pub error: Option<String>,
}

/// Every HTTP attempt made through one client, in order. Cheap to clone; clones share the log.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<CallRecord>>>);

impl CallLog {
    pub fn records(&self) -> Vec<CallRecord> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn push(&self, record: CallRecord) {
        tracing::debug!(
            service = %record.service, method = %record.method, url = %record.url, status = ?record.status,
            request_id = ?record.request_id, duration_ms = record.duration_ms, attempt = record.attempt, "http call"
        );
        if let Ok(mut records) = self.0.lock() {
            records.push(record);
        }
    }
}

/// A request body that can be produced again for a retry (a file is reopened, not buffered).
pub trait StreamSource: Send + Sync {
    /// A fresh body and its exact length.
    fn open(&self) -> Result<(reqwest::Body, u64), CloudError>;
}

/// What a request carries.
#[derive(Clone, Default)]
pub enum Body {
    #[default]
    Empty,
    Bytes {
        content_type: &'static str,
        data: Bytes,
    },
    Stream {
        content_type: &'static str,
        source: Arc<dyn StreamSource>,
    },
}

impl Body {
    pub fn json(value: &impl Serialize) -> Body {
        Body::Bytes {
            content_type: "application/json",
            data: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }
}

/// One API call, before authentication headers are added.
#[derive(Clone)]
pub struct Request {
    pub service: &'static str,
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// The response body will be streamed (a download): no whole-request timeout.
    pub streaming_response: bool,
}

impl Request {
    pub fn new(service: &'static str, method: Method, url: impl Into<String>) -> Request {
        Request {
            service,
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            streaming_response: false,
        }
    }

    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: &str) -> Request {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }
}

/// A successful (2xx or 300) response whose body has not been read yet.
#[derive(Debug)]
pub struct Response {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub request_id: Option<String>,
    inner: reqwest::Response,
}

impl Response {
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    pub async fn bytes(self) -> Result<Bytes, CloudError> {
        let (method, url) = (self.method.clone(), self.url.clone());
        self.inner.bytes().await.map_err(|e| transport_error(&method, &url, e, None))
    }

    /// Decodes the body, with the JSON path of the first value that does not fit.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, CloudError> {
        let (method, url, request_id) = (self.method.clone(), self.url.clone(), self.request_id.clone());
        let body = self.bytes().await?;
        decode_json(&body, &method, &url, request_id)
    }

    /// The body as a stream of chunks, for downloads.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, CloudError>> + Send + 'static {
        let (method, url) = (self.method, self.url);
        self.inner.bytes_stream().map_err(move |e| transport_error(&method, &url, e, None))
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(
    body: &[u8],
    method: &str,
    url: &str,
    request_id: Option<String>,
) -> Result<T, CloudError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| CloudError::Decode {
        method: method.to_string(),
        url: url.to_string(),
        request_id,
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// The HTTP client: sends requests with retries and logs every attempt.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    options: HttpOptions,
    log: CallLog,
}

/// What one attempt came to, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// The connection could not be made: the request never left.
    ConnectFailed,
    /// Timed out or broke after the request may have reached the server.
    LostInFlight,
}

/// How long to wait before retry number `retry` (1-based), or `None` to give up.
pub fn retry_delay(policy: &RetryPolicy, method: &Method, tried: Attempt, retry: u32) -> Option<Duration> {
    if retry > policy.max_retries {
        return None;
    }
    let idempotent = matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS);
    let backoff = || {
        let exponential = policy.base_delay.saturating_mul(1u32 << (retry - 1).min(16)).min(policy.max_delay);
        exponential.mul_f64(rand::random_range(0.5..=1.0))
    };
    match tried {
        Attempt::Status { code: 429 | 503, retry_after: Some(wait) } => {
            (wait <= policy.max_retry_after).then_some(wait)
        }
        Attempt::Status { code: 429, retry_after: None } => Some(backoff()),
        Attempt::Status { code: 500..=599, .. } if idempotent => Some(backoff()),
        Attempt::Status { .. } => None,
        Attempt::ConnectFailed => Some(backoff()),
        Attempt::LostInFlight if idempotent => Some(backoff()),
        Attempt::LostInFlight => None,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let when = PARSER.parse_timestamp(value).ok()?;
    Some(Duration::try_from(when.duration_since(now)).unwrap_or(Duration::ZERO))
}

fn request_id_of(headers: &HeaderMap) -> Option<String> {
    ["x-openstack-request-id", "x-compute-request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).map(String::from))
}

fn transport_error(method: &str, url: &str, error: reqwest::Error, timeout: Option<Duration>) -> CloudError {
    if error.is_timeout() {
        CloudError::Timeout { method: method.to_string(), url: url.to_string(), timeout: timeout.unwrap_or_default() }
    } else {
        CloudError::Transport { method: method.to_string(), url: url.to_string(), source: error }
    }
}

/// The URL as logs and errors show it: no user:password part.
fn loggable_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

impl Http {
    pub fn new(options: HttpOptions, tls: &TlsVerify) -> Result<Http, CloudError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.idle_timeout)
            .user_agent(options.user_agent.clone());
        match tls {
            TlsVerify::System => {}
            TlsVerify::Insecure => builder = builder.tls_danger_accept_invalid_certs(true),
            TlsVerify::PlainHttp => builder = builder.tls_certs_only(Vec::new()),
            TlsVerify::CaBundle(path) => {
                let pem = std::fs::read(path).map_err(|source| CloudError::Io {
                    action: "read the CA bundle",
                    path: path.clone(),
                    source,
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| CloudError::Io {
                    action: "parse the CA bundle",
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })?;
                builder = builder.tls_certs_only(certs);
            }
        }
        let client =
            builder.build().map_err(|e| CloudError::Transport { method: "-".into(), url: "-".into(), source: e })?;
        Ok(Http { client, options, log: CallLog::default() })
    }

    pub fn call_log(&self) -> &CallLog {
        &self.log
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Sends `request` (with `token` as `X-Auth-Token`), retrying as the rules allow. Non-success statuses come back
    /// as the matching [`CloudError`] variant.
    pub async fn send(&self, request: &Request, token: Option<&Secret>) -> Result<Response, CloudError> {
        let method = request.method.to_string();
        let url = loggable_url(&request.url);
        let streaming = request.streaming_response || matches!(request.body, Body::Stream { .. });
        let timeout = (!streaming).then_some(self.options.request_timeout);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut builder =
                self.client.request(request.method.clone(), &request.url).headers(request.headers.clone());
            builder = builder.header(header::ACCEPT, "application/json");
            if let Some(token) = token {
                let mut value = HeaderValue::from_str(token.expose()).map_err(|_| CloudError::Discovery {
                    service: "identity".into(),
                    message: "the token is not a valid header value".into(),
                })?;
                value.set_sensitive(true);
                builder = builder.header("x-auth-token", value);
            }
            if let Some(timeout) = timeout {
                builder = builder.timeout(timeout);
            }
            builder = match &request.body {
                Body::Empty => builder,
                Body::Bytes { content_type, data } => {
                    builder.header(header::CONTENT_TYPE, *content_type).body(data.clone())
                }
                Body::Stream { content_type, source } => {
                    let (body, length) = source.open()?;
                    builder
                        .header(header::CONTENT_TYPE, *content_type)
                        .header(header::CONTENT_LENGTH, length)
                        .body(body)
                }
            };

            let started = Instant::now();
            let result = builder.send().await;
            let duration_ms = started.elapsed().as_millis() as u64;
            let record = |status: Option<u16>, request_id: Option<String>, error: Option<String>| CallRecord {
                service: request.service.to_string(),
                method: method.clone(),
                url: url.clone(),
                status,
                request_id,
                duration_ms,
                attempt,
                error,
            };

            let (tried, failure) = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let request_id = request_id_of(response.headers());
                    self.log.push(record(Some(status), request_id.clone(), None));
                    if response.status().is_success() || status == 300 {
                        return Ok(Response { method, url, status, request_id, inner: response });
                    }
                    let retry_after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
                    let body = response.bytes().await.unwrap_or_default();
                    let failure = CloudError::from_status(ApiFailure {
                        method: method.clone(),
                        url: url.clone(),
                        status,
                        request_id,
                        message: service_message(&body),
                    });
                    (Attempt::Status { code: status, retry_after }, failure)
                }
                Err(error) => {
                    self.log.push(record(None, None, Some(error.to_string())));
                    let tried = if error.is_connect() { Attempt::ConnectFailed } else { Attempt::LostInFlight };
                    (tried, transport_error(&method, &url, error, timeout))
                }
            };
            match retry_delay(&self.options.retry, &request.method, tried, attempt) {
                Some(delay) => {
                    tracing::info!(%method, %url, ?tried, ?delay, attempt, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(failure),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn retry_rules_per_method_and_outcome() {
        let p = policy();
        let status = |code| Attempt::Status { code, retry_after: None };
        let cases: &[(Method, Attempt, bool)] = &[
            (Method::GET, status(500), true),
            (Method::DELETE, status(502), true),
            (Method::PUT, Attempt::LostInFlight, true),
            (Method::POST, status(500), false),
            (Method::POST, status(503), false),
            (Method::POST, Attempt::LostInFlight, false),
            (Method::POST, Attempt::ConnectFailed, true),
            (Method::POST, status(429), true),
            (Method::POST, Attempt::Status { code: 503, retry_after: Some(Duration::from_secs(2)) }, true),
            (Method::GET, status(404), false),
            (Method::GET, status(409), false),
            (Method::PATCH, status(500), false),
        ];
        for (method, outcome, retried) in cases {
            assert_eq!(retry_delay(&p, method, *outcome, 1).is_some(), *retried, "{method} {outcome:?}");
        }
        assert_eq!(retry_delay(&p, &Method::GET, status(500), 4), None, "retries are bounded");
        let too_long = Attempt::Status { code: 503, retry_after: Some(Duration::from_secs(61)) };
        assert_eq!(retry_delay(&p, &Method::GET, too_long, 1), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let p = policy();
        let outcome = Attempt::Status { code: 500, retry_after: None };
        for (retry, full) in [(1, 100), (2, 200), (3, 250)] {
            let delay = retry_delay(&p, &Method::GET, outcome, retry).unwrap_or_default();
            let full = Duration::from_millis(full);
            assert!(delay >= full / 2 && delay <= full, "retry {retry}: {delay:?} not in [{:?}, {full:?}]", full / 2);
        }
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now: jiff::Timestamp = "2026-11-06T08:49:30Z".parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Fri, 06 Nov 2026 08:49:37 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Fri, 06 Nov 2026 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
