//! `POST /servers/{id}/action`: dispatch by the body's single key to os-stop, os-start, reboot, createImage, os-getConsoleOutput, lock/unlock and the legacy console actions, with Nova's state checks and 409 wording.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::compute::{self, SnapshotImage};
use super::flavors::policy_forbidden;
use super::instance_actions::InstanceAction;
use super::lifecycle::{InvalidState, Pending, Snapshot, Step, TaskState, timing};
use super::microversion::ApiVersion;
use super::request::{NovaBody, action_name, check, not_found};
use super::servers::{Server, metadata_schema, stamp, visible};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::server::RequestId;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/servers/{id}/action", post(dispatch))
}

/// Properties Nova never copies from the base image into a snapshot.
const NON_INHERITABLE: [&str; 8] = [
    "cache_in_nova",
    "bittorrent",
    "cinder_encryption_key_id",
    "cinder_encryption_key_deletion_policy",
    "img_signature",
    "img_signature_hash_method",
    "img_signature_key_type",
    "img_signature_certificate_uuid",
];

/// The 409 for an action that does not fit the instance's state.
pub fn conflict(invalid: &InvalidState, action: &str, id: &str) -> ApiError {
    ApiError::compute(
        StatusCode::CONFLICT,
        format!("Cannot '{action}' instance {id} while it is in {} {}", invalid.attr, invalid.state),
    )
}

fn not_ready(id: &str) -> ApiError {
    ApiError::compute(StatusCode::CONFLICT, format!("Instance {id} is not ready"))
}

fn locked(id: &str) -> ApiError {
    ApiError::compute(StatusCode::CONFLICT, format!("Instance {id} is locked"))
}

/// The schema of an action that takes no arguments (`os-start`, `unlock`, ...).
pub(crate) fn empty_action_schema(name: &str) -> Value {
    json!({"type": "object", "properties": {name: {}}, "required": [name], "additionalProperties": false})
}

/// One `POST /servers/{id}/action` request: who asks, at which microversion, about which server.
struct ActionRequest<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    version: ApiVersion,
    id: &'a str,
    request_id: String,
}

impl ActionRequest<'_> {
    /// Runs `change` on the live server under the table lock.
    fn with_server<T>(&self, change: impl FnOnce(&mut Server) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut table = self.state.nova().servers();
        let server = table.live.get_mut(self.id).ok_or_else(|| {
            ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {} could not be found.", self.id))
        })?;
        change(server)
    }

    fn require_write(&self, rule: &str) -> Result<Server, ApiError> {
        let server = visible(self.state, self.caller, self.id)?;
        if !self.caller.can_write() {
            return Err(policy_forbidden(rule));
        }
        Ok(server)
    }

    fn now(&self) -> std::time::Duration {
        self.state.clock().elapsed()
    }
}

async fn dispatch(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
    request_id: Option<Extension<RequestId>>,
    NovaBody(body): NovaBody,
) -> Result<Response, ApiError> {
    let name = action_name(&body)?;
    let call = ActionRequest {
        state: &state,
        caller: &caller,
        version,
        id: &id,
        request_id: request_id.map(|r| r.0.0.clone()).unwrap_or_default(),
    };
    match name.as_str() {
        "os-stop" => change_power(&call, &body, &STOP),
        "os-start" => change_power(&call, &body, &START),
        "reboot" => reboot(&call, &body),
        "createImage" => create_image(&call, &body),
        "os-getConsoleOutput" => console_output(&call, &body),
        "lock" => lock(&call, &body),
        "unlock" => unlock(&call, &body),
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getSerialConsole" | "os-getRDPConsole" => {
            if version.at_least(6) {
                return Err(not_found());
            }
            super::consoles::legacy_action(&state, &caller, &id, &name, &body)
        }
        _ => Err(ApiError::compute(StatusCode::BAD_REQUEST, format!("There is no such action: {name}"))),
    }
}

fn accepted() -> Result<Response, ApiError> {
    Ok(StatusCode::ACCEPTED.into_response())
}

/// What `os-stop` and `os-start` differ in; they are the same request otherwise.
struct PowerChange {
    action: &'static str,
    policy: &'static str,
    /// The instance action's name, also the verb of the conflict message.
    verb: &'static str,
    allowed: fn(Snapshot) -> Result<(), InvalidState>,
    task: TaskState,
    event: &'static str,
    takes: Duration,
    then: Step,
}

const STOP: PowerChange = PowerChange {
    action: "os-stop",
    policy: "os_compute_api:servers:stop",
    verb: "stop",
    allowed: Snapshot::can_stop,
    task: TaskState::PoweringOff,
    event: "compute_stop_instance",
    takes: timing::STOP,
    then: Step::Stopped,
};

const START: PowerChange = PowerChange {
    action: "os-start",
    policy: "os_compute_api:servers:start",
    verb: "start",
    allowed: Snapshot::can_start,
    task: TaskState::PoweringOn,
    event: "compute_start_instance",
    takes: timing::START,
    then: Step::Started,
};

fn change_power(call: &ActionRequest, body: &Value, change: &PowerChange) -> Result<Response, ApiError> {
    check(&empty_action_schema(change.action), body)?;
    call.require_write(change.policy)?;
    let at = stamp(call.state, call.now());
    call.with_server(|s| {
        if s.locked_by.is_some() && !call.caller.is_admin() {
            return Err(locked(call.id));
        }
        if s.host.is_none() {
            return Err(not_ready(call.id));
        }
        (change.allowed)(s.check_state()).map_err(|e| conflict(&e, change.verb, call.id))?;
        s.task_state = Some(change.task);
        s.updated_at = at;
        let mut action = InstanceAction::start(change.verb, &call.request_id, Some(call.caller), at);
        action.begin_event(change.event, at);
        s.actions.push(action);
        s.pending.push(Pending { at: call.now() + change.takes, step: change.then.clone() });
        Ok(())
    })?;
    accepted()
}

/// Nova's `reboot` action schema.
pub(crate) fn reboot_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"reboot": {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["HARD", "Hard", "hard", "SOFT", "Soft", "soft"]}},
            "required": ["type"],
            "additionalProperties": false,
        }},
        "required": ["reboot"],
        "additionalProperties": false,
    })
}

fn reboot(call: &ActionRequest, body: &Value) -> Result<Response, ApiError> {
    check(&reboot_schema(), body)?;
    let hard = body["reboot"]["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("hard"));
    call.require_write("os_compute_api:servers:reboot")?;
    let at = stamp(call.state, call.now());
    call.with_server(|s| {
        if s.locked_by.is_some() && !call.caller.is_admin() {
            return Err(locked(call.id));
        }
        let checked = if hard { s.check_state().can_hard_reboot() } else { s.check_state().can_soft_reboot() };
        checked.map_err(|e| conflict(&e, "reboot", call.id))?;
        s.pending
            .retain(|p| !matches!(p.step, Step::RebootPending { .. } | Step::RebootStarted { .. } | Step::Rebooted));
        s.task_state = Some(if hard { TaskState::RebootingHard } else { TaskState::Rebooting });
        s.updated_at = at;
        let mut action = InstanceAction::start("reboot", &call.request_id, Some(call.caller), at);
        action.begin_event("compute_reboot_instance", at);
        s.actions.push(action);
        let now = call.now();
        s.pending.push(Pending { at: now + timing::REBOOT_STEP, step: Step::RebootPending { hard } });
        s.pending.push(Pending { at: now + timing::REBOOT_STEP * 2, step: Step::RebootStarted { hard } });
        s.pending.push(Pending { at: now + timing::REBOOT_STEP * 3, step: Step::Rebooted });
        Ok(())
    })?;
    accepted()
}

/// `compute_utils.create_image` + `initialize_instance_snapshot_metadata`: the base image's
/// properties (from system metadata) minus the non-inheritable ones, Nova's own, the request's.
pub fn snapshot_record(
    server: &Server,
    caller: &Caller,
    name: &str,
    extra: &BTreeMap<String, String>,
) -> SnapshotImage {
    let mut properties = BTreeMap::new();
    let mut min_disk = 0;
    let mut min_ram = 0;
    for (key, value) in &server.system_metadata {
        let key = key.strip_prefix("image_").unwrap_or(key);
        match key {
            "min_disk" => min_disk = value.parse().unwrap_or(0),
            "min_ram" => min_ram = value.parse().unwrap_or(0),
            "disk_format"
            | "container_format"
            | "mappings"
            | "block_device_mapping"
            | "img_mappings"
            | "img_block_device_mapping" => {}
            _ => {
                properties.insert(key.to_string(), value.clone());
            }
        }
    }
    properties.retain(|k, _| !NON_INHERITABLE.contains(&k.as_str()) && !k.starts_with("os_glance"));
    properties.insert("instance_uuid".into(), server.id.clone());
    properties.insert("user_id".into(), caller.user_id().to_string());
    properties.insert("image_type".into(), "snapshot".into());
    let shared = caller.project_id() != server.project_id;
    if shared {
        properties.insert("instance_owner".into(), server.project_id.clone());
    }
    properties.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    SnapshotImage {
        name: name.to_string(),
        owner: caller.project_id().to_string(),
        visibility: if shared { "shared".into() } else { "private".into() },
        member: shared.then(|| server.project_id.clone()),
        min_disk,
        min_ram,
        properties,
    }
}

/// Nova's `createImage` action schema.
pub(crate) fn create_image_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"createImage": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "format": "name", "minLength": 1, "maxLength": 255},
                "metadata": metadata_schema(),
            },
            "required": ["name"],
            "additionalProperties": false,
        }},
        "required": ["createImage"],
        "additionalProperties": false,
    })
}

fn create_image(call: &ActionRequest, body: &Value) -> Result<Response, ApiError> {
    check(&create_image_schema(), body)?;
    let server = call.require_write("os_compute_api:servers:create_image")?;
    let name = body["createImage"]["name"].as_str().unwrap_or_default().to_string();
    let extra: BTreeMap<String, String> = body["createImage"]
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    server.check_state().can_snapshot().map_err(|e| conflict(&e, "createImage", call.id))?;
    let record = snapshot_record(&server, call.caller, &name, &extra);
    let image_id = compute::create_snapshot_image(call.state, &record)
        .map_err(|e| ApiError::compute(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let at = stamp(call.state, call.now());
    let started = call.with_server(|s| {
        if let Err(e) = s.check_state().can_snapshot() {
            return Err(conflict(&e, "createImage", call.id));
        }
        s.task_state = Some(TaskState::ImageSnapshotPending);
        s.updated_at = at;
        s.snapshot_image = Some(image_id.clone());
        let mut action = InstanceAction::start("createImage", &call.request_id, Some(call.caller), at);
        action.begin_event("compute_snapshot_instance", at);
        s.actions.push(action);
        let now = call.now();
        for (n, step) in
            [Step::SnapshotTaken, Step::SnapshotPendingUpload, Step::SnapshotUploading, Step::SnapshotUploaded]
                .into_iter()
                .enumerate()
        {
            s.pending.push(Pending { at: now + timing::SNAPSHOT_STEP * (n as u32 + 1), step });
        }
        Ok(())
    });
    if let Err(e) = started {
        compute::delete_image(call.state, &image_id);
        return Err(e);
    }
    if call.version.at_least(45) {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "image_id": image_id }))).into_response());
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{}/images/{image_id}", call.state.image_url())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Nova's `os-getConsoleOutput` action schema.
pub(crate) fn console_output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"os-getConsoleOutput": {
            "type": "object",
            "properties": {"length": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$", "minimum": -1}},
            "additionalProperties": false,
        }},
        "required": ["os-getConsoleOutput"],
        "additionalProperties": false,
    })
}

fn console_output(call: &ActionRequest, body: &Value) -> Result<Response, ApiError> {
    check(&console_output_schema(), body)?;
    let server = call.require_write("os_compute_api:os-console-output")?;
    if server.host.is_none() {
        return Err(not_ready(call.id));
    }
    // The libvirt driver reads the console through the running domain's pty: a guest that is not running (shut off,
    // powered itself off) has none, and the compute host says so (ConsoleNotAvailable, 404).
    if server.power_state != super::lifecycle::PowerState::Running {
        return Err(ApiError::compute(StatusCode::NOT_FOUND, "Guest does not have a console available."));
    }
    let length = body["os-getConsoleOutput"].get("length").and_then(super::request::int_value);
    let mut full = server.console_output(call.now());
    // The libvirt driver reads at most the last 100 KiB of the console log.
    const MAX_CONSOLE_BYTES: usize = 100 * 1024;
    if full.len() > MAX_CONSOLE_BYTES {
        let mut cut = full.len() - MAX_CONSOLE_BYTES;
        while !full.is_char_boundary(cut) {
            cut += 1;
        }
        full = full.split_off(cut);
    }
    let output = tail(&full, length);
    let cleaned: String = output.chars().filter(|c| !matches!(*c as u32, 0x00..=0x08 | 0x0B..=0x1F)).collect();
    Ok(Json(json!({ "output": cleaned })).into_response())
}

/// The compute manager's `_tail_log`: `'\n'.join(log.split('\n')[-length:])`, quirks included
/// (the trailing newline counts as a line, and -1 drops the first line); `None` is the whole log.
pub fn tail(text: &str, length: Option<i64>) -> String {
    let Some(length) = length else { return text.to_string() };
    if length == 0 {
        return String::new();
    }
    let parts: Vec<&str> = text.split('\n').collect();
    let start = if length > 0 {
        parts.len().saturating_sub(length as usize)
    } else {
        (length.unsigned_abs() as usize).min(parts.len())
    };
    parts[start..].join("\n")
}

/// Nova's `lock` action schema for `version` (a reason from 2.73).
pub(crate) fn lock_schema(version: ApiVersion) -> Value {
    let mut lock_props = json!({});
    if version.at_least(73) {
        lock_props = json!({"locked_reason": {"type": "string", "minLength": 1, "maxLength": 255}});
    }
    json!({
        "type": "object",
        "properties": {"lock": {"type": ["object", "null"], "properties": lock_props, "additionalProperties": false}},
        "required": ["lock"],
        "additionalProperties": false,
    })
}

fn lock(call: &ActionRequest, body: &Value) -> Result<Response, ApiError> {
    check(&lock_schema(call.version), body)?;
    call.require_write("os_compute_api:os-lock-server:lock")?;
    let reason = body["lock"].get("locked_reason").and_then(Value::as_str).map(String::from);
    let at = stamp(call.state, call.now());
    call.with_server(|s| {
        s.locked_by = Some(
            if call.caller.is_admin() && call.caller.project_id() != s.project_id { "admin" } else { "owner" }.into(),
        );
        s.locked_reason = reason;
        s.actions.push(InstanceAction::start("lock", &call.request_id, Some(call.caller), at));
        Ok(())
    })?;
    accepted()
}

fn unlock(call: &ActionRequest, body: &Value) -> Result<Response, ApiError> {
    check(&empty_action_schema("unlock"), body)?;
    call.require_write("os_compute_api:os-lock-server:unlock")?;
    let at = stamp(call.state, call.now());
    call.with_server(|s| {
        if s.locked_by.as_deref() == Some("admin") && !call.caller.is_admin() {
            return Err(policy_forbidden("os_compute_api:os-lock-server:unlock:unlock_override"));
        }
        s.locked_by = None;
        s.locked_reason = None;
        s.actions.push(InstanceAction::start("unlock", &call.request_id, Some(call.caller), at));
        Ok(())
    })?;
    accepted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_like_the_compute_manager() {
        let log = "a\nb\nc\n";
        assert_eq!(tail(log, None), log);
        assert_eq!(tail(log, Some(-1)), "b\nc\n");
        assert_eq!(tail(log, Some(2)), "c\n");
        assert_eq!(tail(log, Some(3)), "b\nc\n");
        assert_eq!(tail(log, Some(0)), "");
        assert_eq!(tail(log, Some(10)), log);
        assert_eq!(tail("", Some(3)), "");
    }
}
