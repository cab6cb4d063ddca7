//! The simulated compute host: instance directories with real disk files, running the guest against them, snapshots.
//!
//! Layout on disk (`<base>/<uuid>/`, like `/var/lib/nova/instances/<uuid>/`):
//! - image-backed devices (`disk`, `disk.virtio`, `disk.floppy`) are qcow2 files whose guest
//!   content is the Glance image, byte for byte: a raw or ISO image is converted by our own
//!   writer (all-zero clusters left out), a qcow2 image is copied. Real Nova puts a qcow2 overlay
//!   over a raw copy in `_base`; the guest-visible content, and so every snapshot, is the same;
//! - Nova-created disks (`disk.newos`, `disk.eph0`, `disk.swap`) are blank qcow2 files of the
//!   flavor's sizes (Nova would pre-format ephemeral and swap disks; the guest here treats them
//!   as blank, which is what an installer does with them anyway);
//! - `disk.config` is a sparse raw file standing in for the config drive;
//! - `console.log` holds the console text of the last run, as libvirt's serial log does.
//!
//! The guest reads installation and driver media through a [`MediumOpener`] the caller gives
//! (mockstack passes `media::open_medium`), applied to the Glance data files (raw), so this
//! module knows nothing of ISO 9660 or FAT. [`Host::power_on`] probes every device, runs the
//! guest ([`run_guest`]) and returns its timeline without touching the disks;
//! [`Host::complete`] applies what the guest wrote (the installed system) when its virtual
//! power-off time has come. [`Host::snapshot_root`] is Nova's snapshot: the first disk of the
//! domain, written as a compact qcow2.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::blockinfo::{DeviceType, DiskMapping, DiskSource, FileFormat, MappedDisk};
use super::installer::{
    AttachedMediaSummary, DeviceContent, GuestInput, GuestRun, InstallWrite, facts_from_medium, run_guest,
    summarize_media,
};
use super::qcow2::{self, ImageFormat, Qcow2Error};
use super::system::{self, DiskContent, SystemError};
use crate::guest::{GuestFacts, Medium};

/// Whether the raw image at `path` starts with a FAT boot sector.
fn holds_fat(path: &Path) -> bool {
    let mut sector = [0u8; 512];
    fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut sector)).is_ok()
        && crate::sniff::is_fat_boot_sector(&sector)
}

/// Opens a raw medium image (an ISO 9660 or FAT file) for the guest to read.
pub type MediumOpener = dyn Fn(&Path) -> Result<Box<dyn Medium + Send + Sync>, String> + Send + Sync;

/// Size of the stand-in config drive (Nova's are 64 MiB ISO 9660 images).
const CONFIG_DRIVE_SIZE: u64 = 64 << 20;

/// What went wrong on the simulated host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Qcow2(#[from] Qcow2Error),
    #[error(transparent)]
    System(#[from] SystemError),
    /// The mapping needs an image the caller did not provide (e.g. `disk.virtio` without a VirtIO ISO).
    #[error("no image given for {0}")]
    MissingSource(String),
    /// The instance uuid is not a plain name (it becomes a directory).
    #[error("invalid instance uuid {0:?}")]
    InvalidUuid(String),
    /// The domain has no disk to snapshot.
    #[error("instance {0} has no disk")]
    NoDisk(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostError {
    let context = context.into();
    move |source| HostError::Io { context, source }
}

/// A Glance image's data file on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceImage {
    pub path: PathBuf,
    /// Glance `disk_format` (`iso`, `qcow2`, `raw`...); the data decides how it is copied.
    pub disk_format: String,
}

/// The images an instance's devices are made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSources {
    pub boot_image: SourceImage,
    pub virtio_iso: Option<SourceImage>,
    pub driver_floppy: Option<SourceImage>,
}

impl InstanceSources {
    fn for_disk(&self, disk: &MappedDisk) -> Option<&SourceImage> {
        match disk.source {
            DiskSource::BootImage => Some(&self.boot_image),
            DiskSource::VirtioIso => self.virtio_iso.as_ref(),
            DiskSource::DriverFloppy => self.driver_floppy.as_ref(),
            _ => None,
        }
    }
}

/// An instance on this host: its directory, devices and sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub uuid: String,
    pub dir: PathBuf,
    pub mapping: DiskMapping,
    pub sources: InstanceSources,
}

impl Instance {
    /// The path of a device's file.
    pub fn disk_path(&self, disk: &MappedDisk) -> PathBuf {
        self.dir.join(&disk.file_name)
    }

    /// The serial console log libvirt would keep.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
}

/// What a snapshot wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The instance file that was captured (the domain's first disk).
    pub captured_file: String,
    pub disk_format: String,
    pub virtual_size: u64,
    pub file_size: u64,
}

/// The simulated compute host.
#[derive(Clone)]
pub struct Host {
    base: PathBuf,
    opener: Arc<MediumOpener>,
    /// Read-only media already converted to qcow2 under `<base>/_base/`, by the data file they came from.
    converted: Arc<Mutex<HashMap<SourceFile, PathBuf>>>,
}

/// A Glance data file as it was when converted: a file replaced or rewritten under the same name is a new source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SourceFile {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Host {
    /// A host keeping instance directories under `base`, reading media with `opener`.
    pub fn new(base: impl Into<PathBuf>, opener: Arc<MediumOpener>) -> Host {
        Host { base: base.into(), opener, converted: Arc::default() }
    }

    /// The instances directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Creates `<base>/<uuid>/` and every device file of `mapping`.
    pub fn create_instance(
        &self,
        uuid: &str,
        mapping: DiskMapping,
        sources: InstanceSources,
    ) -> Result<Instance, HostError> {
        if uuid.is_empty() || uuid.starts_with('.') || !uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(HostError::InvalidUuid(uuid.to_string()));
        }
        let dir = self.base.join(uuid);
        fs::create_dir_all(&dir).map_err(io_err(format!("cannot create instance directory {}", dir.display())))?;
        let instance = Instance { uuid: uuid.to_string(), dir, mapping, sources };
        for disk in &instance.mapping.disks {
            let path = instance.disk_path(disk);
            match (disk.source, disk.created_size_bytes()) {
                (DiskSource::ConfigDrive, _) => {
                    let file = fs::File::create(&path).map_err(io_err(format!("cannot create {}", path.display())))?;
                    file.set_len(CONFIG_DRIVE_SIZE).map_err(io_err(format!("cannot size {}", path.display())))?;
                }
                (_, Some(size)) => {
                    qcow2::create_blank(&path, size)?;
                }
                (_, None) => {
                    let image = instance
                        .sources
                        .for_disk(disk)
                        .ok_or_else(|| HostError::MissingSource(disk.file_name.clone()))?;
                    match qcow2::probe(&image.path)? {
                        ImageFormat::Qcow2 { .. } => {
                            fs::copy(&image.path, &path).map_err(io_err(format!(
                                "cannot copy {} to {}",
                                image.path.display(),
                                path.display()
                            )))?;
                        }
                        ImageFormat::Raw { .. } if matches!(disk.device, DeviceType::Cdrom | DeviceType::Floppy) => {
                            self.link_converted(&image.path, &path)?;
                        }
                        ImageFormat::Raw { .. } => {
                            qcow2::convert_raw_file(&image.path, &path)?;
                        }
                    }
                }
            }
        }
        Ok(instance)
    }

    /// A read-only medium's qcow2 file: converted once per data file into `<base>/_base/` and hard-linked into the
    /// instance directory, as Nova keeps one `_base` copy per image (a copy where links are not possible). Nothing
    /// writes to a CD-ROM or a floppy, so instances can share the file; a matrix boots the same VirtIO ISO and
    /// floppy in every cell.
    fn link_converted(&self, source: &Path, dest: &Path) -> Result<(), HostError> {
        let meta = fs::metadata(source).map_err(io_err(format!("cannot read {}", source.display())))?;
        let key = SourceFile { path: source.to_path_buf(), len: meta.len(), modified: meta.modified().ok() };
        let mut converted = self.converted.lock().unwrap_or_else(|p| p.into_inner());
        let cached = match converted.get(&key) {
            Some(cached) if cached.is_file() => cached.clone(),
            _ => {
                // Images deleted from Glance take their converted copies with them.
                converted.retain(|source, cached| {
                    let keep = source.path.is_file();
                    if !keep {
                        let _ = fs::remove_file(cached);
                    }
                    keep
                });
                let dir = self.base.join("_base");
                fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
                let cached = dir.join(format!("{}.qcow2", uuid::Uuid::new_v4()));
                qcow2::convert_raw_file(source, &cached)?;
                converted.insert(key, cached.clone());
                cached
            }
        };
        drop(converted);
        if fs::hard_link(&cached, dest).is_err() {
            fs::copy(&cached, dest).map_err(io_err(format!(
                "cannot copy {} to {}",
                cached.display(),
                dest.display()
            )))?;
        }
        Ok(())
    }

    /// Powers the instance on: reads what every device holds, runs the guest, writes its console
    /// log, and returns the run. Disks are not changed; call [`Host::complete`] at `power_off_at`.
    pub fn power_on(&self, instance: &Instance, started_at: Timestamp) -> Result<GuestRun, HostError> {
        let mapping = &instance.mapping;
        let mut media: Vec<(String, Box<dyn Medium + Send + Sync>)> = Vec::new();
        let mut devices = Vec::with_capacity(mapping.disks.len());
        for disk in &mapping.disks {
            let content = match (disk.device, disk.source) {
                (_, DiskSource::ConfigDrive) => {
                    DeviceContent::Data { what: "config drive".into(), boot_signature: false }
                }
                (DeviceType::Cdrom | DeviceType::Floppy, _) => match instance.sources.for_disk(disk) {
                    Some(image) => match (self.opener)(&image.path) {
                        Ok(medium) => {
                            let content = medium_content(medium.as_ref());
                            media.push((disk.file_name.clone(), medium));
                            content
                        }
                        Err(why) => {
                            DeviceContent::Data { what: format!("unreadable medium: {why}"), boot_signature: false }
                        }
                    },
                    None => DeviceContent::Blank,
                },
                (DeviceType::Disk, _) => self.disk_content(instance, disk)?,
            };
            devices.push(content);
        }
        let facts: Option<GuestFacts> = devices.iter().find_map(|d| match d {
            DeviceContent::Installer(f) => Some((**f).clone()),
            _ => None,
        });
        let mut summary = match &facts {
            Some(facts) => {
                let refs: Vec<(&str, &dyn Medium)> =
                    media.iter().map(|(name, m)| (name.as_str(), m.as_ref() as &dyn Medium)).collect();
                summarize_media(facts, mapping, &refs)
            }
            None => AttachedMediaSummary::default(),
        };
        summary.non_fat_floppy = mapping
            .disks
            .iter()
            .filter(|d| d.device == DeviceType::Floppy)
            .find(|d| instance.sources.for_disk(d).is_some_and(|image| !holds_fat(&image.path)))
            .map(|d| d.file_name.clone());
        let run = run_guest(GuestInput { mapping, devices: &devices, media: &summary, started_at });
        let log = instance.console_log();
        fs::write(&log, run.console_until(std::time::Duration::MAX))
            .map_err(io_err(format!("cannot write {}", log.display())))?;
        Ok(run)
    }

    fn disk_content(&self, instance: &Instance, disk: &MappedDisk) -> Result<DeviceContent, HostError> {
        let path = instance.disk_path(disk);
        Ok(match system::inspect(&path)? {
            DiskContent::Blank => DeviceContent::Blank,
            DiskContent::Installed(system) => DeviceContent::Installed(system),
            DiskContent::Iso9660 { boot_signature: true } => {
                // A hybrid ISO on a disk boots like the installer it is.
                let raw = instance.dir.join(format!(".{}.raw", disk.file_name));
                qcow2::to_raw(&path, &raw)?;
                let content = match (self.opener)(&raw) {
                    Ok(medium) => medium_content(medium.as_ref()),
                    Err(why) => DeviceContent::Data { what: format!("unreadable medium: {why}"), boot_signature: true },
                };
                let _ = fs::remove_file(&raw);
                content
            }
            DiskContent::Iso9660 { boot_signature: false } => {
                DeviceContent::Data { what: "ISO 9660 volume".into(), boot_signature: false }
            }
            DiskContent::Other { boot_signature, .. } => {
                DeviceContent::Data { what: "unrecognised data".into(), boot_signature }
            }
        })
    }

    /// Applies what the guest wrote during `run` (an installed system onto its target disk).
    pub fn complete(&self, instance: &Instance, run: &GuestRun) -> Result<(), HostError> {
        let Some(InstallWrite { file_name, system }) = &run.install else { return Ok(()) };
        let disk = instance.mapping.disk(file_name).ok_or_else(|| HostError::MissingSource(file_name.clone()))?;
        let path = instance.disk_path(disk);
        let size = match qcow2::probe(&path)? {
            ImageFormat::Qcow2 { virtual_size } => virtual_size,
            ImageFormat::Raw { size } => size,
        };
        let extents = system::install_extents(system, size)?;
        let refs: Vec<(u64, &[u8])> = extents.iter().map(|(o, b)| (*o, b.as_slice())).collect();
        // The installer repartitions the disk: whatever was on it before is gone.
        qcow2::write_extents(&path, size, &refs)?;
        Ok(())
    }

    /// Nova's snapshot: the first disk of the domain (`find_disk`) written to `out` as a compact qcow2.
    pub fn snapshot_root(&self, instance: &Instance, out: &Path) -> Result<SnapshotInfo, HostError> {
        let first = instance.mapping.first_disk().ok_or_else(|| HostError::NoDisk(instance.uuid.clone()))?;
        let path = instance.disk_path(first);
        let stats = match first.format {
            FileFormat::Qcow2 => qcow2::copy(&path, out)?,
            FileFormat::Raw => qcow2::convert_raw_file(&path, out)?,
        };
        Ok(SnapshotInfo {
            captured_file: first.file_name.clone(),
            disk_format: "qcow2".into(),
            virtual_size: stats.virtual_size,
            file_size: stats.file_size,
        })
    }

    /// Removes the instance directory.
    pub fn delete(&self, instance: &Instance) -> Result<(), HostError> {
        match fs::remove_dir_all(&instance.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostError::Io { context: format!("cannot remove {}", instance.dir.display()), source: e }),
        }
    }
}

fn medium_content(medium: &dyn Medium) -> DeviceContent {
    match facts_from_medium(medium) {
        Ok(Some(facts)) => DeviceContent::Installer(Box::new(facts)),
        Ok(None) => DeviceContent::Data { what: format!("medium {}", medium.volume_id()), boot_signature: false },
        Err(why) => DeviceContent::Data { what: format!("bad installation medium: {why}"), boot_signature: false },
    }
}

#[cfg(test)]
mod tests;
