//! What a domain is expected to look like: the built-in ISO-install layouts, layouts described by scenario data, and classification.

use std::str::FromStr;

use guestsim::Layout;
use serde::{Deserialize, Serialize};

use super::model::{Chipset, Disk, DiskDevice, LibvirtDomain};

/// What to check a domain against. As data: a name (`auto` or a built-in layout's) or `{"layout": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ExpectationData", into = "ExpectationData")]
pub enum Expectation {
    /// A built-in layout: `stock` (upstream Nova's ISO boot, the ISO is the root CD-ROM; its consequence is reported
    /// as information), `patched` (the article's: blank virtio `disk.newos` first, the OS ISO and the VirtIO ISO as
    /// read-only CD-ROMs) or `patched-floppy` (`patched` plus a read-only driver floppy).
    Builtin(Layout),
    /// Classify the domain first, then check it as that layout.
    Auto,
    /// A layout described as data (a scenario's, a file's).
    Described(LayoutSpec),
}

impl Expectation {
    /// The layout to check against, given what the domain looks like (only `Auto` looks).
    pub fn resolve(&self, detected: Option<Layout>) -> Option<LayoutSpec> {
        match self {
            Expectation::Builtin(layout) => Some(LayoutSpec::builtin(*layout)),
            Expectation::Auto => detected.map(LayoutSpec::builtin),
            Expectation::Described(spec) => Some(spec.clone()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Expectation::Builtin(layout) => layout.as_str(),
            Expectation::Auto => "auto",
            Expectation::Described(spec) => &spec.name,
        }
    }
}

impl FromStr for Expectation {
    type Err = String;

    /// `auto` or a built-in layout's name, with the one message that lists them all.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Expectation::Auto),
            _ => s
                .parse()
                .map(Expectation::Builtin)
                .map_err(|_| format!("unknown expectation {s:?}: expected stock, patched, patched-floppy or auto")),
        }
    }
}

/// How an [`Expectation`] is written as data.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ExpectationData {
    Named(String),
    Described { layout: LayoutSpec },
}

impl TryFrom<ExpectationData> for Expectation {
    type Error = String;

    fn try_from(data: ExpectationData) -> Result<Self, Self::Error> {
        match data {
            ExpectationData::Named(name) => name.parse(),
            ExpectationData::Described { layout } => Ok(Expectation::Described(layout)),
        }
    }
}

impl From<Expectation> for ExpectationData {
    fn from(expectation: Expectation) -> Self {
        match expectation {
            Expectation::Described(layout) => ExpectationData::Described { layout },
            named => ExpectationData::Named(named.name().to_string()),
        }
    }
}

/// A disk layout as data: the devices in domain order (the first is what a snapshot captures) and firmware needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutSpec {
    pub name: String,
    pub devices: Vec<ExpectedDevice>,
    #[serde(default)]
    pub firmware: FirmwareNeeds,
}

/// What a layout needs from `<os>` and the TPM (Windows 11: UEFI, Secure Boot, TPM 2.0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareNeeds {
    #[serde(default)]
    pub uefi: bool,
    #[serde(default)]
    pub secure_boot: bool,
    /// TPM version, e.g. "2.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<String>,
}

/// One device a layout expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDevice {
    pub role: Role,
    pub kind: ExpectedKind,
    pub bus: ExpectedBus,
    /// File name(s) in the instance directory this device's source may have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Whether it must be read-only; `None` leaves it to the generic rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// Its expected position in the boot sequence (1 boots first); `None` when it need not boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<u32>,
    /// Whether the layout may leave it out (the ephemeral disk of a flavor without ephemeral space).
    #[serde(default)]
    pub optional: bool,
}

impl ExpectedDevice {
    pub fn describe(&self) -> String {
        match self.source.first() {
            Some(name) => format!("{} {} ({name})", self.role.as_str(), self.kind.as_str()),
            None => format!("{} {}", self.role.as_str(), self.kind.as_str()),
        }
    }
}

/// What a device is for in the install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Role {
    /// The disk the OS ends up on; the layout's first device is what a snapshot captures.
    Root,
    /// The OS installation ISO.
    Installer,
    /// A VirtIO driver CD-ROM.
    Drivers,
    /// A driver floppy for text-mode setup.
    DriverFloppy,
    /// The flavor's ephemeral disk.
    Ephemeral,
    Other,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The device kind a layout expects (the `<disk device=...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ExpectedKind {
    Disk,
    Cdrom,
    Floppy,
}

impl ExpectedKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn matches(self, device: &DiskDevice) -> bool {
        matches!(
            (self, device),
            (ExpectedKind::Disk, DiskDevice::Disk)
                | (ExpectedKind::Cdrom, DiskDevice::Cdrom)
                | (ExpectedKind::Floppy, DiskDevice::Floppy)
        )
    }
}

/// The bus a layout expects; `Removable` is the CD-ROM bus the machine type allows (Nova's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedBus {
    Virtio,
    Ide,
    Sata,
    Scsi,
    Fdc,
    Usb,
    /// IDE on i440fx, SATA on q35, SCSI on machines without either (as Nova picks a CD-ROM bus).
    Removable,
}

impl ExpectedBus {
    /// The bus names that satisfy this expectation on a given chipset.
    pub fn accepts(self, chipset: Chipset) -> &'static [&'static str] {
        match self {
            ExpectedBus::Virtio => &["virtio"],
            ExpectedBus::Ide => &["ide"],
            ExpectedBus::Sata => &["sata"],
            ExpectedBus::Scsi => &["scsi"],
            ExpectedBus::Fdc => &["fdc"],
            ExpectedBus::Usb => &["usb"],
            ExpectedBus::Removable => match chipset {
                Chipset::I440fx => &["ide"],
                Chipset::Q35 => &["sata"],
                Chipset::Other => &["scsi", "virtio", "usb"],
                Chipset::Unknown => &["ide", "sata"],
            },
        }
    }
}

impl LayoutSpec {
    /// The built-in description of a layout.
    pub fn builtin(layout: Layout) -> LayoutSpec {
        match layout {
            Layout::Stock => LayoutSpec::stock(),
            Layout::Patched => LayoutSpec::patched(),
            Layout::PatchedFloppy => LayoutSpec::patched_floppy(),
        }
    }

    /// Upstream Nova booting an ISO: the ISO overlay `disk` is the root CD-ROM; the ephemeral disk is optional.
    pub fn stock() -> LayoutSpec {
        LayoutSpec {
            name: "stock".into(),
            devices: vec![
                ExpectedDevice {
                    role: Role::Root,
                    kind: ExpectedKind::Cdrom,
                    bus: ExpectedBus::Removable,
                    source: vec!["disk".into()],
                    readonly: Some(true),
                    boot: Some(1),
                    optional: false,
                },
                ExpectedDevice {
                    role: Role::Ephemeral,
                    kind: ExpectedKind::Disk,
                    bus: ExpectedBus::Virtio,
                    source: vec!["disk.eph0".into(), "disk.local".into()],
                    readonly: Some(false),
                    boot: None,
                    optional: true,
                },
            ],
            firmware: FirmwareNeeds::default(),
        }
    }

    /// The article's layout (Listing 1).
    pub fn patched() -> LayoutSpec {
        LayoutSpec {
            name: "patched".into(),
            devices: vec![
                ExpectedDevice {
                    role: Role::Root,
                    kind: ExpectedKind::Disk,
                    bus: ExpectedBus::Virtio,
                    source: vec!["disk.newos".into()],
                    readonly: Some(false),
                    boot: Some(1),
                    optional: false,
                },
                ExpectedDevice {
                    role: Role::Installer,
                    kind: ExpectedKind::Cdrom,
                    bus: ExpectedBus::Removable,
                    source: vec!["disk".into()],
                    readonly: Some(true),
                    boot: Some(2),
                    optional: false,
                },
                ExpectedDevice {
                    role: Role::Drivers,
                    kind: ExpectedKind::Cdrom,
                    bus: ExpectedBus::Removable,
                    source: vec!["disk.virtio".into()],
                    readonly: Some(true),
                    boot: None,
                    optional: false,
                },
            ],
            firmware: FirmwareNeeds::default(),
        }
    }

    /// The article's suggested extension for text-mode Windows setup: `patched` plus a driver floppy.
    pub fn patched_floppy() -> LayoutSpec {
        let mut spec = LayoutSpec::patched();
        spec.name = "patched-floppy".into();
        spec.devices.push(ExpectedDevice {
            role: Role::DriverFloppy,
            kind: ExpectedKind::Floppy,
            bus: ExpectedBus::Fdc,
            source: vec!["disk.floppy".into()],
            readonly: Some(true),
            boot: None,
            optional: false,
        });
        spec
    }
}

/// Recognises which built-in layout a domain is, from its first disk and the removable media it carries.
pub fn classify(domain: &LibvirtDomain) -> Option<Layout> {
    let first = domain.disks.first()?;
    let has_floppy = domain.disks.iter().any(|d| d.device == DiskDevice::Floppy);
    let named = |name: &str| domain.disks.iter().any(|d| d.source_file_name() == Some(name));
    let patched_root = named("disk.newos") || (first.device == DiskDevice::Disk && installer_cdrom(domain).is_some());
    if patched_root {
        return Some(if has_floppy { Layout::PatchedFloppy } else { Layout::Patched });
    }
    (first.device == DiskDevice::Cdrom).then_some(Layout::Stock)
}

fn installer_cdrom(domain: &LibvirtDomain) -> Option<&Disk> {
    domain.disks.iter().find(|d| d.device == DiskDevice::Cdrom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expectation_is_auto_or_a_layout_name_and_a_wrong_name_lists_them() {
        assert_eq!("auto".parse(), Ok(Expectation::Auto));
        assert_eq!("patched-floppy".parse(), Ok(Expectation::Builtin(Layout::PatchedFloppy)));
        assert_eq!(Expectation::Builtin(Layout::PatchedFloppy).name(), "patched-floppy");
        assert_eq!(
            "sideways".parse::<Expectation>(),
            Err("unknown expectation \"sideways\": expected stock, patched, patched-floppy or auto".to_string())
        );
        assert_eq!(serde_json::to_string(&Expectation::Auto).unwrap(), r#""auto""#);
    }
}
