//! The workflow engine: the article's seven steps as data, run against any [`Driver`].
//!
//! The engine decides ([`decide`]: pure functions of what the cloud said), the [`Driver`]
//! implementation does the IO (HTTP to a real cloud or to mockstack), and the [`ledger`]
//! remembers every resource before it is created so that cleanup never misses one.

pub mod decide;
pub mod ledger;
mod run;
mod run_id;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use run::{
    BuildOptions, BuildReport, MediaFiles, StepListener, StepReport, StepStatus, cleanup_live,
    delete_live as run_delete_live, run_build,
};
pub use run_id::RunId;

/// A Glance image as the engine needs to see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub id: String,
    pub name: String,
    pub status: String,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub visibility: String,
    pub owner: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    /// Every other key of the image, as strings (Glance's additional properties).
    pub properties: BTreeMap<String, String>,
}

/// A Nova server as the engine needs to see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    pub id: String,
    pub name: String,
    pub status: String,
    pub task_state: Option<String>,
    pub vm_state: Option<String>,
    pub power_state: Option<i64>,
    /// The `fault.message` of a server in ERROR.
    pub fault: Option<String>,
    /// `OS-EXT-SRV-ATTR:host` and `:instance_name` (admin only; None otherwise).
    pub host: Option<String>,
    pub instance_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlavorInfo {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u32,
    pub disk_gb: u32,
    pub ephemeral_gb: u32,
    pub swap_mb: u32,
}

/// A new image's metadata (before upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    pub visibility: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub name: String,
    pub image_id: String,
    pub flavor_id: String,
}

/// One change step 7 makes to the snapshot's metadata (a JSON-patch operation underneath).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ImageChange {
    /// Sets a property, adding it or replacing its value.
    Set(String, String),
    /// Sets min_disk or min_ram (integers in Glance).
    SetNumber(String, u64),
    Remove(String),
}

pub use guestsim::DriverMedia;

/// Local digests of data streamed to or from Glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Digests {
    pub size: u64,
    pub md5: String,
    pub sha512: String,
}

/// What went wrong talking to the cloud, with the service's message and request id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CloudError {
    pub kind: CloudErrorKind,
    /// The whole message, naming the call, the status, the service's explanation and the request id.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CloudErrorKind {
    NotFound,
    Conflict,
    BadRequest,
    Forbidden,
    Unauthorized,
    OverLimit,
    Other,
}

impl CloudError {
    pub fn other(message: impl Into<String>) -> CloudError {
        CloudError { kind: CloudErrorKind::Other, message: message.into() }
    }

    /// Errors where the cloud refused the request itself (the `rejected` outcome).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.kind,
            CloudErrorKind::BadRequest
                | CloudErrorKind::Forbidden
                | CloudErrorKind::Conflict
                | CloudErrorKind::OverLimit
        )
    }
}

/// The IO the engine needs. Implemented over HTTP for a real cloud or mockstack
/// ([`crate::driver`]); tests implement it in memory.
#[allow(async_fn_in_trait)]
pub trait Driver {
    /// Names the cloud in the ledger and reports (its name and auth URL; no secrets).
    fn describe(&self) -> String;
    /// Time as the cloud sees it: real time, or mockstack's virtual clock.
    fn elapsed(&self) -> Duration;
    /// Waits; on an embedded mockstack with a manual clock this advances virtual time.
    async fn sleep(&self, d: Duration);
    /// Whether what this run creates in the cloud can outlive this process (false for an embedded mockstack, which
    /// goes with it): only then are ledger entries worth syncing to disk.
    fn resources_outlive_process(&self) -> bool {
        true
    }
    /// The driver media this cloud's compute host attaches to an ISO boot, when the harness knows its configuration
    /// (an embedded mockstack); None for a real cloud, whose hosts it cannot see.
    fn attached_driver_media(&self) -> Option<DriverMedia> {
        None
    }
    /// Writes a ledger entry about a resource of this cloud ([`ledger::Ledger::record_ephemeral`] when it cannot
    /// outlive this process).
    fn record(&self, ledger: &ledger::Ledger, entry: &ledger::Entry) -> Result<(), ledger::LedgerError> {
        if self.resources_outlive_process() { ledger.record(entry) } else { ledger.record_ephemeral(entry) }
    }

    async fn images_named(&self, name: &str) -> Result<Vec<ImageInfo>, CloudError>;
    /// None when the image does not exist (404).
    async fn image(&self, id: &str) -> Result<Option<ImageInfo>, CloudError>;
    async fn create_image(&self, image: &NewImage) -> Result<ImageInfo, CloudError>;
    async fn upload_image(&self, id: &str, file: &Path) -> Result<Digests, CloudError>;
    /// Uploads a file whose md5 the caller knows (it wrote the file): a driver may send it without hashing it again,
    /// returning the size sent with that md5, which the caller compares with what Glance stored.
    async fn upload_image_known(&self, id: &str, file: &Path, md5: &str) -> Result<Digests, CloudError> {
        let _ = md5;
        self.upload_image(id, file).await
    }
    async fn download_image(&self, id: &str, to: &Path) -> Result<Digests, CloudError>;
    async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<ImageInfo, CloudError>;
    /// Deleting what is already gone succeeds.
    async fn delete_image(&self, id: &str) -> Result<(), CloudError>;

    async fn flavors(&self) -> Result<Vec<FlavorInfo>, CloudError>;
    async fn create_flavor(&self, flavor: &FlavorInfo) -> Result<FlavorInfo, CloudError>;
    async fn delete_flavor(&self, id: &str) -> Result<(), CloudError>;

    async fn create_server(&self, server: &NewServer) -> Result<String, CloudError>;
    async fn server(&self, id: &str) -> Result<Option<ServerInfo>, CloudError>;
    async fn servers_named(&self, name: &str) -> Result<Vec<ServerInfo>, CloudError>;
    async fn console_log(&self, id: &str) -> Result<String, CloudError>;
    async fn console_url(&self, id: &str) -> Result<Option<String>, CloudError>;
    /// `createImage`; returns the new image's id.
    async fn snapshot(&self, server_id: &str, name: &str) -> Result<String, CloudError>;
    /// Starts the delete; deleting what is already gone succeeds.
    async fn delete_server(&self, id: &str) -> Result<(), CloudError>;
    /// The libvirt domain XML of a server, where a source is configured.
    async fn domain_xml(&self, server: &ServerInfo) -> Result<Option<String>, CloudError>;
}
