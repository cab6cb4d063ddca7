//! Disk mapping for an instance booted from an image: which file becomes which guest device, per layout.
//!
//! The `stock` rules restate Nova's `nova/virt/libvirt/blockinfo.py` (Nova 34): the disk bus
//! comes from `hw_disk_bus` (default `virtio`), the CD-ROM bus from `hw_cdrom_bus` (default `ide`,
//! `sata` when the machine type is a q35 one, `scsi` on aarch64), device names are the first free
//! name for the bus prefix (`vd`, `hd`, `sd`, `fd`) across every device already mapped, and IDE
//! has four names (`hda`..`hdd`). An image whose `disk_format` is `iso` becomes the root
//! *CD-ROM* (`disk`, boot index 1); otherwise the root is a disk on the disk bus. Then come the
//! flavor's ephemeral disk (`disk.eph0`, Nova 34 names it after its block device mapping), the
//! swap disk (`disk.swap`) and the config drive (`disk.config`, a CD-ROM on the CD-ROM bus).
//!
//! The `patched` rules are the article's change, applied only when the image is an ISO: a blank
//! root disk `disk.newos` sized from the flavor's root disk on the disk bus (boot index 1, so
//! that once installed it boots first), the OS ISO as CD-ROM `disk` (boot index 2, so that the
//! firmware falls through to it while the root disk is blank), the VirtIO-driver ISO as CD-ROM
//! `disk.virtio` when the compute host found one, then ephemeral, swap and config drive as Nova
//! maps them. `patched-floppy` adds the driver floppy `disk.floppy` on `fdc` after the CD-ROMs.
//! A non-ISO image (a snapshot) is mapped by the stock rules under every layout.
//!
//! What libvirt itself refuses (IDE on a q35 or aarch64 `virt` machine) is reported here too,
//! with libvirt's message, because that is where a real spawn would fail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::guest::{Arch, Firmware};
use crate::layout::Layout;

/// The QEMU release whose versioned machine types the simulated host reports (as in the reference dumpxml).
pub const QEMU_MACHINE_VERSION: &str = "7.2";

/// Why a disk mapping cannot be built; [`BlockInfoError::nova_fault`] gives the text Nova or libvirt would show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockInfoError {
    /// An `hw_*_bus` property names a bus the libvirt driver does not know for this virt type.
    #[error("requested hardware '{model}' is not supported by the '{virt}' virt driver")]
    UnsupportedHardware { model: String, virt: &'static str },
    /// `hw_machine_type` names a machine type the host does not offer.
    #[error("machine type {0} is not supported")]
    UnsupportedMachineType(String),
    /// `hw_architecture` names an architecture this host cannot run.
    #[error("architecture name '{0}' is not recognised")]
    InvalidArchitecture(String),
    /// More devices on a bus than it has names for (IDE has four).
    #[error("the maximum allowed number of disk devices ({maximum}) to attach to a single instance has been exceeded")]
    TooManyDiskDevices { maximum: usize },
    /// An image property has a value outside its allowed set.
    #[error("invalid value {value:?} for image property {key}: allowed values are {allowed}")]
    InvalidProperty { key: &'static str, value: String, allowed: &'static str },
    /// `hw_tpm_model=tpm-crb` with a TPM 1.2.
    #[error("tpm model crb is only valid with tpm version 2.0")]
    CrbNeedsTpm2,
    /// `os_secure_boot=required` where the machine cannot do it (BIOS firmware, or x86 without q35).
    #[error("secure boot is not supported by host")]
    SecureBootNotSupported,
    /// libvirt refuses the domain definition (for example IDE on q35).
    #[error("libvirt refused the domain: {0}")]
    LibvirtUnsupported(String),
    /// The patched layout needs a root size for `disk.newos`, and the flavor has none.
    #[error("flavor root disk is 0 GB: the {layout} layout sizes the blank root disk disk.newos from it")]
    ZeroRootDisk { layout: Layout },
}

impl BlockInfoError {
    /// The message as the real service words it (for a server's `fault.message`).
    pub fn nova_fault(&self) -> String {
        match self {
            BlockInfoError::UnsupportedHardware { model, virt } => {
                format!("Requested hardware '{model}' is not supported by the '{virt}' virt driver")
            }
            BlockInfoError::UnsupportedMachineType(m) => format!("Machine type {m} is not supported."),
            BlockInfoError::InvalidArchitecture(a) => format!("Architecture name '{a}' is not recognised"),
            BlockInfoError::TooManyDiskDevices { maximum } => format!(
                "The maximum allowed number of disk devices ({maximum}) to attach to a single instance has been exceeded."
            ),
            BlockInfoError::InvalidProperty { key, value, allowed } => match *key {
                "hw_tpm_version" => format!("Invalid TPM version '{value}'. Allowed values: {allowed}."),
                "hw_tpm_model" => format!("Invalid TPM model '{value}'. Allowed values: {allowed}."),
                "os_secure_boot" => format!("Invalid secure boot policy '{value}'. Allowed values: {allowed}."),
                _ => format!("Invalid image property {key}: '{value}'. Allowed values: {allowed}."),
            },
            BlockInfoError::CrbNeedsTpm2 => "TPM model CRB is only valid with TPM version 2.0.".to_string(),
            BlockInfoError::SecureBootNotSupported => "Secure Boot is not supported by host".to_string(),
            BlockInfoError::LibvirtUnsupported(m) => m.clone(),
            BlockInfoError::ZeroRootDisk { .. } => {
                "The created instance's disk would be too small. The patched ISO layout needs a flavor with root_gb > 0 for disk.newos.".to_string()
            }
        }
    }
}

/// libvirt's virt type for the domain (`<domain type=...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum VirtType {
    Qemu,
    Kvm,
}

impl VirtType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A guest bus a disk can sit on (the libvirt `<target bus=...>`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DiskBus {
    Virtio,
    Ide,
    Sata,
    Scsi,
    Usb,
    Fdc,
}

impl DiskBus {
    pub const ALL: [DiskBus; 6] =
        [DiskBus::Virtio, DiskBus::Ide, DiskBus::Sata, DiskBus::Scsi, DiskBus::Usb, DiskBus::Fdc];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The device-name prefix Nova uses for the bus (`get_dev_prefix_for_disk_bus`).
    pub fn dev_prefix(self) -> &'static str {
        match self {
            DiskBus::Virtio => "vd",
            DiskBus::Ide => "hd",
            DiskBus::Sata | DiskBus::Scsi | DiskBus::Usb => "sd",
            DiskBus::Fdc => "fd",
        }
    }

    /// How many devices the bus holds (`get_dev_count_for_disk_bus`; Nova's default
    /// `max_disk_devices_to_attach` is unlimited, so only IDE and the two-drive floppy controller are bounded).
    pub fn max_devices(self) -> Option<usize> {
        match self {
            DiskBus::Ide => Some(4),
            DiskBus::Fdc => Some(2),
            _ => None,
        }
    }

    /// Nova's `SUPPORTED_DEVICE_BUSES` for qemu/kvm; anything else is "unsupported hardware".
    fn parse(value: &str, virt: VirtType) -> Result<DiskBus, BlockInfoError> {
        DiskBus::ALL
            .into_iter()
            .find(|b| b.as_str() == value)
            .ok_or_else(|| BlockInfoError::UnsupportedHardware { model: value.to_string(), virt: virt.as_str() })
    }
}

/// The libvirt `<disk device=...>` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DeviceType {
    Disk,
    Cdrom,
    Floppy,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The `<os><boot dev=...>` name (Nova's `BOOT_DEV_FOR_TYPE`).
    pub fn boot_dev(self) -> &'static str {
        match self {
            DeviceType::Disk => "hd",
            DeviceType::Cdrom => "cdrom",
            DeviceType::Floppy => "fd",
        }
    }
}

/// Where a mapped disk's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum DiskSource {
    /// The image the server was booted from (the OS ISO, or a disk image such as a snapshot).
    BootImage,
    /// The VirtIO-driver ISO the patched compute host attaches.
    VirtioIso,
    /// The driver floppy image of `patched-floppy`.
    DriverFloppy,
    /// The blank root disk `disk.newos` of the patched layouts.
    BlankRoot { size_gb: u64 },
    /// The flavor's ephemeral disk.
    Ephemeral { size_gb: u64 },
    /// The flavor's swap disk.
    Swap { size_mb: u64 },
    /// The config drive (ISO 9660, raw).
    ConfigDrive,
}

/// The on-disk format of a file in the instance directory (the `<driver type=...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum FileFormat {
    Qcow2,
    Raw,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One guest device and the instance-directory file behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedDisk {
    /// File name inside the instance directory (`disk`, `disk.newos`, `disk.eph0`...).
    pub file_name: String,
    pub device: DeviceType,
    pub bus: DiskBus,
    /// Target device name (`vda`, `hda`, `sdb`, `fda`...).
    pub dev: String,
    /// libvirt boot index (1 = first), as Nova's `boot_index`.
    pub boot_index: Option<u32>,
    pub readonly: bool,
    pub source: DiskSource,
    pub format: FileFormat,
}

impl MappedDisk {
    /// The virtual size Nova gives a disk it creates itself; `None` for image-backed devices.
    pub fn created_size_bytes(&self) -> Option<u64> {
        const GIB: u64 = 1 << 30;
        match self.source {
            DiskSource::BlankRoot { size_gb } | DiskSource::Ephemeral { size_gb } => Some(size_gb * GIB),
            DiskSource::Swap { size_mb } => Some(size_mb << 20),
            _ => None,
        }
    }
}

/// The TPM Nova adds for `hw_tpm_version`/`hw_tpm_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tpm {
    /// "1.2" or "2.0".
    pub version: TpmVersion,
    pub model: TpmModel,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::IntoStaticStr, strum::EnumString,
)]
pub enum TpmVersion {
    #[serde(rename = "1.2")]
    #[strum(serialize = "1.2")]
    V1_2,
    #[serde(rename = "2.0")]
    #[strum(serialize = "2.0")]
    V2_0,
}

impl TpmVersion {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum TpmModel {
    TpmTis,
    TpmCrb,
}

impl TpmModel {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The whole device assembly for one instance, with the machine facts the domain XML and the guest need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMapping {
    pub layout: Layout,
    pub virt_type: VirtType,
    pub arch: Arch,
    /// Canonical versioned machine type, e.g. `pc-i440fx-7.2`, `pc-q35-7.2`, `virt-7.2`.
    pub machine_type: String,
    pub disk_bus: DiskBus,
    pub cdrom_bus: DiskBus,
    pub firmware: Firmware,
    pub secure_boot: bool,
    pub tpm: Option<Tpm>,
    /// Devices in the order of the domain's `<disk>` elements: Nova's order, as libvirt keeps it
    /// ([`libvirt_disk_order`]).
    pub disks: Vec<MappedDisk>,
}

impl DiskMapping {
    /// Whether the machine is PCI Express based without an IDE controller (q35, aarch64 `virt`).
    pub fn is_pcie(&self) -> bool {
        self.machine_type.contains("q35") || self.machine_type.starts_with("virt")
    }

    /// The device Nova calls root (boot index 1).
    pub fn root(&self) -> Option<&MappedDisk> {
        self.disks.iter().find(|d| d.boot_index == Some(1))
    }

    /// The first `<disk>` of the domain: what Nova's snapshot (`find_disk`) captures.
    pub fn first_disk(&self) -> Option<&MappedDisk> {
        self.disks.first()
    }

    /// A device by its file name.
    pub fn disk(&self, file_name: &str) -> Option<&MappedDisk> {
        self.disks.iter().find(|d| d.file_name == file_name)
    }

    /// The `<os><boot dev=...>` list, as Nova's `get_boot_order`: device kinds by boot index, without repeats.
    pub fn boot_devices(&self) -> Vec<DeviceType> {
        let mut booting: Vec<&MappedDisk> = self.disks.iter().filter(|d| d.boot_index.is_some()).collect();
        booting.sort_by_key(|d| d.boot_index);
        let mut out = Vec::new();
        for d in booting {
            if !out.contains(&d.device) {
                out.push(d.device);
            }
        }
        out
    }
}

/// The image a server boots from, as the compute host sees it (Glance's `disk_format` and properties).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub disk_format: String,
    pub properties: BTreeMap<String, String>,
}

impl ImageMeta {
    /// An image with the given disk format and properties.
    pub fn new<'a>(disk_format: &str, properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> ImageMeta {
        ImageMeta {
            disk_format: disk_format.to_string(),
            properties: properties.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn prop(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Whether Nova treats the image as an ISO (root becomes a CD-ROM).
    pub fn is_iso(&self) -> bool {
        self.disk_format == "iso"
    }
}

/// The flavor's disk sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavorDisks {
    pub root_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
}

/// Everything the mapping depends on.
#[derive(Debug, Clone, Copy)]
pub struct MappingRequest<'a> {
    pub layout: Layout,
    pub virt_type: VirtType,
    pub image: &'a ImageMeta,
    pub flavor: FlavorDisks,
    /// Whether the server has a config drive (`config_drive: true`, `img_config_drive=mandatory`, or forced by the host).
    pub config_drive: bool,
    /// Whether the patched host found its VirtIO-driver ISO (only read for patched layouts).
    pub virtio_iso_found: bool,
    /// Whether the patched-floppy host found its driver floppy (only read for `patched-floppy`).
    pub driver_floppy_found: bool,
}

/// Builds the disk mapping for a server booted from an image (see the module docs for the rules).
pub fn disk_mapping(req: &MappingRequest<'_>) -> Result<DiskMapping, BlockInfoError> {
    let image = req.image;
    let virt = req.virt_type;
    let arch = match image.prop("hw_architecture") {
        None | Some("x86_64") => Arch::X86_64,
        Some("i686") => Arch::I686,
        Some("aarch64") => Arch::Aarch64,
        Some(other) => return Err(BlockInfoError::InvalidArchitecture(other.to_string())),
    };
    let machine_type = canonical_machine_type(arch, image.prop("hw_machine_type"))?;
    let q35_like = machine_type.contains("q35") || machine_type.starts_with("virt");

    let disk_bus = match image.prop("hw_disk_bus") {
        Some(v) => DiskBus::parse(v, virt)?,
        None => DiskBus::Virtio,
    };
    let cdrom_bus = match image.prop("hw_cdrom_bus") {
        Some(v) => DiskBus::parse(v, virt)?,
        None if arch == Arch::Aarch64 => DiskBus::Scsi,
        None if machine_type.contains("q35") => DiskBus::Sata,
        None => DiskBus::Ide,
    };
    let floppy_bus = match image.prop("hw_floppy_bus") {
        Some(v) => DiskBus::parse(v, virt)?,
        None => DiskBus::Fdc,
    };

    let firmware = match image.prop("hw_firmware_type") {
        None if arch == Arch::Aarch64 => Firmware::Uefi,
        None | Some("bios") => Firmware::Bios,
        Some("uefi") => Firmware::Uefi,
        Some(other) => {
            return Err(BlockInfoError::InvalidProperty {
                key: "hw_firmware_type",
                value: other.to_string(),
                allowed: "bios, uefi",
            });
        }
    };
    let secure_boot = match image.prop("os_secure_boot") {
        None | Some("disabled") => false,
        Some("required") => {
            if firmware != Firmware::Uefi || (arch != Arch::Aarch64 && !q35_like) {
                return Err(BlockInfoError::SecureBootNotSupported);
            }
            true
        }
        // "optional": enabled only where the machine supports it, as `_check_secure_boot_support`.
        Some("optional") => firmware == Firmware::Uefi && (arch == Arch::Aarch64 || q35_like),
        Some(other) => {
            return Err(BlockInfoError::InvalidProperty {
                key: "os_secure_boot",
                value: other.to_string(),
                allowed: "required, disabled, optional",
            });
        }
    };
    let tpm = tpm_constraint(image)?;

    let mut disks: Vec<MappedDisk> = Vec::new();
    let iso = image.is_iso();
    let patched = iso && matches!(req.layout, Layout::Patched | Layout::PatchedFloppy);
    if patched {
        if req.flavor.root_gb == 0 {
            return Err(BlockInfoError::ZeroRootDisk { layout: req.layout });
        }
        let newos = next_disk(&disks, disk_bus)?;
        disks.push(mapped(
            "disk.newos",
            DeviceType::Disk,
            disk_bus,
            newos,
            Some(1),
            DiskSource::BlankRoot { size_gb: req.flavor.root_gb },
        ));
        let os = next_disk(&disks, cdrom_bus)?;
        disks.push(mapped("disk", DeviceType::Cdrom, cdrom_bus, os, Some(2), DiskSource::BootImage));
        if req.virtio_iso_found {
            let dev = next_disk(&disks, cdrom_bus)?;
            disks.push(mapped("disk.virtio", DeviceType::Cdrom, cdrom_bus, dev, None, DiskSource::VirtioIso));
        }
        if req.layout == Layout::PatchedFloppy && req.driver_floppy_found {
            let dev = next_disk(&disks, floppy_bus)?;
            disks.push(mapped("disk.floppy", DeviceType::Floppy, floppy_bus, dev, None, DiskSource::DriverFloppy));
        }
    } else {
        let (device, bus) = if iso { (DeviceType::Cdrom, cdrom_bus) } else { (DeviceType::Disk, disk_bus) };
        let dev = next_disk(&disks, bus)?;
        disks.push(mapped("disk", device, bus, dev, Some(1), DiskSource::BootImage));
    }
    if req.flavor.ephemeral_gb > 0 {
        let dev = next_disk(&disks, disk_bus)?;
        disks.push(mapped(
            "disk.eph0",
            DeviceType::Disk,
            disk_bus,
            dev,
            None,
            DiskSource::Ephemeral { size_gb: req.flavor.ephemeral_gb },
        ));
    }
    if req.flavor.swap_mb > 0 {
        let dev = next_disk(&disks, disk_bus)?;
        disks.push(mapped(
            "disk.swap",
            DeviceType::Disk,
            disk_bus,
            dev,
            None,
            DiskSource::Swap { size_mb: req.flavor.swap_mb },
        ));
    }
    if req.config_drive {
        // Nova's default config_drive_format is iso9660, which makes the config drive a CD-ROM.
        let dev = next_disk(&disks, cdrom_bus)?;
        let mut config = mapped("disk.config", DeviceType::Cdrom, cdrom_bus, dev, None, DiskSource::ConfigDrive);
        config.format = FileFormat::Raw;
        disks.push(config);
    }

    if q35_like && disks.iter().any(|d| d.bus == DiskBus::Ide) {
        return Err(BlockInfoError::LibvirtUnsupported(
            "unsupported configuration: IDE controllers are unsupported for this QEMU binary or machine type"
                .to_string(),
        ));
    }
    if arch == Arch::Aarch64 && disks.iter().any(|d| d.bus == DiskBus::Fdc) {
        return Err(BlockInfoError::LibvirtUnsupported(format!(
            "unsupported configuration: machine type '{machine_type}' does not support floppy controllers"
        )));
    }

    Ok(DiskMapping {
        disks: libvirt_disk_order(disks),
        layout: req.layout,
        virt_type: virt,
        arch,
        machine_type,
        disk_bus,
        cdrom_bus,
        firmware,
        secure_boot,
        tpm,
    })
}

/// The order libvirt keeps a domain's disks in, given them in Nova's order: each disk goes after the last disk
/// already on its bus (before the first one whose target sorts after it), or last when it is the first of its bus
/// (libvirt's `virDomainDiskInsert`). So disks group by bus: a patched ISO boot that Nova lists as `disk.newos`
/// (vda), `disk` (hda), `disk.virtio` (hdb), `disk.eph0` (vdb) comes out as vda, vdb, hda, hdb.
pub fn libvirt_disk_order(in_nova_order: Vec<MappedDisk>) -> Vec<MappedDisk> {
    let mut domain: Vec<MappedDisk> = Vec::with_capacity(in_nova_order.len());
    for disk in in_nova_order {
        // Every name Nova gives has an index; a name without one sorts first, as libvirt's -1 does.
        let index = device_index(&disk.dev);
        let mut insert_at = None;
        for (position, existing) in domain.iter().enumerate().rev() {
            if existing.bus != disk.bus {
                continue;
            }
            if device_index(&existing.dev) > index {
                insert_at = Some(position);
            } else if insert_at.is_none() {
                insert_at = Some(position + 1);
            }
        }
        domain.insert(insert_at.unwrap_or(domain.len()), disk);
    }
    domain
}

fn mapped(
    file_name: &str,
    device: DeviceType,
    bus: DiskBus,
    dev: String,
    boot_index: Option<u32>,
    source: DiskSource,
) -> MappedDisk {
    MappedDisk {
        file_name: file_name.to_string(),
        device,
        bus,
        dev,
        boot_index,
        // CD-ROMs and the shared driver floppy come from Glance images the guest must not change.
        readonly: matches!(device, DeviceType::Cdrom | DeviceType::Floppy),
        source,
        format: FileFormat::Qcow2,
    }
}

/// Nova's `find_disk_dev_for_disk_bus`: the first name for the bus's prefix not used by any mapped device.
fn next_disk(mapped: &[MappedDisk], bus: DiskBus) -> Result<String, BlockInfoError> {
    let prefix = bus.dev_prefix();
    let mut index = 0usize;
    loop {
        if let Some(max) = bus.max_devices()
            && index >= max
        {
            return Err(BlockInfoError::TooManyDiskDevices { maximum: max });
        }
        let name = device_name(prefix, index);
        if !mapped.iter().any(|d| d.dev == name) {
            return Ok(name);
        }
        index += 1;
    }
}

/// Nova's `generate_device_name`: `vda`..`vdz`, then `vdaa`, `vdab`...
pub fn device_name(prefix: &str, index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index;
    loop {
        letters.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    letters.reverse();
    format!("{prefix}{}", String::from_utf8_lossy(&letters))
}

/// The index of a device name within its prefix (`hdb` → 1); `None` if it is not one.
pub fn device_index(dev: &str) -> Option<usize> {
    let letters = dev.get(2..)?;
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut n = 0usize;
    for b in letters.bytes() {
        n = n.checked_mul(26)?.checked_add((b - b'a') as usize + 1)?;
    }
    Some(n - 1)
}

fn canonical_machine_type(arch: Arch, requested: Option<&str>) -> Result<String, BlockInfoError> {
    let unsupported = |m: &str| BlockInfoError::UnsupportedMachineType(m.to_string());
    match arch {
        Arch::X86_64 | Arch::I686 => match requested {
            None | Some("pc") => Ok(format!("pc-i440fx-{QEMU_MACHINE_VERSION}")),
            Some("q35") => Ok(format!("pc-q35-{QEMU_MACHINE_VERSION}")),
            Some(m) if versioned(m, "pc-i440fx-") || versioned(m, "pc-q35-") => Ok(m.to_string()),
            Some(m) => Err(unsupported(m)),
        },
        Arch::Aarch64 => match requested {
            None | Some("virt") => Ok(format!("virt-{QEMU_MACHINE_VERSION}")),
            Some(m) if versioned(m, "virt-") => Ok(m.to_string()),
            Some(m) => Err(unsupported(m)),
        },
    }
}

/// Whether `m` is `prefix` followed by a QEMU version this host has (2.0 up to our QEMU).
fn versioned(m: &str, prefix: &str) -> bool {
    let Some(version) = m.strip_prefix(prefix) else { return false };
    let mut parts = version.split('.');
    let (Some(major), Some(minor), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else { return false };
    (2..=7).contains(&major) && (major < 7 || minor <= 2)
}

fn tpm_constraint(image: &ImageMeta) -> Result<Option<Tpm>, BlockInfoError> {
    let Some(version) = image.prop("hw_tpm_version") else { return Ok(None) };
    let version: TpmVersion = version.parse().map_err(|_| BlockInfoError::InvalidProperty {
        key: "hw_tpm_version",
        value: version.to_string(),
        allowed: "1.2, 2.0",
    })?;
    let model = match image.prop("hw_tpm_model").map(|m| (m, m.parse::<TpmModel>())) {
        None => TpmModel::TpmTis,
        Some((_, Ok(TpmModel::TpmCrb))) if version != TpmVersion::V2_0 => return Err(BlockInfoError::CrbNeedsTpm2),
        Some((_, Ok(model))) => model,
        Some((other, Err(_))) => {
            return Err(BlockInfoError::InvalidProperty {
                key: "hw_tpm_model",
                value: other.to_string(),
                allowed: "tpm-tis, tpm-crb",
            });
        }
    };
    Ok(Some(Tpm { version, model }))
}

#[cfg(test)]
mod tests;
