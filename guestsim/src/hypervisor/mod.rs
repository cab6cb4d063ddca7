//! The simulated libvirt compute host: disk mapping per layout, domain XML, qcow2 disk files, the simulated guest and the host runtime.
//!
//! Pure parts (no IO): [`blockinfo`] (which file becomes which guest device), [`domain`]
//! (the libvirt domain XML Nova 34 would define), [`installer`] (what the guest does with the
//! devices and media it is given, and the rule the scenario matrix derives outcomes from).
//! Parts with file IO: [`qcow2`] (our own qcow2 v3 writer and reader) and [`host`] (instance
//! directories, disk files, running the guest, snapshots). Nothing here speaks HTTP.

pub mod blockinfo;
pub mod domain;
pub mod host;
pub mod installer;
pub mod qcow2;
pub mod system;
#[cfg(test)]
pub(crate) mod testing;

pub use blockinfo::{
    BlockInfoError, DeviceType, DiskBus, DiskMapping, DiskSource, FileFormat, FlavorDisks, ImageMeta, MappedDisk,
    MappingRequest, Tpm, TpmModel, TpmVersion, VirtType, disk_mapping,
};
pub use domain::{DomainFlavor, DomainImage, DomainSpec, NetworkInterface, render_domain};
pub use host::{Host, HostError, Instance, InstanceSources, MediumOpener, SnapshotInfo, SourceImage};
pub use installer::{
    AttachedMediaSummary, ConsoleLine, DeviceContent, GuestResult, GuestRun, expected_outcome,
    expected_outcome_for_request, run_guest, summarize_media,
};
pub use system::{DiskContent, InstalledSystem, inspect};
