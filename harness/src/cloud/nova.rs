//! Typed Nova v2.1 calls: version discovery and microversion negotiation, flavors, servers, server actions,
//! console output, remote consoles and instance actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Session;
use super::catalog::{Microversion, VersionDocument, compute_range, compute_version_url, negotiate};
use super::error::CloudError;
use super::http::{Body, Request, Response};

/// The oldest compute microversion the client speaks.
pub const MIN_MICROVERSION: Microversion = Microversion::new(2, 1);
/// The newest compute microversion whose response shapes the client understands. Past 2.47 `server.flavor` is an
/// embedded object (parsed as [`Value`]); past 2.69 a down cell can leave fields out (they default); 2.96 added
/// `pinned_availability_zone`, 2.97 server shares (not called), 2.98 `properties` inside `server.image` (only its
/// `id` is read), 2.99 the `spice-direct` console type (the client asks for `novnc`) and 2.100 `scheduler_hints`:
/// all ignored. 2.101 onwards changes a volume attach answer and the flavor fields, so newer versions are not sent
/// until someone has read their changes.
pub const MAX_MICROVERSION: Microversion = Microversion::new(2, 100);
/// `networks: "none"` exists from here on.
pub const NETWORKS_NONE_FROM: Microversion = Microversion::new(2, 37);
/// `createImage` returns `{"image_id"}` in the body from here on (before, only a `Location` header).
pub const CREATE_IMAGE_BODY_FROM: Microversion = Microversion::new(2, 45);
/// `POST /servers/{id}/remote-consoles` exists from here on.
pub const REMOTE_CONSOLES_FROM: Microversion = Microversion::new(2, 6);

/// A flavor (`/flavors/detail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub ram: u64,
    pub vcpus: u32,
    pub disk: u64,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    pub ephemeral: u64,
    /// Swap in MB; Nova answers `""` for none before microversion 2.75.
    #[serde(default, deserialize_with = "swap_mb")]
    pub swap: u64,
    #[serde(rename = "os-flavor-access:is_public", default = "yes")]
    pub is_public: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

fn swap_mb<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().ok_or_else(|| serde::de::Error::custom("swap is not a whole number of MB")),
        Value::String(s) if s.is_empty() => Ok(0),
        Value::String(s) => s.parse().map_err(|_| serde::de::Error::custom(format!("swap `{s}` is not a number"))),
        Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!("swap is {other}, not a number"))),
    }
}

/// The body of `POST /flavors`.
#[derive(Debug, Clone, Serialize)]
pub struct NewFlavor {
    pub name: String,
    pub ram: u64,
    pub vcpus: u32,
    pub disk: u64,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral")]
    pub ephemeral: u64,
    /// Swap in MB.
    pub swap: u64,
    #[serde(rename = "os-flavor-access:is_public")]
    pub is_public: bool,
    /// `None` lets Nova pick a UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A server's fault, when it is in ERROR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
}

/// A server (`/servers/{id}`), with the fields the workflow reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Missing for a server in a down cell (2.69+): then `UNKNOWN`, as Nova itself reports it.
    #[serde(default = "unknown")]
    pub status: String,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:power_state", default)]
    pub power_state: Option<u8>,
    #[serde(default)]
    pub fault: Option<Fault>,
    /// `""` when booted from a volume, else `{"id": ..., "links": ...}`.
    #[serde(default)]
    pub image: Value,
    /// `{"id"}` before 2.47, the embedded flavor (`original_name`, `ram`, ...) from 2.47.
    #[serde(default)]
    pub flavor: Value,
    /// Admin-only fields; absent for other users.
    #[serde(rename = "OS-EXT-SRV-ATTR:host", default)]
    pub host: Option<String>,
    #[serde(rename = "OS-EXT-SRV-ATTR:instance_name", default)]
    pub instance_name: Option<String>,
    #[serde(rename = "OS-EXT-SRV-ATTR:hypervisor_hostname", default)]
    pub hypervisor_hostname: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

fn unknown() -> String {
    "UNKNOWN".to_string()
}

impl Server {
    /// The id of the image it booted from, if any.
    pub fn image_id(&self) -> Option<&str> {
        self.image.get("id").and_then(Value::as_str)
    }
}

/// What to boot.
#[derive(Debug, Clone, Default)]
pub struct NewServer {
    pub name: String,
    pub image_ref: String,
    pub flavor_ref: String,
    pub metadata: BTreeMap<String, String>,
    /// Ask for no network at all (`networks: "none"`, sent only where the microversion has it).
    pub no_network: bool,
}

/// The answer to a create: the id (and an admin password, if Nova generated one; never logged).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedServer {
    pub id: String,
}

/// A reboot's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootKind {
    Soft,
    Hard,
}

/// A console URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConsole {
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(rename = "type")]
    pub console_type: String,
    pub url: String,
}

/// One entry of `os-instance-actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceAction {
    pub action: String,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The compute service of one cloud, at the negotiated microversion.
#[derive(Clone)]
pub struct Nova {
    session: Arc<Session>,
    base: String,
    microversion: Option<Microversion>,
    cloud_range: Option<(Microversion, Microversion)>,
}

impl Nova {
    /// Reads the endpoint's version document and picks the microversion: min(cloud max, [`MAX_MICROVERSION`]).
    pub async fn discover(session: Arc<Session>, catalog_url: &str) -> Result<Nova, CloudError> {
        let catalog_url = catalog_url.trim_end_matches('/').to_string();
        let (doc_url, base) = match compute_version_url(&catalog_url) {
            Some(version_url) => (format!("{version_url}/"), catalog_url.clone()),
            None => (format!("{catalog_url}/"), format!("{catalog_url}/v2.1")),
        };
        let document: VersionDocument =
            session.send(&Request::new("compute", Method::GET, &doc_url)).await?.json().await?;
        let entry =
            document.usable(2).into_iter().find(|e| e.id == "v2.1").cloned().ok_or_else(|| CloudError::Discovery {
                service: "compute".into(),
                message: format!("{doc_url} does not offer the v2.1 API"),
            })?;
        let cloud_range = compute_range(&entry)?;
        let microversion = negotiate(cloud_range, (MIN_MICROVERSION, MAX_MICROVERSION))?;
        tracing::debug!(%base, ?cloud_range, ?microversion, "compute endpoint");
        Ok(Nova { session, base, microversion, cloud_range })
    }

    /// The microversion sent with every call (`None` for a cloud without microversions).
    pub fn microversion(&self) -> Option<Microversion> {
        self.microversion
    }

    /// The cloud's (min, max) microversions.
    pub fn cloud_range(&self) -> Option<(Microversion, Microversion)> {
        self.cloud_range
    }

    /// Whether the negotiated microversion is at least `version`.
    pub fn supports(&self, version: Microversion) -> bool {
        self.microversion.is_some_and(|m| m >= version)
    }

    fn request(&self, method: Method, path: &str) -> Request {
        let mut request = Request::new("compute", method, format!("{}{path}", self.base));
        if let Some(version) = self.microversion {
            request = request
                .header(HeaderName::from_static("openstack-api-version"), &format!("compute {version}"))
                // Clouds older than 2.27 read only the legacy header.
                .header(HeaderName::from_static("x-openstack-nova-api-version"), &version.to_string());
        }
        request
    }

    async fn send(&self, request: Request) -> Result<Response, CloudError> {
        self.session.send(&request).await
    }

    async fn action(&self, server_id: &str, body: Value) -> Result<Response, CloudError> {
        self.send(self.request(Method::POST, &format!("/servers/{server_id}/action")).body(Body::json(&body))).await
    }

    /// All flavors with details, following `flavors_links` pagination.
    pub async fn list_flavors(&self) -> Result<Vec<Flavor>, CloudError> {
        #[derive(Deserialize)]
        struct Page {
            flavors: Vec<Flavor>,
            #[serde(default)]
            flavors_links: Vec<Link>,
        }
        let mut flavors = Vec::new();
        let mut next = Some(format!("{}/flavors/detail", self.base));
        while let Some(url) = next.take() {
            let mut request = self.request(Method::GET, "");
            request.url = url;
            let page: Page = self.send(request).await?.json().await?;
            let empty = page.flavors.is_empty();
            flavors.extend(page.flavors);
            next = page.flavors_links.into_iter().find(|l| l.rel == "next").map(|l| l.href).filter(|_| !empty);
        }
        Ok(flavors)
    }

    pub async fn create_flavor(&self, flavor: &NewFlavor) -> Result<Flavor, CloudError> {
        #[derive(Deserialize)]
        struct CreatedFlavorBody {
            flavor: Flavor,
        }
        let body = json!({ "flavor": flavor });
        let created: CreatedFlavorBody =
            self.send(self.request(Method::POST, "/flavors").body(Body::json(&body))).await?.json().await?;
        Ok(created.flavor)
    }

    pub async fn delete_flavor(&self, id: &str) -> Result<(), CloudError> {
        self.send(self.request(Method::DELETE, &format!("/flavors/{id}"))).await.map(drop)
    }

    /// The `POST /servers` body for `server` at this microversion.
    pub fn server_body(&self, server: &NewServer) -> Value {
        let mut body = json!({
            "name": server.name,
            "imageRef": server.image_ref,
            "flavorRef": server.flavor_ref,
        });
        if !server.metadata.is_empty() {
            body["metadata"] = json!(server.metadata);
        }
        if server.no_network && self.supports(NETWORKS_NONE_FROM) {
            body["networks"] = json!("none");
        }
        json!({ "server": body })
    }

    pub async fn create_server(&self, server: &NewServer) -> Result<CreatedServer, CloudError> {
        #[derive(Deserialize)]
        struct CreatedServerBody {
            server: CreatedServer,
        }
        let request = self.request(Method::POST, "/servers").body(Body::json(&self.server_body(server)));
        let created: CreatedServerBody = self.send(request).await?.json().await?;
        Ok(created.server)
    }

    pub async fn get_server(&self, id: &str) -> Result<Server, CloudError> {
        #[derive(Deserialize)]
        struct One {
            server: Server,
        }
        let one: One = self.send(self.request(Method::GET, &format!("/servers/{id}"))).await?.json().await?;
        Ok(one.server)
    }

    /// Servers whose name is exactly `name` (Nova's `name` filter is a regular expression, so it is anchored and
    /// escaped, and the result checked again here).
    pub async fn list_servers_by_name(&self, name: &str) -> Result<Vec<Server>, CloudError> {
        #[derive(Deserialize)]
        struct Many {
            servers: Vec<Server>,
        }
        let mut url = reqwest::Url::parse(&format!("{}/servers/detail", self.base)).map_err(|e| {
            CloudError::Discovery { service: "compute".into(), message: format!("bad endpoint URL {}: {e}", self.base) }
        })?;
        url.query_pairs_mut().append_pair("name", &format!("^{}$", regex::escape(name)));
        let mut request = self.request(Method::GET, "");
        request.url = url.to_string();
        let many: Many = self.send(request).await?.json().await?;
        Ok(many.servers.into_iter().filter(|s| s.name == name).collect())
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        self.send(self.request(Method::DELETE, &format!("/servers/{id}"))).await.map(drop)
    }

    /// Polls until the server is gone (404), or `timeout` passes.
    pub async fn wait_server_deleted(&self, id: &str, timeout: Duration, poll: Duration) -> Result<(), CloudError> {
        let started = Instant::now();
        loop {
            match self.get_server(id).await {
                Err(CloudError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
                Ok(server) if server.status == "DELETED" => return Ok(()),
                Ok(_) if started.elapsed() >= timeout => {
                    return Err(CloudError::WaitTimeout {
                        what: format!("server {id} to be deleted"),
                        waited: timeout,
                    });
                }
                Ok(_) => tokio::time::sleep(poll).await,
            }
        }
    }

    pub async fn stop_server(&self, id: &str) -> Result<(), CloudError> {
        self.action(id, json!({ "os-stop": null })).await.map(drop)
    }

    pub async fn start_server(&self, id: &str) -> Result<(), CloudError> {
        self.action(id, json!({ "os-start": null })).await.map(drop)
    }

    pub async fn reboot_server(&self, id: &str, kind: RebootKind) -> Result<(), CloudError> {
        let kind = match kind {
            RebootKind::Soft => "SOFT",
            RebootKind::Hard => "HARD",
        };
        self.action(id, json!({ "reboot": { "type": kind } })).await.map(drop)
    }

    /// `createImage`: snapshots the server; returns the new image's id.
    pub async fn create_image(
        &self,
        server_id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, CloudError> {
        let response = self.action(server_id, json!({ "createImage": { "name": name, "metadata": metadata } })).await?;
        let location = response.header("location").map(String::from);
        let (method, url, request_id) = (response.method.clone(), response.url.clone(), response.request_id.clone());
        if self.supports(CREATE_IMAGE_BODY_FROM) {
            #[derive(Deserialize)]
            struct ImageId {
                image_id: String,
            }
            let body: ImageId = response.json().await?;
            return Ok(body.image_id);
        }
        location
            .as_deref()
            .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(String::from)
            .ok_or(CloudError::Decode {
                method,
                url,
                request_id,
                path: "Location".into(),
                message: "createImage answered without a Location header naming the image".into(),
            })
    }

    /// The console log (`os-getConsoleOutput`), the last `lines` lines or all of it.
    pub async fn console_output(&self, id: &str, lines: Option<u32>) -> Result<String, CloudError> {
        #[derive(Deserialize)]
        struct Output {
            output: String,
        }
        let body = match lines {
            Some(n) => json!({ "os-getConsoleOutput": { "length": n } }),
            None => json!({ "os-getConsoleOutput": {} }),
        };
        let output: Output = self.action(id, body).await?.json().await?;
        Ok(output.output)
    }

    /// A noVNC console URL: `remote-consoles` from 2.6, `os-getVNCConsole` before.
    pub async fn vnc_console(&self, id: &str) -> Result<RemoteConsole, CloudError> {
        if self.supports(REMOTE_CONSOLES_FROM) {
            #[derive(Deserialize)]
            struct RemoteConsoleBody {
                remote_console: RemoteConsole,
            }
            let body = json!({ "remote_console": { "protocol": "vnc", "type": "novnc" } });
            let request = self.request(Method::POST, &format!("/servers/{id}/remote-consoles")).body(Body::json(&body));
            let answer: RemoteConsoleBody = self.send(request).await?.json().await?;
            return Ok(answer.remote_console);
        }
        #[derive(Deserialize)]
        struct VncConsoleBody {
            console: RemoteConsole,
        }
        let answer: VncConsoleBody =
            self.action(id, json!({ "os-getVNCConsole": { "type": "novnc" } })).await?.json().await?;
        Ok(RemoteConsole { protocol: Some("vnc".into()), ..answer.console })
    }

    pub async fn instance_actions(&self, id: &str) -> Result<Vec<InstanceAction>, CloudError> {
        #[derive(Deserialize)]
        struct Actions {
            #[serde(rename = "instanceActions")]
            instance_actions: Vec<InstanceAction>,
        }
        let actions: Actions =
            self.send(self.request(Method::GET, &format!("/servers/{id}/os-instance-actions"))).await?.json().await?;
        Ok(actions.instance_actions)
    }
}

#[derive(Deserialize)]
struct Link {
    rel: String,
    href: String,
}
