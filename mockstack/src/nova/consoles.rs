//! Remote consoles: `os-getVNCConsole`/`os-getSPICEConsole` (up to 2.5), `POST /servers/{id}/remote-consoles` (2.6+, `spice-direct` from 2.99), and the mock's console page the returned URLs point at.
//!
//! The simulated compute host runs with Nova's default console options: VNC enabled (its domains
//! have VNC graphics), SPICE and the serial console disabled, so the compute manager refuses
//! every SPICE console type (`spice-html5`, `spice-direct`) as unavailable.
//!
//! A console URL carries a token that lives `[consoleauth] token_ttl` (600 s by default) on the virtual clock, as
//! Nova's console auth tokens do; tokens die with their server, and expired ones are swept out as new ones are
//! handed out, so the table holds about the tokens alive at once.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::flavors::policy_forbidden;
use super::microversion::ApiVersion;
use super::request::{NovaBody, check, not_found};
use super::server_actions::conflict;
use super::servers::visible;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/servers/{id}/remote-consoles", post(create))
}

/// The mock-only pages a console URL opens (served under `/mockstack`).
pub fn pages() -> Router<AppState> {
    Router::new().route("/vnc_lite.html", get(vnc_page))
}

/// Nova's `[consoleauth] token_ttl` default.
pub const CONSOLE_TOKEN_TTL: Duration = Duration::from_secs(600);

/// The fewest tokens worth a sweep.
const MIN_SWEEP: usize = 256;

/// Console tokens handed out in console URLs, each to the server it opens until it expires.
#[derive(Debug, Default)]
pub struct ConsoleTokens {
    by_token: HashMap<String, ConsoleToken>,
    /// The size at which expired tokens are next swept out: twice the live ones after a sweep, so that sweeping
    /// costs O(1) per token handed out.
    sweep_at: usize,
}

#[derive(Debug)]
struct ConsoleToken {
    server_id: String,
    /// On the virtual clock (time since it started).
    expires: Duration,
}

impl ConsoleTokens {
    /// A new token for `server_id`, handed out at `now`.
    pub fn issue(&mut self, server_id: &str, now: Duration) -> String {
        let token = uuid::Uuid::new_v4().to_string();
        let expires = now.saturating_add(CONSOLE_TOKEN_TTL);
        self.by_token.insert(token.clone(), ConsoleToken { server_id: server_id.to_string(), expires });
        if self.by_token.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.by_token.retain(|_, t| t.expires > now);
            self.sweep_at = 2 * self.by_token.len();
        }
        token
    }

    /// The server `token` opens, if it is known and has not expired at `now`.
    pub fn server(&self, token: &str, now: Duration) -> Option<&str> {
        self.by_token.get(token).filter(|t| t.expires > now).map(|t| t.server_id.as_str())
    }

    /// Forgets every token of a deleted server (`ConsoleAuthToken.clean_console_auths_for_instance`).
    pub fn forget_server(&mut self, server_id: &str) {
        self.by_token.retain(|_, t| t.server_id != server_id);
    }

    /// How many tokens are held (live ones, and expired ones not yet swept out).
    pub fn held(&self) -> usize {
        self.by_token.len()
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::compute(StatusCode::BAD_REQUEST, message)
}

/// What the compute host answers for `protocol`/`console_type`: a URL, or Nova's error.
fn console_url(
    state: &AppState,
    caller: &Caller,
    id: &str,
    protocol: &str,
    console_type: &str,
    action: &str,
) -> Result<String, ApiError> {
    let server = visible(state, caller, id)?;
    if !caller.can_write() {
        return Err(policy_forbidden("os_compute_api:os-remote-consoles"));
    }
    if server.host.is_none() {
        return Err(ApiError::compute(StatusCode::CONFLICT, format!("Instance {id} is not ready")));
    }
    server.check_state().can_open_console().map_err(|e| conflict(&e, action, id))?;
    match protocol {
        "vnc" => {}
        // `[spice] enabled` and `[serial_console] enabled` are off: the manager names the type asked for.
        "spice" | "serial" => return Err(bad_request(format!("Unavailable console type {console_type}."))),
        "rdp" => return Err(bad_request("Unavailable console type rdp.".into())),
        _ => return Err(ApiError::compute(StatusCode::NOT_IMPLEMENTED, "Action is not supported.")),
    }
    if console_type != "novnc" {
        return Err(bad_request(format!("Invalid console type {console_type}")));
    }
    if server.power_state != super::lifecycle::PowerState::Running {
        // A domain that is not running has no graphics port to connect to.
        return Err(bad_request(format!("Unavailable console type {protocol}.")));
    }
    let token = state.nova().servers().console_tokens.issue(id, state.clock().elapsed());
    Ok(format!("{}/mockstack/vnc_lite.html?path=%3Ftoken%3D{token}", state.base_url()))
}

/// The pre-2.6 console actions, dispatched from `/action`.
pub fn legacy_action(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
    body: &Value,
) -> Result<Response, ApiError> {
    let (protocol, types): (&str, Value) = match action {
        "os-getVNCConsole" => ("vnc", json!(["novnc", "xvpvnc"])),
        "os-getSPICEConsole" => ("spice", json!(["spice-html5"])),
        "os-getSerialConsole" => ("serial", json!(["serial"])),
        _ => return Err(bad_request(String::new())),
    };
    let schema = json!({
        "type": "object",
        "properties": {action: {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": types}},
            "required": ["type"],
            "additionalProperties": false,
        }},
        "required": [action],
        "additionalProperties": false,
    });
    check(&schema, body)?;
    let console_type = body[action]["type"].as_str().unwrap_or_default().to_string();
    let nova_action = match protocol {
        "vnc" => "get_vnc_console",
        "spice" => "get_spice_console",
        _ => "get_serial_console",
    };
    let url = console_url(state, caller, id, protocol, &console_type, nova_action)?;
    Ok(Json(json!({ "console": { "type": console_type, "url": url } })).into_response())
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
    NovaBody(body): NovaBody,
) -> Result<Response, ApiError> {
    if !version.at_least(6) {
        return Err(not_found());
    }
    let mut protocols = vec!["vnc", "spice", "serial", "rdp"];
    let mut types = vec!["novnc", "xvpvnc", "spice-html5", "serial", "rdp-html5"];
    if version.at_least(8) {
        protocols.push("mks");
        types.push("webmks");
    }
    if version.at_least(99) {
        types.push("spice-direct");
    }
    let schema = json!({
        "type": "object",
        "properties": {"remote_console": {
            "type": "object",
            "properties": {
                "protocol": {"type": "string", "enum": protocols},
                "type": {"type": "string", "enum": types},
            },
            "required": ["protocol", "type"],
            "additionalProperties": false,
        }},
        "required": ["remote_console"],
        "additionalProperties": false,
    });
    check(&schema, &body)?;
    let protocol = body["remote_console"]["protocol"].as_str().unwrap_or_default().to_string();
    let console_type = body["remote_console"]["type"].as_str().unwrap_or_default().to_string();
    let url = console_url(&state, &caller, &id, &protocol, &console_type, "get_vnc_console")?;
    Ok(Json(json!({ "remote_console": { "protocol": protocol, "type": console_type, "url": url } })).into_response())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn page(state: &AppState, token: Option<&str>, kind: &str) -> Response {
    let now = state.clock().elapsed();
    let server_id = token.and_then(|t| state.nova().servers().console_tokens.server(t, now).map(str::to_string));
    let Some(server) = server_id.and_then(|id| state.nova().server(&id)) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<html><body><p>Failed to connect to server (code: 1006)</p></body></html>"),
        )
            .into_response();
    };
    let output = server.console_output(state.clock().elapsed());
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>{kind} console: {name}</title></head><body>\n\
         <h1>{kind} console of {name} ({id}), status {status}</h1>\n<pre>{log}</pre>\n</body></html>\n",
        name = escape(&server.name),
        id = server.id,
        status = server.status(),
        log = escape(&output),
    ))
    .into_response()
}

#[derive(serde::Deserialize)]
struct VncQuery {
    path: Option<String>,
}

async fn vnc_page(State(state): State<AppState>, Query(q): Query<VncQuery>) -> Response {
    let token = q.path.as_deref().and_then(|p| p.strip_prefix("?token="));
    page(&state, token, "VNC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_tokens_are_swept_out_so_the_table_holds_about_the_live_ones() {
        let mut tokens = ConsoleTokens::default();
        let mut now = Duration::ZERO;
        for _ in 0..100_000 {
            tokens.issue("server", now);
            now += Duration::from_secs(1);
        }
        // At most the tokens of one TTL are alive; the sweep lets the table grow to twice that between sweeps.
        let alive = CONSOLE_TOKEN_TTL.as_secs() as usize;
        assert!(tokens.held() <= 2 * alive.max(MIN_SWEEP), "{} tokens held", tokens.held());
    }
}
