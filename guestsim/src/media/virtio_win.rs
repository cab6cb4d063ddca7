//! The VirtIO-win driver media mockstack generates: the driver ISO laid out like virtio-win 0.1.285 and the `.vfd` driver floppies.
//!
//! Which driver exists for which Windows release and architecture follows from a table of Windows
//! releases (folder names, NT version, server or client, build) and a few rules taken from the
//! virtio-win packaging (docs/guest-matrix.md#virtio-win): vioscsi exists from Windows Server 2008 (NT 6.0) on,
//! x86 builds exist for clients before Windows 11 and servers before 2008 R2, ARM64 builds for
//! Windows 10/11 and Server 2025. Driver files are small text stand-ins, but each `.inf` names
//! its target OS and architecture in real `[Manufacturer]` decorations, which [`inf_target`] reads back.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use jiff::civil::DateTime;

use super::iso9660::IsoBuilder;
use super::{FloppyBuilder, FloppySize, MediaError};
use crate::guest::Arch;

/// One Windows release as the VirtIO-win media know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsRelease {
    /// Folder on the driver ISO, e.g. "2k12R2".
    pub folder: &'static str,
    /// Folder on a driver floppy, e.g. "Win2003".
    pub floppy_folder: &'static str,
    pub name: &'static str,
    pub server: bool,
    /// NT major.minor, e.g. "6.3".
    pub nt_version: &'static str,
    /// Build number for releases that share NT 10.0.
    pub build: Option<u32>,
}

const fn release(
    folder: &'static str,
    floppy_folder: &'static str,
    name: &'static str,
    server: bool,
    nt_version: &'static str,
    build: Option<u32>,
) -> WindowsRelease {
    WindowsRelease { folder, floppy_folder, name, server, nt_version, build }
}

/// Every OS folder of virtio-win 0.1.285, in the packaging's order.
pub const WINDOWS_RELEASES: [WindowsRelease; 15] = [
    release("xp", "WinXP", "Windows XP", false, "5.1", None),
    release("2k3", "Win2003", "Windows Server 2003", true, "5.2", None),
    release("2k8", "Win2008", "Windows Server 2008", true, "6.0", None),
    release("2k8R2", "Win2008R2", "Windows Server 2008 R2", true, "6.1", None),
    release("w7", "Win7", "Windows 7", false, "6.1", None),
    release("w8", "Win8", "Windows 8", false, "6.2", None),
    release("w8.1", "Win8.1", "Windows 8.1", false, "6.3", None),
    release("2k12", "Win2012", "Windows Server 2012", true, "6.2", None),
    release("2k12R2", "Win2012R2", "Windows Server 2012 R2", true, "6.3", None),
    release("w10", "Win10", "Windows 10", false, "10.0", Some(10240)),
    release("2k16", "Win2016", "Windows Server 2016", true, "10.0", Some(14393)),
    release("2k19", "Win2019", "Windows Server 2019", true, "10.0", Some(17763)),
    release("w11", "Win11", "Windows 11", false, "10.0", Some(22000)),
    release("2k22", "Win2022", "Windows Server 2022", true, "10.0", Some(20348)),
    release("2k25", "Win2025", "Windows Server 2025", true, "10.0", Some(26100)),
];

impl WindowsRelease {
    /// Looks a release up by its ISO folder or floppy folder name (case-insensitive).
    pub fn by_folder(folder: &str) -> Option<&'static WindowsRelease> {
        WINDOWS_RELEASES
            .iter()
            .find(|r| r.folder.eq_ignore_ascii_case(folder) || r.floppy_folder.eq_ignore_ascii_case(folder))
    }

    fn nt(&self) -> (u32, u32) {
        let (major, minor) = self.nt_version.split_once('.').unwrap_or((self.nt_version, "0"));
        (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
    }

    /// The architectures virtio-win builds drivers for on this release.
    pub fn archs(&self) -> Vec<Arch> {
        let build = self.build.unwrap_or(0);
        let x86 = if self.server { self.nt() < (6, 1) } else { build < 22000 };
        let arm64 = if self.server { build >= 26100 } else { self.nt() >= (10, 0) };
        let mut archs = Vec::new();
        if x86 {
            archs.push(Arch::I686);
        }
        archs.push(Arch::X86_64);
        if arm64 {
            archs.push(Arch::Aarch64);
        }
        archs
    }

    /// The drivers virtio-win ships for this release.
    pub fn drivers(&self) -> impl Iterator<Item = &'static DriverPackage> + '_ {
        DRIVERS.iter().filter(|driver| self.nt() >= driver.min_nt)
    }

    /// The INF `[Manufacturer]` decoration, e.g. `NTamd64.10.0.3..17763` (product type 1 client, 3 server).
    fn decoration(&self, arch: Arch) -> String {
        let arch = inf_arch(arch);
        let product = if self.server { 3 } else { 1 };
        match self.build {
            Some(build) => format!("NT{arch}.{}.{product}..{build}", self.nt_version),
            None => format!("NT{arch}.{}.{product}", self.nt_version),
        }
    }
}

fn inf_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::I686 => "x86",
        Arch::Aarch64 => "arm64",
    }
}

/// A VirtIO driver package.
#[derive(Debug, PartialEq, Eq)]
pub struct DriverPackage {
    /// Top-level folder on the ISO, e.g. "NetKVM".
    pub folder: &'static str,
    /// Base name of its `.inf`/`.sys`/`.cat`, e.g. "netkvm".
    pub file: &'static str,
    class: &'static str,
    class_guid: &'static str,
    description: &'static str,
    /// Legacy and modern virtio PCI device ids.
    device_ids: [&'static str; 2],
    min_nt: (u32, u32),
    storage: bool,
}

const DRIVERS: [DriverPackage; 5] = [
    DriverPackage {
        folder: "viostor",
        file: "viostor",
        class: "SCSIAdapter",
        class_guid: "{4D36E97B-E325-11CE-BFC1-08002BE10318}",
        description: "Red Hat VirtIO SCSI controller",
        device_ids: ["DEV_1001", "DEV_1042"],
        min_nt: (5, 1),
        storage: true,
    },
    DriverPackage {
        folder: "vioscsi",
        file: "vioscsi",
        class: "SCSIAdapter",
        class_guid: "{4D36E97B-E325-11CE-BFC1-08002BE10318}",
        description: "Red Hat VirtIO SCSI pass-through controller",
        device_ids: ["DEV_1004", "DEV_1048"],
        min_nt: (6, 0),
        storage: true,
    },
    DriverPackage {
        folder: "NetKVM",
        file: "netkvm",
        class: "Net",
        class_guid: "{4D36E972-E325-11CE-BFC1-08002BE10318}",
        description: "Red Hat VirtIO Ethernet Adapter",
        device_ids: ["DEV_1000", "DEV_1041"],
        min_nt: (5, 1),
        storage: false,
    },
    DriverPackage {
        folder: "Balloon",
        file: "balloon",
        class: "System",
        class_guid: "{4D36E97D-E325-11CE-BFC1-08002BE10318}",
        description: "VirtIO Balloon Driver",
        device_ids: ["DEV_1002", "DEV_1045"],
        min_nt: (5, 1),
        storage: false,
    },
    DriverPackage {
        folder: "vioserial",
        file: "vioser",
        class: "System",
        class_guid: "{4D36E97D-E325-11CE-BFC1-08002BE10318}",
        description: "VirtIO Serial Driver",
        device_ids: ["DEV_1003", "DEV_1043"],
        min_nt: (5, 1),
        storage: false,
    },
];

/// The three files of one driver build: `.inf`, `.sys`, `.cat`.
fn driver_files(driver: &DriverPackage, release: &WindowsRelease, arch: Arch, version: &str) -> [(String, Vec<u8>); 3] {
    let decoration = release.decoration(arch);
    let [legacy, modern] = driver.device_ids;
    let driver_ver = driver_version(version);
    let inf = format!(
        "; {file}.inf: {description}\r\n\
         ; virtio-win {version} build for {name} ({folder}), {arch}\r\n\
         \r\n\
         [Version]\r\n\
         Signature=\"$WINDOWS NT$\"\r\n\
         Class={class}\r\n\
         ClassGuid={guid}\r\n\
         Provider=%VENDOR%\r\n\
         CatalogFile={file}.cat\r\n\
         DriverVer=01/01/2025,{driver_ver}\r\n\
         \r\n\
         [Manufacturer]\r\n\
         %VENDOR% = RedHat,{decoration}\r\n\
         \r\n\
         [RedHat.{decoration}]\r\n\
         %{file}.DeviceDesc% = {file}_inst, PCI\\VEN_1AF4&{legacy}&SUBSYS_00021AF4&REV_00\r\n\
         %{file}.DeviceDesc% = {file}_inst, PCI\\VEN_1AF4&{modern}&SUBSYS_11001AF4&REV_01\r\n\
         \r\n\
         [{file}_inst]\r\n\
         CopyFiles = {file}_files\r\n\
         \r\n\
         [{file}_files]\r\n\
         {file}.sys\r\n\
         \r\n\
         [Strings]\r\n\
         VENDOR = \"Red Hat, Inc.\"\r\n\
         {file}.DeviceDesc = \"{description}\"\r\n",
        file = driver.file,
        description = driver.description,
        name = release.name,
        folder = release.folder,
        arch = arch.virtio_win_folder(),
        class = driver.class,
        guid = driver.class_guid,
    );
    let sys = format!(
        "MZ isoharness stand-in for {file}.sys {driver_ver} ({description}) for {name} {arch}\n",
        file = driver.file,
        description = driver.description,
        name = release.name,
        arch = arch.virtio_win_folder(),
    );
    let cat = format!("isoharness stand-in catalog for {}.inf, {decoration}\n", driver.file);
    [
        (format!("{}.inf", driver.file), inf.into_bytes()),
        (format!("{}.sys", driver.file), sys.into_bytes()),
        (format!("{}.cat", driver.file), cat.into_bytes()),
    ]
}

/// `DriverVer` numbering like virtio-win's: 0.1.285 becomes 100.101.104.28500.
fn driver_version(version: &str) -> String {
    let patch: u32 = version.rsplit('.').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    format!("100.101.104.{}", patch.saturating_mul(100))
}

/// What a driver `.inf` targets, read from its `[Manufacturer]` decoration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfTarget {
    pub arch: Arch,
    /// NT major.minor, e.g. "6.2".
    pub nt_version: String,
    /// Product type: `Some(true)` for servers (3), `Some(false)` for workstations (1).
    pub server: Option<bool>,
    pub build: Option<u32>,
}

impl InfTarget {
    /// The Windows release this target names, when it names exactly one known release.
    pub fn release(&self) -> Option<&'static WindowsRelease> {
        let mut matching = WINDOWS_RELEASES.iter().filter(|r| {
            r.nt_version == self.nt_version
                && self.server.is_none_or(|server| server == r.server)
                && (self.build.is_none() || r.build == self.build)
        });
        let first = matching.next()?;
        matching.next().is_none().then_some(first)
    }
}

/// Reads the target OS and architecture of a driver from the text of its `.inf`.
pub fn inf_target(inf: &str) -> Option<InfTarget> {
    let mut in_manufacturer = false;
    for line in inf.lines() {
        let line = line.split(';').next().unwrap_or_default().trim();
        if line.starts_with('[') {
            in_manufacturer = line.eq_ignore_ascii_case("[Manufacturer]");
            continue;
        }
        if !in_manufacturer || line.is_empty() {
            continue;
        }
        let (_, models) = line.split_once('=')?;
        let decoration = models.split(',').nth(1)?.trim();
        let rest = decoration.get(..2).filter(|nt| nt.eq_ignore_ascii_case("NT")).map(|_| &decoration[2..])?;
        let mut fields = rest.split('.');
        let arch = match fields.next()?.to_ascii_lowercase().as_str() {
            "amd64" => Arch::X86_64,
            "x86" => Arch::I686,
            "arm64" => Arch::Aarch64,
            _ => return None,
        };
        let major = fields.next()?;
        let minor = fields.next().unwrap_or("0");
        let server = match fields.next() {
            Some("3") | Some("2") => Some(true),
            Some("1") => Some(false),
            _ => None,
        };
        let _suite = fields.next();
        let build = fields.next().and_then(|b| b.parse().ok());
        return Some(InfTarget { arch, nt_version: format!("{major}.{minor}"), server, build });
    }
    None
}

/// Which VirtIO-win driver ISO build an operator offers: the full upstream build, or a
/// RHEL-style build without the folders of Windows XP, Server 2003 and Server 2008.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum VirtioWinBuild {
    /// Every OS folder, like virtio-win 0.1.285.
    #[default]
    Full,
    /// No `xp`, `2k3` or `2k8` folders, like the virtio-win RPM of RHEL.
    Rhel,
}

impl VirtioWinBuild {
    /// The content of this build's ISO.
    pub fn spec(self) -> VirtioWinSpec {
        match self {
            VirtioWinBuild::Full => VirtioWinSpec::current(),
            VirtioWinBuild::Rhel => VirtioWinSpec::rhel_style(),
        }
    }
}

/// Which VirtIO-win driver ISO to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioWinSpec {
    /// Package version, e.g. "0.1.285"; the volume id is `virtio-win-<version>`.
    pub version: String,
    /// ISO OS folders present (names from [`WINDOWS_RELEASES`]).
    pub os_folders: BTreeSet<String>,
    pub created: DateTime,
}

impl VirtioWinSpec {
    /// The current public build, 0.1.285, with every OS folder (old ones as frozen copies).
    pub fn current() -> Self {
        VirtioWinSpec {
            version: "0.1.285".to_owned(),
            os_folders: WINDOWS_RELEASES.iter().map(|r| r.folder.to_owned()).collect(),
            created: DateTime::constant(2025, 9, 1, 0, 0, 0, 0),
        }
    }

    /// A RHEL build after RHEL 7: the same drivers without the xp, 2k3 and 2k8 folders.
    pub fn rhel_style() -> Self {
        Self::current().without(&["xp", "2k3", "2k8"])
    }

    /// This spec without some OS folders (a driver ISO that lacks a guest's folder).
    pub fn without(mut self, folders: &[&str]) -> Self {
        self.os_folders.retain(|folder| !folders.iter().any(|f| f.eq_ignore_ascii_case(folder)));
        self
    }

    pub fn volume_id(&self) -> String {
        format!("virtio-win-{}", self.version)
    }

    fn releases(&self) -> Result<Vec<&'static WindowsRelease>, MediaError> {
        let mut releases = Vec::new();
        for folder in &self.os_folders {
            let release = WINDOWS_RELEASES.iter().find(|r| r.folder == folder).ok_or_else(|| {
                MediaError::InvalidPath { path: folder.clone(), reason: "not a virtio-win os folder".to_owned() }
            })?;
            releases.push(release);
        }
        releases.sort_by_key(|r| WINDOWS_RELEASES.iter().position(|known| known == *r));
        Ok(releases)
    }
}

/// Writes the VirtIO-win driver ISO described by `spec`.
pub fn virtio_win_iso(spec: &VirtioWinSpec, out: &mut impl Write) -> Result<(), MediaError> {
    let releases = spec.releases()?;
    let mut iso = IsoBuilder::new(&spec.volume_id(), spec.created)?.publisher("Red Hat, Inc.");
    let mut info = Vec::new();
    for release in &releases {
        for driver in release.drivers() {
            for arch in release.archs() {
                let dir = format!("{}/{}/{}", driver.folder, release.folder, arch.virtio_win_folder());
                for (name, content) in driver_files(driver, release, arch, &spec.version) {
                    iso.add_file(&format!("{dir}/{name}"), content)?;
                }
                info.push(serde_json::json!({
                    "name": driver.folder,
                    "windows_version": release.folder,
                    "arch": arch.virtio_win_folder(),
                    "inf": format!("{dir}/{}.inf", driver.file),
                    "driver_version": driver_version(&spec.version),
                }));
            }
        }
        // Shortcut folders carry the storage drivers of Windows 10 / Server 2016 and later.
        if release.build.is_some() {
            for arch in release.archs().into_iter().filter(|a| *a != Arch::Aarch64) {
                let shortcut = if arch == Arch::I686 { "i386" } else { "amd64" };
                for driver in release.drivers().filter(|d| d.storage) {
                    for (name, content) in driver_files(driver, release, arch, &spec.version) {
                        iso.add_file(&format!("{shortcut}/{}/{name}", release.folder), content)?;
                    }
                }
            }
        }
    }
    let text = |what: &str| format!("isoharness stand-in for {what} (virtio-win {})\n", spec.version);
    iso.add_file("guest-agent/qemu-ga-x86_64.msi", text("the QEMU guest agent, x86_64"))?;
    iso.add_file("guest-agent/qemu-ga-i386.msi", text("the QEMU guest agent, i386"))?;
    iso.add_file("virtio-win-gt-x64.msi", text("the driver installer, x64"))?;
    iso.add_file("virtio-win-gt-x86.msi", text("the driver installer, x86"))?;
    iso.add_file("virtio-win-guest-tools.exe", text("the guest tools bundle"))?;
    iso.add_file("virtio-win_license.txt", text("the license text"))?;
    let info = serde_json::json!({ "version": spec.version, "drivers": info });
    let info = serde_json::to_vec_pretty(&info).map_err(|e| MediaError::Write(std::io::Error::other(e)))?;
    iso.add_file("data/info.json", info)?;
    iso.write(out)?;
    Ok(())
}

/// [`virtio_win_iso`] into a file.
pub fn virtio_win_iso_to_file(spec: &VirtioWinSpec, path: &Path) -> Result<(), MediaError> {
    write_file(path, |out| virtio_win_iso(spec, out))
}

pub(crate) fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let io_error = |source| MediaError::Io { path: path.to_path_buf(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_error)?);
    write(&mut out)?;
    out.flush().map_err(io_error)
}

/// The architecture folder of a driver floppy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloppyArch {
    X86,
    Amd64,
}

impl FloppyArch {
    /// The floppy a guest of this architecture uses; there are no ARM64 floppies.
    pub fn for_guest(arch: Arch) -> Option<Self> {
        match arch {
            Arch::X86_64 => Some(FloppyArch::Amd64),
            Arch::I686 => Some(FloppyArch::X86),
            Arch::Aarch64 => None,
        }
    }

    /// The folder on the floppy: `i386` or `amd64`.
    pub fn dir(self) -> &'static str {
        match self {
            FloppyArch::X86 => "i386",
            FloppyArch::Amd64 => "amd64",
        }
    }

    /// The image's file name in the virtio-win packaging.
    pub fn image_name(self) -> &'static str {
        match self {
            FloppyArch::X86 => "virtio-win_x86.vfd",
            FloppyArch::Amd64 => "virtio-win_amd64.vfd",
        }
    }

    fn arch(self) -> Arch {
        match self {
            FloppyArch::X86 => Arch::I686,
            FloppyArch::Amd64 => Arch::X86_64,
        }
    }
}

/// Which driver floppy to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverFloppySpec {
    pub arch: FloppyArch,
    /// virtio-win version the drivers come from (the last public `.vfd` was 0.1.190).
    pub version: String,
    /// Floppy OS folders present, e.g. "WinXP", "Win2003" (names from [`WINDOWS_RELEASES`]).
    pub os_folders: Vec<String>,
    /// FAT volume label.
    pub label: String,
    pub created: DateTime,
}

impl DriverFloppySpec {
    /// `virtio-win_x86.vfd` or `virtio-win_amd64.vfd` of 0.1.190: the text-mode and early "Load driver" releases.
    pub fn for_arch(arch: FloppyArch) -> Self {
        let folders: &[&str] = match arch {
            FloppyArch::X86 => &["WinXP", "Win2003", "Win2008", "Win7"],
            FloppyArch::Amd64 => &["WinXP", "Win2003", "Win2008", "Win2008R2", "Win7"],
        };
        DriverFloppySpec {
            arch,
            version: "0.1.190".to_owned(),
            os_folders: folders.iter().map(|f| (*f).to_owned()).collect(),
            label: "VIRTIO-WIN".to_owned(),
            created: DateTime::constant(2020, 11, 1, 0, 0, 0, 0),
        }
    }
}

/// Writes a 2.88 MB driver floppy: `txtsetup.oem`, the `disk1` tag file, and `<i386|amd64>/<OS>/` driver folders.
pub fn driver_floppy(spec: &DriverFloppySpec, out: &mut impl Write) -> Result<(), MediaError> {
    let arch = spec.arch.arch();
    let mut floppy = FloppyBuilder::new(FloppySize::Floppy2880K, &spec.label, spec.created)?;
    floppy.add_file("disk1", Vec::new())?;
    let mut scsi = String::new();
    let mut sections = String::new();
    for folder in &spec.os_folders {
        let release = WindowsRelease::by_folder(folder).filter(|r| r.archs().contains(&arch)).ok_or_else(|| {
            MediaError::InvalidPath {
                path: folder.clone(),
                reason: format!("not a windows release with {} drivers", spec.arch.dir()),
            }
        })?;
        let dir = format!("{}/{}", spec.arch.dir(), release.floppy_folder);
        for driver in release.drivers().filter(|d| d.storage || d.folder == "NetKVM") {
            for (name, content) in driver_files(driver, release, arch, &spec.version) {
                floppy.add_file(&format!("{dir}/{name}"), content)?;
            }
            if !driver.storage {
                continue;
            }
            let key = format!("{}_{}_{}", driver.file, release.floppy_folder, spec.arch.dir()).replace('.', "_");
            let dos_dir = format!("\\{}\\{}", spec.arch.dir(), release.floppy_folder);
            scsi.push_str(&format!(
                "{key} = \"{} ({} {})\"\r\n",
                driver.description,
                release.name,
                arch.virtio_win_folder()
            ));
            sections.push_str(&format!(
                "\r\n[Files.SCSI.{key}]\r\n\
                 driver  = d1, {dos_dir}\\{file}.sys, {file}\r\n\
                 inf     = d1, {dos_dir}\\{file}.inf\r\n\
                 catalog = d1, {dos_dir}\\{file}.cat\r\n\
                 \r\n\
                 [HardwareIds.SCSI.{key}]\r\n\
                 id = \"PCI\\VEN_1AF4&{legacy}&SUBSYS_00021AF4\", \"{file}\"\r\n\
                 id = \"PCI\\VEN_1AF4&{modern}&SUBSYS_11001AF4\", \"{file}\"\r\n\
                 \r\n\
                 [Config.{key}]\r\n\
                 value = Parameters\\PnpInterface, 5, REG_DWORD, 1\r\n",
                file = driver.file,
                legacy = driver.device_ids[0],
                modern = driver.device_ids[1],
            ));
        }
    }
    let default = scsi.split(' ').next().unwrap_or_default().to_owned();
    let txtsetup = format!(
        "; txtsetup.oem: VirtIO storage drivers for text-mode setup (virtio-win {version}, {arch})\r\n\
         \r\n\
         [Disks]\r\n\
         d1 = \"Red Hat VirtIO driver disk\", \\disk1, \\\r\n\
         \r\n\
         [Defaults]\r\n\
         SCSI = {default}\r\n\
         \r\n\
         [SCSI]\r\n\
         {scsi}{sections}",
        version = spec.version,
        arch = spec.arch.dir(),
    );
    floppy.add_file("txtsetup.oem", txtsetup)?;
    floppy.write(out)?;
    Ok(())
}

/// [`driver_floppy`] into a file.
pub fn driver_floppy_to_file(spec: &DriverFloppySpec, path: &Path) -> Result<(), MediaError> {
    write_file(path, |out| driver_floppy(spec, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_follow_the_packaging_rules() {
        let archs = |folder: &str| WindowsRelease::by_folder(folder).map(|r| r.archs()).unwrap_or_default();
        use Arch::*;
        assert_eq!(archs("xp"), vec![I686, X86_64]);
        assert_eq!(archs("2k8"), vec![I686, X86_64]);
        assert_eq!(archs("2k8R2"), vec![X86_64]);
        assert_eq!(archs("w8.1"), vec![I686, X86_64]);
        assert_eq!(archs("w10"), vec![I686, X86_64, Aarch64]);
        assert_eq!(archs("w11"), vec![X86_64, Aarch64]);
        assert_eq!(archs("2k22"), vec![X86_64]);
        assert_eq!(archs("Win2025"), vec![X86_64, Aarch64]);
    }

    #[test]
    fn inf_targets_read_real_decorations() {
        let check = |manufacturer: &str, expected: Option<(Arch, &str, Option<bool>, Option<u32>)>| {
            let inf = format!("[Version]\nSignature=\"$WINDOWS NT$\"\n\n[Manufacturer] ; models\n{manufacturer}\n");
            let target = inf_target(&inf).map(|t| (t.arch, t.nt_version.clone(), t.server, t.build));
            assert_eq!(target, expected.map(|(a, v, s, b)| (a, v.to_owned(), s, b)), "{manufacturer}");
        };
        check("%RH% = RedHat,NTamd64.10.0.3..17763", Some((Arch::X86_64, "10.0", Some(true), Some(17763))));
        check("%RH% = RedHat,NTx86.5.1", Some((Arch::I686, "5.1", None, None)));
        check("%RH% = RedHat, NTARM64.10.0.1", Some((Arch::Aarch64, "10.0", Some(false), None)));
        check("%RH% = RedHat", None);
        check("%RH% = RedHat,NTia64.5.2", None);
        assert_eq!(inf_target("[Version]\nClass=Net\n"), None);
    }
}
