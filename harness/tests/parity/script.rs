//! The request sequence the parity suite sends to both clouds: the isoharness workflow's calls, the `openstack` CLI's calls for the article's seven steps (docs/guest-matrix.md), and the error cases.
//!
//! The CLI's calls were taken from `openstack --debug` (python-openstackclient 10.5.0,
//! openstacksdk 4.22.0) running `image create --file`, `flavor create`, `server create --nic none
//! --wait`, `console url show`, `console log show`, `server show`, `server image create --wait`,
//! `image set --property`, `server stop`, `server delete --wait`, `image delete`, `flavor delete`
//! against the local real cloud: the same paths, microversions and bodies. The workflow's calls
//! are those of `harness/src/cloud/` at microversion 2.100 (its `MAX_MICROVERSION`).
//! Polling until a state is reached is not recorded: when a poll ends, the state itself is one
//! recorded call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::shape::{Body, Recorded};

/// Names of what the sequence creates, the same on both clouds.
pub const ISO_NAME: &str = "parity-iso";
pub const FLAVOR_NAME: &str = "parity-flavor";
pub const SERVER_NAME: &str = "parity-server";
pub const SNAPSHOT_NAME: &str = "parity-snapshot";

/// The workflow's microversion (its `MAX_MICROVERSION`).
const HARNESS: &str = "compute 2.100";
/// The newest microversion the CLI asks for; it asks min(this, the cloud's maximum).
const CLI_MAX: (u32, u32) = (2, 100);

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub response: Recorded,
}

/// Where a cloud's services are, once the token is issued.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub identity: String,
    pub image: String,
    /// The catalog's compute URL (with `/v2.1`).
    pub compute: String,
}

impl Endpoints {
    /// A URL of this cloud with its endpoint replaced by the service name, if it is one of them.
    pub fn strip_base(&self, url: &str) -> Option<String> {
        [(&self.compute, "{compute}"), (&self.image, "{image}"), (&self.identity, "{identity}")]
            .into_iter()
            .find(|(base, _)| !base.is_empty() && url.starts_with(base.as_str()))
            .map(|(base, name)| format!("{name}{}", &url[base.len()..]))
    }
}

/// `url` with the endpoint of either cloud replaced by the service name and UUIDs by `{uuid}`.
pub fn normalise_url(url: &str, clouds: &[&Endpoints]) -> String {
    let stripped = clouds.iter().find_map(|c| c.strip_base(url)).unwrap_or_else(|| url.to_string());
    let uuid =
        regex::Regex::new("[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}").expect("literal regex");
    uuid.replace_all(&stripped, "{uuid}").into_owned()
}

/// How a session waits: a mockstack's virtual clock, or real time.
pub enum Waiting {
    Virtual(Arc<mockstack::Clock>),
    Real,
}

/// One cloud's side of the run.
pub struct Session {
    pub label: &'static str,
    http: reqwest::Client,
    auth_url: String,
    user: String,
    password: String,
    project: String,
    waiting: Waiting,
    token: String,
    pub endpoints: Endpoints,
    pub calls: Vec<Call>,
    /// What the CLI negotiates with this cloud, e.g. `compute 2.100`.
    cli: String,
}

pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<(String, Vec<u8>)>,
    authenticated: bool,
}

impl Request {
    fn new(method: Method, url: impl Into<String>) -> Request {
        Request { method, url: url.into(), headers: Vec::new(), body: None, authenticated: true }
    }
    fn json(mut self, body: &Value) -> Request {
        self.body = Some(("application/json".into(), serde_json::to_vec(body).expect("json values serialise")));
        self
    }
    fn raw(mut self, content_type: &str, data: Vec<u8>) -> Request {
        self.body = Some((content_type.into(), data));
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }
    fn compute(self, version: &str) -> Request {
        let number = version.trim_start_matches("compute ").to_string();
        self.header("OpenStack-API-Version", version).header("X-OpenStack-Nova-API-Version", number)
    }
    fn anonymous(mut self) -> Request {
        self.authenticated = false;
        self
    }
}

impl Session {
    pub fn new(
        label: &'static str,
        auth_url: &str,
        user: &str,
        password: &str,
        project: &str,
        waiting: Waiting,
    ) -> Session {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("a reqwest client");
        Session {
            label,
            http,
            auth_url: auth_url.trim_end_matches('/').trim_end_matches("/v3").to_string(),
            user: user.into(),
            password: password.into(),
            project: project.into(),
            waiting,
            token: String::new(),
            endpoints: Endpoints::default(),
            calls: Vec::new(),
            cli: format!("compute {}.{}", CLI_MAX.0, CLI_MAX.1),
        }
    }

    async fn send(&self, request: &Request) -> Result<(Recorded, Value), String> {
        let mut builder = self.http.request(request.method.clone(), &request.url);
        if request.authenticated {
            builder = builder.header("X-Auth-Token", &self.token);
        }
        builder = builder.header("Accept", "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some((content_type, data)) = &request.body {
            builder = builder.header("Content-Type", content_type).body(data.clone());
        }
        let response = builder.send().await.map_err(|e| format!("{} {}: {e}", request.method, request.url))?;
        let status = response.status().as_u16();
        let headers: BTreeMap<String, String> = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let bytes = response.bytes().await.map_err(|e| format!("{} {}: {e}", request.method, request.url))?;
        let (body, json) = if bytes.is_empty() {
            (Body::Empty, Value::Null)
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => (Body::Json(v.clone()), v),
                Err(_) => (Body::Bytes(bytes.len()), Value::Null),
            }
        };
        Ok((Recorded { status, headers, body }, json))
    }

    /// Sends and records one call; returns its status and JSON body.
    async fn call(&mut self, name: &str, request: Request) -> Result<(u16, Value), String> {
        let (recorded, json) = self.send(&request).await?;
        let status = recorded.status;
        self.calls.push(Call { name: name.to_string(), response: recorded });
        Ok((status, json))
    }

    /// Sends without recording (polls).
    async fn peek(&self, request: Request) -> Result<(u16, Value), String> {
        self.send(&request).await.map(|(r, json)| (r.status, json))
    }

    async fn pause(&self) {
        match &self.waiting {
            Waiting::Virtual(clock) => clock.sleep(Duration::from_secs(2)).await,
            Waiting::Real => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }

    /// Polls `request` until `done` holds for its JSON (or its status), for at most 10 minutes.
    async fn wait_for(
        &self,
        what: &str,
        request: impl Fn() -> Request,
        done: impl Fn(u16, &Value) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut polls = 0u32;
        loop {
            let (status, json) = self.peek(request()).await?;
            if done(status, &json) {
                return Ok(());
            }
            polls += 1;
            if started.elapsed() > Duration::from_secs(600) || polls > 2000 {
                return Err(format!(
                    "{}: {what}: not reached after {polls} polls; last answer {status} {json}",
                    self.label
                ));
            }
            self.pause().await;
        }
    }

    fn identity(&self, path: &str) -> String {
        format!("{}{path}", self.auth_url)
    }
    fn image(&self, path: &str) -> String {
        format!("{}{path}", self.endpoints.image)
    }
    fn compute(&self, path: &str) -> String {
        format!("{}{path}", self.endpoints.compute)
    }
    fn compute_root(&self) -> String {
        self.endpoints.compute.trim_end_matches("/v2.1").to_string()
    }

    fn password_body(&self, password: &str) -> Value {
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": self.project, "domain": {"name": "Default"}}}
        }})
    }
}

fn expect(name: &str, got: u16, want: u16, json: &Value) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{name}: expected {want}, got {got}: {json}")) }
}

fn text<'a>(json: &'a Value, pointer: &str, what: &str) -> Result<&'a str, String> {
    json.pointer(pointer).and_then(Value::as_str).ok_or_else(|| format!("{what}: no {pointer} in {json}"))
}

/// The whole sequence; stops at the first call whose status makes going on pointless.
pub async fn run(s: &mut Session, iso: &[u8]) -> Result<(), String> {
    identity(s).await?;
    let iso_id = image_upload(s, iso).await?;
    image_errors(s, &iso_id).await?;
    let flavor_id = flavors(s).await?;
    let server_id = boot(s, &iso_id, &flavor_id).await?;
    install(s, &server_id).await?;
    let snapshot_id = snapshot(s, &server_id).await?;
    teardown(s, &server_id, &snapshot_id, &iso_id, &flavor_id).await
}

async fn identity(s: &mut Session) -> Result<(), String> {
    s.call("keystone: GET /v3 (version discovery)", Request::new(Method::GET, s.identity("/v3")).anonymous()).await?;
    let wrong = s.password_body("not-the-password");
    let (status, json) = s
        .call(
            "keystone: POST /v3/auth/tokens (wrong password)",
            Request::new(Method::POST, s.identity("/v3/auth/tokens")).anonymous().json(&wrong),
        )
        .await?;
    expect("wrong password", status, 401, &json)?;
    let body = s.password_body(&s.password.clone());
    let request = Request::new(Method::POST, s.identity("/v3/auth/tokens")).anonymous().json(&body);
    let (recorded, json) = s.send(&request).await?;
    expect("token", recorded.status, 201, &json)?;
    s.token = recorded.headers.get("x-subject-token").cloned().ok_or("no X-Subject-Token")?;
    s.calls.push(Call { name: "keystone: POST /v3/auth/tokens (password, project scope)".into(), response: recorded });
    let endpoint = |kind: &str| -> Result<String, String> {
        json.pointer("/token/catalog")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|e| e["type"] == kind))
            .and_then(|e| e["endpoints"].as_array())
            .and_then(|eps| eps.iter().find(|e| e["interface"] == "public"))
            .and_then(|e| e["url"].as_str())
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("no public {kind} endpoint in the catalog"))
    };
    s.endpoints = Endpoints { identity: s.auth_url.clone(), image: endpoint("image")?, compute: endpoint("compute")? };
    Ok(())
}

/// Step 1: the ISO into Glance, as `openstack image create --file` and the workflow do it.
async fn image_upload(s: &mut Session, iso: &[u8]) -> Result<String, String> {
    s.call("glance: GET / (version document)", Request::new(Method::GET, s.image("/")).anonymous()).await?;
    let url = s.image(&format!("/v2/images?name={ISO_NAME}"));
    s.call("glance: GET /v2/images?name= (nothing yet)", Request::new(Method::GET, url)).await?;
    let body = json!({
        "name": ISO_NAME, "disk_format": "iso", "container_format": "bare", "visibility": "private",
        "owner_specified.openstack.md5": "", "owner_specified.openstack.sha256": "",
        "owner_specified.openstack.object": format!("images/{ISO_NAME}"), "os_type": "linux",
    });
    let (status, json) = s
        .call("glance: POST /v2/images (the ISO)", Request::new(Method::POST, s.image("/v2/images")).json(&body))
        .await?;
    expect("image create", status, 201, &json)?;
    let id = text(&json, "/id", "image create")?.to_string();
    let upload = Request::new(Method::PUT, s.image(&format!("/v2/images/{id}/file")))
        .raw("application/octet-stream", iso.to_vec())
        .header("X-OpenStack-Image-Size", iso.len().to_string());
    let (status, json) = s.call("glance: PUT /v2/images/{id}/file (upload)", upload).await?;
    expect("upload", status, 204, &json)?;
    s.call("glance: GET /v2/images/{id} (active ISO)", Request::new(Method::GET, s.image(&format!("/v2/images/{id}"))))
        .await?;
    s.call(
        "glance: GET /v2/images/{name} (the CLI's lookup by id first)",
        Request::new(Method::GET, s.image(&format!("/v2/images/{ISO_NAME}"))),
    )
    .await?;
    s.call(
        "glance: GET /v2/images?name= (one image)",
        Request::new(Method::GET, s.image(&format!("/v2/images?name={ISO_NAME}"))),
    )
    .await?;
    Ok(id)
}

async fn image_errors(s: &mut Session, iso_id: &str) -> Result<(), String> {
    let unknown = "8a1d3c6e-5b2f-4c1e-9f0a-0123456789ab";
    s.call(
        "glance: GET /v2/images/{id} (unknown image)",
        Request::new(Method::GET, s.image(&format!("/v2/images/{unknown}"))),
    )
    .await?;
    let patch = |ops: Value| {
        Request::new(Method::PATCH, s.image(&format!("/v2/images/{iso_id}")))
            .raw("application/openstack-images-v2.1-json-patch", serde_json::to_vec(&ops).expect("json"))
    };
    let bad_op = patch(json!([{"op": "frobnicate", "path": "/os_distro", "value": "x"}]));
    let read_only = patch(json!([{"op": "replace", "path": "/status", "value": "active"}]));
    let not_a_list = patch(json!({"op": "add", "path": "/os_distro", "value": "x"}));
    s.call("glance: PATCH /v2/images/{id} (bad JSON-patch op)", bad_op).await?;
    s.call("glance: PATCH /v2/images/{id} (read-only attribute)", read_only).await?;
    s.call("glance: PATCH /v2/images/{id} (patch is not a list)", not_a_list).await?;
    let wrong_type = Request::new(Method::PATCH, s.image(&format!("/v2/images/{iso_id}")))
        .json(&json!([{"op": "add", "path": "/os_distro", "value": "x"}]));
    s.call("glance: PATCH /v2/images/{id} (wrong content type)", wrong_type).await?;
    s.call(
        "glance: PUT /v2/images/{id}/file (data already uploaded)",
        Request::new(Method::PUT, s.image(&format!("/v2/images/{iso_id}/file")))
            .raw("application/octet-stream", vec![0; 512]),
    )
    .await?;
    Ok(())
}

async fn flavors(s: &mut Session) -> Result<String, String> {
    s.call("nova: GET / (versions)", Request::new(Method::GET, format!("{}/", s.compute_root())).anonymous()).await?;
    let (_, version) =
        s.call("nova: GET /v2.1 (the CLI's discovery)", Request::new(Method::GET, s.compute("")).anonymous()).await?;
    let max = text(&version, "/version/version", "compute version document")?;
    let parsed = max.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let (major, minor) = parsed.ok_or_else(|| format!("bad maximum microversion {max:?}"))?.min(CLI_MAX);
    s.cli = format!("compute {major}.{minor}");
    s.call("nova: GET /v2.1/ (the workflow's discovery)", Request::new(Method::GET, s.compute("/"))).await?;
    let body = json!({"flavor": {"os-flavor-access:is_public": true, "OS-FLV-EXT-DATA:ephemeral": 1, "swap": 0,
        "id": null, "disk": 1, "name": FLAVOR_NAME, "ram": 512, "vcpus": 1}});
    let (status, json) = s
        .call(
            "nova: POST /flavors (2.61, the CLI's)",
            Request::new(Method::POST, s.compute("/flavors")).compute("compute 2.61").json(&body),
        )
        .await?;
    expect("flavor create", status, 200, &json)?;
    let id = text(&json, "/flavor/id", "flavor create")?.to_string();
    s.call(
        "nova: GET /flavors/{name} (the CLI's lookup by id first)",
        Request::new(Method::GET, s.compute(&format!("/flavors/{FLAVOR_NAME}"))).compute("compute 2.61"),
    )
    .await?;
    s.call(
        "nova: GET /flavors/detail?is_public=None (2.61, the CLI's)",
        Request::new(Method::GET, s.compute("/flavors/detail?is_public=None")).compute("compute 2.61"),
    )
    .await?;
    s.call(
        "nova: GET /flavors/detail (the workflow's)",
        Request::new(Method::GET, s.compute("/flavors/detail")).compute(HARNESS),
    )
    .await?;
    Ok(id)
}

fn server_request(image: &str, flavor: &str, with_bdm: bool) -> Value {
    let mut server = json!({"name": SERVER_NAME, "imageRef": image, "flavorRef": flavor, "networks": "none",
        "min_count": 1, "max_count": 1});
    if with_bdm {
        server["block_device_mapping_v2"] = json!([{"uuid": image, "boot_index": 0, "source_type": "image",
            "destination_type": "local", "delete_on_termination": true}]);
    }
    json!({"server": server})
}

/// Step 2: boot from the ISO, with the error cases around it.
async fn boot(s: &mut Session, iso_id: &str, flavor_id: &str) -> Result<String, String> {
    let cli = s.cli.clone();
    let servers = s.compute("/servers");
    s.call(
        "nova: POST /servers (unsupported microversion)",
        Request::new(Method::POST, servers.clone())
            .compute("compute 2.999")
            .json(&server_request(iso_id, flavor_id, false)),
    )
    .await?;
    let mut bad_bdm = server_request(iso_id, flavor_id, true);
    bad_bdm["server"]["block_device_mapping_v2"][0]["source_type"] = json!("floppy");
    s.call(
        "nova: POST /servers (bad block device mapping)",
        Request::new(Method::POST, servers.clone()).compute(&cli).json(&bad_bdm),
    )
    .await?;
    s.call(
        "nova: POST /servers (unknown image)",
        Request::new(Method::POST, servers.clone()).compute(HARNESS).json(&server_request(
            "8a1d3c6e-5b2f-4c1e-9f0a-0123456789ab",
            flavor_id,
            false,
        )),
    )
    .await?;
    let (status, json) = s
        .call(
            "nova: POST /servers (boot from the ISO, the CLI's body)",
            Request::new(Method::POST, servers).compute(&cli).json(&server_request(iso_id, flavor_id, true)),
        )
        .await?;
    expect("server create", status, 202, &json)?;
    let id = text(&json, "/server/id", "server create")?.to_string();
    let url = s.compute(&format!("/servers/{id}"));
    s.wait_for(
        "server out of BUILD",
        || Request::new(Method::GET, url.clone()).compute(HARNESS),
        |_, json| json["server"]["status"] != "BUILD" && json["server"]["OS-EXT-STS:task_state"].is_null(),
    )
    .await?;
    let (_, json) =
        s.call("nova: GET /servers/{id} (booted)", Request::new(Method::GET, url.clone()).compute(HARNESS)).await?;
    if json["server"]["status"] != "ACTIVE" {
        return Err(format!("the server did not become ACTIVE: {}", json["server"]["status"]));
    }
    Ok(id)
}

/// Steps 3 to 5: console, console log, the installer powering off, and actions in the wrong state.
async fn install(s: &mut Session, id: &str) -> Result<(), String> {
    let cli = s.cli.clone();
    let url = s.compute(&format!("/servers/{id}"));
    let action = s.compute(&format!("/servers/{id}/action"));
    s.call(
        "nova: GET /servers/detail?name=^...$ (the workflow's lookup)",
        Request::new(Method::GET, s.compute(&format!("/servers/detail?name=%5E{SERVER_NAME}%24"))).compute(HARNESS),
    )
    .await?;
    s.call(
        "nova: GET /servers/{name} (the CLI's lookup by id first)",
        Request::new(Method::GET, s.compute(&format!("/servers/{SERVER_NAME}"))).compute(&cli),
    )
    .await?;
    s.call(
        "nova: GET /servers/detail?name= (the CLI's lookup)",
        Request::new(Method::GET, s.compute(&format!("/servers/detail?name={SERVER_NAME}"))).compute(&cli),
    )
    .await?;
    let console = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
    s.call(
        "nova: POST /servers/{id}/remote-consoles (noVNC)",
        Request::new(Method::POST, s.compute(&format!("/servers/{id}/remote-consoles")))
            .compute(HARNESS)
            .json(&console),
    )
    .await?;
    s.call(
        "nova: POST /servers/{id}/action os-getConsoleOutput",
        Request::new(Method::POST, action.clone()).compute(HARNESS).json(&json!({"os-getConsoleOutput": {}})),
    )
    .await?;
    s.call(
        "nova: POST /servers/{id}/action os-start (server is ACTIVE)",
        Request::new(Method::POST, action.clone()).compute(HARNESS).json(&json!({"os-start": null})),
    )
    .await?;
    s.wait_for(
        "the installer to power the guest off",
        || Request::new(Method::GET, url.clone()).compute(HARNESS),
        |_, json| json["server"]["status"] == "SHUTOFF" && json["server"]["OS-EXT-STS:task_state"].is_null(),
    )
    .await?;
    s.call("nova: GET /servers/{id} (installed, SHUTOFF)", Request::new(Method::GET, url).compute(HARNESS)).await?;
    s.call(
        "nova: POST /servers/{id}/action os-stop (server is SHUTOFF)",
        Request::new(Method::POST, action).compute(&cli).json(&json!({"os-stop": null})),
    )
    .await?;
    Ok(())
}

/// Steps 6 and 7: snapshot, wait for the image, download it, make it an ordinary image.
async fn snapshot(s: &mut Session, server_id: &str) -> Result<String, String> {
    let action = s.compute(&format!("/servers/{server_id}/action"));
    let body = json!({"createImage": {"name": SNAPSHOT_NAME, "metadata": {}}});
    let (status, json) = s
        .call(
            "nova: POST /servers/{id}/action createImage",
            Request::new(Method::POST, action).compute(HARNESS).json(&body),
        )
        .await?;
    expect("createImage", status, 202, &json)?;
    let id = text(&json, "/image_id", "createImage")?.to_string();
    let url = s.image(&format!("/v2/images/{id}"));
    s.wait_for(
        "the snapshot to become active",
        || Request::new(Method::GET, url.clone()),
        |_, json| json["status"] == "active",
    )
    .await?;
    s.call("glance: GET /v2/images/{id} (active snapshot)", Request::new(Method::GET, url.clone())).await?;
    s.call("glance: GET /v2/images/{id}/file (download)", Request::new(Method::GET, format!("{url}/file"))).await?;
    let patch = |ops: Value| {
        Request::new(Method::PATCH, url.clone())
            .raw("application/openstack-images-v2.1-json-patch", serde_json::to_vec(&ops).expect("json"))
    };
    s.call(
        "glance: PATCH /v2/images/{id} (the CLI's image set --property)",
        patch(json!([{"op": "add", "path": "/image_type", "value": "image"}, {"op": "add", "path": "/min_disk", "value": 1},
            {"op": "add", "path": "/os_type", "value": "linux"}])),
    )
    .await?;
    s.call(
        "glance: PATCH /v2/images/{id} (the workflow's replace)",
        patch(json!([{"op": "replace", "path": "/image_type", "value": "image"}, {"op": "add", "path": "/os_distro", "value": "ubuntu"},
            {"op": "replace", "path": "/min_ram", "value": 512}])),
    )
    .await?;
    Ok(id)
}

async fn teardown(s: &mut Session, server: &str, snapshot: &str, iso: &str, flavor: &str) -> Result<(), String> {
    let cli = s.cli.clone();
    let url = s.compute(&format!("/servers/{server}"));
    let (status, json) =
        s.call("nova: DELETE /servers/{id}", Request::new(Method::DELETE, url.clone()).compute(&cli)).await?;
    expect("server delete", status, 204, &json)?;
    s.wait_for("the server to go", || Request::new(Method::GET, url.clone()).compute(&cli), |status, _| status == 404)
        .await?;
    s.call("nova: GET /servers/{id} (deleted)", Request::new(Method::GET, url).compute(&cli)).await?;
    for (name, id) in [("snapshot", snapshot), ("ISO", iso)] {
        s.call(
            &format!("glance: DELETE /v2/images/{{id}} ({name})"),
            Request::new(Method::DELETE, s.image(&format!("/v2/images/{id}"))),
        )
        .await?;
    }
    s.call(
        "glance: DELETE /v2/images/{id} (already deleted)",
        Request::new(Method::DELETE, s.image(&format!("/v2/images/{iso}"))),
    )
    .await?;
    s.call(
        "nova: DELETE /flavors/{id}",
        Request::new(Method::DELETE, s.compute(&format!("/flavors/{flavor}"))).compute("compute 2.61"),
    )
    .await?;
    let token = s.token.clone();
    s.call(
        "keystone: DELETE /v3/auth/tokens (revoke)",
        Request::new(Method::DELETE, s.identity("/v3/auth/tokens")).header("X-Subject-Token", token),
    )
    .await?;
    Ok(())
}
