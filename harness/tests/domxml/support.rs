//! Shared helpers: fixture paths, the case table, and a small test-only renderer of generated layouts to XML.

use std::path::PathBuf;

use harness::domxml::LayoutSpec;
use serde::Deserialize;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/domxml"))
}

pub fn fixture(name: &str) -> String {
    let path = fixture_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

pub fn layout(name: &str) -> LayoutSpec {
    toml::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseTable {
    pub schema_valid: Vec<String>,
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub file: String,
    pub expect: Option<String>,
    pub layout: Option<String>,
    pub detected: String,
    pub findings: Vec<String>,
}

pub fn case_table() -> CaseTable {
    toml::from_str(&fixture("cases.toml")).unwrap_or_else(|e| panic!("cases.toml: {e}"))
}

/// A generated ISO-install layout, rendered to XML by [`render`] (independently of the validator and of mockstack).
#[derive(Debug, Clone)]
pub struct GenDomain {
    pub q35: bool,
    pub whole_domain: bool,
    pub per_device_boot: bool,
    pub with_addresses: bool,
    pub disks: Vec<GenDisk>,
    pub cache: &'static str,
}

#[derive(Debug, Clone)]
pub struct GenDisk {
    pub device: &'static str,
    pub file: String,
    pub dev: String,
    pub bus: &'static str,
    pub format: &'static str,
    pub readonly: bool,
    pub boot: Option<u32>,
    pub address: Option<GenAddress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenAddress {
    Pci { bus: u32, slot: u32 },
    Drive { controller: u32, bus: u32, unit: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenLayout {
    Stock { ephemeral: bool },
    Patched,
    PatchedFloppy,
}

pub const INSTANCE_DIR: &str = "/var/lib/nova/instances/1e2d3c4b-5a69-4788-9a1b-2c3d4e5f6071";

impl GenDomain {
    /// The layout as Nova (stock or patched) would assemble it on the chosen machine type.
    pub fn new(
        layout: GenLayout,
        q35: bool,
        whole_domain: bool,
        per_device_boot: bool,
        with_addresses: bool,
        ephemeral_name: &str,
    ) -> GenDomain {
        let cd_bus = if q35 { "sata" } else { "ide" };
        let cd_prefix = if q35 { "sd" } else { "hd" };
        let pci =
            |n: u32| if q35 { GenAddress::Pci { bus: n, slot: 0 } } else { GenAddress::Pci { bus: 0, slot: 3 + n } };
        let cdrom = |file: &str, index: u32| GenDisk {
            device: "cdrom",
            file: file.to_string(),
            dev: format!("{cd_prefix}{}", char::from(b'a' + index as u8)),
            bus: cd_bus,
            format: "qcow2",
            readonly: true,
            boot: None,
            address: Some(GenAddress::Drive {
                controller: 0,
                bus: if q35 { 0 } else { index / 2 },
                unit: if q35 { index } else { index % 2 },
            }),
        };
        let virtio = |file: &str, dev: &str, n: u32| GenDisk {
            device: "disk",
            file: file.to_string(),
            dev: dev.to_string(),
            bus: "virtio",
            format: "qcow2",
            readonly: false,
            boot: None,
            address: Some(pci(n)),
        };
        let mut disks = match layout {
            GenLayout::Stock { ephemeral } => {
                let mut d = vec![GenDisk { boot: Some(1), ..cdrom("disk", 0) }];
                if ephemeral {
                    d.push(virtio(ephemeral_name, "vda", 1));
                }
                d
            }
            GenLayout::Patched | GenLayout::PatchedFloppy => {
                let mut d = vec![
                    GenDisk { boot: Some(1), ..virtio("disk.newos", "vda", 1) },
                    GenDisk { boot: Some(2), ..cdrom("disk", 0) },
                    cdrom("disk.virtio", 1),
                ];
                if layout == GenLayout::PatchedFloppy {
                    d.push(GenDisk {
                        device: "floppy",
                        file: "disk.floppy".into(),
                        dev: "fda".into(),
                        bus: "fdc",
                        format: "raw",
                        readonly: true,
                        boot: None,
                        address: Some(GenAddress::Drive { controller: 0, bus: 0, unit: 0 }),
                    });
                }
                d
            }
        };
        if !with_addresses {
            for disk in &mut disks {
                disk.address = None;
            }
        }
        GenDomain { q35, whole_domain, per_device_boot, with_addresses, disks, cache: "none" }
    }
}

pub fn render(domain: &GenDomain) -> String {
    let mut disks = String::new();
    for d in &domain.disks {
        disks.push_str(&format!("    <disk type='file' device='{}'>\n", d.device));
        disks.push_str(&format!("      <driver name='qemu' type='{}' cache='{}'/>\n", d.format, domain.cache));
        disks.push_str(&format!("      <source file='{INSTANCE_DIR}/{}'/>\n", d.file));
        disks.push_str(&format!("      <target dev='{}' bus='{}'/>\n", d.dev, d.bus));
        if let (true, Some(order)) = (domain.per_device_boot, d.boot) {
            disks.push_str(&format!("      <boot order='{order}'/>\n"));
        }
        if d.readonly {
            disks.push_str("      <readonly/>\n");
        }
        match d.address {
            Some(GenAddress::Pci { bus, slot }) => disks.push_str(&format!(
                "      <address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' function='0x0'/>\n"
            )),
            Some(GenAddress::Drive { controller, bus, unit }) => disks.push_str(&format!(
                "      <address type='drive' controller='{controller}' bus='{bus}' target='0' unit='{unit}'/>\n"
            )),
            None => {}
        }
        disks.push_str("    </disk>\n");
    }
    if !domain.whole_domain {
        return disks;
    }
    let machine = if domain.q35 { "pc-q35-7.2" } else { "pc-i440fx-7.2" };
    let boot = if domain.per_device_boot {
        String::new()
    } else {
        let mut kinds: Vec<(u32, &str)> = domain
            .disks
            .iter()
            .filter_map(|d| {
                d.boot.map(|b| {
                    (
                        b,
                        if d.device == "disk" {
                            "hd"
                        } else if d.device == "cdrom" {
                            "cdrom"
                        } else {
                            "fd"
                        },
                    )
                })
            })
            .collect();
        kinds.sort();
        kinds.iter().map(|(_, k)| format!("    <boot dev='{k}'/>\n")).collect()
    };
    let controllers = if domain.q35 {
        "    <controller type='pci' index='0' model='pcie-root'/>\n    <controller type='pci' index='1' model='pcie-root-port'/>\n    <controller type='pci' index='2' model='pcie-root-port'/>\n    <controller type='sata' index='0'/>\n"
    } else {
        "    <controller type='pci' index='0' model='pci-root'/>\n    <controller type='ide' index='0'/>\n"
    };
    format!(
        "<domain type='qemu'>\n  <name>instance-00000007</name>\n  <memory unit='KiB'>524288</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n{boot}  </os>\n  <features>\n    <acpi/>\n  </features>\n  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n{disks}{controllers}  </devices>\n</domain>\n"
    )
}
