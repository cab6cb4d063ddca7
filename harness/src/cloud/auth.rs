//! Keystone v3 tokens (issue with catalog, revoke) and the [`Session`] that keeps one valid: re-issued shortly
//! before `expires_at`, and once more when a service answers 401 to a token it no longer accepts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::catalog::{Catalog, CatalogService};
use super::config::{AuthMethod, CloudConfig, CredentialRef, DomainRef, ProjectRef, Scope, UserRef};
use super::error::CloudError;
use super::http::{Body, Http, Request, Response};
use super::secret::Secret;

/// A Keystone token and what came with it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub expires_at: Option<jiff::Timestamp>,
    pub user_id: String,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub catalog: Catalog,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenFields,
}

#[derive(Deserialize)]
struct TokenFields {
    #[serde(default)]
    expires_at: Option<String>,
    user: IdName,
    #[serde(default)]
    project: Option<IdName>,
    #[serde(default)]
    catalog: Vec<CatalogService>,
}

#[derive(Deserialize)]
struct IdName {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

/// The Identity v3 root for an `auth_url` given with or without `/v3`.
pub fn identity_v3_url(auth_url: &str) -> String {
    let trimmed = auth_url.trim_end_matches('/');
    if trimmed.ends_with("/v3") { trimmed.to_string() } else { format!("{trimmed}/v3") }
}

fn domain_json(domain: &DomainRef) -> Value {
    match domain {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    }
}

fn user_json(user: &UserRef) -> Value {
    match user {
        UserRef::Id(id) => json!({ "id": id }),
        UserRef::Name { name, domain } => json!({ "name": name, "domain": domain_json(domain) }),
    }
}

fn scope_json(scope: &Scope) -> Option<Value> {
    match scope {
        Scope::Project(ProjectRef::Id(id)) => Some(json!({ "project": { "id": id } })),
        Scope::Project(ProjectRef::Name { name, domain }) => {
            Some(json!({ "project": { "name": name, "domain": domain_json(domain) } }))
        }
        Scope::Domain(domain) => Some(json!({ "domain": domain_json(domain) })),
        Scope::System => Some(json!({ "system": { "all": true } })),
        Scope::Unscoped => None,
    }
}

/// The body of `POST /v3/auth/tokens` for `method`. Holds the secret: never log it.
fn auth_request_body(method: &AuthMethod) -> Value {
    let (identity, scope) = match method {
        AuthMethod::Password { user, password, scope } => {
            let mut user = user_json(user);
            user["password"] = json!(password.expose());
            (json!({ "methods": ["password"], "password": { "user": user } }), scope_json(scope))
        }
        AuthMethod::ApplicationCredential { credential, secret } => {
            let credential = match credential {
                CredentialRef::Id(id) => json!({ "id": id, "secret": secret.expose() }),
                CredentialRef::Name { name, user } => {
                    json!({ "name": name, "user": user_json(user), "secret": secret.expose() })
                }
            };
            (json!({ "methods": ["application_credential"], "application_credential": credential }), None)
        }
        AuthMethod::Token { token, scope } => {
            (json!({ "methods": ["token"], "token": { "id": token.expose() } }), scope_json(scope))
        }
    };
    let mut auth = json!({ "identity": identity });
    if let Some(scope) = scope {
        auth["scope"] = scope;
    }
    json!({ "auth": auth })
}

/// `POST /v3/auth/tokens`: a new token with its catalog.
pub async fn issue_token(http: &Http, auth_url: &str, method: &AuthMethod) -> Result<Token, CloudError> {
    let url = format!("{}/auth/tokens", identity_v3_url(auth_url));
    let request = Request::new("identity", Method::POST, &url).body(Body::json(&auth_request_body(method)));
    let response = http.send(&request, None).await?;
    let decode_error = |response: &Response, path: &str, message: &str| CloudError::Decode {
        method: "POST".into(),
        url: response.url.clone(),
        request_id: response.request_id.clone(),
        path: path.into(),
        message: message.into(),
    };
    let value = response
        .header("x-subject-token")
        .map(Secret::new)
        .ok_or_else(|| decode_error(&response, "X-Subject-Token", "Keystone sent no token header"))?;
    let body: TokenBody = response.json().await?;
    let expires_at = match body.token.expires_at.clone() {
        Some(raw) => Some(parse_keystone_time(&raw).ok_or_else(|| CloudError::Decode {
            method: "POST".into(),
            url: url.clone(),
            request_id: None,
            path: "token.expires_at".into(),
            message: format!("{raw:?} is not an ISO 8601 time"),
        })?),
        None => None,
    };
    Ok(Token {
        value,
        expires_at,
        user_id: body.token.user.id,
        project_id: body.token.project.as_ref().map(|p| p.id.clone()),
        project_name: body.token.project.and_then(|p| p.name),
        catalog: Catalog { services: body.token.catalog },
    })
}

/// Keystone writes `2026-11-06T08:49:37.000000Z`; some deployments omit the zone.
fn parse_keystone_time(raw: &str) -> Option<jiff::Timestamp> {
    raw.parse::<jiff::Timestamp>().ok().or_else(|| format!("{raw}Z").parse::<jiff::Timestamp>().ok())
}

/// Session behaviour that is not configuration.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// A token this close to `expires_at` is replaced before use (keystoneauth uses 30 s).
    pub expiry_margin: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { expiry_margin: Duration::from_secs(60) }
    }
}

/// An authenticated HTTP session against one cloud.
pub struct Session {
    http: Http,
    config: CloudConfig,
    options: SessionOptions,
    token: Mutex<Option<Arc<Token>>>,
    issued: AtomicU32,
}

impl Session {
    pub fn new(http: Http, config: CloudConfig, options: SessionOptions) -> Session {
        Session { http, config, options, token: Mutex::new(None), issued: AtomicU32::new(0) }
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// How many tokens this session has been issued.
    pub fn tokens_issued(&self) -> u32 {
        self.issued.load(Ordering::Relaxed)
    }

    fn is_fresh(&self, token: &Token) -> bool {
        match token.expires_at {
            None => true,
            Some(expires) => {
                let margin = jiff::SignedDuration::try_from(self.options.expiry_margin).unwrap_or_default();
                jiff::Timestamp::now().checked_add(margin).map(|t| t < expires).unwrap_or(false)
            }
        }
    }

    /// A token with time left, issuing a new one when needed.
    pub async fn token(&self) -> Result<Arc<Token>, CloudError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| self.is_fresh(t)) {
            return Ok(token.clone());
        }
        let token = Arc::new(issue_token(&self.http, &self.config.auth_url, &self.config.auth).await?);
        self.issued.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = %token.user_id, project = ?token.project_id, expires = ?token.expires_at, "token issued");
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Forgets `stale` (unless another task already replaced it).
    async fn invalidate(&self, stale: &Token) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == stale.value) {
            *slot = None;
        }
    }

    /// Sends with the current token; on 401, re-authenticates and tries once more.
    pub async fn send(&self, request: &Request) -> Result<Response, CloudError> {
        let token = self.token().await?;
        match self.http.send(request, Some(&token.value)).await {
            Err(CloudError::Unauthorized(failure)) => {
                tracing::info!(url = %failure.url, "token refused; re-authenticating once");
                self.invalidate(&token).await;
                let fresh = self.token().await?;
                self.http.send(request, Some(&fresh.value)).await
            }
            other => other,
        }
    }

    /// `DELETE /v3/auth/tokens`: revokes the session's token, if it has one.
    pub async fn revoke(&self) -> Result<(), CloudError> {
        let Some(token) = self.token.lock().await.take() else {
            return Ok(());
        };
        let url = format!("{}/auth/tokens", identity_v3_url(&self.config.auth_url));
        let mut request = Request::new("identity", Method::DELETE, url)
            .header(http::HeaderName::from_static("x-subject-token"), token.value.expose());
        if let Some(v) = request.headers.get_mut("x-subject-token") {
            v.set_sensitive(true);
        }
        match self.http.send(&request, Some(&token.value)).await {
            Ok(_) => Ok(()),
            // Already expired or revoked: the goal is reached.
            Err(CloudError::NotFound(_)) | Err(CloudError::Unauthorized(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_bodies_follow_keystone_v3() {
        let password = AuthMethod::Password {
            user: UserRef::Name { name: "alice".into(), domain: DomainRef::Name("Default".into()) },
            password: Secret::new("pw"),
            scope: Scope::Project(ProjectRef::Name { name: "alpha".into(), domain: DomainRef::Id("default".into()) }),
        };
        assert_eq!(
            auth_request_body(&password),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": "alice", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}
            }})
        );
        let appcred =
            AuthMethod::ApplicationCredential { credential: CredentialRef::Id("ac".into()), secret: Secret::new("s") };
        assert_eq!(
            auth_request_body(&appcred),
            json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": "ac", "secret": "s"}}}})
        );
        assert_eq!(identity_v3_url("http://h/identity/"), "http://h/identity/v3");
        assert_eq!(identity_v3_url("http://h:5000/v3/"), "http://h:5000/v3");
    }
}
