//! Test support for the hypervisor modules: in-memory media, a table of guest OS facts, and the media a patched host attaches.

use std::collections::BTreeMap;

use crate::guest::{Arch, DriverSource, Firmware, GuestAgent, GuestFacts, Medium, OsFamily};
use crate::hypervisor::installer::GUEST_FACTS_PATH;

/// A medium held in memory; paths match case-insensitively, as the trait asks.
#[derive(Debug, Clone, Default)]
pub struct MemMedium {
    pub volume_id: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl MemMedium {
    pub fn new(volume_id: &str) -> MemMedium {
        MemMedium { volume_id: volume_id.into(), files: BTreeMap::new() }
    }

    pub fn with(mut self, path: &str, content: &[u8]) -> MemMedium {
        self.files.insert(normalize(path), content.to_vec());
        self
    }
}

fn normalize(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/').to_ascii_lowercase())
}

impl Medium for MemMedium {
    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(&normalize(path))
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(&normalize(path)).cloned()
    }

    fn files(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }
}

/// An installation medium carrying `facts`.
pub fn installer_medium(facts: &GuestFacts) -> MemMedium {
    let toml = toml::to_string(facts).unwrap_or_default();
    MemMedium::new(&facts.name.to_ascii_uppercase().replace(' ', "_")).with(GUEST_FACTS_PATH, toml.as_bytes())
}

/// The VirtIO-win CD folders (docs/guest-matrix.md#virtio-win), with viostor and NetKVM for each OS and arch.
pub fn virtio_win_iso() -> MemMedium {
    let mut medium = MemMedium::new("virtio-win-0.1.285");
    let folders = [
        ("xp", &["x86", "amd64"][..]),
        ("2k3", &["x86", "amd64"]),
        ("2k8", &["x86", "amd64"]),
        ("2k8R2", &["amd64"]),
        ("w7", &["x86", "amd64"]),
        ("w8", &["x86", "amd64"]),
        ("w8.1", &["x86", "amd64"]),
        ("2k12", &["amd64"]),
        ("2k12R2", &["amd64"]),
        ("w10", &["x86", "amd64", "ARM64"]),
        ("2k16", &["amd64"]),
        ("2k19", &["amd64"]),
        ("w11", &["amd64", "ARM64"]),
        ("2k22", &["amd64"]),
        ("2k25", &["amd64", "ARM64"]),
    ];
    for (os, arches) in folders {
        for arch in arches {
            for driver in ["viostor", "NetKVM"] {
                let name = driver.to_ascii_lowercase();
                medium = medium
                    .with(&format!("{driver}/{os}/{arch}/{name}.inf"), b"[Version]\r\n")
                    .with(&format!("{driver}/{os}/{arch}/{name}.sys"), b"MZ");
            }
        }
    }
    medium
}

/// A driver floppy like `virtio-win_amd64.vfd`/`_x86.vfd`: `txtsetup.oem` plus per-OS folders.
pub fn driver_floppy() -> MemMedium {
    let mut medium = MemMedium::new("VIRTIO").with("txtsetup.oem", b"[Disks]\r\n").with("disk1", b"");
    for arch in ["i386", "amd64"] {
        for os in ["WinXP", "Win2003", "Win2008", "Win2008R2", "Win7"] {
            for driver in ["viostor", "netkvm"] {
                medium = medium
                    .with(&format!("{arch}/{os}/{driver}.inf"), b"[Version]\r\n")
                    .with(&format!("{arch}/{os}/{driver}.sys"), b"MZ");
            }
        }
    }
    medium
}

#[allow(clippy::too_many_arguments)] // one row of the table, named by position like the table itself
fn os(
    name: &str,
    family: OsFamily,
    release: &str,
    distro: &str,
    arch: Arch,
    virtio: DriverSource,
    folders: (Option<&str>, Option<&str>),
    min_disk_gb: u32,
) -> GuestFacts {
    GuestFacts {
        name: name.into(),
        family,
        release: release.into(),
        distro: distro.into(),
        arch,
        virtio_storage: virtio,
        virtio_win_folder: folders.0.map(Into::into),
        floppy_folder: folders.1.map(Into::into),
        firmware: Firmware::Bios,
        needs_tpm: false,
        needs_secure_boot: false,
        min_ram_mb: 512,
        min_disk_gb,
        install_seconds: 600,
        boot_seconds: 30,
        agent: Some(if family == OsFamily::Windows { GuestAgent::CloudbaseInit } else { GuestAgent::CloudInit }),
        unattended: true,
    }
}

/// The reconstructed Table-1 rows (docs/guest-matrix.md) plus Ubuntu 24.04, RHEL 9, Windows Server 2022 and Windows 11,
/// with the image properties a scenario would set for each.
pub fn os_table() -> Vec<(GuestFacts, Vec<(&'static str, &'static str)>)> {
    use DriverSource::*;
    use OsFamily::*;
    let x64 = Arch::X86_64;
    let linux = |name, release, distro, virtio, disk| os(name, Linux, release, distro, x64, virtio, (None, None), disk);
    let windows = |name, release, cd: &str, floppy: Option<&str>, virtio, arch, disk| {
        os(name, Windows, release, "windows", arch, virtio, (Some(cd), floppy), disk)
    };
    let win_props = vec![("os_type", "windows"), ("hw_vif_model", "e1000")];
    let mut windows_11 = windows("Windows 11", "11", "w11", None, Cdrom, x64, 64);
    windows_11.firmware = Firmware::Uefi;
    windows_11.needs_tpm = true;
    windows_11.needs_secure_boot = true;
    vec![
        (linux("RHEL 6.4", "6.4", "rhel", BuiltIn, 4), vec![]),
        (linux("CentOS 6.4", "6.4", "centos", BuiltIn, 4), vec![]),
        (linux("Ubuntu 12.04 LTS", "12.04", "ubuntu", BuiltIn, 4), vec![]),
        (linux("SLES 11 SP2", "11.2", "sles", BuiltIn, 4), vec![]),
        (linux("Fedora 18", "18", "fedora", BuiltIn, 4), vec![]),
        (windows("Windows 7", "7", "w7", Some("Win7"), Cdrom, x64, 16), win_props.clone()),
        (windows("Windows 8", "8", "w8", None, Cdrom, x64, 16), win_props.clone()),
        (windows("Windows Server 2008 R2", "2008r2", "2k8R2", Some("Win2008R2"), Cdrom, x64, 32), win_props.clone()),
        (windows("Windows Server 2012", "2012", "2k12", None, Cdrom, x64, 32), win_props.clone()),
        (windows("Windows Server 2003 R2", "2003r2", "2k3", Some("Win2003"), Floppy, x64, 3), win_props.clone()),
        (windows("Windows XP", "xp", "xp", Some("WinXP"), Floppy, Arch::I686, 2), win_props.clone()),
        (linux("RHEL 4", "4.9", "rhel", Unavailable, 2), vec![]),
        (linux("Ubuntu 24.04 LTS", "24.04", "ubuntu", BuiltIn, 10), vec![]),
        (linux("RHEL 9", "9.4", "rhel", BuiltIn, 10), vec![]),
        (windows("Windows Server 2022", "2022", "2k22", None, Cdrom, x64, 32), win_props.clone()),
        (
            windows_11,
            vec![
                ("os_type", "windows"),
                ("hw_vif_model", "e1000"),
                ("hw_machine_type", "q35"),
                ("hw_firmware_type", "uefi"),
                ("os_secure_boot", "required"),
                ("hw_tpm_version", "2.0"),
                ("hw_tpm_model", "tpm-crb"),
            ],
        ),
    ]
}
