//! Tokens and the `Caller` extractor: every request but discovery and token issue needs a valid `X-Auth-Token`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use jiff::Timestamp;

use crate::error::{ApiError, Service};
use crate::state::AppState;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: String,
    /// `None` for an unscoped token.
    pub project: Option<ProjectScope>,
    /// Effective roles (implied ones included) on the scoped project.
    pub roles: Vec<String>,
    pub methods: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub audit_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectScope {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub domain_name: String,
}

/// Issued tokens by id. Expired ones are forgotten as new ones are issued (Keystone's Fernet tokens are never
/// stored at all), so the store holds about the tokens alive at once.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: Mutex<Tokens>,
}

#[derive(Debug, Default)]
struct Tokens {
    by_id: HashMap<String, TokenInfo>,
    /// The size at which expired tokens are next swept out: twice the live ones after a sweep, so that sweeping
    /// costs O(1) per token issued.
    sweep_at: usize,
}

/// The fewest tokens worth a sweep.
const MIN_SWEEP: usize = 1024;

impl TokenStore {
    pub fn issue(&self, info: TokenInfo) -> String {
        // Fernet tokens are url-safe base64 starting with "gAAAAA"; clients treat them as opaque.
        let id = format!("gAAAAA{}", uuid::Uuid::new_v4().simple());
        let now = info.issued_at;
        let mut tokens = self.tokens.lock().unwrap();
        tokens.by_id.insert(id.clone(), info);
        if tokens.by_id.len() >= tokens.sweep_at.max(MIN_SWEEP) {
            tokens.by_id.retain(|_, t| t.expires_at > now);
            tokens.sweep_at = 2 * tokens.by_id.len();
        }
        id
    }

    /// How many tokens are held (live ones, and expired ones not yet swept out).
    pub fn held(&self) -> usize {
        self.tokens.lock().unwrap().by_id.len()
    }

    /// The token's info if it exists and has not expired at `now`.
    pub fn validate(&self, id: &str, now: Timestamp) -> Option<TokenInfo> {
        let tokens = self.tokens.lock().unwrap();
        tokens.by_id.get(id).filter(|t| t.expires_at > now).cloned()
    }

    pub fn revoke(&self, id: &str) -> bool {
        self.tokens.lock().unwrap().by_id.remove(id).is_some()
    }
}

/// The authenticated caller of a request, taken from its `X-Auth-Token`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenInfo,
}

impl Caller {
    pub fn user_id(&self) -> &str {
        &self.token.user_id
    }

    /// The scoped project id; empty for an unscoped token (which services refuse anyway).
    pub fn project_id(&self) -> &str {
        self.token.project.as_ref().map(|p| p.id.as_str()).unwrap_or("")
    }

    pub fn project_name(&self) -> &str {
        self.token.project.as_ref().map(|p| p.name.as_str()).unwrap_or("")
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.token.roles.iter().any(|r| r == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    /// A reader-only caller may look but not change (the services' default policies).
    pub fn can_write(&self) -> bool {
        self.has_role("member")
    }
}

/// The 401 keystonemiddleware answers for a missing, unknown or expired token.
pub fn unauthorized(state: &AppState, service: Service) -> ApiError {
    let mut e = ApiError::new(service, StatusCode::UNAUTHORIZED, "The request you have made requires authentication.");
    if service != Service::Identity {
        // keystonemiddleware always writes Keystone's body, whatever the service.
        e.service = Service::Identity;
    }
    e.www_authenticate = Some(format!("Keystone uri=\"{}\"", state.identity_url()));
    e
}

/// Which service a path belongs to, for error formatting.
pub fn service_of(path: &str) -> Service {
    if path.starts_with("/image") {
        Service::Image
    } else if path.starts_with("/compute") {
        Service::Compute
    } else {
        Service::Identity
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let service = parts.extensions.get::<Service>().copied().unwrap_or_else(|| service_of(parts.uri.path()));
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized(state, service))?;
        let info = state.tokens().validate(token, state.clock().now()).ok_or_else(|| unauthorized(state, service))?;
        Ok(Caller { token: info })
    }
}

/// Default token lifetime, as Keystone's `[token] expiration`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issued_at: Timestamp, lifetime_s: i64) -> TokenInfo {
        TokenInfo {
            user_id: "u".into(),
            user_name: "u".into(),
            user_domain_id: "default".into(),
            project: None,
            roles: Vec::new(),
            methods: vec!["password".into()],
            issued_at,
            expires_at: issued_at + jiff::SignedDuration::from_secs(lifetime_s),
            audit_id: "a".into(),
        }
    }

    #[test]
    fn expired_tokens_are_swept_out_as_new_ones_are_issued() {
        let store = TokenStore::default();
        let start = Timestamp::UNIX_EPOCH;
        // A client that logs in every second with hour-long tokens, for a day.
        let mut last = String::new();
        for second in 0..86_400 {
            last = store.issue(token(start + jiff::SignedDuration::from_secs(second), 3600));
        }
        assert!(store.held() <= 2 * 3600 + MIN_SWEEP, "{} tokens held", store.held());
        let now = start + jiff::SignedDuration::from_secs(86_400);
        assert!(store.validate(&last, now).is_some(), "live tokens stay");
    }
}
