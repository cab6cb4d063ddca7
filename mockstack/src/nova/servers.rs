//! Servers: the instance record, create (schemas per microversion, image/flavor/BDM/network checks, then the quota), list/detail/show views per microversion, update and delete.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use guestsim::hypervisor::GuestRun;
use jiff::Timestamp;
use rand::RngExt;
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::bdm::{self, Bdm};
use super::compute;
use super::flavors::{Flavor, policy_forbidden};
use super::image_meta;
use super::instance_actions::InstanceAction;
use super::lifecycle::{Pending, PowerState, Step, TaskState, VmState, status, timing};
use super::microversion::ApiVersion;
use super::quota;
use super::request::{NovaBody, check, truthy};
use super::{ById, bookmark, links};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::glance::{Image, ImageStatus};
use crate::server::RequestId;
use crate::state::AppState;

/// An instance fault as Nova records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub details: String,
    pub created: Timestamp,
}

/// One server (Nova's `Instance`), with what the simulated compute side keeps for it.
#[derive(Debug, Clone)]
pub struct Server {
    pub id: String,
    /// The database id behind `instance-%08x`.
    pub db_id: u64,
    pub name: String,
    pub description: Option<String>,
    pub hostname: String,
    pub project_id: String,
    pub user_id: String,
    /// `""` when booted from a volume.
    pub image_ref: String,
    pub flavor: Flavor,
    pub metadata: Map<String, Value>,
    pub key_name: Option<String>,
    pub config_drive: bool,
    pub user_data: Option<String>,
    pub auto_disk_config: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub launched_at: Option<Timestamp>,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: PowerState,
    pub host: Option<String>,
    /// The availability zone the user asked for (what 2.96 calls `pinned_availability_zone`).
    pub requested_az: Option<String>,
    /// The scheduler hints of the request spec, each a list of strings (2.100 shows them).
    pub scheduler_hints: Map<String, Value>,
    pub reservation_id: String,
    pub launch_index: u32,
    pub root_device_name: Option<String>,
    pub tags: Vec<String>,
    pub locked_by: Option<String>,
    pub locked_reason: Option<String>,
    pub fault: Option<Fault>,
    /// Nova's system metadata: `image_*` properties of the boot image, owner names.
    pub system_metadata: BTreeMap<String, String>,
    pub bdms: Vec<Bdm>,
    /// The boot image as the caller saw it at create time (`None` when booted from a volume).
    pub image: Option<Image>,
    pub actions: Vec<InstanceAction>,
    pub pending: Vec<Pending>,
    /// Increases at every power-on, so a stale guest event of an earlier run is ignored.
    pub run: u64,
    pub run_started: Option<Duration>,
    /// What the guest of the current run does (console timeline, power-off, install).
    pub guest: Option<GuestRun>,
    /// Console output of earlier runs (libvirt keeps appending to `console.log`).
    pub console_log: String,
    /// The snapshot image being created, if any.
    pub snapshot_image: Option<String>,
    /// The domain the compute host defined, once the build got that far.
    pub compute: Option<compute::DefinedDomain>,
}

impl Server {
    pub fn instance_name(&self) -> String {
        format!("instance-{:08x}", self.db_id)
    }

    pub fn status(&self) -> &'static str {
        status(self.vm_state, self.task_state)
    }

    pub(crate) fn check_state(&self) -> super::lifecycle::Snapshot {
        super::lifecycle::Snapshot { vm: self.vm_state, task: self.task_state, launched: self.launched_at.is_some() }
    }

    /// The console log as of `now` (virtual time since the clock started).
    pub fn console_output(&self, now: Duration) -> String {
        let mut out = self.console_log.clone();
        if let (Some(started), Some(guest)) = (self.run_started, &self.guest) {
            out.push_str(&guest.console_until(now.saturating_sub(started)));
        }
        out
    }

    /// Ends the current guest run at `now`, keeping what it printed.
    pub(crate) fn end_run(&mut self, now: Duration) {
        self.console_log = self.console_output(now);
        self.run_started = None;
        self.guest = None;
        self.pending.retain(|p| !matches!(p.step, Step::GuestShutdown { .. } | Step::SyncStop { .. }));
    }

    /// Starts a guest run at `now` and schedules its power-off if it powers itself off.
    pub(crate) fn begin_run(&mut self, now: Duration, guest: GuestRun) {
        self.run += 1;
        self.run_started = Some(now);
        if let Some(after) = guest.power_off_at {
            self.pending.push(Pending { at: now + after, step: Step::GuestShutdown { run: self.run } });
        }
        self.guest = Some(guest);
    }
}

/// Live servers, and deleted ones (whose instance actions stay readable from 2.21).
#[derive(Default)]
pub struct ServerTable {
    pub live: ById<Server>,
    pub deleted: ById<Server>,
    pub console_tokens: super::consoles::ConsoleTokens,
    next_db_id: u64,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers", get(index).post(create))
        .route("/servers/detail", get(detail))
        .route("/servers/{id}", get(show).put(update).delete(delete))
}

/// The virtual wall-clock time of a moment given as time since the clock started.
pub fn stamp(state: &AppState, at: Duration) -> Timestamp {
    let clock = state.clock();
    let behind = clock.elapsed().saturating_sub(at);
    clock.now().checked_sub(jiff::SignedDuration::try_from(behind).unwrap_or_default()).unwrap_or(clock.now())
}

/// `str(datetime)` of a naive UTC time, as `OS-SRV-USG:launched_at` shows it.
fn python_datetime(ts: Timestamp) -> String {
    let micros = ts.subsec_microsecond();
    if micros == 0 {
        ts.strftime("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%S.%6f").to_string()
    }
}

/// `utils.generate_hostid`: sha224 of project id and host, or "" without a host.
fn host_id(server: &Server) -> String {
    match &server.host {
        Some(host) => hex::encode(sha2::Sha224::digest(format!("{}{host}", server.project_id).as_bytes())),
        None => String::new(),
    }
}

/// The name of the simulated compute host and its hypervisor node.
pub const COMPUTE_HOST: &str = "mockstack-compute";
/// The availability zone every compute host is in (Nova's default).
pub const DEFAULT_AZ: &str = "nova";

fn not_found(id: &str) -> ApiError {
    ApiError::compute(StatusCode::NOT_FOUND, format!("Instance {id} could not be found."))
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::compute(StatusCode::BAD_REQUEST, message)
}

/// Nova's `boolean` parameter type.
pub fn boolean_schema() -> Value {
    json!({
        "type": ["boolean", "string"],
        "enum": [true, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                 false, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"],
    })
}

fn name_schema() -> Value {
    json!({"type": "string", "format": "name", "minLength": 1, "maxLength": 255})
}

pub fn metadata_schema() -> Value {
    json!({
        "type": "object",
        "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
        "additionalProperties": false,
    })
}

fn positive_integer() -> Value {
    json!({"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1})
}

fn tag_schema() -> Value {
    json!({"type": "string", "pattern": "^[^,/]*$", "minLength": 1, "maxLength": 60})
}

/// Nova's `servers.create*` schema for `version`.
pub(crate) fn create_schema(version: ApiVersion) -> Value {
    let mut bdm_props = json!({
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": {"type": "string", "format": "uuid"},
        "snapshot_id": {"type": "string", "format": "uuid"},
        "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": 0x7FFF_FFFF},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": boolean_schema(),
        "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16_777_215},
        "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
        "uuid": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._-]*$"},
        "image_id": {"type": "string", "format": "uuid"},
        "destination_type": {"type": "string", "enum": ["local", "volume"]},
        "guest_format": {"type": "string", "maxLength": 255},
        "device_type": {"type": "string", "maxLength": 255},
        "disk_bus": {"type": "string", "maxLength": 255},
        "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$"},
    });
    if version.at_least(42) {
        bdm_props["tag"] = tag_schema();
    }
    if version.at_least(67) {
        bdm_props["volume_type"] = json!({"type": ["string", "null"], "minLength": 0, "maxLength": 255});
    }
    let legacy_bdm = json!({"type": "object", "properties": {
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": {"type": "string", "format": "uuid"},
        "snapshot_id": {"type": "string", "format": "uuid"},
        "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": 0x7FFF_FFFF},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": boolean_schema(),
        "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16_777_215},
    }, "additionalProperties": false});
    let network_item = |uuid_format: bool, tag: bool| {
        let mut props = json!({
            "fixed_ip": {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "port": {"type": ["string", "null"], "format": "uuid"},
            "uuid": if uuid_format { json!({"type": "string", "format": "uuid"}) } else { json!({"type": "string"}) },
        });
        if tag {
            props["tag"] = tag_schema();
        }
        json!({"type": "object", "properties": props, "additionalProperties": false})
    };
    let networks = if version.at_least(37) {
        json!({"oneOf": [
            {"type": "array", "items": network_item(true, version.at_least(42))},
            {"type": "string", "enum": ["none", "auto"]},
        ]})
    } else {
        json!({"type": "array", "items": network_item(false, version == ApiVersion::new(2, 32) || version >= ApiVersion::new(2, 33))})
    };
    let mut props = json!({
        "name": name_schema(),
        "imageRef": {"oneOf": [{"type": "string", "format": "uuid"}, {"type": "string", "maxLength": 0}]},
        "flavorRef": {"type": ["string", "integer"], "minLength": 1},
        "adminPass": {"type": "string"},
        "metadata": metadata_schema(),
        "networks": networks,
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
        "accessIPv4": {"type": "string", "format": "ipv4"},
        "accessIPv6": {"type": "string", "format": "ipv6"},
        "personality": {"type": "array", "items": {"type": "object", "properties": {
            "path": {"type": "string"}, "contents": {"type": "string", "format": "base64"}
        }, "additionalProperties": false}},
        "availability_zone": name_schema(),
        "block_device_mapping": {"type": "array", "items": legacy_bdm},
        "block_device_mapping_v2": {"type": "array", "items": {"type": "object", "properties": bdm_props, "additionalProperties": false}},
        "config_drive": boolean_schema(),
        "key_name": name_schema(),
        "min_count": positive_integer(),
        "max_count": positive_integer(),
        "return_reservation_id": boolean_schema(),
        "security_groups": {"type": "array", "items": {"type": "object", "properties": {"name": name_schema()}, "additionalProperties": false}},
        "user_data": {"type": "string", "format": "base64", "maxLength": 65535},
    });
    let server = props.as_object_mut().expect("object literal");
    if version.at_least(19) {
        server.insert("description".into(), json!({"type": ["string", "null"], "minLength": 0, "maxLength": 255}));
    }
    if version.at_least(52) {
        server.insert("tags".into(), json!({"type": "array", "items": tag_schema(), "maxItems": 50}));
    }
    if version.at_least(57) {
        server.remove("personality");
    }
    if version.at_least(63) {
        server.insert(
            "trusted_image_certificates".into(),
            json!({"type": ["array", "null"], "minItems": 1, "maxItems": 50, "uniqueItems": true,
                   "items": {"type": "string", "minLength": 1}}),
        );
    }
    if version.at_least(74) {
        let fqdn = json!({"type": "string", "pattern": "^[a-zA-Z0-9-._]*$", "minLength": 1, "maxLength": 255});
        server.insert("host".into(), fqdn.clone());
        server.insert("hypervisor_hostname".into(), fqdn);
    }
    if version.at_least(94) {
        server.insert(
            "hostname".into(),
            json!({"type": "string", "pattern": "^[a-zA-Z0-9-._]*$", "minLength": 1, "maxLength": 255}),
        );
    } else if version.at_least(90) {
        server.insert(
            "hostname".into(),
            json!({"type": "string", "pattern": "^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$", "minLength": 2, "maxLength": 63}),
        );
    }
    let mut required = vec!["name", "flavorRef"];
    if version.at_least(37) {
        required.push("networks");
    }
    let hints = hints_schema();
    json!({
        "type": "object",
        "properties": {
            "server": {"type": "object", "properties": props, "required": required, "additionalProperties": false},
            "os:scheduler_hints": hints,
            "OS-SCH-HNT:scheduler_hints": hints,
        },
        "required": ["server"],
        "additionalProperties": false,
    })
}

/// Nova's scheduler hints schema: the hints its own filters read are checked, any other is allowed.
fn hints_schema() -> Value {
    let uuid = json!({"type": "string", "format": "uuid"});
    json!({
        "type": "object",
        "properties": {
            "group": {"oneOf": [{"type": "array", "items": uuid}, uuid]},
            "different_host": {"oneOf": [uuid, {"type": "array", "items": uuid}]},
            "same_host": {"type": ["string", "array"], "items": uuid},
            "query": {"type": ["string", "object"]},
            "target_cell": name_schema(),
            "different_cell": {"type": ["string", "array"], "items": {"type": "string"}},
            "build_near_host_ip": {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "cidr": {"type": "string", "pattern": "^/[0-9a-f.:]+$"},
        },
        "additionalProperties": true,
    })
}

/// The hints a server's request spec keeps (`RequestSpec._from_hints`, after the API dropped those
/// named `_nova…`): every value becomes a list of strings, numbers and booleans as Python's `str()`
/// writes them. `None` when a value cannot be stored so (a null, an object, a nested list): Nova's
/// field coercion raises a `ValueError` there.
fn request_spec_hints(hints: &Map<String, Value>) -> Option<Map<String, Value>> {
    let item = |v: &Value| match v {
        Value::String(s) => Some(Value::String(s.clone())),
        Value::Bool(_) | Value::Number(_) => Some(Value::String(crate::python::py_str(v))),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    };
    hints
        .iter()
        .filter(|(name, _)| !name.starts_with("_nova"))
        .map(|(name, value)| {
            let items = match value {
                Value::Array(items) => items.iter().map(item).collect::<Option<Vec<Value>>>()?,
                single => vec![item(single)?],
            };
            Some((name.clone(), Value::Array(items)))
        })
        .collect()
}

/// The last path segment of an href, as `common.get_id_from_href`.
fn id_from_href(href: &str) -> String {
    href.trim_end_matches('/').rsplit('/').next().unwrap_or(href).to_string()
}

/// `utils.sanitize_hostname`.
pub fn sanitize_hostname(name: &str) -> String {
    let latin1: String = name.chars().filter(|c| (*c as u32) <= 0xFF).take(63).collect();
    let dashed: String = latin1.chars().map(|c| if matches!(c, ' ' | '_' | '.') { '-' } else { c }).collect();
    let kept: String = dashed.chars().filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_').collect();
    kept.to_lowercase().trim_matches(|c| c == '.' || c == '-').to_string()
}

fn random_token(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// Nova's `utils.generate_password` alphabet (no look-alike characters).
fn admin_password() -> String {
    random_token(12, b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
}

/// The images a caller can see, as the block-device checks look them up.
struct CallerImages<'a> {
    state: &'a AppState,
    project_id: &'a str,
    admin: bool,
}

impl bdm::Lookup for CallerImages<'_> {
    fn image_exists(&self, id: &str) -> bool {
        compute::image(self.state, id, self.project_id, self.admin).is_some()
    }
}

/// `POST /servers`.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    request_id: Option<Extension<RequestId>>,
    NovaBody(body): NovaBody,
) -> Result<Response, ApiError> {
    check(&create_schema(version), &body)?;
    if !caller.can_write() {
        return Err(policy_forbidden("os_compute_api:servers:create"));
    }
    let s = &body["server"];
    let name = s["name"].as_str().unwrap_or_default().to_string();
    let description = if version.at_least(19) {
        s.get("description").and_then(Value::as_str).map(String::from)
    } else {
        Some(name.clone())
    };
    let min_count = s.get("min_count").and_then(super::request::int_value).unwrap_or(1).max(1) as u64;
    let max_count =
        s.get("max_count").and_then(super::request::int_value).map(|n| n.max(1) as u64).unwrap_or(min_count);
    if min_count > max_count {
        return Err(bad_request("min_count must be <= max_count"));
    }
    let (requested_az, forced_host) = parse_availability_zone(s.get("availability_zone").and_then(Value::as_str))?;
    if forced_host.is_some() && !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:servers:create:forced_host"));
    }
    if let Some(host) = forced_host.as_deref().filter(|h| !h.is_empty() && *h != COMPUTE_HOST) {
        return Err(bad_request(format!("Compute host {host} could not be found.")));
    }
    let legacy = s.get("block_device_mapping").and_then(Value::as_array).filter(|a| !a.is_empty());
    let v2 = s.get("block_device_mapping_v2").and_then(Value::as_array).filter(|a| !a.is_empty());
    if legacy.is_some() && v2.is_some() {
        return Err(bad_request("Using different block_device_mapping syntaxes is not allowed in the same request."));
    }
    let image_href = s.get("imageRef").and_then(Value::as_str).unwrap_or("").to_string();
    let requested_bdms: Vec<Bdm> = match v2 {
        Some(entries) => entries
            .iter()
            .map(|e| bdm::from_api(e, !image_href.is_empty()))
            .collect::<Result<_, _>>()
            .map_err(bad_request)?,
        None => Vec::new(),
    };
    if let Some(legacy) = legacy {
        // Legacy mappings name volumes or snapshots, which need Cinder.
        if let Some(id) = legacy.iter().find_map(|b| b.get("volume_id").and_then(Value::as_str)) {
            return Err(bad_request(format!("Block Device Mapping is Invalid: failed to get volume {id}.")));
        }
        if let Some(id) = legacy.iter().find_map(|b| b.get("snapshot_id").and_then(Value::as_str)) {
            return Err(bad_request(format!("Block Device Mapping is Invalid: failed to get snapshot {id}.")));
        }
    }
    if image_href.is_empty() && requested_bdms.is_empty() {
        return Err(bad_request("Missing imageRef attribute"));
    }
    match s.get("networks") {
        Some(Value::String(auto)) if auto == "auto" => {
            return Err(bad_request(format!(
                "Unable to automatically allocate a network for project {}",
                caller.project_id()
            )));
        }
        Some(Value::Array(nets)) => {
            if let Some(net) = nets.first() {
                if let Some(port) = net.get("port").and_then(Value::as_str) {
                    return Err(bad_request(format!("Port id {port} could not be found.")));
                }
                let id = net.get("uuid").and_then(Value::as_str).unwrap_or("");
                return Err(bad_request(format!("Network {id} could not be found.")));
            }
        }
        _ => {}
    }
    let flavor_ref = match &s["flavorRef"] {
        Value::String(href) => id_from_href(href),
        other => other.to_string(),
    };
    let flavor = state
        .nova()
        .flavors()
        .get(&flavor_ref, caller.is_admin())
        .ok_or_else(|| bad_request(format!("Flavor {flavor_ref} could not be found.")))?;
    let image_id = id_from_href(&image_href);
    let image = if image_href.is_empty() {
        None
    } else {
        let image = compute::image(&state, &image_id, caller.project_id(), caller.is_admin())
            .ok_or_else(|| bad_request("Can not find requested image"))?;
        if image.status != ImageStatus::Active {
            return Err(bad_request(format!("Image {image_id} is not active.")));
        }
        Some(image)
    };
    let bdms = bdm::with_defaults(requested_bdms, &image_id, &flavor);
    let root_is_local = bdms.iter().find(|b| b.boot_index == Some(0)).is_none_or(Bdm::is_local);
    if let Some(image) = &image {
        check_flavor_fits(&caller, &flavor, image, root_is_local)?;
    }
    if let Some(key_name) = s.get("key_name").and_then(Value::as_str) {
        let _ = key_name;
        return Err(bad_request("Invalid key_name provided."));
    }
    if forced_host.is_none() && requested_az.as_deref().is_some_and(|az| az != DEFAULT_AZ) {
        return Err(bad_request("The requested availability zone is not available"));
    }
    let images = CallerImages { state: &state, project_id: caller.project_id(), admin: caller.is_admin() };
    bdm::validate(&bdms, &image_id, &flavor, &images).map_err(|e| bad_request(e.0))?;
    let hints = body
        .get("os:scheduler_hints")
        .or_else(|| body.get("OS-SCH-HNT:scheduler_hints"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // mockstack has no server groups, so a group hint never names one.
    if let Some(group) = hints.get("group").filter(|g| !matches!(g, Value::Array(a) if a.is_empty())) {
        let group = crate::python::py_str(group);
        return Err(bad_request(format!("Instance group {group} could not be found.")));
    }

    let now = state.clock().elapsed();
    let created = stamp(&state, now);
    let request_id = request_id.map(|r| r.0.0.clone()).unwrap_or_default();
    let reservation_id = format!("r-{}", random_token(8, b"abcdefghijklmnopqrstuvwxyz0123456789"));
    let password = s.get("adminPass").and_then(Value::as_str).map(String::from).unwrap_or_else(admin_password);
    let mut system_metadata = BTreeMap::new();
    if let Some(image) = &image {
        for (k, v) in &image.properties {
            if !image_meta::NOT_KEPT.contains(&k.as_str()) {
                system_metadata.insert(format!("image_{k}"), image_meta::system_metadata_value(v));
            }
        }
        system_metadata.insert("image_min_ram".into(), image.min_ram.to_string());
        system_metadata.insert("image_min_disk".into(), image.min_disk.max(flavor.root_gb).to_string());
        if let Some(f) = &image.disk_format {
            system_metadata.insert("image_disk_format".into(), f.clone());
        }
        if let Some(f) = &image.container_format {
            system_metadata.insert("image_container_format".into(), f.clone());
        }
    }
    system_metadata.insert("image_base_image_ref".into(), image_id.clone());
    system_metadata.insert("owner_user_name".into(), caller.token.user_name.clone());
    system_metadata.insert("owner_project_name".into(), caller.project_name().to_string());
    // The compute manager keeps the caller's roles at boot; snapshots inherit them.
    system_metadata.insert("boot_roles".into(), caller.token.roles.join(","));

    let mut table = state.nova().servers();
    let used = table.live.values().filter(|s| s.project_id == caller.project_id()).map(|s| &s.flavor);
    let count = quota::instances_allowed(used, &flavor, min_count, max_count, state.config().quota)?;
    let scheduler_hints =
        request_spec_hints(&hints).ok_or_else(|| super::request::unexpected_error("<class 'ValueError'>"))?;
    let mut first_id = String::new();
    for index in 0..count {
        let id = uuid::Uuid::new_v4().to_string();
        let display_name = if count > 1 { format!("{name}-{}", index + 1) } else { name.clone() };
        let hostname = match s.get("hostname").and_then(Value::as_str) {
            Some(h) => h.to_string(),
            None => {
                let h = sanitize_hostname(&display_name);
                if h.is_empty() { format!("Server-{id}") } else { h }
            }
        };
        table.next_db_id += 1;
        let server = Server {
            id: id.clone(),
            db_id: table.next_db_id,
            name: display_name,
            description: description.clone(),
            hostname,
            project_id: caller.project_id().to_string(),
            user_id: caller.user_id().to_string(),
            image_ref: image_id.clone(),
            flavor: flavor.clone(),
            metadata: s.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default(),
            key_name: None,
            config_drive: s.get("config_drive").is_some_and(truthy),
            user_data: s.get("user_data").and_then(Value::as_str).map(String::from),
            auto_disk_config: s.get("OS-DCF:diskConfig").and_then(Value::as_str) == Some("AUTO"),
            created_at: created,
            updated_at: created,
            launched_at: None,
            vm_state: VmState::Building,
            task_state: Some(TaskState::Scheduling),
            power_state: PowerState::NoState,
            host: None,
            requested_az: requested_az.clone(),
            scheduler_hints: scheduler_hints.clone(),
            reservation_id: reservation_id.clone(),
            launch_index: index as u32,
            root_device_name: None,
            tags: s
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            locked_by: None,
            locked_reason: None,
            fault: None,
            system_metadata: system_metadata.clone(),
            bdms: bdms.clone(),
            image: image.clone(),
            actions: vec![InstanceAction::start("create", &request_id, Some(&caller), created)],
            pending: vec![Pending { at: now + timing::SCHEDULE, step: Step::Scheduled }],
            run: 0,
            run_started: None,
            guest: None,
            console_log: String::new(),
            snapshot_image: None,
            compute: None,
        };
        if first_id.is_empty() {
            first_id = id.clone();
        }
        table.live.insert(id, server);
    }
    drop(table);

    if s.get("return_reservation_id").is_some_and(truthy) {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "reservation_id": reservation_id }))).into_response());
    }
    let security_groups = s.get("security_groups").cloned().unwrap_or_else(|| json!([{ "name": "default" }]));
    let body = json!({ "server": {
        "id": first_id,
        "links": links(&state, "servers", &first_id),
        "OS-DCF:diskConfig": if s.get("OS-DCF:diskConfig").and_then(Value::as_str) == Some("AUTO") { "AUTO" } else { "MANUAL" },
        "security_groups": security_groups,
        "adminPass": password,
    }});
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{}/servers/{first_id}", state.compute_url())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `API.parse_availability_zone`: `az`, `az:host`, `az::node` or `az:host:node` (the last three admin-only).
fn parse_availability_zone(requested: Option<&str>) -> Result<(Option<String>, Option<String>), ApiError> {
    let Some(text) = requested else { return Ok((None, None)) };
    let parts: Vec<&str> = text.split(':').collect();
    let (az, host) = match parts.as_slice() {
        [az] => (*az, None),
        [az, host] => (*az, Some(host.to_string())),
        [az, host, _node] => (*az, Some(host.to_string())),
        _ => return Err(bad_request("Unable to parse availability_zone")),
    };
    Ok(((!az.is_empty()).then(|| az.to_string()), host))
}

/// `_validate_flavor_image_nostatus`: memory, then root disk against the image size and min_disk.
fn check_flavor_fits(caller: &Caller, flavor: &Flavor, image: &Image, root_is_local: bool) -> Result<(), ApiError> {
    if flavor.ram_mb < image.min_ram {
        return Err(bad_request("Flavor's memory is too small for requested image."));
    }
    if !root_is_local {
        return Ok(());
    }
    // Python's integers do not overflow: neither may these products (a min_disk of 2^34 GiB is 2^64 bytes).
    const GIB: u128 = 1 << 30;
    let dest = u128::from(flavor.root_gb) * GIB;
    if dest == 0 {
        if !caller.is_admin() {
            return Err(ApiError::compute(
                StatusCode::FORBIDDEN,
                "Only volume-backed servers are allowed for flavors with zero disk.",
            ));
        }
        return Ok(());
    }
    let size = u128::from(image.size.unwrap_or(0));
    if size > dest {
        return Err(bad_request(format!(
            "Flavor's disk is too small for requested image. Flavor disk is {dest} bytes, image is {size} bytes."
        )));
    }
    let min_disk = u128::from(image.min_disk) * GIB;
    if min_disk > dest {
        return Err(bad_request(format!(
            "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is {dest} bytes, \
             minimum size is {min_disk} bytes."
        )));
    }
    Ok(())
}

/// The caller's view of a server, or Nova's 404 for servers of other projects.
pub fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Server, ApiError> {
    let table = state.nova().servers();
    match table.live.get(id) {
        Some(s) if caller.is_admin() || s.project_id == caller.project_id() => Ok(s.clone()),
        _ => Err(not_found(id)),
    }
}

/// The full server representation for `version` (Nova's `ViewBuilder.show`).
pub fn show_view(state: &AppState, server: &Server, caller: &Caller, version: ApiVersion, in_list: bool) -> Value {
    let admin = caller.is_admin();
    let mut v = Map::new();
    v.insert("accessIPv4".into(), json!(""));
    v.insert("accessIPv6".into(), json!(""));
    v.insert("addresses".into(), json!({}));
    v.insert("created".into(), json!(crate::clock::iso8601(server.created_at)));
    let flavor = if version.at_least(47) {
        json!({
            "vcpus": server.flavor.vcpus,
            "ram": server.flavor.ram_mb,
            "disk": server.flavor.root_gb,
            "ephemeral": server.flavor.ephemeral_gb,
            "swap": server.flavor.swap_mb,
            "original_name": server.flavor.name,
            "extra_specs": server.flavor.extra_specs,
        })
    } else {
        json!({
            "id": server.flavor.id,
            "links": [{ "rel": "bookmark", "href": bookmark(state, "flavors", &server.flavor.id) }],
        })
    };
    v.insert("flavor".into(), flavor);
    v.insert("hostId".into(), json!(host_id(server)));
    v.insert("id".into(), json!(server.id));
    let image = if server.image_ref.is_empty() {
        json!("")
    } else {
        let mut image = json!({
            "id": server.image_ref,
            "links": [{ "rel": "bookmark", "href": bookmark(state, "images", &server.image_ref) }],
        });
        if version.at_least(98) {
            image["properties"] = image_properties(server);
        }
        image
    };
    v.insert("image".into(), image);
    v.insert("links".into(), links(state, "servers", &server.id));
    v.insert("metadata".into(), Value::Object(server.metadata.clone()));
    v.insert("name".into(), json!(server.name));
    v.insert("status".into(), json!(server.status()));
    v.insert("tenant_id".into(), json!(server.project_id));
    v.insert("user_id".into(), json!(server.user_id));
    v.insert("updated".into(), json!(crate::clock::iso8601(server.updated_at)));
    v.insert("OS-DCF:diskConfig".into(), json!(if server.auto_disk_config { "AUTO" } else { "MANUAL" }));
    if server.status() == "ERROR"
        && let Some(fault) = &server.fault
    {
        let mut f = json!({
            "code": fault.code,
            "created": crate::clock::iso8601(fault.created),
            "message": fault.message,
        });
        if !fault.details.is_empty() && (admin || fault.code != 500) {
            f["details"] = json!(fault.details);
        }
        v.insert("fault".into(), f);
    }
    if matches!(server.status(), "ACTIVE" | "BUILD") {
        v.insert("progress".into(), json!(0));
    }
    let az = if server.host.is_some() { Some(DEFAULT_AZ.to_string()) } else { server.requested_az.clone() };
    v.insert("OS-EXT-AZ:availability_zone".into(), json!(az.unwrap_or_default()));
    v.insert("config_drive".into(), json!(if server.config_drive { "True" } else { "" }));
    v.insert("key_name".into(), json!(server.key_name));
    v.insert("OS-SRV-USG:launched_at".into(), json!(server.launched_at.map(python_datetime)));
    v.insert("OS-SRV-USG:terminated_at".into(), Value::Null);
    if admin {
        v.insert("OS-EXT-SRV-ATTR:host".into(), json!(server.host));
        v.insert("OS-EXT-SRV-ATTR:instance_name".into(), json!(server.instance_name()));
        v.insert("OS-EXT-SRV-ATTR:hypervisor_hostname".into(), json!(server.host));
        if version.at_least(3) {
            v.insert("OS-EXT-SRV-ATTR:hostname".into(), json!(server.hostname));
            v.insert("OS-EXT-SRV-ATTR:kernel_id".into(), json!(""));
            v.insert("OS-EXT-SRV-ATTR:launch_index".into(), json!(server.launch_index));
            v.insert("OS-EXT-SRV-ATTR:ramdisk_id".into(), json!(""));
            v.insert("OS-EXT-SRV-ATTR:reservation_id".into(), json!(server.reservation_id));
            v.insert("OS-EXT-SRV-ATTR:root_device_name".into(), json!(server.root_device_name));
            v.insert("OS-EXT-SRV-ATTR:user_data".into(), json!(server.user_data));
        }
    }
    v.insert("OS-EXT-STS:task_state".into(), json!(server.task_state.map(|t| t.to_string())));
    v.insert("OS-EXT-STS:vm_state".into(), json!(server.vm_state.to_string()));
    v.insert("OS-EXT-STS:power_state".into(), json!(server.power_state as u8));
    let volumes: Vec<Value> = Vec::new();
    v.insert("os-extended-volumes:volumes_attached".into(), json!(volumes));
    if version.at_least(9) {
        v.insert("locked".into(), json!(server.locked_by.is_some()));
    }
    if version.at_least(16) && admin {
        v.insert("host_status".into(), json!(if server.host.is_some() { "UP" } else { "" }));
    }
    if version.at_least(19) {
        v.insert("description".into(), json!(server.description));
    }
    if version.at_least(26) {
        v.insert("tags".into(), json!(server.tags));
    }
    if version.at_least(63) {
        v.insert("trusted_image_certificates".into(), Value::Null);
    }
    if version.at_least(71) && !in_list {
        v.insert("server_groups".into(), json!([]));
    }
    if version.at_least(73) {
        v.insert("locked_reason".into(), json!(server.locked_reason));
    }
    if version.at_least(90) && !admin {
        v.insert("OS-EXT-SRV-ATTR:hostname".into(), json!(server.hostname));
    }
    if version.at_least(96) {
        v.insert("pinned_availability_zone".into(), json!(server.requested_az));
    }
    if version.at_least(100) {
        v.insert("scheduler_hints".into(), Value::Object(server.scheduler_hints.clone()));
    }
    Value::Object(v)
}

/// The boot image's standard properties as the server keeps them (2.98): from its system
/// metadata, so they are strings and stay what they were at boot whatever happens to the image.
fn image_properties(server: &Server) -> Value {
    let properties: Map<String, Value> = server
        .system_metadata
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(image_meta::SYSTEM_METADATA_PREFIX)?;
            image_meta::is_standard_property(name).then(|| (name.to_string(), json!(value)))
        })
        .collect();
    Value::Object(properties)
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let server = visible(&state, &caller, &id)?;
    Ok(Json(json!({ "server": show_view(&state, &server, &caller, version, false) })))
}

/// Query parameters `GET /servers` accepts from 2.75 (others are 400).
const LIST_PARAMS: [&str; 44] = [
    "user_id",
    "project_id",
    "tenant_id",
    "launch_index",
    "image_ref",
    "image",
    "kernel_id",
    "ramdisk_id",
    "hostname",
    "key_name",
    "power_state",
    "vm_state",
    "task_state",
    "host",
    "node",
    "flavor",
    "reservation_id",
    "launched_at",
    "terminated_at",
    "availability_zone",
    "name",
    "display_name",
    "description",
    "display_description",
    "locked_by",
    "uuid",
    "root_device_name",
    "config_drive",
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "progress",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "deleted",
    "status",
    "changes-since",
    "changes-before",
    "ip",
    "ip6",
    "tag",
    "limit",
    "marker",
];

/// The sort keys Nova's server list schema allows, in its order: the valid ones, then those it accepts and ignores.
const SORT_KEYS: &[&str] = &[
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "availability_zone",
    "config_drive",
    "created_at",
    "display_description",
    "display_name",
    "host",
    "hostname",
    "image_ref",
    "instance_type_id",
    "kernel_id",
    "key_name",
    "launch_index",
    "launched_at",
    "locked_by",
    "node",
    "power_state",
    "progress",
    "project_id",
    "ramdisk_id",
    "root_device_name",
    "task_state",
    "terminated_at",
    "updated_at",
    "user_id",
    "uuid",
    "vm_state",
    "architecture",
    "cell_name",
    "cleaned",
    "default_ephemeral_device",
    "default_swap_device",
    "deleted",
    "deleted_at",
    "disable_terminate",
    "ephemeral_gb",
    "ephemeral_key_uuid",
    "id",
    "key_data",
    "launched_on",
    "locked",
    "memory_mb",
    "os_type",
    "reservation_id",
    "root_gb",
    "shutdown_terminate",
    "user_data",
    "vcpus",
    "vm_mode",
];

/// What Nova's `date-time` format takes (the iso8601 parser): a date, or a date and time with or without an offset.
fn is_date_time(value: &str) -> bool {
    value.parse::<jiff::Timestamp>().is_ok()
        || value.parse::<jiff::civil::DateTime>().is_ok()
        || value.parse::<jiff::civil::Date>().is_ok()
}

fn listed(
    state: &AppState,
    caller: &Caller,
    version: ApiVersion,
    query: &[(String, String)],
    detail: bool,
) -> Result<Vec<Server>, ApiError> {
    let mut params: HashMap<&str, Vec<&str>> = HashMap::new();
    for (k, v) in query {
        params.entry(k.as_str()).or_default().push(v.as_str());
    }
    let first = |k: &str| params.get(k).and_then(|v| v.last().copied());
    if version.at_least(75) {
        let mut extra: Vec<&str> = params
            .keys()
            .copied()
            .filter(|k| {
                !LIST_PARAMS.contains(k) && !["tags", "tags-any", "not-tags", "not-tags-any", "locked"].contains(k)
            })
            .collect();
        if !extra.is_empty() {
            extra.sort_unstable();
            let names: Vec<String> = extra.iter().map(|k| crate::python::py_repr_str(k)).collect();
            let verb = if extra.len() == 1 { "was" } else { "were" };
            return Err(bad_request(format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                names.join(", ")
            )));
        }
    }
    // The query schema's checks (`servers.query_params_v21`): sort keys from Nova's list, dates Nova can parse.
    for key in params.get("sort_key").into_iter().flatten() {
        if !SORT_KEYS.contains(key) {
            let keys: Vec<String> = SORT_KEYS.iter().map(|k| crate::python::py_repr_str(k)).collect();
            return Err(bad_request(format!(
                "Invalid input for query parameters sort_key. Value: {key}. {} is not one of [{}]",
                crate::python::py_repr_str(key),
                keys.join(", ")
            )));
        }
    }
    for name in ["changes-since", "changes-before"] {
        if let Some(value) = first(name)
            && !is_date_time(value)
        {
            return Err(bad_request(format!(
                "Invalid input for query parameters {name}. Value: {value}. {} is not a 'date-time'",
                crate::python::py_repr_str(value)
            )));
        }
    }
    if params.get("sort_dir").into_iter().flatten().any(|dir| !matches!(*dir, "asc" | "desc")) {
        return Err(bad_request("Invalid input received: Unknown sort direction, must be 'desc' or 'asc'"));
    }
    let all_tenants = match first("all_tenants") {
        None => false,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "off" | "no" | "f" | "n"),
    };
    if all_tenants && !caller.is_admin() {
        let rule = if detail { "detail:get_all_tenants" } else { "index:get_all_tenants" };
        return Err(policy_forbidden(&format!("os_compute_api:servers:{rule}")));
    }
    let project_filter = if caller.is_admin() && all_tenants {
        first("project_id").or(first("tenant_id")).map(String::from)
    } else {
        Some(caller.project_id().to_string())
    };
    let statuses: Vec<String> =
        params.get("status").map(|v| v.iter().map(|s| s.to_ascii_uppercase()).collect()).unwrap_or_default();
    if let Some(bad) = statuses.iter().find(|s| !super::lifecycle::known_status(s)) {
        if version.at_least(38) {
            return Err(bad_request("Invalid status value"));
        }
        let _ = bad;
        return Ok(Vec::new());
    }
    let name_re = match first("name") {
        Some(pattern) => {
            Some(regex::Regex::new(pattern).map_err(|_| bad_request("Invalid filter field: name.".to_string()))?)
        }
        None => None,
    };
    let image_filter = first("image").map(id_from_href);
    let flavor_filter = first("flavor").map(id_from_href);
    let host_filter = if caller.is_admin() { first("host").map(String::from) } else { None };
    let table = state.nova().servers();
    let mut servers: Vec<Server> = table
        .live
        .values()
        .filter(|s| project_filter.as_ref().is_none_or(|p| &s.project_id == p))
        .filter(|s| statuses.is_empty() || statuses.iter().any(|st| st == s.status()))
        .filter(|s| name_re.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| image_filter.as_ref().is_none_or(|i| &s.image_ref == i))
        .filter(|s| flavor_filter.as_ref().is_none_or(|f| &s.flavor.id == f))
        .filter(|s| host_filter.as_ref().is_none_or(|h| s.host.as_ref() == Some(h)))
        .cloned()
        .collect();
    drop(table);
    servers.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.db_id.cmp(&a.db_id)));
    if let Some(marker) = first("marker") {
        let at = servers
            .iter()
            .position(|s| s.id == marker)
            .ok_or_else(|| bad_request(format!("marker [{marker}] not found")))?;
        servers.drain(..=at);
    }
    let limit = match first("limit") {
        None => None,
        Some(limit) => Some(limit.parse::<usize>().map_err(|_| {
            bad_request(format!(
                "Invalid input for query parameters limit. Value: {limit}. '{limit}' does not match '^[0-9]*$'"
            ))
        })?),
    };
    servers.truncate(super::page_size(limit));
    Ok(servers)
}

/// The list body: the items, and `servers_links` when the page is full.
fn list_body(
    state: &AppState,
    collection: &str,
    query: &[(String, String)],
    servers: &[Server],
    items: Vec<Value>,
) -> Value {
    let limit = query.iter().rev().find(|(k, _)| k == "limit").and_then(|(_, v)| v.parse().ok());
    let ids: Vec<&str> = servers.iter().map(|s| s.id.as_str()).collect();
    let mut body = json!({ "servers": items });
    if let Some(links) = super::collection_links(state, collection, query, super::page_size(limit), &ids) {
        body["servers_links"] = links;
    }
    body
}

async fn index(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let query = super::request::query_pairs(uri.query());
    let servers = listed(&state, &caller, version, &query, false)?;
    let list: Vec<Value> = servers
        .iter()
        .map(|s| json!({ "id": s.id, "name": s.name, "links": links(&state, "servers", &s.id) }))
        .collect();
    Ok(Json(list_body(&state, "servers", &query, &servers, list)))
}

async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let query = super::request::query_pairs(uri.query());
    let servers = listed(&state, &caller, version, &query, true)?;
    let list: Vec<Value> = servers.iter().map(|s| show_view(&state, s, &caller, version, true)).collect();
    Ok(Json(list_body(&state, "servers/detail", &query, &servers, list)))
}

/// Nova's `servers.update*` schema for `version` (a description from 2.19).
pub(crate) fn update_schema(version: ApiVersion) -> Value {
    let mut props = json!({
        "name": name_schema(),
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
        "accessIPv4": {"type": "string", "format": "ipv4"},
        "accessIPv6": {"type": "string", "format": "ipv6"},
    });
    if version.at_least(19) {
        props["description"] = json!({"type": ["string", "null"], "minLength": 0, "maxLength": 255});
    }
    json!({
        "type": "object",
        "properties": {"server": {"type": "object", "properties": props, "additionalProperties": false}},
        "required": ["server"],
        "additionalProperties": false,
    })
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
    NovaBody(body): NovaBody,
) -> Result<Json<Value>, ApiError> {
    check(&update_schema(version), &body)?;
    visible(&state, &caller, &id)?;
    if !caller.can_write() {
        return Err(policy_forbidden("os_compute_api:servers:update"));
    }
    let now = stamp(&state, state.clock().elapsed());
    let server = {
        let mut table = state.nova().servers();
        let server = table.live.get_mut(&id).ok_or_else(|| not_found(&id))?;
        if let Some(name) = body["server"].get("name").and_then(Value::as_str) {
            server.name = name.to_string();
        }
        if let Some(description) = body["server"].get("description") {
            server.description = description.as_str().map(String::from);
        }
        if let Some(config) = body["server"].get("OS-DCF:diskConfig").and_then(Value::as_str) {
            server.auto_disk_config = config == "AUTO";
        }
        server.updated_at = now;
        server.clone()
    };
    let view = if version.at_least(75) {
        show_view(&state, &server, &caller, version, false)
    } else {
        let mut v = show_view(&state, &server, &caller, version, false);
        if let Some(map) = v.as_object_mut() {
            map.retain(|k, _| {
                !k.starts_with("OS-EXT-")
                    && !k.starts_with("OS-SRV-USG")
                    && k != "os-extended-volumes:volumes_attached"
                    && k != "key_name"
                    && k != "config_drive"
                    && k != "host_status"
                    && k != "server_groups"
            });
        }
        v
    };
    Ok(Json(json!({ "server": view })))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request_id: Option<Extension<RequestId>>,
) -> Result<StatusCode, ApiError> {
    visible(&state, &caller, &id)?;
    if !caller.can_write() {
        return Err(policy_forbidden("os_compute_api:servers:delete"));
    }
    let now = state.clock().elapsed();
    let at = stamp(&state, now);
    let request_id = request_id.map(|r| r.0.0.clone()).unwrap_or_default();
    let mut table = state.nova().servers();
    let server = table.live.get_mut(&id).ok_or_else(|| not_found(&id))?;
    if server.locked_by.is_some() && !caller.is_admin() {
        return Err(ApiError::compute(StatusCode::CONFLICT, format!("Instance {id} is locked")));
    }
    if server.task_state == Some(TaskState::Deleting) {
        return Ok(StatusCode::NO_CONTENT);
    }
    let mut action = InstanceAction::start("delete", &request_id, Some(&caller), at);
    if server.host.is_some() {
        action.begin_event("compute_terminate_instance", at);
    }
    server.actions.push(action);
    server.task_state = Some(TaskState::Deleting);
    server.updated_at = at;
    if server.host.is_none() {
        // Never scheduled: the API deletes the record itself.
        if let Some(gone) = table.live.remove(&id) {
            table.deleted.insert(id, gone);
        }
        return Ok(StatusCode::NO_CONTENT);
    }
    server.pending.clear();
    server.pending.push(Pending { at: now + timing::DELETE, step: Step::Deleted });
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_sanitized_like_nova() {
        assert_eq!(sanitize_hostname("Win 2012_R2.install"), "win-2012-r2-install");
        assert_eq!(sanitize_hostname("--héllo!--"), "héllo");
        assert_eq!(sanitize_hostname("日本"), "");
    }
}
