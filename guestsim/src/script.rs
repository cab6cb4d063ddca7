//! What an installer says on the serial console: one script, spoken by mockstack's simulated guest and by the tiny
//! installer on a real PC, so that the harness reads one language from both.
//!
//! A script is a set of templates for one guest (its installer's name and wording filled in) with holes that only
//! the running installer can fill: the device it booted from, the disk it chose, the medium it loaded a driver from.
//! The simulated guest fills them in Rust ([`InstallerScript::render`]); the tiny installer reads the same templates
//! from its ISO's `/.isoharness/installer.cfg` ([`InstallerScript::config`]) and fills them in its boot code.

use crate::guest::{DriverSource, GuestFacts, OsFamily};
use crate::media::FloppyArch;

/// Where an installer ISO carries its script and the facts its boot code acts on.
pub const INSTALLER_CONFIG_PATH: &str = "/.isoharness/installer.cfg";
/// The configuration's size: one CD sector, which the boot code reads whole.
pub const INSTALLER_CONFIG_LEN: usize = 2048;
const CONFIG_MAGIC: &[u8; 8] = b"ISOHCFG1";
/// Where the table of template offsets starts, and where the templates do.
const TEXT_TABLE: usize = 32;
const FIRST_TEXT: usize = 96;

/// A hole in a template, as the byte that stands for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Hole {
    /// The device the installer booted from (`hda`).
    BootDevice = 1,
    /// The disk it installs onto (`vda`).
    TargetDevice = 2,
    /// That disk's bus (`virtio`, `ide`).
    TargetBus = 3,
    /// The driver file it loaded (`/viostor/2k12/amd64/viostor.inf`).
    DriverPath = 4,
    /// The medium it loaded the driver from (`hdb`, `fda`).
    DriverMedium = 5,
    /// A disk's size (`8 GiB`, `512 MiB`).
    Size = 6,
    /// The hardware the machine lacks, `, `-separated.
    Missing = 7,
    /// The disks it refused, `; `-separated `dev (bus): why`, or why there was none.
    Refusals = 8,
}

impl Hole {
    fn marker(self) -> char {
        char::from(self as u8)
    }
}

/// The templates of a script, in the order of the configuration's table (the boot code's `T_*` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumCount, strum::EnumIter)]
pub enum Line {
    Banner,
    Refused,
    Waiting,
    NoDisk,
    WhyNotVirtio,
    LoadedDriver,
    TooSmall,
    Installing,
    Complete,
    CdromDriverPath,
    FloppyDriverPath,
    NoWritableDisk,
    WriteFailed,
    LacksUefi,
    LacksSecureBoot,
    LacksTpm,
    BadFloppy,
}

impl Line {
    /// Whether the template is a line the installer prints, rather than a part of one (a hole's text) or data
    /// its code acts on (a driver path).
    fn is_printed(self) -> bool {
        !matches!(
            self,
            Line::CdromDriverPath
                | Line::FloppyDriverPath
                | Line::NoWritableDisk
                | Line::WhyNotVirtio
                | Line::LacksUefi
                | Line::LacksSecureBoot
                | Line::LacksTpm
        )
    }
}

/// The installer program an OS uses, for its name and its messages: each generation that words its messages
/// differently is its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum InstallerKind {
    /// Windows 2000, XP, Server 2003: text-mode setup, drivers from a floppy.
    WindowsTextMode,
    /// Windows Vista, 7, Server 2008 and 2008 R2.
    WindowsVistaSetup,
    /// Windows 8 and Server 2012 onwards.
    WindowsSetup,
    /// Anaconda's C loader: Red Hat Enterprise Linux up to 5, Fedora (Core) up to 8.
    AnacondaLoader,
    /// Anaconda with its storage step and no loader prompt: Red Hat Enterprise Linux 6, Fedora 9-17.
    AnacondaStorage,
    /// Anaconda's new UI: Red Hat Enterprise Linux 7 onwards, Fedora 18 onwards.
    Anaconda,
    DebianInstaller,
    Subiquity,
    Yast,
    GenericLinux,
}

/// The first number of a release (`"6.4"` → 6, `"2008 R2"` → 2008, `"XP"` → none).
fn release_major(release: &str) -> Option<u32> {
    release.split(|c: char| !c.is_ascii_digit()).find(|part| !part.is_empty())?.parse().ok()
}

impl InstallerKind {
    pub fn of(facts: &GuestFacts) -> InstallerKind {
        let major = release_major(&facts.release);
        match facts.family {
            OsFamily::Windows => {
                let release = facts.release.to_ascii_lowercase();
                match major {
                    _ if facts.virtio_storage == DriverSource::Floppy => InstallerKind::WindowsTextMode,
                    _ if release.contains("xp") => InstallerKind::WindowsTextMode,
                    _ if release.contains("vista") => InstallerKind::WindowsVistaSetup,
                    Some(2000..=2003) => InstallerKind::WindowsTextMode,
                    Some(7 | 2008) => InstallerKind::WindowsVistaSetup,
                    _ => InstallerKind::WindowsSetup,
                }
            }
            OsFamily::Linux => match (facts.distro.as_str(), major) {
                ("rhel" | "centos" | "scientific", Some(..=5)) => InstallerKind::AnacondaLoader,
                ("rhel" | "centos" | "scientific", Some(6)) => InstallerKind::AnacondaStorage,
                ("fedora", Some(..=8)) => InstallerKind::AnacondaLoader,
                ("fedora", Some(9..=17)) => InstallerKind::AnacondaStorage,
                ("rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "scientific" | "oraclelinux", _) => {
                    InstallerKind::Anaconda
                }
                ("debian", _) => InstallerKind::DebianInstaller,
                ("ubuntu", Some(20..)) => InstallerKind::Subiquity,
                ("ubuntu", _) => InstallerKind::DebianInstaller,
                ("sles" | "opensuse" | "sled", _) => InstallerKind::Yast,
                _ => InstallerKind::GenericLinux,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InstallerKind::WindowsTextMode | InstallerKind::WindowsVistaSetup | InstallerKind::WindowsSetup => {
                "Windows Setup"
            }
            InstallerKind::AnacondaLoader | InstallerKind::AnacondaStorage | InstallerKind::Anaconda => "anaconda",
            InstallerKind::DebianInstaller => "debian-installer",
            InstallerKind::Subiquity => "subiquity",
            InstallerKind::Yast => "YaST2",
            InstallerKind::GenericLinux => "installer",
        }
    }

    /// What the real installer says when it finds no disk to install onto (the harness knows it from
    /// [`crate::installer_messages::KNOWN_MESSAGES`]).
    pub fn no_disk_message(self) -> &'static str {
        match self {
            InstallerKind::WindowsTextMode => "Setup did not find any hard disk drives installed in your computer.",
            InstallerKind::WindowsVistaSetup => {
                "No drives were found. Click Load Driver to provide a mass storage driver for installation."
            }
            InstallerKind::WindowsSetup => "We couldn't find any drives. To get a storage driver, click Load driver.",
            InstallerKind::AnacondaLoader => {
                "No hard drives have been found.  You probably need to manually choose device drivers for the installation to succeed.  Would you like to select drivers now?"
            }
            InstallerKind::AnacondaStorage => "No usable disks have been found.",
            InstallerKind::Anaconda => {
                "No disks detected.  Please shut down the computer, connect at least one disk, and restart to complete installation."
            }
            InstallerKind::DebianInstaller => {
                "No disk drive was detected. If you know the name of the driver needed by your disk drive, you can select it from the list."
            }
            InstallerKind::Subiquity => {
                "Block probing did not discover any disks. Unfortunately this means that installation will not be possible."
            }
            InstallerKind::Yast => "No hard disks were found for the installation.",
            InstallerKind::GenericLinux => "No disks found.",
        }
    }

    /// What the real installer says when installing fails, where its sources give one message for it.
    pub fn failure_message(self) -> Option<&'static str> {
        match self {
            InstallerKind::WindowsTextMode => Some("Setup cannot copy the file: %1"),
            InstallerKind::WindowsVistaSetup | InstallerKind::WindowsSetup => Some(
                "Windows could not complete the installation. To install Windows on this computer, restart the installation.",
            ),
            InstallerKind::AnacondaStorage | InstallerKind::Anaconda => {
                Some("An unknown error has occurred, look at the /tmp/anaconda-tb* file(s) for more details")
            }
            InstallerKind::DebianInstaller => Some(
                "An installation step failed. You can try to run the failing item again from the menu, or skip it and choose something else.",
            ),
            InstallerKind::Subiquity => Some("Sorry, there was a problem completing the installation."),
            InstallerKind::AnacondaLoader | InstallerKind::Yast | InstallerKind::GenericLinux => None,
        }
    }
}

/// The templates of one guest's installer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerScript {
    texts: Vec<String>,
}

impl InstallerScript {
    pub fn for_guest(facts: &GuestFacts) -> InstallerScript {
        let kind = InstallerKind::of(facts).name();
        let name = &facts.name;
        let windows = facts.family == OsFamily::Windows;
        let hole = |h: Hole| h.marker();
        let text = |line: Line| -> String {
            match line {
                Line::Banner if windows => format!("{kind}: starting {name} setup from {}", hole(Hole::BootDevice)),
                Line::Banner => format!(
                    "[    0.000000] Linux version (installer kernel of {name})\nStarting {kind} for {name} ({})",
                    facts.arch
                ),
                Line::Refused if windows => format!(
                    "This PC can't run {name}\nThis PC doesn't meet the minimum system requirements to install this version of Windows. For more information, visit https://aka.ms/WindowsSysReq\n{kind}: the machine lacks {}",
                    hole(Hole::Missing)
                ),
                Line::Refused => format!(
                    "{kind}: this machine does not meet the installer's requirements\n{kind}: the machine lacks {}",
                    hole(Hole::Missing)
                ),
                Line::Waiting => {
                    format!("{kind}: no answer file on the installation medium; waiting for input on the console")
                }
                Line::NoDisk => format!(
                    "{}\n{kind}: installer found no disk: {}",
                    InstallerKind::of(facts).no_disk_message(),
                    hole(Hole::Refusals)
                ),
                Line::WhyNotVirtio => match facts.virtio_storage {
                    DriverSource::BuiltIn => String::new(),
                    DriverSource::Unavailable => format!("{name} has no virtio storage driver"),
                    DriverSource::Floppy => format!("viostor for {name} not on any attached floppy"),
                    DriverSource::Cdrom => format!("viostor for {name} not on any readable medium"),
                },
                Line::LoadedDriver => format!(
                    "{kind}: loaded storage driver {} from {}",
                    hole(Hole::DriverPath),
                    hole(Hole::DriverMedium)
                ),
                Line::TooSmall => format!(
                    "{kind}: installer found no disk: {} is {} but {name} needs at least {} GiB",
                    hole(Hole::TargetDevice),
                    hole(Hole::Size),
                    facts.min_disk_gb
                ),
                Line::Installing => {
                    format!("{kind}: installing {name} onto {} ({})", hole(Hole::TargetDevice), hole(Hole::TargetBus))
                }
                Line::Complete if windows => format!("{kind}: installation complete; shutting down"),
                Line::Complete => format!("{kind}: installation complete; powering off"),
                Line::CdromDriverPath => cdrom_driver_path(facts, "viostor").unwrap_or_default(),
                Line::FloppyDriverPath => floppy_driver_path(facts, "viostor").unwrap_or_default(),
                Line::NoWritableDisk => "the instance has no writable disk".into(),
                Line::WriteFailed => {
                    let own = format!("{kind}: installation failed: {} refused the write", hole(Hole::TargetDevice));
                    match InstallerKind::of(facts).failure_message() {
                        // Text-mode setup names the file it could not copy; the tiny installer copies no files.
                        Some(real) => format!("{}\n{own}", real.replace(": %1", ".")),
                        None => own,
                    }
                }
                Line::LacksUefi => "UEFI firmware (hw_firmware_type=uefi)".into(),
                Line::LacksSecureBoot => "Secure Boot (os_secure_boot=required on a q35 machine)".into(),
                Line::LacksTpm => "a TPM 2.0 (hw_tpm_version=2.0)".into(),
                Line::BadFloppy => format!("{kind}: the floppy in fda holds no FAT volume; no driver read from it"),
            }
        };
        InstallerScript { texts: <Line as strum::IntoEnumIterator>::iter().map(text).collect() }
    }

    /// The template of `line`, holes still in it.
    pub fn template(&self, line: Line) -> &str {
        &self.texts[line as usize]
    }

    /// The console lines `line` comes to with its holes filled; a hole not given stays empty.
    pub fn render(&self, line: Line, holes: &[(Hole, &str)]) -> Vec<String> {
        let mut text = String::new();
        for c in self.template(line).chars() {
            match holes.iter().find(|(hole, _)| hole.marker() == c) {
                Some((_, value)) => text.push_str(value),
                None if (c as u32) <= 8 => {}
                None => text.push(c),
            }
        }
        text.split('\n').map(str::to_owned).collect()
    }

    /// The console lines that are this script's, each with the template it comes from and its holes as filled:
    /// how a reader tells, from either installer's console, the disk it chose and the medium it read a driver from.
    pub fn recognise<'a>(&self, console: impl IntoIterator<Item = &'a str>) -> Vec<Said> {
        let templates: Vec<(Line, &str)> = <Line as strum::IntoEnumIterator>::iter()
            .filter(|line| line.is_printed())
            .flat_map(|line| self.template(line).split('\n').map(move |t| (line, t)))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        console
            .into_iter()
            .map(str::trim_end)
            .filter_map(|text| {
                templates.iter().find_map(|(line, template)| {
                    fill(template, text).map(|holes| Said { line: *line, text: text.to_owned(), holes })
                })
            })
            .collect()
    }

    /// The compact configuration the tiny installer reads: magic, the facts its code acts on, a table of offsets and
    /// the NUL-terminated templates, [`INSTALLER_CONFIG_LEN`] bytes ending in a NUL. `None` when the templates do not
    /// fit, which no guest name within reason reaches.
    pub fn config(&self, facts: &GuestFacts) -> Option<Vec<u8>> {
        let mut config = vec![0u8; INSTALLER_CONFIG_LEN];
        config[..8].copy_from_slice(CONFIG_MAGIC);
        config[8] = match facts.virtio_storage {
            DriverSource::BuiltIn => 0,
            DriverSource::Cdrom => 1,
            DriverSource::Floppy => 2,
            DriverSource::Unavailable => 3,
        };
        config[9] = u8::from(facts.unattended)
            | u8::from(facts.firmware == crate::guest::Firmware::Uefi) << 1
            | u8::from(facts.needs_secure_boot) << 2
            | u8::from(facts.needs_tpm) << 3;
        let min_sectors = u64::from(facts.min_disk_gb) << 21;
        config[12..20].copy_from_slice(&min_sectors.to_le_bytes());
        let mut at = FIRST_TEXT;
        for (index, text) in self.texts.iter().enumerate() {
            let end = at + text.len() + 1;
            if end >= INSTALLER_CONFIG_LEN {
                return None;
            }
            let offset = u16::try_from(at).ok()?;
            config[TEXT_TABLE + 2 * index..TEXT_TABLE + 2 * index + 2].copy_from_slice(&offset.to_le_bytes());
            config[at..end - 1].copy_from_slice(text.as_bytes());
            at = end;
        }
        Some(config)
    }
}

/// A console line recognised as one of a script's, with the values of its holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub line: Line,
    pub text: String,
    pub holes: Vec<(Hole, String)>,
}

impl Said {
    pub fn hole(&self, hole: Hole) -> Option<&str> {
        self.holes.iter().find(|(h, _)| *h == hole).map(|(_, v)| v.as_str())
    }
}

/// The holes of the one-line `template` as `text` fills them, or `None` when `text` is not that line.
fn fill(template: &str, text: &str) -> Option<Vec<(Hole, String)>> {
    let hole_of = |c: char| HOLES.iter().copied().find(|h| h.marker() == c);
    let mut pieces = template.split(|c: char| hole_of(c).is_some());
    let holes: Vec<Hole> = template.chars().filter_map(hole_of).collect();
    let mut rest = text.strip_prefix(pieces.next().unwrap_or(""))?;
    let mut filled = Vec::with_capacity(holes.len());
    for (hole, literal) in holes.into_iter().zip(pieces) {
        let end = if literal.is_empty() { rest.len() } else { rest.find(literal)? };
        filled.push((hole, rest[..end].to_owned()));
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty().then_some(filled)
}

const HOLES: [Hole; 8] = [
    Hole::BootDevice,
    Hole::TargetDevice,
    Hole::TargetBus,
    Hole::DriverPath,
    Hole::DriverMedium,
    Hole::Size,
    Hole::Missing,
    Hole::Refusals,
];

/// Where a `cdrom` installer looks for `driver` on a VirtIO-win CD: `/<driver>/<os folder>/<arch folder>/<driver>.inf`.
pub fn cdrom_driver_path(facts: &GuestFacts, driver: &str) -> Option<String> {
    let folder = facts.virtio_win_folder.as_deref()?;
    Some(format!("/{driver}/{folder}/{}/{driver}.inf", facts.arch.virtio_win_folder()))
}

/// Where a text-mode installer looks for `driver` on a driver floppy (beside `/txtsetup.oem`).
pub fn floppy_driver_path(facts: &GuestFacts, driver: &str) -> Option<String> {
    let folder = facts.floppy_folder.as_deref()?;
    let arch_dir = FloppyArch::for_guest(facts.arch)?.dir();
    Some(format!("/{arch_dir}/{folder}/{driver}.inf"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::testing::os_table;

    #[test]
    fn every_guest_of_the_table_has_a_config_that_ends_in_a_nul_and_points_inside_itself() {
        for (facts, _) in os_table() {
            let script = InstallerScript::for_guest(&facts);
            let config = script.config(&facts).unwrap_or_else(|| panic!("{} fits", facts.name));
            assert_eq!(config.len(), INSTALLER_CONFIG_LEN);
            assert_eq!(config[INSTALLER_CONFIG_LEN - 1], 0);
            for (index, line) in <Line as strum::IntoEnumIterator>::iter().enumerate() {
                let offset = usize::from(u16::from_le_bytes([config[32 + 2 * index], config[33 + 2 * index]]));
                assert!((FIRST_TEXT..INSTALLER_CONFIG_LEN).contains(&offset));
                let end = offset + config[offset..].iter().position(|b| *b == 0).expect("NUL-terminated");
                assert_eq!(&config[offset..end], script.template(line).as_bytes(), "{line:?}");
            }
        }
    }

    #[test]
    fn holes_are_filled_and_lines_split() {
        let (facts, _) = os_table().into_iter().find(|(f, _)| f.family == OsFamily::Windows).expect("a Windows guest");
        let script = InstallerScript::for_guest(&facts);
        let lines = script.render(Line::NoDisk, &[(Hole::Refusals, "vdb (virtio): why")]);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("installer found no disk: vdb (virtio): why"), "{lines:?}");
        assert!(script.render(Line::Installing, &[]).iter().all(|l| l.chars().all(|c| c as u32 > 8)));
    }

    #[test]
    fn rendered_lines_are_recognised_with_their_holes_and_other_lines_are_not() {
        for (facts, _) in os_table() {
            let script = InstallerScript::for_guest(&facts);
            let mut console = vec!["SeaBIOS (version 1.16.2)".to_owned(), "random noise".to_owned()];
            console.extend(script.render(Line::Banner, &[(Hole::BootDevice, "hdc")]));
            console.extend(script.render(
                Line::LoadedDriver,
                &[(Hole::DriverPath, "/viostor/a/b/viostor.inf"), (Hole::DriverMedium, "hdb")],
            ));
            console
                .extend(script.render(Line::Installing, &[(Hole::TargetDevice, "vda"), (Hole::TargetBus, "virtio")]));
            let said = script.recognise(console.iter().map(String::as_str));
            let lines: Vec<Line> = said.iter().map(|s| s.line).collect();
            assert!(!lines.is_empty() && lines.iter().all(|l| *l != Line::WhyNotVirtio), "{}: {lines:?}", facts.name);
            let installing = said.iter().find(|s| s.line == Line::Installing).expect("the installing line");
            assert_eq!(installing.hole(Hole::TargetDevice), Some("vda"));
            assert_eq!(installing.hole(Hole::TargetBus), Some("virtio"));
            let loaded = said.iter().find(|s| s.line == Line::LoadedDriver).expect("the driver line");
            assert_eq!(loaded.hole(Hole::DriverMedium), Some("hdb"));
            assert!(said.iter().all(|s| !s.text.contains("noise")));
        }
    }

    #[test]
    fn a_name_too_long_for_the_config_is_refused_not_cut() {
        let (mut facts, _) = os_table().remove(0);
        facts.name = "x".repeat(400);
        assert!(InstallerScript::for_guest(&facts).config(&facts).is_none());
    }
}
