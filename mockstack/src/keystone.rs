//! Keystone v3: version discovery, password and application-credential auth, token validation and the service catalog.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, ProjectScope, TokenInfo};
use crate::clock::iso8601_micros;
use crate::error::ApiError;
use crate::identity::{User, stable_id};
use crate::state::AppState;

const VERSION_ID: &str = "v3.14";
const VERSION_UPDATED: &str = "2020-04-07T00:00:00Z";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .route("/v3/auth/tokens", get(validate_token).head(check_token).post(issue_token).delete(revoke_token))
        .route("/v3/auth/catalog", get(auth_catalog))
        .route("/v3/auth/projects", get(auth_projects))
        .route("/v3/users/{user_id}", get(show_user))
        .route("/v3/projects/{project_id}", get(show_project))
        .route("/v3/projects", get(list_projects))
        .route("/v3/roles", get(list_roles))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::identity(StatusCode::NOT_FOUND, "The resource could not be found.")
}

fn version_value(state: &AppState) -> Value {
    json!({
        "id": VERSION_ID,
        "status": "stable",
        "updated": VERSION_UPDATED,
        "links": [{ "rel": "self", "href": format!("{}/v3/", state.identity_url()) }],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"
        }]
    })
}

pub async fn versions(State(state): State<AppState>) -> Response {
    let body = json!({ "versions": { "values": [version_value(&state)] } });
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

async fn version(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "version": version_value(&state) }))
}

/// Keystone's endpoint catalog: one entry per service, three interfaces each, one region.
pub fn catalog(state: &AppState) -> Value {
    let region = &state.config().region;
    let services = [
        ("identity", "keystone", state.identity_url()),
        ("image", "glance", state.image_url()),
        ("compute", "nova", state.compute_url()),
    ];
    let entries: Vec<Value> = services
        .iter()
        .map(|(kind, name, url)| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|iface| {
                    json!({
                        "id": stable_id("endpoint", &format!("{kind}/{iface}")),
                        "interface": iface,
                        "region": region,
                        "region_id": region,
                        "url": url,
                    })
                })
                .collect();
            json!({
                "endpoints": endpoints,
                "id": stable_id("service", kind),
                "type": kind,
                "name": name,
            })
        })
        .collect();
    Value::Array(entries)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::identity(StatusCode::BAD_REQUEST, message)
}

/// The 401 Keystone gives for any failed authentication, without saying which part was wrong.
fn auth_failed() -> ApiError {
    ApiError::identity(StatusCode::UNAUTHORIZED, "The request you have made requires authentication.")
}

#[derive(Deserialize)]
struct NoCatalog {
    nocatalog: Option<String>,
}

fn wants_catalog(q: &NoCatalog) -> bool {
    // Keystone treats the mere presence of `nocatalog` (any value but "0"/"false") as true.
    match q.nocatalog.as_deref() {
        None => true,
        Some(v) => matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"),
    }
}

/// Finds an object by `id`, or by `name` plus a `domain` given by id or name.
fn resolve_user<'a>(state: &'a AppState, user: &Value) -> Result<&'a User, ApiError> {
    let ids = state.identities();
    if let Some(id) = user.get("id").and_then(Value::as_str) {
        return ids.user(id).ok_or_else(auth_failed);
    }
    let name = user
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Invalid input for field 'identity/password/user': 'id' or 'name' is required"))?;
    let domain_id = resolve_domain(state, user.get("domain"), "identity/password/user/domain")?;
    ids.users.iter().find(|u| u.name == name && u.domain_id == domain_id).ok_or_else(auth_failed)
}

fn resolve_domain(state: &AppState, domain: Option<&Value>, field: &str) -> Result<String, ApiError> {
    let domain = domain.ok_or_else(|| {
        bad_request(format!("Expecting to find domain in {}. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.", field.rsplit('/').nth(1).unwrap_or("user")))
    })?;
    let ids = state.identities();
    if let Some(id) = domain.get("id").and_then(Value::as_str) {
        return ids.domain(id).map(|d| d.id.clone()).ok_or_else(auth_failed);
    }
    if let Some(name) = domain.get("name").and_then(Value::as_str) {
        return ids.domains.iter().find(|d| d.name == name).map(|d| d.id.clone()).ok_or_else(auth_failed);
    }
    Err(bad_request(format!("Invalid input for field '{field}': 'id' or 'name' is required")))
}

fn resolve_project(state: &AppState, project: &Value) -> Result<ProjectScope, ApiError> {
    let ids = state.identities();
    let found = if let Some(id) = project.get("id").and_then(Value::as_str) {
        ids.project(id)
    } else if let Some(name) = project.get("name").and_then(Value::as_str) {
        let domain_id = resolve_domain(state, project.get("domain"), "auth/scope/project/domain")?;
        ids.projects.iter().find(|p| p.name == name && p.domain_id == domain_id)
    } else {
        return Err(bad_request("Invalid input for field 'auth/scope/project': 'id' or 'name' is required"));
    };
    let p = found.ok_or_else(auth_failed)?;
    let domain_name = ids.domain(&p.domain_id).map(|d| d.name.clone()).unwrap_or_default();
    Ok(ProjectScope { id: p.id.clone(), name: p.name.clone(), domain_id: p.domain_id.clone(), domain_name })
}

async fn issue_token(
    State(state): State<AppState>,
    Query(q): Query<NoCatalog>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // Keystone reads an empty body as `{}`, and refuses anything but a JSON object.
    const NOT_COMPLIED: &str = "The server could not comply with the request since it is either malformed or \
                                otherwise incorrect. The client is assumed to be in error.";
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| bad_request(format!("Expecting to find valid JSON in request body. {NOT_COMPLIED}")))?
    };
    let auth = body
        .get("auth")
        .ok_or_else(|| bad_request(format!("Expecting to find auth in request body. {NOT_COMPLIED}")))?;
    let identity = auth
        .get("identity")
        .ok_or_else(|| bad_request("Invalid input for field 'auth': 'identity' is a required property"))?;
    let mut expires_no_later = None;
    let mut methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("Invalid input for field 'auth/identity': 'methods' is a required property"))?
        .iter()
        .filter_map(|m| m.as_str().map(String::from))
        .collect();

    let now = state.clock().now();
    let (user, mut scope_from_credential) =
        if methods.iter().any(|m| m == "password") {
            let password = identity.get("password").and_then(|p| p.get("user")).ok_or_else(|| {
                bad_request("Invalid input for field 'identity/password': 'user' is a required property")
            })?;
            let user = resolve_user(&state, password)?;
            let given = password.get("password").and_then(Value::as_str).unwrap_or("");
            if given != user.password {
                return Err(auth_failed());
            }
            (user.clone(), None)
        } else if methods.iter().any(|m| m == "token") {
            let id =
                identity.get("token").and_then(|t| t.get("id")).and_then(Value::as_str).ok_or_else(|| {
                    bad_request("Invalid input for field 'identity/token': 'id' is a required property")
                })?;
            let info = state.tokens().validate(id, now).ok_or_else(auth_failed)?;
            let user = state.identities().user(&info.user_id).ok_or_else(auth_failed)?.clone();
            // A token got with a token lives no longer than it (Keystone's token method keeps its expiry), and
            // carries its methods too.
            expires_no_later = Some(info.expires_at);
            methods.extend(info.methods.iter().filter(|m| !methods.contains(m)).cloned().collect::<Vec<_>>());
            (user, None)
        } else if methods.iter().any(|m| m == "application_credential") {
            let cred = identity.get("application_credential").ok_or_else(|| {
                bad_request("Invalid input for field 'identity/application_credential': is a required property")
            })?;
            let (user, project) = resolve_application_credential(&state, cred)?;
            (user, Some(project))
        } else {
            return Err(ApiError::identity(
                StatusCode::UNAUTHORIZED,
                "Attempted to authenticate with an unsupported method.",
            ));
        };

    let scope = match auth.get("scope") {
        Some(scope) if scope_from_credential.is_none() => {
            if let Some(project) = scope.get("project") {
                Some(resolve_project(&state, project)?)
            } else if scope.get("system").is_some() || scope.get("domain").is_some() {
                return Err(ApiError::identity(
                    StatusCode::UNAUTHORIZED,
                    "mockstack supports project-scoped and unscoped tokens only",
                ));
            } else {
                None
            }
        }
        _ => scope_from_credential.take(),
    };

    let roles = match &scope {
        Some(p) => {
            let roles = state.identities().effective_roles(&user, &p.id);
            if roles.is_empty() {
                return Err(ApiError::identity(
                    StatusCode::UNAUTHORIZED,
                    format!("User {} has no access to project {}", user.id, p.id),
                ));
            }
            roles
        }
        None => Vec::new(),
    };

    let ttl = jiff::SignedDuration::try_from(state.config().token_ttl).unwrap_or(jiff::SignedDuration::MAX);
    let info = TokenInfo {
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        user_domain_id: user.domain_id.clone(),
        project: scope,
        roles,
        methods,
        issued_at: now,
        expires_at: now
            .checked_add(ttl)
            .unwrap_or(jiff::Timestamp::MAX)
            .min(expires_no_later.unwrap_or(jiff::Timestamp::MAX)),
        audit_id: audit_id(),
    };
    let body = token_body(&state, &info, wants_catalog(&q));
    let token_id = state.tokens().issue(info);
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.headers_mut().insert("x-subject-token", HeaderValue::from_str(&token_id).expect("token ids are ascii"));
    response.headers_mut().insert("vary", HeaderValue::from_static("X-Auth-Token"));
    Ok(response)
}

/// Application credentials are derived, not stored: the id is `appcred-<user>-<project>`
/// and the secret is the user's password, which is enough to exercise a client's code path.
fn resolve_application_credential(state: &AppState, cred: &Value) -> Result<(User, ProjectScope), ApiError> {
    let id = cred
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("Invalid input for field 'identity/application_credential': 'id' is required"))?;
    let secret = cred.get("secret").and_then(Value::as_str).unwrap_or("");
    let ids = state.identities();
    for user in &ids.users {
        for project_id in user.roles.keys() {
            if application_credential_id(&user.id, project_id) == id {
                if secret != user.password {
                    return Err(auth_failed());
                }
                let scope = resolve_project(state, &json!({ "id": project_id }))?;
                return Ok((user.clone(), scope));
            }
        }
    }
    Err(auth_failed())
}

/// The application credential id mockstack accepts for a user on a project.
pub fn application_credential_id(user_id: &str, project_id: &str) -> String {
    stable_id("appcred", &format!("{user_id}/{project_id}"))
}

fn audit_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&uuid::Uuid::new_v4().as_bytes()[..16])
}

fn token_body(state: &AppState, info: &TokenInfo, with_catalog: bool) -> Value {
    let ids = state.identities();
    let user_domain = ids.domain(&info.user_domain_id);
    let mut token = json!({
        "audit_ids": [info.audit_id],
        "expires_at": iso8601_micros(info.expires_at),
        "issued_at": iso8601_micros(info.issued_at),
        "methods": info.methods,
        "user": {
            "domain": {
                "id": info.user_domain_id,
                "name": user_domain.map(|d| d.name.as_str()).unwrap_or(""),
            },
            "id": info.user_id,
            "name": info.user_name,
            "password_expires_at": null,
        },
    });
    if let Some(p) = &info.project {
        token["project"] = json!({
            "domain": { "id": p.domain_id, "name": p.domain_name },
            "id": p.id,
            "name": p.name,
        });
        token["is_domain"] = json!(false);
        token["roles"] =
            Value::Array(info.roles.iter().map(|r| json!({ "id": stable_id("role", r), "name": r })).collect());
        if with_catalog {
            token["catalog"] = catalog(state);
        }
    }
    json!({ "token": token })
}

fn subject_token(state: &AppState, headers: &HeaderMap) -> Result<TokenInfo, ApiError> {
    let id = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad_request("X-Subject-Token header is required"))?;
    state
        .tokens()
        .validate(id, state.clock().now())
        .ok_or_else(|| ApiError::identity(StatusCode::NOT_FOUND, format!("Could not find token: {id}.")))
}

/// Who may look at or revoke another token, as Keystone's default policy says (`keystone/common/policies/token.py`):
/// the token's own user always; an admin; for `check_token` and `validate_token` a system-scoped reader (mockstack
/// issues no system-scoped tokens); for `validate_token` a service (the `service` role, as keystonemiddleware's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenAction {
    Check,
    Validate,
    Revoke,
}

impl TokenAction {
    fn policy_name(self) -> &'static str {
        match self {
            TokenAction::Check => "identity:check_token",
            TokenAction::Validate => "identity:validate_token",
            TokenAction::Revoke => "identity:revoke_token",
        }
    }

    fn allows(self, caller: &Caller, subject: &TokenInfo) -> bool {
        caller.user_id() == subject.user_id
            || caller.is_admin()
            || (self == TokenAction::Validate && caller.has_role("service"))
    }
}

/// The subject token, found (404 otherwise, before any policy: Keystone reads it to build the policy's target) and
/// one the caller may act on (403 otherwise).
fn authorized_subject(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    action: TokenAction,
) -> Result<TokenInfo, ApiError> {
    let subject = subject_token(state, headers)?;
    if !action.allows(caller, &subject) {
        return Err(forbidden_action(action.policy_name()));
    }
    Ok(subject)
}

async fn validate_token(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<NoCatalog>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let info = authorized_subject(&state, &caller, &headers, TokenAction::Validate)?;
    let mut response = Json(token_body(&state, &info, wants_catalog(&q))).into_response();
    if let Some(v) = headers.get("x-subject-token") {
        response.headers_mut().insert("x-subject-token", v.clone());
    }
    Ok(response)
}

async fn check_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorized_subject(&state, &caller, &headers, TokenAction::Check)?;
    Ok(StatusCode::OK)
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorized_subject(&state, &caller, &headers, TokenAction::Revoke)?;
    let id = headers.get("x-subject-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    state.tokens().revoke(id);
    Ok(StatusCode::NO_CONTENT)
}

async fn auth_catalog(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!({
        "catalog": catalog(&state),
        "links": { "self": format!("{}/v3/auth/catalog", state.identity_url()), "previous": null, "next": null }
    }))
}

fn project_value(state: &AppState, id: &str) -> Option<Value> {
    let p = state.identities().project(id)?;
    Some(json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id, "enabled": true,
        "description": "", "is_domain": false, "parent_id": p.domain_id, "tags": [], "options": {},
        "links": { "self": format!("{}/v3/projects/{}", state.identity_url(), p.id) }
    }))
}

async fn auth_projects(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let projects: Vec<Value> = state
        .identities()
        .user(caller.user_id())
        .map(|u| u.roles.keys().filter_map(|pid| project_value(&state, pid)).collect())
        .unwrap_or_default();
    Json(json!({
        "projects": projects,
        "links": { "self": format!("{}/v3/auth/projects", state.identity_url()), "previous": null, "next": null }
    }))
}

fn forbidden_action(action: &str) -> ApiError {
    ApiError::identity(
        StatusCode::FORBIDDEN,
        format!("You are not authorized to perform the requested action: {action}."),
    )
}

async fn show_user(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(user_id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    if caller.user_id() != user_id && !caller.is_admin() {
        return Err(forbidden_action("identity:get_user"));
    }
    let u = state
        .identities()
        .user(&user_id)
        .ok_or_else(|| ApiError::identity(StatusCode::NOT_FOUND, format!("Could not find user: {user_id}.")))?;
    Ok(Json(json!({ "user": {
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": true,
        "password_expires_at": null, "options": {},
        "links": { "self": format!("{}/v3/users/{}", state.identity_url(), u.id) }
    }})))
}

async fn show_project(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(project_id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    if caller.project_id() != project_id && !caller.is_admin() {
        return Err(forbidden_action("identity:get_project"));
    }
    project_value(&state, &project_id)
        .map(|p| Json(json!({ "project": p })))
        .ok_or_else(|| ApiError::identity(StatusCode::NOT_FOUND, format!("Could not find project: {project_id}.")))
}

#[derive(Deserialize)]
struct ProjectFilter {
    name: Option<String>,
}

async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<ProjectFilter>,
) -> Result<Json<Value>, ApiError> {
    if !caller.is_admin() {
        return Err(forbidden_action("identity:list_projects"));
    }
    let projects: Vec<Value> = state
        .identities()
        .projects
        .iter()
        .filter(|p| filter.name.as_ref().is_none_or(|n| &p.name == n))
        .filter_map(|p| project_value(&state, &p.id))
        .collect();
    Ok(Json(json!({
        "projects": projects,
        "links": { "self": format!("{}/v3/projects", state.identity_url()), "previous": null, "next": null }
    })))
}

/// `identity:list_roles` is ADMIN_OR_SYSTEM_READER_OR_DOMAIN_MANAGER: an admin, a system reader, or a manager on a
/// domain-scoped token (`role:manager and not domain_id:None`). mockstack issues project-scoped tokens only, so only
/// an admin lists roles; a project's manager, member or reader is refused.
async fn list_roles(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    if !caller.is_admin() {
        return Err(forbidden_action("identity:list_roles"));
    }
    let roles: Vec<Value> = crate::identity::ROLE_CHAIN
        .iter()
        .map(
            |r| json!({ "id": stable_id("role", r), "name": r, "domain_id": null, "description": null, "options": {} }),
        )
        .collect();
    Ok(Json(json!({
        "roles": roles,
        "links": { "self": format!("{}/v3/roles", state.identity_url()), "previous": null, "next": null }
    })))
}
