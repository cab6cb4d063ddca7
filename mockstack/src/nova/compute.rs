//! The compute glue: everything Nova's API and compute manager ask of the image service (Glance) and of the compute host (the simulated libvirt driver), behind one small boundary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::bdm::Bdm;
use super::flavors::Flavor;
use crate::state::AppState;

/// What Nova reads from an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    pub name: String,
    pub status: String,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<u64>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub properties: BTreeMap<String, String>,
}

/// The image `id` as the caller's project sees it.
pub fn image(_state: &AppState, _id: &str, _project_id: &str) -> Option<ImageInfo> {
    None
}

/// An image by name or id, as an operator option naming it would be resolved.
pub fn find_image(_state: &AppState, _name_or_id: &str, _project_id: &str) -> Option<ImageInfo> {
    None
}

/// The image record a snapshot starts as (`compute_utils.create_image`).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotImage {
    pub name: String,
    pub owner: String,
    pub visibility: String,
    pub min_disk: u64,
    pub min_ram: u64,
    pub properties: BTreeMap<String, String>,
}

/// Creates the queued snapshot image; returns its id.
pub fn create_snapshot_image(_state: &AppState, _image: &SnapshotImage) -> Result<String, String> {
    Err("the image service is not available".into())
}

/// The upload began: Glance shows the image `saving`.
pub fn snapshot_saving(_state: &AppState, _image_id: &str) {}

/// Uploads the snapshot's data and the driver's metadata; Glance makes it `active`.
pub fn upload_snapshot(
    _state: &AppState,
    _image_id: &str,
    _data: &std::path::Path,
    _disk_format: &str,
    _properties: &BTreeMap<String, String>,
) -> Result<(), String> {
    Err("the image service is not available".into())
}

/// Removes a snapshot image whose instance went away before the upload.
pub fn delete_image(_state: &AppState, _image_id: &str) {}

/// What the compute host needs to define and start an instance.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub instance_uuid: String,
    pub instance_name: String,
    pub flavor: Flavor,
    pub image: Option<ImageInfo>,
    pub bdms: Vec<Bdm>,
    pub config_drive: bool,
    pub project_id: String,
}

/// The compute host's side of a built instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub domain_xml: String,
    pub root_device_name: String,
    pub instance_dir: PathBuf,
}

/// What the guest does after it is powered on: console lines at offsets from power-on, and
/// whether it powers itself off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestRun {
    pub lines: Vec<(Duration, String)>,
    pub powers_off_after: Option<Duration>,
}

/// Why an instance could not be built; becomes the server's `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildFailure {
    /// The scheduler found no host: "No valid host was found. ..."
    NoValidHost(String),
    /// The driver failed to spawn (the message is Nova's `BuildAbortException` or driver error).
    Driver(String),
}

/// Defines and starts the instance on the simulated compute host.
pub fn build(_state: &AppState, spec: &BuildSpec) -> Result<(Instance, GuestRun), BuildFailure> {
    Err(BuildFailure::NoValidHost(format!(
        "No valid host was found. The simulated compute host is not available for instance {}.",
        spec.instance_uuid
    )))
}

/// Powers the instance on again (start, reboot): the guest boots from its disks.
pub fn power_on(_state: &AppState, _instance: &Instance) -> GuestRun {
    GuestRun::default()
}

/// The qcow2 file holding a copy of the domain's first disk (`find_disk` + `qemu-img convert`).
pub fn snapshot_root(_state: &AppState, _instance: &Instance) -> Result<PathBuf, String> {
    Err("the simulated compute host is not available".into())
}

/// Undefines the domain and removes the instance directory.
pub fn destroy(_state: &AppState, instance: &Instance) {
    let _ = std::fs::remove_dir_all(&instance.instance_dir);
}
