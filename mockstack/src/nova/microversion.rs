//! Compute microversions: parsing and negotiating `OpenStack-API-Version` / `X-OpenStack-Nova-API-Version`, and the headers Nova answers with.
//!
//! mockstack implements the compute API from 2.1 up to [`MAX_VERSION`] (2.100): every response
//! shape that depends on a microversion follows that version's upstream view builders, up to
//! 2.97 (server shares), 2.98 (image properties embedded in servers), 2.99 (`spice-direct`
//! consoles) and 2.100 (scheduler hints in servers). Nova 34 goes on to 2.104 (2.101 answers a
//! volume attach with 202, 2.102 drops `rxtx_factor` and refuses unknown query parameters
//! everywhere, 2.103 removes `/os-volumes_boot`, 2.104 re-pins availability zones); those are
//! not offered, so clients that negotiate get at most 2.100, which is also the most the
//! `openstack` CLI (python-openstackclient 10.5) asks for.

use std::fmt;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A compute API microversion `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The oldest microversion served (also the default when a request names none).
pub const MIN_VERSION: ApiVersion = ApiVersion { major: 2, minor: 1 };
/// The newest microversion served; see the module documentation.
pub const MAX_VERSION: ApiVersion = ApiVersion { major: 2, minor: 100 };

const HEADER: &str = "openstack-api-version";
const LEGACY_HEADER: &str = "x-openstack-nova-api-version";

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// Whether this request's version is `2.minor` or later (Nova's `is_supported(req, '2.N')`).
    pub fn at_least(self, minor: u32) -> bool {
        self >= ApiVersion::new(2, minor)
    }

    /// Parses `X.Y` as Nova's `APIVersionRequest` does (no leading zeros, no spaces).
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.split_once('.')?;
        let number = |s: &str, allow_zero: bool| -> Option<u32> {
            let ok = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (!s.starts_with('0') || (allow_zero && s == "0"));
            if ok { s.parse().ok() } else { None }
        };
        Some(ApiVersion { major: number(major, false)?, minor: number(minor, true)? })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What the request asked for, found the way `microversion_parse.get_version` finds it:
/// the `compute` entry of `OpenStack-API-Version` first, then the legacy Nova header.
fn requested(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(HEADER) {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split_whitespace();
            if let (Some(service), Some(version)) = (parts.next(), parts.next())
                && service.eq_ignore_ascii_case("compute")
            {
                return Some(version.to_string());
            }
        }
    }
    let legacy: Vec<&str> = headers.get_all(LEGACY_HEADER).iter().filter_map(|v| v.to_str().ok()).collect();
    if legacy.is_empty() { None } else { Some(legacy.join(",").trim().to_string()) }
}

/// The version a request runs at, or Nova's 400 (bad format) / 406 (outside the range).
pub fn negotiate(headers: &HeaderMap) -> Result<ApiVersion, ApiError> {
    let Some(text) = requested(headers) else { return Ok(MIN_VERSION) };
    if text.eq_ignore_ascii_case("latest") {
        return Ok(MAX_VERSION);
    }
    let version = ApiVersion::parse(&text).ok_or_else(|| {
        ApiError::compute(
            StatusCode::BAD_REQUEST,
            format!("API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum."),
        )
    })?;
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(ApiError::compute(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {version} is not supported by the API. Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}."
            ),
        ));
    }
    Ok(version)
}

/// Middleware for every microversioned compute route: rejects bad versions, makes the
/// version available to handlers, and adds the headers Nova puts on every such response.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let version = match negotiate(request.headers()) {
        Ok(v) => v,
        Err(e) => {
            let mut response = e.into_response();
            // A well-formed version outside the range is echoed back, as Nova does on its 406.
            if response.status() == StatusCode::NOT_ACCEPTABLE
                && let Some(asked) = requested(request.headers()).as_deref().and_then(ApiVersion::parse)
            {
                version_headers(response.headers_mut(), asked);
            }
            return response;
        }
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    version_headers(response.headers_mut(), version);
    // Nova's serializer labels its empty 202 and 204 answers JSON too.
    if !response.headers().contains_key(axum::http::header::CONTENT_TYPE) {
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// The headers Nova puts on every microversioned response.
fn version_headers(headers: &mut axum::http::HeaderMap, version: ApiVersion) {
    if let Ok(v) = HeaderValue::from_str(&format!("compute {version}")) {
        headers.insert(HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        headers.insert(LEGACY_HEADER, v);
    }
    headers.append(axum::http::header::VARY, HeaderValue::from_static("OpenStack-API-Version"));
    headers.append(axum::http::header::VARY, HeaderValue::from_static("X-OpenStack-Nova-API-Version"));
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ApiVersion>() {
            Some(v) => Ok(*v),
            None => negotiate(&parts.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn versions_parse_like_nova() {
        assert_eq!(ApiVersion::parse("2.37"), Some(ApiVersion::new(2, 37)));
        assert_eq!(ApiVersion::parse("2.0"), Some(ApiVersion::new(2, 0)));
        for bad in ["2", "2.", ".1", "02.1", "2.01", "2.x", " 2.1", "2.1.1", ""] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn negotiation_prefers_the_new_header_and_checks_the_range() {
        assert_eq!(negotiate(&headers(&[])).unwrap(), MIN_VERSION);
        let both = headers(&[("openstack-api-version", "compute 2.60"), ("x-openstack-nova-api-version", "2.3")]);
        assert_eq!(negotiate(&both).unwrap(), ApiVersion::new(2, 60));
        let other_service =
            headers(&[("openstack-api-version", "volume 3.5"), ("x-openstack-nova-api-version", "2.3")]);
        assert_eq!(negotiate(&other_service).unwrap(), ApiVersion::new(2, 3));
        let listed = headers(&[("openstack-api-version", "volume 3.5, Compute latest")]);
        assert_eq!(negotiate(&listed).unwrap(), MAX_VERSION);
        let too_new = negotiate(&headers(&[("openstack-api-version", "compute 2.200")])).unwrap_err();
        assert_eq!(too_new.status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(too_new.message, "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.100.");
        let too_old = negotiate(&headers(&[("x-openstack-nova-api-version", "2.0")])).unwrap_err();
        assert_eq!(too_old.status, StatusCode::NOT_ACCEPTABLE);
        let bad = negotiate(&headers(&[("openstack-api-version", "compute two")])).unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.message, "API Version String two is of invalid format. Must be of format MajorNum.MinorNum.");
    }
}
