//! The workflow engine: the article's seven steps as data, run against any [`Driver`].
//!
//! The engine decides ([`decide`]: pure functions of what the cloud said), the [`Driver`]
//! implementation does the IO (HTTP to a real cloud or to mockstack, and the local files a build
//! uploads or downloads), [`validate`] judges an image from what the driver fetched, and the
//! [`ledger`] remembers every resource before it is created so that cleanup never misses one.

pub mod decide;
pub mod ledger;
mod run;
mod run_id;
pub mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cloud::CloudError;
use crate::cloud::transfer::TransferDigest;
use crate::inspect::{InspectError, Inspection};

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

/// Who stopped a build or a validation that came to no conclusion; it decides the command's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum StoppedBy {
    /// The cloud failed: it did not answer, answered with a server error after retries, or did not finish
    /// what it had accepted (a server or snapshot that never became ready, a resource that vanished).
    Cloud,
    /// The run could not go on with what it was given: the scenario names an image or flavor the cloud does not
    /// have, a media file is unreadable, the cloud configuration or the ledger is unusable.
    Input,
}

impl StoppedBy {
    /// Who a cloud client error blames: a configuration that names no usable cloud, or a local file the client
    /// could not read, is the input; everything else is the cloud.
    pub fn of(error: &CloudError) -> StoppedBy {
        match error {
            CloudError::Config(_) | CloudError::Io { .. } => StoppedBy::Input,
            _ => StoppedBy::Cloud,
        }
    }
}

/// A new image's metadata (before upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    pub visibility: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRequest {
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

/// The layout a run's expectations use, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LayoutUsed {
    pub layout: guestsim::Layout,
    #[serde(flatten)]
    pub source: LayoutSource,
}

/// Where a run's layout came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum LayoutSource {
    /// `--layout NAME` on a real cloud: the user says what its compute hosts implement.
    Given,
    /// The layout the embedded mockstack was started with.
    Embedded,
    /// Recognised from this install server's domain XML (`--layout auto`).
    Recognised { server: String },
}

impl std::fmt::Display for LayoutUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            LayoutSource::Given => write!(f, "{} (given with --layout)", self.layout),
            LayoutSource::Embedded => write!(f, "{} (the embedded mockstack's)", self.layout),
            LayoutSource::Recognised { server } => {
                write!(f, "{} (recognised from {server}'s domain XML)", self.layout)
            }
        }
    }
}

/// What a build knows of the layout the compute host implements before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LayoutPlan {
    /// Not known and not looked for: a real cloud without `--layout` or a domain XML source.
    #[default]
    Unknown,
    /// Known before the run.
    Known(LayoutUsed),
    /// To be recognised from the install server's domain XML as soon as the server has a domain; a domain that is
    /// none of the built-in layouts stops the build (bad input) with check-xml's findings as its evidence.
    Recognise,
}

/// The step that recognises the layout (`--layout auto`); when it fails, the run's layout is unrecognised.
pub const LAYOUT_STEP: &str = "layout";

/// An image downloaded into a scratch file and read there (the file is gone once this exists).
#[derive(Debug)]
pub struct InspectedDownload {
    /// What came over the wire.
    pub digest: TransferDigest,
    /// What the data holds, or why it could not be read.
    pub inspection: Result<Inspection, InspectError>,
}

/// Why an image could not be downloaded for inspection.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No scratch file could be made for the data.
    #[error("no scratch file: {0}")]
    Scratch(std::io::Error),
    #[error("download failed: {0}")]
    Transfer(CloudError),
}

/// The IO the engine needs: the cloud's API, its clock, and the local files a build uploads or
/// downloads. Implemented over HTTP for a real cloud or mockstack ([`crate::driver`]); tests wrap it.
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
    async fn create_image(&self, image: &ImageRequest) -> Result<ImageInfo, CloudError>;
    async fn upload_image(&self, id: &str, file: &Path) -> Result<TransferDigest, CloudError>;
    /// Uploads a file whose md5 the caller knows (it wrote the file): a driver may send it without hashing it again,
    /// returning the size sent with that md5, which the caller compares with what Glance stored.
    async fn upload_image_known(&self, id: &str, file: &Path, md5: &str) -> Result<TransferDigest, CloudError> {
        let _ = md5;
        self.upload_image(id, file).await
    }
    /// Downloads an image into a scratch file under `scratch_dir` and reads what the data holds.
    async fn download_and_inspect(&self, id: &str, scratch_dir: &Path) -> Result<InspectedDownload, DownloadError>;
    /// Whether a local file the build would upload can be read (asked before anything is created for it).
    async fn check_readable(&self, file: &Path) -> std::io::Result<()>;
    /// The hex md5 of a local file (asked only when an image of the same name could hold the same data).
    async fn md5_of_file(&self, file: &Path) -> std::io::Result<String>;
    async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<ImageInfo, CloudError>;
    /// Deleting what is already gone succeeds.
    async fn delete_image(&self, id: &str) -> Result<(), CloudError>;

    async fn flavors(&self) -> Result<Vec<FlavorInfo>, CloudError>;
    async fn create_flavor(&self, flavor: &FlavorInfo) -> Result<FlavorInfo, CloudError>;
    async fn delete_flavor(&self, id: &str) -> Result<(), CloudError>;

    async fn create_server(&self, server: &ServerRequest) -> Result<String, CloudError>;
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

#[cfg(test)]
mod tests {
    /// The engine's own files reach no file, process or network API: the cloud and the local files a build touches
    /// go through [`super::Driver`] (the ledger, its record of resources, is written through `Driver::record`).
    #[test]
    fn the_engine_performs_no_io_itself() {
        let engine = [
            ("run.rs", include_str!("run.rs")),
            ("decide.rs", include_str!("decide.rs")),
            ("validate.rs", include_str!("validate.rs")),
            ("mod.rs", include_str!("mod.rs").split("#[cfg(test)]").next().unwrap_or_default()),
        ];
        let io =
            ["std::fs", "File::", "tokio::fs", "reqwest", "tempfile", "std::process", "tokio::process", "std::net"];
        for (file, text) in engine {
            for api in io {
                assert!(!text.contains(api), "workflow/{file} uses {api}: do it in the Driver");
            }
        }
    }
}
