//! Flavors: devstack's default set, the admin-only flavor-manage API, list/detail/show with the 2.55/2.61/2.75 shapes, and extra specs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::links;
use super::microversion::ApiVersion;
use super::request::{NovaBody, check, truthy};
use super::schema::is_valid_name;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A flavor as Nova stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Flavor {
    /// The API's `id` (Nova's `flavorid`): any string, not necessarily a UUID.
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub disabled: bool,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
}

impl Flavor {
    fn new(id: &str, name: &str, ram_mb: u64, root_gb: u64, vcpus: u32) -> Flavor {
        Flavor {
            id: id.into(),
            name: name.into(),
            vcpus,
            ram_mb,
            root_gb,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: None,
            extra_specs: BTreeMap::new(),
        }
    }
}

/// The flavors devstack creates (`m1.*` from nova's defaults, plus its small test flavors).
pub fn devstack_flavors() -> Vec<Flavor> {
    vec![
        Flavor::new("1", "m1.tiny", 512, 1, 1),
        Flavor::new("2", "m1.small", 2048, 20, 1),
        Flavor::new("3", "m1.medium", 4096, 40, 2),
        Flavor::new("4", "m1.large", 8192, 80, 4),
        Flavor::new("5", "m1.xlarge", 16384, 160, 8),
        Flavor::new("42", "m1.nano", 128, 1, 1),
        Flavor::new("84", "m1.micro", 192, 1, 1),
        Flavor::new("c1", "cirros256", 256, 1, 1),
        Flavor::new("d1", "ds512M", 512, 5, 1),
        Flavor::new("d2", "ds1G", 1024, 10, 1),
        Flavor::new("d3", "ds2G", 2048, 10, 2),
        Flavor::new("d4", "ds4G", 4096, 20, 4),
    ]
}

/// Every flavor of one mockstack.
#[derive(Debug)]
pub struct FlavorTable {
    flavors: Mutex<BTreeMap<String, Flavor>>,
}

impl Default for FlavorTable {
    fn default() -> Self {
        FlavorTable { flavors: Mutex::new(devstack_flavors().into_iter().map(|f| (f.id.clone(), f)).collect()) }
    }
}

impl FlavorTable {
    /// The flavor with this id, if the caller may see it (public, or an admin asking).
    pub fn get(&self, id: &str, admin: bool) -> Option<Flavor> {
        self.flavors.lock().unwrap().get(id).filter(|f| f.is_public || admin).cloned()
    }

    pub fn all(&self) -> Vec<Flavor> {
        self.flavors.lock().unwrap().values().cloned().collect()
    }

    fn insert(&self, flavor: Flavor) -> Result<Flavor, ApiError> {
        let mut flavors = self.flavors.lock().unwrap();
        if flavors.values().any(|f| f.name == flavor.name) {
            return Err(conflict(format!("Flavor with name {} already exists.", flavor.name)));
        }
        if flavors.contains_key(&flavor.id) {
            return Err(conflict(format!("Flavor with ID {} already exists.", flavor.id)));
        }
        flavors.insert(flavor.id.clone(), flavor.clone());
        Ok(flavor)
    }

    fn update<T>(&self, id: &str, change: impl FnOnce(&mut Flavor) -> T) -> Result<T, ApiError> {
        let mut flavors = self.flavors.lock().unwrap();
        flavors.get_mut(id).map(change).ok_or_else(|| flavor_not_found(id))
    }

    fn remove(&self, id: &str) -> Option<Flavor> {
        self.flavors.lock().unwrap().remove(id)
    }
}

fn conflict(message: String) -> ApiError {
    ApiError::compute(StatusCode::CONFLICT, message)
}

pub fn flavor_not_found(id: &str) -> ApiError {
    ApiError::compute(StatusCode::NOT_FOUND, format!("Flavor {id} could not be found."))
}

/// Nova's 403 when a policy rule refuses the caller.
pub fn policy_forbidden(rule: &str) -> ApiError {
    ApiError::compute(StatusCode::FORBIDDEN, format!("Policy doesn't allow {rule} to be performed."))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flavors", get(index).post(create))
        .route("/flavors/detail", get(detail))
        .route("/flavors/{id}", get(show).put(update).delete(delete))
        .route("/flavors/{id}/os-extra_specs", get(specs_index).post(specs_create))
        .route("/flavors/{id}/os-extra_specs/{key}", get(specs_show).put(specs_update).delete(specs_delete))
}

/// `GET /flavors/detail` and show: the full flavor in the caller's microversion.
pub fn detail_view(state: &AppState, flavor: &Flavor, version: ApiVersion) -> Value {
    let mut v = json!({
        "id": flavor.id,
        "name": flavor.name,
        "ram": flavor.ram_mb,
        "disk": flavor.root_gb,
        "swap": if flavor.swap_mb == 0 { json!("") } else { json!(flavor.swap_mb) },
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": flavor.disabled,
        "vcpus": flavor.vcpus,
        "os-flavor-access:is_public": flavor.is_public,
        "rxtx_factor": flavor.rxtx_factor,
        "links": links(state, "flavors", &flavor.id),
    });
    if version.at_least(55) {
        v["description"] = json!(flavor.description);
    }
    if version.at_least(61) {
        v["extra_specs"] = json!(flavor.extra_specs);
    }
    if version.at_least(75) {
        v["swap"] = json!(flavor.swap_mb);
    }
    v
}

fn basic_view(state: &AppState, flavor: &Flavor, version: ApiVersion) -> Value {
    let mut v = json!({ "id": flavor.id, "name": flavor.name, "links": links(state, "flavors", &flavor.id) });
    if version.at_least(55) {
        v["description"] = json!(flavor.description);
    }
    v
}

const LIST_PARAMS: [&str; 7] = ["is_public", "minRam", "minDisk", "limit", "marker", "sort_key", "sort_dir"];
const SORT_KEYS: [&str; 15] = [
    "created_at",
    "description",
    "disabled",
    "ephemeral_gb",
    "flavorid",
    "id",
    "is_public",
    "memory_mb",
    "name",
    "root_gb",
    "rxtx_factor",
    "swap",
    "updated_at",
    "vcpu_weight",
    "vcpus",
];

fn bad_request(message: String) -> ApiError {
    ApiError::compute(StatusCode::BAD_REQUEST, message)
}

/// The flavors a list call returns, filtered, sorted and paginated as Nova's `_get_flavors`.
fn listed(
    state: &AppState,
    caller: &Caller,
    version: ApiVersion,
    query: &BTreeMap<String, String>,
) -> Result<Vec<Flavor>, ApiError> {
    if version.at_least(75) {
        let mut extra: Vec<&String> = query.keys().filter(|k| !LIST_PARAMS.contains(&k.as_str())).collect();
        if !extra.is_empty() {
            extra.sort();
            let names: Vec<String> = extra.iter().map(|k| crate::python::py_repr_str(k)).collect();
            let verb = if extra.len() == 1 { "was" } else { "were" };
            return Err(bad_request(format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                names.join(", ")
            )));
        }
    }
    let is_public = if caller.is_admin() {
        match query.get("is_public").map(|s| s.to_ascii_lowercase()) {
            None => Some(true),
            Some(s) if s == "none" => None,
            Some(s) if ["true", "1", "on", "yes", "t", "y"].contains(&s.as_str()) => Some(true),
            Some(s) if ["false", "0", "off", "no", "f", "n"].contains(&s.as_str()) => Some(false),
            Some(_) => {
                return Err(bad_request(format!("Invalid is_public filter [{}]", query["is_public"])));
            }
        }
    } else {
        Some(true)
    };
    let min = |key: &str| -> Result<Option<u64>, ApiError> {
        match query.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(|n| Some(n.max(0) as u64))
                .map_err(|_| bad_request(format!("Invalid {key} filter [{v}]"))),
        }
    };
    let (min_ram, min_disk) = (min("minRam")?, min("minDisk")?);
    let mut flavors: Vec<Flavor> = state
        .nova()
        .flavors()
        .all()
        .into_iter()
        .filter(|f| is_public.is_none_or(|p| f.is_public == p))
        .filter(|f| caller.is_admin() || !f.disabled)
        .filter(|f| min_ram.is_none_or(|m| f.ram_mb >= m))
        .filter(|f| min_disk.is_none_or(|m| f.root_gb >= m))
        .collect();
    let sort_key = query.get("sort_key").map(String::as_str).unwrap_or("flavorid");
    if !SORT_KEYS.contains(&sort_key) {
        return Err(bad_request(format!(
            "Invalid input for query parameters sort_key. Value: {sort_key}. '{sort_key}' is not one of {}",
            crate::python::py_repr(&json!(SORT_KEYS))
        )));
    }
    let descending = match query.get("sort_dir").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "Invalid input for query parameters sort_dir. Value: {other}. '{other}' is not one of ['asc', 'desc']"
            )));
        }
    };
    flavors.sort_by(|a, b| {
        let ordering = match sort_key {
            "name" => a.name.cmp(&b.name),
            "memory_mb" => a.ram_mb.cmp(&b.ram_mb),
            "root_gb" => a.root_gb.cmp(&b.root_gb),
            "vcpus" => a.vcpus.cmp(&b.vcpus),
            "ephemeral_gb" => a.ephemeral_gb.cmp(&b.ephemeral_gb),
            "swap" => a.swap_mb.cmp(&b.swap_mb),
            _ => std::cmp::Ordering::Equal,
        };
        ordering.then_with(|| a.id.cmp(&b.id))
    });
    if descending {
        flavors.reverse();
    }
    if let Some(marker) = query.get("marker") {
        let at = flavors
            .iter()
            .position(|f| &f.id == marker)
            .ok_or_else(|| bad_request(format!("marker [{marker}] not found")))?;
        flavors.drain(..=at);
    }
    let limit = match query.get("limit") {
        None => None,
        Some(limit) => Some(limit.trim().parse::<usize>().map_err(|_| {
            bad_request(format!(
                "Invalid input for query parameters limit. Value: {limit}. '{limit}' does not match '^[0-9]*$'"
            ))
        })?),
    };
    flavors.truncate(super::page_size(limit));
    Ok(flavors)
}

/// The list body: the flavors, and `flavors_links` when the page is full.
fn list_body(
    state: &AppState,
    collection: &str,
    query: &BTreeMap<String, String>,
    flavors: &[Flavor],
    items: Vec<Value>,
) -> Value {
    let limit = query.get("limit").and_then(|v| v.trim().parse().ok());
    let params: Vec<(String, String)> = query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let ids: Vec<&str> = flavors.iter().map(|f| f.id.as_str()).collect();
    let mut body = json!({ "flavors": items });
    if let Some(links) = super::collection_links(state, collection, &params, super::page_size(limit), &ids) {
        body["flavors_links"] = links;
    }
    body
}

async fn index(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    list(&state, &caller, version, &uri, "flavors", basic_view)
}

async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    list(&state, &caller, version, &uri, "flavors/detail", detail_view)
}

/// `GET /flavors` and `GET /flavors/detail`: the same listing, each flavor in `view`.
fn list(
    state: &AppState,
    caller: &Caller,
    version: ApiVersion,
    uri: &axum::http::Uri,
    collection: &str,
    view: fn(&AppState, &Flavor, ApiVersion) -> Value,
) -> Result<Json<Value>, ApiError> {
    let query: BTreeMap<String, String> = super::request::query_pairs(uri.query()).into_iter().collect();
    let flavors = listed(state, caller, version, &query)?;
    let items: Vec<Value> = flavors.iter().map(|f| view(state, f, version)).collect();
    Ok(Json(list_body(state, collection, &query, &flavors, items)))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let flavor = state.nova().flavors().get(&id, caller.is_admin()).ok_or_else(|| flavor_not_found(&id))?;
    Ok(Json(json!({ "flavor": detail_view(&state, &flavor, version) })))
}

fn flavor_param(kind_minimum: u64) -> Value {
    json!({"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": kind_minimum, "maximum": 0x7FFF_FFFF})
}

/// Nova's `flavors.create*` schema for `version`.
pub(crate) fn create_schema(version: ApiVersion) -> Value {
    let mut props = json!({
        "name": {"type": "string", "format": "name", "minLength": 1, "maxLength": 255},
        "id": {
            "type": ["string", "number", "null"], "minLength": 1, "maxLength": 255,
            "pattern": "^(?! )[a-zA-Z0-9. _-]+(?<! )$",
            "x-regex": "^[a-zA-Z0-9._-]([a-zA-Z0-9. _-]*[a-zA-Z0-9._-])?$",
        },
        "ram": flavor_param(1),
        "vcpus": flavor_param(1),
        "disk": flavor_param(0),
        "OS-FLV-EXT-DATA:ephemeral": flavor_param(0),
        "swap": flavor_param(0),
        "rxtx_factor": {"type": ["number", "string"], "pattern": "^[0-9]+(\\.[0-9]+)?$", "maximum": 3.40282e38},
        "os-flavor-access:is_public": super::servers::boolean_schema(),
    });
    if version.at_least(55) {
        props["description"] = json!({"type": ["string", "null"], "minLength": 0, "maxLength": 65535});
    }
    json!({
        "type": "object",
        "properties": {"flavor": {
            "type": "object",
            "properties": props,
            "required": ["name", "ram", "vcpus", "disk"],
            "additionalProperties": false,
        }},
        "required": ["flavor"],
        "additionalProperties": false,
    })
}

fn number(v: Option<&Value>, default: u64) -> u64 {
    v.and_then(super::request::int_value).map(|n| n.max(0) as u64).unwrap_or(default)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    NovaBody(body): NovaBody,
) -> Result<Json<Value>, ApiError> {
    if !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:os-flavor-manage:create"));
    }
    check(&create_schema(version), &body)?;
    let f = &body["flavor"];
    let name = f["name"].as_str().unwrap_or_default().to_string();
    if !is_valid_name(&name) {
        return Err(bad_request("Flavor names can only contain printable characters and horizontal spaces.".into()));
    }
    let id = match f.get("id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let rxtx_factor = match f.get("rxtx_factor") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(1.0),
        Some(Value::String(s)) => s.parse().unwrap_or(1.0),
        _ => 1.0,
    };
    if rxtx_factor <= 0.0 {
        return Err(bad_request(format!(
            "Invalid input for field/attribute rxtx_factor. Value: {}. {} is less than or equal to the minimum of 0",
            crate::python::py_str(&f["rxtx_factor"]),
            crate::python::py_repr(&f["rxtx_factor"])
        )));
    }
    let flavor = Flavor {
        id,
        name,
        vcpus: number(f.get("vcpus"), 1) as u32,
        ram_mb: number(f.get("ram"), 1),
        root_gb: number(f.get("disk"), 0),
        ephemeral_gb: number(f.get("OS-FLV-EXT-DATA:ephemeral"), 0),
        swap_mb: number(f.get("swap"), 0),
        rxtx_factor,
        is_public: f.get("os-flavor-access:is_public").is_none_or(truthy),
        disabled: false,
        description: if version.at_least(55) {
            f.get("description").and_then(Value::as_str).map(String::from)
        } else {
            None
        },
        extra_specs: BTreeMap::new(),
    };
    let flavor = state.nova().flavors().insert(flavor)?;
    Ok(Json(json!({ "flavor": detail_view(&state, &flavor, version) })))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    version: ApiVersion,
    Path(id): Path<String>,
    NovaBody(body): NovaBody,
) -> Result<Json<Value>, ApiError> {
    if !version.at_least(55) {
        return Err(super::request::not_found());
    }
    if !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:os-flavor-manage:update"));
    }
    let schema = json!({
        "type": "object",
        "properties": {"flavor": {
            "type": "object",
            "properties": {"description": {"type": ["string", "null"], "minLength": 0, "maxLength": 65535}},
            "required": ["description"],
            "additionalProperties": false,
        }},
        "required": ["flavor"],
        "additionalProperties": false,
    });
    check(&schema, &body)?;
    let description = body["flavor"]["description"].as_str().map(String::from);
    let flavor = state.nova().flavors().update(&id, |f| {
        f.description = description;
        f.clone()
    })?;
    Ok(Json(json!({ "flavor": detail_view(&state, &flavor, version) })))
}

async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:os-flavor-manage:delete"));
    }
    state.nova().flavors().remove(&id).ok_or_else(|| flavor_not_found(&id))?;
    Ok(StatusCode::ACCEPTED)
}

fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Flavor, ApiError> {
    state.nova().flavors().get(id, caller.is_admin()).ok_or_else(|| flavor_not_found(id))
}

async fn specs_index(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let flavor = visible(&state, &caller, &id)?;
    Ok(Json(json!({ "extra_specs": flavor.extra_specs })))
}

/// Nova's extra-specs schema: the whole `extra_specs` body when `wrapped`, one key's body otherwise.
pub(crate) fn specs_schema(wrapped: bool) -> Value {
    let specs = json!({
        "type": "object",
        // Nova's `flavors_extraspecs` schema: strings and numbers, never booleans, nulls or lists.
        "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": ["string", "number"], "maxLength": 255}},
        "additionalProperties": false,
    });
    if wrapped {
        json!({
            "type": "object",
            "properties": {"extra_specs": specs},
            "required": ["extra_specs"],
            "additionalProperties": false,
        })
    } else {
        let mut single = specs;
        single["minProperties"] = json!(1);
        single["maxProperties"] = json!(1);
        single
    }
}

fn spec_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "True".into()
            } else {
                "False".into()
            }
        }
        other => other.to_string(),
    }
}

async fn specs_create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    NovaBody(body): NovaBody,
) -> Result<Json<Value>, ApiError> {
    if !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:os-flavor-extra-specs:create"));
    }
    check(&specs_schema(true), &body)?;
    let specs: Map<String, Value> = body["extra_specs"].as_object().cloned().unwrap_or_default();
    state.nova().flavors().update(&id, |f| {
        for (k, v) in &specs {
            f.extra_specs.insert(k.clone(), spec_string(v));
        }
    })?;
    Ok(Json(body))
}

async fn specs_show(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let flavor = visible(&state, &caller, &id)?;
    match flavor.extra_specs.get(&key) {
        Some(v) => Ok(Json(json!({ key: v }))),
        None => Err(no_such_spec(&id, &key)),
    }
}

fn no_such_spec(id: &str, key: &str) -> ApiError {
    ApiError::compute(StatusCode::NOT_FOUND, format!("Flavor {id} has no extra specs with key {key}."))
}

async fn specs_update(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    NovaBody(body): NovaBody,
) -> Result<Json<Value>, ApiError> {
    if !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:os-flavor-extra-specs:update"));
    }
    check(&specs_schema(false), &body)?;
    let Some(value) = body.get(&key).cloned() else {
        return Err(bad_request("Request body and URI mismatch".into()));
    };
    state.nova().flavors().update(&id, |f| {
        f.extra_specs.insert(key.clone(), spec_string(&value));
    })?;
    Ok(Json(body))
}

async fn specs_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !caller.is_admin() {
        return Err(policy_forbidden("os_compute_api:os-flavor-extra-specs:delete"));
    }
    let removed = state.nova().flavors().update(&id, |f| f.extra_specs.remove(&key))?;
    match removed {
        Some(_) => Ok(StatusCode::OK.into_response()),
        None => Err(no_such_spec(&id, &key)),
    }
}
