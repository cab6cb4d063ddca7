//! The device model of a libvirt domain (only what the ISO-install layouts depend on), built from the element tree.

use std::fmt;

use serde::Serialize;

use super::ParseError;
use super::xml::{Element, Position, parse_elements};

/// What the input document was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentKind {
    /// A whole `<domain>`, as `virsh dumpxml` prints it.
    Domain,
    /// A `<devices>` element.
    Devices,
    /// One or more `<disk>` elements (like Listing 1 of the article).
    DiskFragment,
}

/// A parsed domain: its `<os>`, features and the devices the layouts are made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LibvirtDomain {
    pub document: DocumentKind,
    pub pos: Position,
    /// `<domain type=...>` (kvm, qemu).
    pub hypervisor: Option<String>,
    pub name: Option<String>,
    pub os: Option<Os>,
    /// Names of the elements under `<features>` that are on (`<smm state='off'/>` is left out).
    pub features: Vec<String>,
    pub disks: Vec<Disk>,
    pub controllers: Vec<Controller>,
    pub tpms: Vec<Tpm>,
    /// Every PCI address in `<devices>`, disks included, with the element that holds it.
    pub pci_addresses: Vec<PciUse>,
}

impl LibvirtDomain {
    /// The machine type, e.g. `pc-q35-8.2`, when the document says.
    pub fn machine(&self) -> Option<&str> {
        self.os.as_ref().and_then(|os| os.machine.as_deref())
    }

    pub fn arch(&self) -> Option<&str> {
        self.os.as_ref().and_then(|os| os.arch.as_deref())
    }

    /// What the machine type offers; unknown when the document has no `<os>` (a fragment).
    pub fn chipset(&self) -> Chipset {
        match (self.machine(), self.arch()) {
            (Some(m), _) if m.contains("q35") => Chipset::Q35,
            (Some(m), _) if m == "pc" || m.starts_with("pc-i440fx") || m.starts_with("pc-") => Chipset::I440fx,
            (Some(_), _) => Chipset::Other,
            (None, Some(a)) if !matches!(a, "x86_64" | "i686") => Chipset::Other,
            (None, _) => Chipset::Unknown,
        }
    }

    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chipset {
    /// i440fx (`pc`, `pc-i440fx-*`): has an IDE controller, no AHCI unless added.
    I440fx,
    /// q35: AHCI (SATA) built in, no IDE.
    Q35,
    /// Another machine (virt, pseries, s390-ccw-virtio): no IDE.
    Other,
    /// Not stated (a fragment without `<os>`).
    Unknown,
}

impl Chipset {
    pub fn has_ide(self) -> bool {
        matches!(self, Chipset::I440fx | Chipset::Unknown)
    }
}

/// `<os>`: machine, firmware and the legacy boot sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Os {
    pub pos: Position,
    pub machine: Option<String>,
    pub arch: Option<String>,
    /// `<os firmware='efi'>` (libvirt's automatic firmware selection).
    pub firmware: Option<String>,
    /// `<firmware><feature name='secure-boot' enabled='yes'/>` under `<os firmware=...>`.
    pub firmware_secure_boot: Option<bool>,
    pub loader: Option<Loader>,
    pub nvram: Option<Nvram>,
    /// `<boot dev=.../>` entries in order.
    pub boot_devs: Vec<BootDev>,
}

impl Os {
    pub fn is_uefi(&self) -> bool {
        self.firmware.as_deref() == Some("efi")
            || self.loader.as_ref().is_some_and(|l| {
                l.loader_type.as_deref() == Some("pflash") || l.path.as_deref().is_some_and(is_uefi_loader_path)
            })
    }

    pub fn secure_boot(&self) -> bool {
        self.loader.as_ref().is_some_and(|l| l.secure == Some(true)) || self.firmware_secure_boot == Some(true)
    }
}

fn is_uefi_loader_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("ovmf") || lower.contains("edk2") || lower.contains("aavmf")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootDev {
    pub pos: Position,
    /// hd, cdrom, fd or network.
    pub dev: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loader {
    pub pos: Position,
    pub path: Option<String>,
    pub readonly: Option<bool>,
    pub secure: Option<bool>,
    /// `rom` or `pflash`.
    pub loader_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nvram {
    pub pos: Position,
    pub path: Option<String>,
    pub template: Option<String>,
}

/// `<disk device=...>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, strum::Display, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DiskDevice {
    Disk,
    Cdrom,
    Floppy,
    Lun,
    /// A device kind libvirt may know but the layouts do not use, as written.
    #[strum(default)]
    Other(String),
}

impl DiskDevice {
    fn from_attr(value: Option<&str>) -> DiskDevice {
        value.unwrap_or("disk").parse().unwrap_or_else(|never: std::convert::Infallible| match never {})
    }

    /// The `<os><boot dev=...>` value that selects this kind of device.
    pub fn boot_dev(&self) -> Option<&'static str> {
        match self {
            DiskDevice::Disk | DiskDevice::Lun => Some("hd"),
            DiskDevice::Cdrom => Some("cdrom"),
            DiskDevice::Floppy => Some("fd"),
            DiskDevice::Other(_) => None,
        }
    }
}

/// Where a disk's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DiskSource {
    File { path: String },
    Block { dev: String },
    Volume { pool: Option<String>, volume: Option<String> },
    Network { protocol: Option<String>, name: Option<String> },
}

impl DiskSource {
    /// The host path (file or block device), when the source has one.
    pub fn path(&self) -> Option<&str> {
        match self {
            DiskSource::File { path } => Some(path),
            DiskSource::Block { dev } => Some(dev),
            DiskSource::Volume { .. } | DiskSource::Network { .. } => None,
        }
    }

    /// The last path component (`disk.newos`), or the volume/network name.
    pub fn file_name(&self) -> Option<&str> {
        match self {
            DiskSource::File { path } => path.rsplit('/').next(),
            DiskSource::Block { dev } => dev.rsplit('/').next(),
            DiskSource::Volume { volume, .. } => volume.as_deref(),
            DiskSource::Network { name, .. } => name.as_deref().map(|n| n.rsplit('/').next().unwrap_or(n)),
        }
    }
}

/// A disk's `<driver>`: the QEMU block driver, the image format and the cache mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskDriver {
    pub pos: Position,
    pub name: Option<String>,
    /// The image format: raw, qcow2...
    pub format: Option<String>,
    pub cache: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub pos: Position,
    pub dev: String,
    /// The bus as written, or the one libvirt derives from the name's prefix when absent.
    pub bus: Option<String>,
    pub bus_explicit: bool,
}

/// A device address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Address {
    Pci { domain: u32, bus: u32, slot: u32, function: u32, multifunction: bool },
    Drive { controller: u32, bus: u32, target: u32, unit: u32 },
    Other { kind: String },
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Pci { domain, bus, slot, function, .. } => {
                write!(f, "pci {domain:04x}:{bus:02x}:{slot:02x}.{function:x}")
            }
            Address::Drive { controller, bus, target, unit } => {
                write!(f, "drive controller {controller} bus {bus} target {target} unit {unit}")
            }
            Address::Other { kind } => write!(f, "{kind}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Positioned<T> {
    pub pos: Position,
    pub value: T,
}

/// One `<disk>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub pos: Position,
    /// `<disk type=...>`: file, block, volume, network.
    pub disk_type: String,
    pub device: DiskDevice,
    pub driver: Option<DiskDriver>,
    pub source: Option<Positioned<DiskSource>>,
    pub target: Option<Target>,
    pub readonly: bool,
    pub boot_order: Option<Positioned<u32>>,
    pub address: Option<Positioned<Address>>,
    pub serial: Option<String>,
}

impl Disk {
    pub fn target_dev(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.dev.as_str())
    }

    pub fn bus(&self) -> Option<&str> {
        self.target.as_ref().and_then(|t| t.bus.as_deref())
    }

    pub fn source_file_name(&self) -> Option<&str> {
        self.source.as_ref().and_then(|s| s.value.file_name())
    }

    pub fn format(&self) -> Option<&str> {
        self.driver.as_ref().and_then(|d| d.format.as_deref())
    }

    /// A short label for messages: `cdrom hda (disk)`.
    pub fn label(&self) -> String {
        let dev = self.target_dev().unwrap_or("?");
        match self.source_file_name() {
            Some(name) => format!("{} {dev} ({name})", self.device),
            None => format!("{} {dev}", self.device),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Controller {
    pub pos: Position,
    /// ide, sata, scsi, fdc, usb, pci, virtio-serial...
    pub kind: String,
    pub index: Option<u32>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tpm {
    pub pos: Position,
    pub model: Option<String>,
    pub backend: Option<String>,
    pub version: Option<String>,
}

/// A PCI address and the element (`disk vda`, `memballoon`) that claims it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciUse {
    pub pos: Position,
    pub owner: String,
    pub domain: u32,
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
}

/// Parses a whole `<domain>`, a `<devices>` element, or a fragment of one or more `<disk>` elements.
pub fn parse(xml: &str) -> Result<LibvirtDomain, ParseError> {
    let roots = parse_elements(xml)?;
    let first = roots.first().ok_or(ParseError::Empty)?;
    let document = match first.name.as_str() {
        "domain" if roots.len() == 1 => DocumentKind::Domain,
        "devices" if roots.len() == 1 => DocumentKind::Devices,
        "disk" => DocumentKind::DiskFragment,
        _ => {
            let unexpected = roots.iter().find(|r| r.name != "disk" || first.name != "disk").unwrap_or(first);
            return Err(ParseError::UnexpectedRoot { pos: unexpected.pos, name: unexpected.name.clone() });
        }
    };
    if document == DocumentKind::DiskFragment
        && let Some(other) = roots.iter().find(|r| r.name != "disk")
    {
        return Err(ParseError::UnexpectedRoot { pos: other.pos, name: other.name.clone() });
    }
    let mut domain = LibvirtDomain {
        document,
        pos: first.pos,
        hypervisor: None,
        name: None,
        os: None,
        features: Vec::new(),
        disks: Vec::new(),
        controllers: Vec::new(),
        tpms: Vec::new(),
        pci_addresses: Vec::new(),
    };
    match document {
        DocumentKind::Domain => {
            domain.hypervisor = first.attr("type").map(str::to_string);
            domain.name = first.child("name").map(|n| n.text().to_string());
            if let Some(os) = first.child("os") {
                domain.os = Some(parse_os(os)?);
            }
            if let Some(features) = first.child("features") {
                domain.features = features
                    .children
                    .iter()
                    .filter(|f| f.attr("state") != Some("off"))
                    .map(|f| f.name.clone())
                    .collect();
            }
            if let Some(devices) = first.child("devices") {
                read_devices(devices.children.iter(), &mut domain)?;
            }
        }
        DocumentKind::Devices => read_devices(first.children.iter(), &mut domain)?,
        DocumentKind::DiskFragment => read_devices(roots.iter(), &mut domain)?,
    }
    Ok(domain)
}

fn parse_os(os: &Element) -> Result<Os, ParseError> {
    let os_type = os.child("type");
    let loader = os.child("loader").map(|l| {
        Ok::<_, ParseError>(Loader {
            pos: l.pos,
            path: non_empty(l.text()),
            readonly: yes_no(l, "readonly")?,
            secure: yes_no(l, "secure")?,
            loader_type: l.attr("type").map(str::to_string),
        })
    });
    let firmware_secure_boot = os
        .child("firmware")
        .and_then(|fw| fw.children_named("feature").find(|f| f.attr("name") == Some("secure-boot")))
        .map(|f| yes_no(f, "enabled"))
        .transpose()?
        .flatten();
    Ok(Os {
        pos: os.pos,
        machine: os_type.and_then(|t| t.attr("machine")).map(str::to_string),
        arch: os_type.and_then(|t| t.attr("arch")).map(str::to_string),
        firmware: os.attr("firmware").map(str::to_string),
        firmware_secure_boot,
        loader: loader.transpose()?,
        nvram: os.child("nvram").map(|n| Nvram {
            pos: n.pos,
            path: non_empty(n.text()),
            template: n.attr("template").map(str::to_string),
        }),
        boot_devs: os
            .children_named("boot")
            .map(|b| BootDev { pos: b.pos, dev: b.attr("dev").unwrap_or_default().to_string() })
            .collect(),
    })
}

fn read_devices<'e>(devices: impl Iterator<Item = &'e Element>, domain: &mut LibvirtDomain) -> Result<(), ParseError> {
    for device in devices {
        let address = device.child("address").map(parse_address).transpose()?;
        if let Some(Positioned { pos, value: Address::Pci { domain: d, bus, slot, function, .. } }) = &address {
            domain.pci_addresses.push(PciUse {
                pos: *pos,
                owner: owner_label(device),
                domain: *d,
                bus: *bus,
                slot: *slot,
                function: *function,
            });
        }
        match device.name.as_str() {
            "disk" => {
                let disk = parse_disk(device, address)?;
                domain.disks.push(disk);
            }
            "controller" => domain.controllers.push(Controller {
                pos: device.pos,
                kind: device.attr("type").unwrap_or_default().to_string(),
                index: number_attr(device, "index")?,
                model: device.attr("model").map(str::to_string),
            }),
            "tpm" => {
                let backend = device.child("backend");
                domain.tpms.push(Tpm {
                    pos: device.pos,
                    model: device.attr("model").map(str::to_string),
                    backend: backend.and_then(|b| b.attr("type")).map(str::to_string),
                    version: backend.and_then(|b| b.attr("version")).map(str::to_string),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn owner_label(device: &Element) -> String {
    match device.name.as_str() {
        "disk" => match device.child("target").and_then(|t| t.attr("dev")) {
            Some(dev) => format!("disk {dev}"),
            None => "disk".to_string(),
        },
        "controller" | "interface" | "video" | "sound" => match device.attr("type").or(device.attr("model")) {
            Some(kind) => format!("{} {kind}", device.name),
            None => device.name.clone(),
        },
        _ => device.name.clone(),
    }
}

fn parse_disk(disk: &Element, address: Option<Positioned<Address>>) -> Result<Disk, ParseError> {
    let disk_type = disk.attr("type").unwrap_or("file").to_string();
    let source = disk.child("source").and_then(|s| {
        let value = match disk_type.as_str() {
            "block" => s.attr("dev").map(|dev| DiskSource::Block { dev: dev.to_string() }),
            "volume" => Some(DiskSource::Volume {
                pool: s.attr("pool").map(str::to_string),
                volume: s.attr("volume").map(str::to_string),
            }),
            "network" => Some(DiskSource::Network {
                protocol: s.attr("protocol").map(str::to_string),
                name: s.attr("name").map(str::to_string),
            }),
            _ => s.attr("file").map(|path| DiskSource::File { path: path.to_string() }),
        }?;
        Some(Positioned { pos: s.pos, value })
    });
    let target = disk.child("target").map(|t| {
        let dev = t.attr("dev").unwrap_or_default().to_string();
        let explicit = t.attr("bus").map(str::to_string);
        Target {
            pos: t.pos,
            bus_explicit: explicit.is_some(),
            bus: explicit.or_else(|| bus_for_prefix(&dev).map(str::to_string)),
            dev,
        }
    });
    let boot_order = match disk.child("boot") {
        Some(boot) => match number_attr(boot, "order")? {
            Some(order) => Some(Positioned { pos: boot.pos, value: order }),
            None => return Err(invalid(boot, "order", "", "a boot order from 1 up")),
        },
        None => None,
    };
    Ok(Disk {
        pos: disk.pos,
        device: DiskDevice::from_attr(disk.attr("device")),
        disk_type,
        driver: disk.child("driver").map(|d| DiskDriver {
            pos: d.pos,
            name: d.attr("name").map(str::to_string),
            format: d.attr("type").map(str::to_string),
            cache: d.attr("cache").map(str::to_string),
        }),
        source,
        target,
        readonly: disk.child("readonly").is_some(),
        boot_order,
        address,
        serial: disk.child("serial").map(|s| s.text().to_string()),
    })
}

/// The bus libvirt assumes from a target name's prefix (its `virDiskNameToBusDeviceIndex` convention).
pub fn bus_for_prefix(dev: &str) -> Option<&'static str> {
    let prefix: String = dev.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let prefix = prefix.get(..2).unwrap_or(&prefix);
    Some(match prefix {
        "vd" => "virtio",
        "hd" => "ide",
        "sd" => "scsi",
        "fd" => "fdc",
        "xv" => "xen",
        "ub" => "usb",
        _ => return None,
    })
}

fn parse_address(address: &Element) -> Result<Positioned<Address>, ParseError> {
    let value = match address.attr("type") {
        Some("pci") => Address::Pci {
            domain: number_attr(address, "domain")?.unwrap_or(0),
            bus: number_attr(address, "bus")?.unwrap_or(0),
            slot: number_attr(address, "slot")?.unwrap_or(0),
            function: number_attr(address, "function")?.unwrap_or(0),
            multifunction: address.attr("multifunction") == Some("on"),
        },
        Some("drive") => Address::Drive {
            controller: number_attr(address, "controller")?.unwrap_or(0),
            bus: number_attr(address, "bus")?.unwrap_or(0),
            target: number_attr(address, "target")?.unwrap_or(0),
            unit: number_attr(address, "unit")?.unwrap_or(0),
        },
        other => Address::Other { kind: other.unwrap_or_default().to_string() },
    };
    Ok(Positioned { pos: address.pos, value })
}

/// Reads a decimal or `0x` hexadecimal attribute, as libvirt accepts them.
fn number_attr(element: &Element, name: &str) -> Result<Option<u32>, ParseError> {
    let Some(raw) = element.attr(name) else { return Ok(None) };
    let trimmed = raw.trim();
    let parsed = match trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => trimmed.parse::<u32>().ok(),
    };
    match parsed {
        Some(n) => Ok(Some(n)),
        None => Err(invalid(element, name, raw, "a decimal or 0x-prefixed hexadecimal number")),
    }
}

fn yes_no(element: &Element, name: &str) -> Result<Option<bool>, ParseError> {
    match element.attr(name) {
        None => Ok(None),
        Some("yes") => Ok(Some(true)),
        Some("no") => Ok(Some(false)),
        Some(other) => Err(invalid(element, name, other, "yes or no")),
    }
}

fn invalid(element: &Element, attr: &str, value: &str, expected: &str) -> ParseError {
    ParseError::InvalidValue {
        pos: element.pos,
        element: element.name.clone(),
        attr: attr.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}
