//! The compute glue: everything Nova's API and compute manager ask of the image service (Glance) and of the compute host (the simulated libvirt driver), behind one small boundary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::bdm::Bdm;
use super::flavors::Flavor;
use crate::glance::{Image, ImageStatus, Viewer};
use crate::state::AppState;
use guestsim::hypervisor::{
    self, BlockInfoError, FlavorDisks, GuestRun, ImageMeta, InstanceSources, MappingRequest, SourceImage, VirtType,
};

/// Nova acts on Glance with the caller's token; an admin sees every image.
fn viewer(project_id: &str, admin: bool) -> Viewer {
    Viewer { project_id: project_id.to_string(), admin, writer: true }
}

/// The image `id` as the caller sees it (`image_api.get`), whatever its status.
pub fn image(state: &AppState, id: &str, project_id: &str, admin: bool) -> Option<Image> {
    state.glance().show(&viewer(project_id, admin), id).ok()
}

/// An active image by name or id, as an operator option naming it is resolved on the compute host.
pub fn find_image(state: &AppState, name_or_id: &str, project_id: &str) -> Option<Image> {
    state.glance().find_visible(name_or_id, project_id)
}

/// The image record a snapshot starts as (`compute_utils.create_image`).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotImage {
    pub name: String,
    /// The project creating the snapshot (the caller's).
    pub owner: String,
    pub visibility: String,
    /// The instance's project, made a member when the snapshot is shared with it.
    pub member: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub properties: BTreeMap<String, String>,
}

/// Creates the queued snapshot image; returns its id.
pub fn create_snapshot_image(state: &AppState, image: &SnapshotImage) -> Result<String, String> {
    let mut fields = Map::new();
    for (k, v) in &image.properties {
        fields.insert(k.clone(), json!(v));
    }
    fields.insert("name".into(), json!(image.name));
    fields.insert("visibility".into(), json!(image.visibility));
    fields.insert("min_disk".into(), json!(image.min_disk));
    fields.insert("min_ram".into(), json!(image.min_ram));
    let created = state.glance().create_image(&image.owner, fields).map_err(|e| e.to_string())?;
    if let Some(member) = &image.member
        && let Err(e) = state.glance().add_member(&Viewer::member_of(&image.owner), &created.id, member)
    {
        let _ = state.glance().delete_image(&created.id);
        return Err(e.to_string());
    }
    Ok(created.id)
}

/// The driver starts the upload: the image gets the metadata the libvirt driver sends with the
/// data (`_create_snapshot_metadata`) and Glance shows it `saving`.
pub fn begin_snapshot_upload(
    state: &AppState,
    image_id: &str,
    disk_format: &str,
    properties: &BTreeMap<String, String>,
) -> Result<(), String> {
    let glance = state.glance();
    let admin = Viewer::cloud_admin();
    let current = glance.image(image_id).ok_or_else(|| format!("Image {image_id} could not be found."))?;
    let op = |present: bool| if present { "replace" } else { "add" };
    let mut ops = vec![
        json!({"op": op(current.disk_format.is_some()), "path": "/disk_format", "value": disk_format}),
        json!({"op": op(current.container_format.is_some()), "path": "/container_format", "value": "bare"}),
    ];
    for (k, v) in properties {
        ops.push(json!({"op": op(current.properties.contains_key(k)), "path": format!("/{k}"), "value": v}));
    }
    let changes = crate::glance::patch::parse(&Value::Array(ops), crate::glance::patch::Dialect::Draft10)
        .map_err(|e| e.to_string())?;
    glance.update(&admin, image_id, &changes).map_err(|e| e.to_string())?;
    glance.set_status(image_id, ImageStatus::Saving).map_err(|e| e.to_string())
}

/// The data arrives: Glance checks and hashes it and makes the image `active`.
pub fn upload_snapshot(state: &AppState, image_id: &str, data: &std::path::Path) -> Result<(), String> {
    let glance = state.glance();
    // Glance's own import starts from queued; the image showed `saving` while the driver copied.
    if glance.image(image_id).is_some_and(|i| i.status == ImageStatus::Saving) {
        glance.set_status(image_id, ImageStatus::Queued).map_err(|e| e.to_string())?;
    }
    glance.upload_from_file(image_id, data).map_err(|e| e.to_string())?;
    Ok(())
}

/// Removes a snapshot image whose upload failed or whose instance went away.
pub fn delete_image(state: &AppState, image_id: &str) {
    let _ = state.glance().delete_image(image_id);
}

/// What the compute host needs to define and start an instance.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub instance_uuid: String,
    pub db_id: u64,
    pub display_name: String,
    pub created_at: Timestamp,
    pub flavor: Flavor,
    pub image: Option<Image>,
    pub bdms: Vec<Bdm>,
    pub config_drive: bool,
    pub user_id: String,
    pub user_name: String,
    pub project_id: String,
    pub project_name: String,
}

/// What the compute host defined for a server: the libvirt domain (its XML and root device) and
/// the host's instance (directory, disk files).
#[derive(Debug, Clone)]
pub struct DefinedDomain {
    pub domain_xml: String,
    pub root_device_name: String,
    pub host: hypervisor::Instance,
}

/// Why an instance could not be built; becomes the server's `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildFailure {
    /// Nova's `BuildAbortException` (an `Invalid` error of the driver, block devices that
    /// cannot be prepared): no retry, the reason is in the fault message.
    Aborted(String),
    /// Any other spawn error: Nova reschedules, and with no other host the conductor gives
    /// up with `MaxRetriesExceeded`; the driver's error is only in the fault details.
    Rescheduled(String),
}

impl BuildFailure {
    /// The fault message and details Nova records for instance `uuid`.
    pub fn fault(&self, uuid: &str) -> (String, String) {
        match self {
            BuildFailure::Aborted(reason) => (format!("Build of instance {uuid} aborted: {reason}"), reason.clone()),
            BuildFailure::Rescheduled(error) => (
                format!(
                    "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures \
                     for instance {uuid}."
                ),
                error.clone(),
            ),
        }
    }
}

/// The flavor disks the instance gets: the flavor's, or the sizes its block devices ask for.
fn flavor_disks(spec: &BuildSpec) -> FlavorDisks {
    let ephemeral_gb: u64 =
        spec.bdms.iter().filter(|b| b.is_ephemeral()).map(|b| b.volume_size.unwrap_or(spec.flavor.ephemeral_gb)).sum();
    let swap_mb = spec.bdms.iter().find(|b| b.is_swap()).and_then(|b| b.volume_size).unwrap_or(0);
    FlavorDisks { root_gb: spec.flavor.root_gb, ephemeral_gb, swap_mb }
}

/// Driver-media options changed at run time (`PUT /mockstack/compute/options`); `Some(None)` unsets one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaOverrides {
    pub virtio_win_image: Option<Option<String>>,
    pub driver_floppy_image: Option<Option<String>>,
}

/// The Glance image (name or id) a patched host attaches as the VirtIO-driver CD-ROM, like a
/// `[libvirt] virtio_win_image` option of a patched Nova.
pub fn virtio_win_image(state: &AppState) -> Option<String> {
    let overrides = state.nova().media_overrides();
    overrides.virtio_win_image.clone().unwrap_or_else(|| state.config().virtio_win_image.clone())
}

/// The Glance image (name or id) the `patched-floppy` host attaches as the driver floppy.
pub fn driver_floppy_image(state: &AppState) -> Option<String> {
    let overrides = state.nova().media_overrides();
    overrides.driver_floppy_image.clone().unwrap_or_else(|| state.config().driver_floppy_image.clone())
}

/// The operator options naming a patched host's extra media, resolved among the images the
/// instance's project can see (the article's prerequisite: a VirtIO ISO every user can see). An option the layout
/// uses that names no such image fails the build, as the patched Nova does: never a silent boot without drivers.
/// An unset option (`None`) attaches nothing, and only an ISO boot (`iso`) looks for driver media.
fn extra_media(state: &AppState, spec: &BuildSpec, iso: bool) -> Result<(Option<Image>, Option<Image>), BuildFailure> {
    let attached = state.config().layout.driver_media();
    if !iso {
        return Ok((None, None));
    }
    let find = |attaches: bool, option: &str, name: Option<String>| match name {
        Some(name) if attaches => find_image(state, &name, &spec.project_id)
            .map(Some)
            .ok_or_else(|| BuildFailure::Aborted(missing_media_message(&name, option))),
        _ => Ok(None),
    };
    let virtio = find(attached.virtio_iso, "virtio_win_image", virtio_win_image(state))?;
    let floppy = find(attached.driver_floppy, "driver_floppy_image", driver_floppy_image(state))?;
    Ok((virtio, floppy))
}

/// The patched Nova's fault when `[libvirt] <option>` names an image the instance's project cannot find.
pub fn missing_media_message(name: &str, option: &str) -> String {
    format!("Image {name} named by [libvirt] {option} was not found.")
}

/// The Glance data file behind an image the compute host attaches.
fn image_file(state: &AppState, image: &Image) -> Result<SourceImage, BuildFailure> {
    let path = state
        .glance()
        .data_path(&image.id)
        .ok_or_else(|| BuildFailure::Aborted(format!("Image {} is not active.", image.id)))?;
    Ok(SourceImage { path, disk_format: image.disk_format.clone().unwrap_or_else(|| "raw".into()) })
}

/// Defines the instance on the simulated compute host: disk mapping, domain XML, disk files.
pub fn build(state: &AppState, spec: &BuildSpec) -> Result<DefinedDomain, BuildFailure> {
    if spec.bdms.iter().any(|b| b.destination_type.as_deref() == Some("volume")) {
        // There is no block storage service: preparing a volume fails as it would without Cinder.
        return Err(BuildFailure::Aborted("Failure prepping block device.".into()));
    }
    let Some(image) = &spec.image else {
        return Err(BuildFailure::Aborted("Failure prepping block device.".into()));
    };
    let meta = ImageMeta {
        disk_format: image.disk_format.clone().unwrap_or_else(|| "raw".into()),
        properties: image.properties.clone(),
    };
    let (virtio, floppy) = extra_media(state, spec, meta.is_iso())?;
    let request = MappingRequest {
        layout: state.config().layout,
        virt_type: VirtType::Kvm,
        image: &meta,
        flavor: flavor_disks(spec),
        config_drive: spec.config_drive || image.properties.get("img_config_drive").is_some_and(|v| v == "mandatory"),
        virtio_iso_found: virtio.is_some(),
        driver_floppy_found: floppy.is_some(),
    };
    let mapping = hypervisor::disk_mapping(&request).map_err(|e| match e {
        // libvirt refusing the domain is a generic spawn error: Nova reschedules it.
        BlockInfoError::LibvirtUnsupported(_) => BuildFailure::Rescheduled(e.nova_fault()),
        _ => BuildFailure::Aborted(e.nova_fault()),
    })?;
    let domain = hypervisor::domain::DomainSpec {
        instance_id: spec.db_id,
        uuid: spec.instance_uuid.clone(),
        display_name: spec.display_name.clone(),
        creation_time: spec.created_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        flavor: hypervisor::domain::DomainFlavor {
            id: spec.flavor.id.clone(),
            name: spec.flavor.name.clone(),
            memory_mb: spec.flavor.ram_mb,
            vcpus: spec.flavor.vcpus,
            root_gb: spec.flavor.root_gb,
            ephemeral_gb: spec.flavor.ephemeral_gb,
            swap_mb: spec.flavor.swap_mb,
        },
        image: hypervisor::domain::DomainImage {
            id: image.id.clone(),
            disk_format: meta.disk_format.clone(),
            container_format: image.container_format.clone().unwrap_or_else(|| "bare".into()),
            min_disk: image.min_disk,
            min_ram: image.min_ram,
        },
        image_properties: image.properties.clone(),
        user_id: spec.user_id.clone(),
        user_name: spec.user_name.clone(),
        project_id: spec.project_id.clone(),
        project_name: spec.project_name.clone(),
        instances_path: hypervisor::domain::DEFAULT_INSTANCES_PATH.into(),
        interfaces: Vec::new(),
        vnc: true,
    };
    let domain_xml =
        hypervisor::domain::render_domain(&domain, &mapping).map_err(|e| BuildFailure::Rescheduled(e.to_string()))?;
    let root_device_name = mapping.root().map(|d| format!("/dev/{}", d.dev)).unwrap_or_else(|| "/dev/vda".into());
    let sources = InstanceSources {
        boot_image: image_file(state, image)?,
        virtio_iso: virtio.as_ref().map(|i| image_file(state, i)).transpose()?,
        driver_floppy: floppy.as_ref().map(|i| image_file(state, i)).transpose()?,
    };
    let host = state
        .nova()
        .host()
        .create_instance(&spec.instance_uuid, mapping, sources)
        .map_err(|e| BuildFailure::Rescheduled(e.to_string()))?;
    Ok(DefinedDomain { domain_xml, root_device_name, host })
}

/// Powers the domain on at `started_at`: the guest boots from its devices as they are now.
pub fn power_on(state: &AppState, domain: &DefinedDomain, started_at: Timestamp) -> Result<GuestRun, String> {
    state.nova().host().power_on(&domain.host, started_at).map_err(|e| e.to_string())
}

/// The guest powered itself off: what it wrote (an installed system) lands on its disk.
pub fn guest_powered_off(state: &AppState, domain: &DefinedDomain, run: &GuestRun) -> Result<(), String> {
    state.nova().host().complete(&domain.host, run).map_err(|e| e.to_string())
}

/// Nova's libvirt snapshot: the domain's first disk (`find_disk`) as a qcow2 file to upload.
pub fn snapshot_root(state: &AppState, domain: &DefinedDomain, image_id: &str) -> Result<PathBuf, String> {
    let out = domain.host.dir.join(format!("snapshot-{image_id}.qcow2"));
    state.nova().host().snapshot_root(&domain.host, &out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Undefines the domain and removes the instance directory.
pub fn destroy(state: &AppState, domain: &DefinedDomain) -> Result<(), String> {
    state.nova().host().delete(&domain.host).map_err(|e| e.to_string())
}
