//! What the simulated hardware knows about a guest OS: facts read from its installation medium, and the media a guest can read.
//!
//! Shared vocabulary of `media` (which writes and reads these facts on ISO 9660 and FAT
//! images) and `hypervisor` (whose simulated installer decides from them what a real one would).

use serde::{Deserialize, Serialize};

/// The OS family, as Glance's `os_type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum OsFamily {
    Linux,
    Windows,
}

impl OsFamily {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The guest architecture, as libvirt and the kernel name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Arch {
    #[serde(rename = "x86_64")]
    #[strum(serialize = "x86_64")]
    X86_64,
    I686,
    Aarch64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The folder name the VirtIO-win media use for this architecture.
    pub fn virtio_win_folder(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::I686 => "x86",
            Arch::Aarch64 => "ARM64",
        }
    }
}

/// Where the guest's installer can get a virtio storage driver from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverSource {
    /// The installer's kernel has virtio_blk/virtio_pci (Linux 2.6.25 and later).
    BuiltIn,
    /// "Load driver" from a CD-ROM (Windows Vista/2008 and later).
    Cdrom,
    /// F6 from a floppy only (Windows XP/2003 text-mode setup).
    Floppy,
    /// No virtio driver exists for this OS (RHEL 4, Debian 4).
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

/// The cloud agent an unattended install puts in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestAgent {
    CloudInit,
    CloudbaseInit,
}

/// Facts about one guest OS, as its installation medium carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFacts {
    /// Human name, e.g. "Windows Server 2012".
    pub name: String,
    pub family: OsFamily,
    /// Release, e.g. "2012", "24.04", "6.4".
    pub release: String,
    /// Glance `os_distro` value, e.g. "windows", "ubuntu", "rhel".
    pub distro: String,
    pub arch: Arch,
    pub virtio_storage: DriverSource,
    /// The folder name for this OS on a VirtIO-win ISO (`viostor/<folder>/<arch>/`), e.g. "2k12", "w7".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtio_win_folder: Option<String>,
    /// The folder name for this OS on a driver floppy (`<arch>/<folder>/`), e.g. "Win2003", "WinXP".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floppy_folder: Option<String>,
    pub firmware: Firmware,
    #[serde(default)]
    pub needs_tpm: bool,
    #[serde(default)]
    pub needs_secure_boot: bool,
    pub min_ram_mb: u32,
    pub min_disk_gb: u32,
    /// How long an unattended install takes, in (virtual) seconds.
    pub install_seconds: u32,
    /// How long the installed system takes to boot, in (virtual) seconds.
    pub boot_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<GuestAgent>,
    /// Whether the install is unattended (answer file on the medium); an attended one waits at the console.
    #[serde(default = "yes")]
    pub unattended: bool,
}

fn yes() -> bool {
    true
}

/// Read access to the files of a medium attached to a guest (an ISO 9660 volume or a FAT floppy).
pub trait Medium {
    /// The ISO 9660 volume identifier or FAT volume label.
    fn volume_id(&self) -> &str;
    /// Whether a file exists; paths are `/`-separated, matched case-insensitively like Windows does.
    fn exists(&self, path: &str) -> bool;
    /// A file's content.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// Every file path on the medium.
    fn files(&self) -> Vec<String>;
}
