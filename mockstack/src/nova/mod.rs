//! Nova v2.1: version discovery, microversions, flavors, servers and their actions, instance actions, consoles and server shares, driven by the virtual clock and backed by the simulated compute host.
//!
//! Handlers stay thin: the tables live in [`NovaState`], time-driven progress (BUILD →
//! ACTIVE, an installer powering the guest off, snapshot uploads) is applied by
//! [`NovaState::catch_up`] before every request mockstack answers, so a poller sees every
//! transient state in order whatever the clock mode.

pub mod admin;
pub mod bdm;
pub mod compute;
pub mod consoles;
pub mod flavors;
pub mod image_meta;
pub mod instance_actions;
pub mod lifecycle;
pub mod microversion;
pub mod quota;
pub mod request;
pub mod schema;
pub mod server_actions;
pub mod servers;
pub mod shares;
pub mod worker;

use crate::query::quote_plus;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub use microversion::{ApiVersion, MAX_VERSION, MIN_VERSION};
pub use servers::Server;

use crate::state::AppState;

/// Every compute table of one mockstack.
pub struct NovaState {
    flavors: flavors::FlavorTable,
    servers: Mutex<servers::ServerTable>,
    dir: PathBuf,
    host: guestsim::hypervisor::Host,
    /// Driver-media image names set through the admin API, replacing the configured ones.
    media: Mutex<compute::MediaOverrides>,
    /// Serialises catch-up so steps are applied once and in order.
    catching_up: Mutex<()>,
}

impl NovaState {
    /// `dir` is where instance directories go (the simulated `/var/lib/nova/instances`).
    pub fn new(dir: &Path) -> std::io::Result<NovaState> {
        std::fs::create_dir_all(dir)?;
        let opener: std::sync::Arc<guestsim::hypervisor::MediumOpener> =
            std::sync::Arc::new(|path: &Path| guestsim::media::open_medium(path).map_err(|e| e.to_string()));
        Ok(NovaState {
            flavors: flavors::FlavorTable::default(),
            servers: Mutex::new(servers::ServerTable::default()),
            dir: dir.to_path_buf(),
            host: guestsim::hypervisor::Host::new(dir, opener),
            media: Mutex::new(compute::MediaOverrides::default()),
            catching_up: Mutex::new(()),
        })
    }

    pub fn flavors(&self) -> &flavors::FlavorTable {
        &self.flavors
    }

    pub(crate) fn servers(&self) -> std::sync::MutexGuard<'_, servers::ServerTable> {
        self.servers.lock().unwrap()
    }

    pub fn instances_dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn media_overrides(&self) -> std::sync::MutexGuard<'_, compute::MediaOverrides> {
        self.media.lock().unwrap()
    }

    /// The simulated compute host.
    pub fn host(&self) -> &guestsim::hypervisor::Host {
        &self.host
    }

    /// A copy of a server (deleted ones are gone), for tests and the admin API.
    pub fn server(&self, id: &str) -> Option<Server> {
        self.servers().live.get(id).cloned()
    }

    /// The uuid of the live server `key` names: its uuid or its libvirt instance name (`instance-0000002a`).
    pub fn server_by_uuid_or_instance_name(&self, key: &str) -> Option<String> {
        let servers = self.servers();
        if servers.live.contains_key(key) {
            return Some(key.to_string());
        }
        servers.live.iter().find(|(_, s)| s.instance_name() == key).map(|(id, _)| id.clone())
    }

    /// Ids of the servers that exist now.
    pub fn server_ids(&self) -> Vec<String> {
        self.servers().live.keys().cloned().collect()
    }

    /// The libvirt domain XML the simulated compute host defined for a server.
    pub fn domain_xml(&self, id: &str) -> Option<String> {
        self.servers().live.get(id).and_then(|s| s.compute.as_ref()).map(|c| c.domain_xml.clone())
    }

    /// Applies every compute step that is due on the virtual clock.
    pub fn catch_up(&self, state: &AppState) {
        let _serial = self.catching_up.lock().unwrap();
        worker::run_due(state);
    }

    /// Whether a compute step is due on the virtual clock: most requests find none, and need not leave the async
    /// worker to apply nothing.
    pub fn work_due(&self, state: &AppState) -> bool {
        worker::any_due(state)
    }
}

/// `/compute`: the version document at the root, the microversioned API under `/v2.1`.
pub fn router() -> Router<AppState> {
    let v21 = Router::new()
        .route("/", get(version_v21))
        .merge(flavors::router())
        .merge(servers::router())
        .merge(server_actions::router())
        .merge(instance_actions::router())
        .merge(consoles::router())
        .merge(shares::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
        .layer(axum::middleware::from_fn(microversion::layer));
    Router::new()
        .route("/", get(versions))
        .route("/v2.1/", get(version_v21).layer(axum::middleware::from_fn(microversion::layer)))
        .nest("/v2.1", v21)
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
}

/// Mock-only admin routes that belong to the compute side (domain XML).
pub fn admin_router() -> Router<AppState> {
    admin::router()
}

/// What nova-api's router answers when no route matches the path and method: a bare
/// `webob.exc.HTTPNotFound`, whose JSON body is webob's (the shape Glance errors have), not a
/// Nova fault.
async fn unknown_route() -> crate::error::ApiError {
    crate::error::ApiError::new(
        crate::error::Service::Image,
        axum::http::StatusCode::NOT_FOUND,
        "The resource could not be found.<br /><br />\n\n\n",
    )
}

/// When microversion 2.1 was introduced, as Nova's version documents say.
const V21_UPDATED: &str = "2013-07-23T11:33:21Z";

/// Every request-body schema the compute API validates against, named, at the microversions where they change.
///
/// For tests and fuzzing that try hostile bodies on all of them; the handlers build the same schemas.
#[doc(hidden)]
pub fn request_body_schemas() -> Vec<(String, Value)> {
    use microversion::ApiVersion;
    // The microversions where a schema above gains or loses a member, plus the ends of the range.
    let versions = [2, 19, 32, 37, 42, 52, 55, 57, 63, 67, 73, 74, 90, 94, 100].map(|minor| ApiVersion::new(2, minor));
    let mut schemas = Vec::new();
    for version in [microversion::MIN_VERSION].into_iter().chain(versions) {
        schemas.push((format!("servers.create@{version}"), servers::create_schema(version)));
        schemas.push((format!("servers.update@{version}"), servers::update_schema(version)));
        schemas.push((format!("flavors.create@{version}"), flavors::create_schema(version)));
        schemas.push((format!("lock@{version}"), server_actions::lock_schema(version)));
    }
    schemas.push(("flavors.extra_specs".into(), flavors::specs_schema(true)));
    schemas.push(("flavors.extra_spec".into(), flavors::specs_schema(false)));
    schemas.push(("reboot".into(), server_actions::reboot_schema()));
    schemas.push(("createImage".into(), server_actions::create_image_schema()));
    schemas.push(("os-getConsoleOutput".into(), server_actions::console_output_schema()));
    for action in ["os-start", "os-stop", "unlock"] {
        schemas.push((action.into(), server_actions::empty_action_schema(action)));
    }
    schemas
}

fn v21_document(state: &AppState) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX_VERSION.to_string(),
        "min_version": MIN_VERSION.to_string(),
        "updated": V21_UPDATED,
        "links": [{ "rel": "self", "href": format!("{}/", state.compute_url()) }],
    })
}

/// `GET /compute/`: Nova's root version list (no authentication, no microversion headers).
pub async fn versions(State(state): State<AppState>) -> Json<Value> {
    let base = format!("{}/compute", state.base_url());
    Json(json!({
        "versions": [
            {
                "id": "v2.0",
                "status": "DEPRECATED",
                "version": "",
                "min_version": "",
                "updated": "2025-07-04T12:00:00Z",
                "links": [{ "rel": "self", "href": format!("{base}/v2/") }],
            },
            v21_document(&state),
        ]
    }))
}

/// `GET /compute/v2.1/`: the v2.1 version document.
async fn version_v21(State(state): State<AppState>) -> Json<Value> {
    let mut doc = v21_document(&state);
    if let Some(links) = doc["links"].as_array_mut() {
        links.push(json!({ "rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/" }));
    }
    doc["media-types"] = json!([{
        "base": "application/json",
        "type": "application/vnd.openstack.compute+json;version=2.1"
    }]);
    Json(json!({ "version": doc }))
}

/// `self` and `bookmark` links as Nova's view builders write them (no project id in the URL).
pub fn links(state: &AppState, collection: &str, id: &str) -> Value {
    json!([
        { "rel": "self", "href": format!("{}/{collection}/{id}", state.compute_url()) },
        { "rel": "bookmark", "href": bookmark(state, collection, id) },
    ])
}

/// Nova's bookmark link: the resource URL without the version segment.
pub fn bookmark(state: &AppState, collection: &str, id: &str) -> String {
    format!("{}/compute/{collection}/{id}", state.base_url())
}

/// Nova's `[api] max_limit`: the most items one list call returns.
pub const MAX_LIMIT: usize = 1000;

/// The page size of a list call: `limit` capped at [`MAX_LIMIT`] (0 or absent: the cap).
pub fn page_size(limit: Option<usize>) -> usize {
    match limit {
        Some(n) if n > 0 => n.min(MAX_LIMIT),
        _ => MAX_LIMIT,
    }
}

/// `_get_collection_links`: a `next` link when the page is full, carrying the request's query
/// parameters (sorted, as Nova does) with `marker` set to the last item.
pub fn collection_links(
    state: &AppState,
    collection: &str,
    params: &[(String, String)],
    page_size: usize,
    ids: &[&str],
) -> Option<Value> {
    let last = ids.last().filter(|_| ids.len() == page_size)?;
    let mut sorted: std::collections::BTreeMap<&str, &str> =
        params.iter().filter(|(k, _)| k != "marker").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.insert("marker", last);
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v))).collect();
    Some(json!([{ "rel": "next", "href": format!("{}/{collection}?{}", state.compute_url(), query.join("&")) }]))
}

/// Per-server map type used by the tables.
pub(crate) type ById<T> = HashMap<String, T>;
