//! The simulated guest: what firmware, installer and installed OS do with the devices and media they are given.
//!
//! Everything here is a pure function of data: the [`DiskMapping`], what each mapped device
//! holds ([`DeviceContent`], which the host reads from the real files) and which attached media
//! carry drivers for the guest ([`AttachedMediaSummary`]). [`run_guest`] turns them into a
//! console timeline with virtual timestamps, the final power state and, for a finished install,
//! the system to write onto the target disk. [`expected_outcome`] applies the same rules to
//! predict a scenario cell without any file, which is what the matrix uses.
//!
//! # Rules
//!
//! **F1 (boot order).** The firmware tries device kinds in the domain's `<boot dev>` order
//! (Nova's boot indexes), and within a kind the devices in domain order. SeaBIOS (BIOS) or OVMF
//! (UEFI) prints what it tries. If nothing boots: `No bootable device.` (BIOS) or
//! `BdsDxe: No bootable option or device was found.` (UEFI), and the machine stays on.
//!
//! **F2 (what boots).** A CD-ROM boots if its medium is an installation medium (it carries
//! `/.isoharness/guest.toml`); every installer medium is taken to boot under BIOS and UEFI. A
//! disk boots an installed system if the system was installed for this firmware (MBR for
//! BIOS, GPT with an EFI system partition for UEFI); it boots an installer if it holds a hybrid
//! ISO (ISO 9660 plus an MBR boot signature); a disk holding a plain ISO 9660 volume (the stock
//! snapshot) or nothing is `not a bootable disk`. Floppies, driver ISOs and config drives never boot.
//!
//! **I1 (hardware requirements).** An installer whose OS needs UEFI, Secure Boot or a TPM 2.0
//! (Windows 11) refuses a machine without them ("This PC can't run Windows 11"), and waits.
//!
//! **I2 (attended installs).** An installation medium without an answer file
//! (`unattended = false`) waits at the console for a person.
//!
//! **I3 (target disks).** The installer considers every writable `disk` device in domain order.
//! IDE, SATA, SCSI and USB disks are always usable. A virtio disk is usable if the OS has
//! virtio built in (`virtio_storage = built-in`), or if its storage driver (`viostor` in the
//! folder for its Windows version, found by `media::find_driver`) is on a medium it can read
//! drivers from: a CD-ROM or a floppy for `cdrom` installers (Windows Vista/2008 and later), only
//! a floppy with `txtsetup.oem` for `floppy` installers (text-mode setup of XP/2003), never for
//! `unavailable`. The device the installer booted from is never a target. With no usable disk
//! the installer says so the way the real one does and waits.
//!
//! **I4 (install).** The installer installs onto the first usable disk. If that disk is smaller
//! than the OS's `min_disk_gb` the install fails and waits. Otherwise, after `install_seconds`,
//! the disk holds an installed system ([`InstalledSystem`]: partition table for the firmware,
//! the virtio storage driver if the installer had one, NIC drivers, the agent) and the machine
//! powers off.
//!
//! **B1 (installed boot).** An installed system boots if it has a driver for the bus of the
//! disk it boots from: on virtio it needs its virtio storage driver. Without it Windows stops
//! with bug check `0x0000007B INACCESSIBLE_BOOT_DEVICE` and Linux panics unable to mount its
//! root. Otherwise it boots in `boot_seconds`; cloud-init or cloudbase-init run, finding their
//! metadata on the config drive if there is one, and the machine stays on.
//!
//! **S1 (snapshot).** A snapshot captures the first disk of the domain. The outcome of a cell is
//! `image-ok` when that disk is the one the OS was installed on, `iso-copy` when it is the
//! installation medium, `no-target-disk` when the installer found no disk it could use (or none
//! big enough), and `rejected` when the cloud refused the request or the installer refused the
//! machine (I1); an attended install is `needs-console`.
//!
//! The console lines imitate the real programs; text that real firmware shows only on the VGA
//! screen (SeaBIOS, Windows Setup) is written to the serial log too, so that a log reader sees it.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::blockinfo::{DeviceType, DiskBus, DiskMapping, DiskSource, MappedDisk, TpmVersion};
use super::system::InstalledSystem;
use crate::guest::{DriverSource, Firmware, GuestAgent, GuestFacts, Medium, OsFamily};
use crate::outcome::{Outcome, OutcomeKind};
use crate::script::{Hole, InstallerScript, Line};

/// The cloud-init release the simulated Linux images carry.
pub const CLOUD_INIT_VERSION: &str = "24.4";
/// The cloudbase-init release the simulated Windows images carry.
pub const CLOUDBASE_INIT_VERSION: &str = "1.1.6";
/// Where an installation medium carries its facts.
pub use crate::media::GUEST_FACTS_PATH;
const FIRMWARE_STEP: Duration = Duration::from_millis(500);

/// What one mapped device holds, as far as firmware and guest care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceContent {
    /// Nothing: a blank disk.
    Blank,
    /// An installation medium (on a CD-ROM, or a hybrid ISO on a disk).
    Installer(Box<GuestFacts>),
    /// An installed system.
    Installed(Box<InstalledSystem>),
    /// Anything else: a driver ISO, a config drive, a floppy, a plain ISO on a disk.
    /// `boot_signature` is whether BIOS firmware would jump into it.
    Data { what: String, boot_signature: bool },
}

/// Which attached media carry drivers this guest's installer can use, by instance file name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedMediaSummary {
    /// File name → path of the virtio storage driver on that medium.
    pub storage_driver: BTreeMap<String, String>,
    /// File name → path of the virtio network driver on that medium.
    pub network_driver: BTreeMap<String, String>,
    /// The file of an attached floppy that holds no FAT volume, if any: an installer looking for drivers on it says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_fat_floppy: Option<String>,
}

/// Reads the guest facts an installation medium carries, if it is one (`media::guest_facts`, errors as text).
pub fn facts_from_medium(medium: &dyn Medium) -> Result<Option<GuestFacts>, String> {
    crate::media::guest_facts(medium).map_err(|e| e.to_string())
}

/// Looks for the guest's storage and network drivers on every attached medium (`(file name, medium)`).
pub fn summarize_media(
    facts: &GuestFacts,
    mapping: &DiskMapping,
    media: &[(&str, &dyn Medium)],
) -> AttachedMediaSummary {
    let mut summary = AttachedMediaSummary::default();
    for (file_name, medium) in media {
        let Some(disk) = mapping.disk(file_name) else { continue };
        if !matches!(disk.device, DeviceType::Cdrom | DeviceType::Floppy) {
            continue;
        }
        if let Some(path) = crate::media::find_driver(*medium, "viostor", facts) {
            summary.storage_driver.insert(file_name.to_string(), path);
        }
        if let Some(path) = crate::media::find_driver(*medium, "netkvm", facts) {
            summary.network_driver.insert(file_name.to_string(), path);
        }
    }
    summary
}

/// One line of serial console output, at a virtual time since power-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLine {
    pub at: Duration,
    pub text: String,
}

/// What the guest ended up doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum GuestResult {
    /// Firmware found nothing to boot (F1).
    NoBootableDevice,
    /// A boot sector took over but nothing came of it.
    BootLoaderHung { dev: String },
    /// The installer refused the machine (I1).
    InstallerRefused { reason: String },
    /// The installer waits for a person (I2).
    InstallerWaiting,
    /// The installer found no disk it could install onto (I3, I4).
    NoTargetDisk { reason: String },
    /// The installer installed onto `file_name` and powered off (I4).
    Installed { file_name: String, dev: String },
    /// The installed OS is up (B1); `agent_finished` if cloud-init/cloudbase-init completed.
    OsRunning { agent_finished: bool },
    /// The installed OS crashed while booting (B1).
    OsCrashed { reason: String },
}

/// The system the installer writes onto a disk file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallWrite {
    pub file_name: String,
    pub system: InstalledSystem,
}

/// Everything a run of the guest produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRun {
    pub console: Vec<ConsoleLine>,
    /// When the guest powered itself off; `None` if it stays on.
    pub power_off_at: Option<Duration>,
    pub install: Option<InstallWrite>,
    pub result: GuestResult,
}

impl GuestRun {
    /// The console text up to virtual time `now`, as `os-getConsoleOutput` would return it.
    pub fn console_until(&self, now: Duration) -> String {
        let mut out = String::new();
        for line in self.console.iter().filter(|l| l.at <= now) {
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }
}

/// The inputs of one power-on.
#[derive(Debug, Clone, Copy)]
pub struct GuestInput<'a> {
    pub mapping: &'a DiskMapping,
    /// What each device of `mapping.disks` holds, in the same order.
    pub devices: &'a [DeviceContent],
    pub media: &'a AttachedMediaSummary,
    /// Wall-clock time of power-on (for the timestamps guests print).
    pub started_at: Timestamp,
}

struct Console {
    lines: Vec<ConsoleLine>,
    now: Duration,
}

impl Console {
    fn say(&mut self, text: impl Into<String>) {
        self.lines.push(ConsoleLine { at: self.now, text: text.into() });
    }

    fn say_all(&mut self, lines: Vec<String>) {
        for line in lines {
            self.say(line);
        }
    }

    fn wait(&mut self, d: Duration) {
        self.now += d;
    }
}

/// Powers the guest on and runs it until it powers off or settles (rules F1-B1 in the module docs).
pub fn run_guest(input: GuestInput<'_>) -> GuestRun {
    let mapping = input.mapping;
    let mut console = Console { lines: Vec::new(), now: Duration::ZERO };
    let booted = firmware(&mut console, input);
    let Some(index) = booted else {
        return finish(console, None, None, GuestResult::NoBootableDevice);
    };
    let disk = &mapping.disks[index];
    match input.devices.get(index) {
        Some(DeviceContent::Installer(facts)) => run_installer(console, input, facts, disk),
        Some(DeviceContent::Installed(system)) => boot_installed(console, input, system, disk),
        _ => finish(console, None, None, GuestResult::BootLoaderHung { dev: disk.dev.clone() }),
    }
}

fn finish(
    console: Console,
    power_off_at: Option<Duration>,
    install: Option<InstallWrite>,
    result: GuestResult,
) -> GuestRun {
    GuestRun { console: console.lines, power_off_at, install, result }
}

/// F1/F2: returns the index of the device that boots.
fn firmware(console: &mut Console, input: GuestInput<'_>) -> Option<usize> {
    let mapping = input.mapping;
    let uefi = mapping.firmware == Firmware::Uefi;
    if uefi {
        console.say("BdsDxe: loading boot options");
    } else {
        console.say("SeaBIOS (version 1.16.2-debian-1.16.2-1)");
    }
    let mut boot_number = 0;
    for kind in mapping.boot_devices() {
        for (index, disk) in mapping.disks.iter().enumerate().filter(|(_, d)| d.device == kind) {
            console.wait(FIRMWARE_STEP);
            boot_number += 1;
            let content = input.devices.get(index).unwrap_or(&DeviceContent::Blank);
            let boots = match (disk.device, content) {
                (DeviceType::Cdrom, DeviceContent::Installer(_)) => true,
                (DeviceType::Disk, DeviceContent::Installer(_)) => true,
                (DeviceType::Disk, DeviceContent::Installed(system)) => system.firmware == mapping.firmware,
                (DeviceType::Disk, DeviceContent::Data { boot_signature, .. }) => *boot_signature && !uefi,
                _ => false,
            };
            let label = uefi_label(disk);
            match (uefi, boots) {
                (false, _) => console.say(match disk.device {
                    DeviceType::Disk => "Booting from Hard Disk...",
                    DeviceType::Cdrom => "Booting from DVD/CD...",
                    DeviceType::Floppy => "Booting from Floppy...",
                }),
                (true, true) => {
                    console.say(format!("BdsDxe: loading Boot{boot_number:04X} \"{label}\" from {}", disk.dev))
                }
                (true, false) => console.say(format!(
                    "BdsDxe: failed to load Boot{boot_number:04X} \"{label}\" from {}: Not Found",
                    disk.dev
                )),
            }
            if boots {
                if uefi {
                    console.say(format!("BdsDxe: starting Boot{boot_number:04X} \"{label}\" from {}", disk.dev));
                }
                return Some(index);
            }
            if !uefi {
                console.say(match disk.device {
                    DeviceType::Cdrom => "Boot failed: Could not read from CDROM (code 0003)",
                    _ => "Boot failed: not a bootable disk",
                });
                console.say("");
            }
        }
    }
    console.wait(FIRMWARE_STEP);
    if uefi {
        console.say("BdsDxe: No bootable option or device was found.");
        console.say("BdsDxe: Press any key to enter the Boot Manager Menu.");
    } else {
        console.say("No bootable device.");
    }
    None
}

fn uefi_label(disk: &MappedDisk) -> &'static str {
    match (disk.device, disk.bus) {
        (DeviceType::Disk, DiskBus::Virtio) => "UEFI Misc Device",
        (DeviceType::Disk, _) => "UEFI QEMU HARDDISK",
        (DeviceType::Cdrom, _) => "UEFI QEMU DVD-ROM",
        (DeviceType::Floppy, _) => "UEFI Floppy",
    }
}

/// I1: what the machine lacks for this OS, if anything, in the script's words.
fn missing_hardware(facts: &GuestFacts, mapping: &DiskMapping, script: &InstallerScript) -> Option<String> {
    let mut missing = Vec::new();
    if facts.firmware == Firmware::Uefi && mapping.firmware != Firmware::Uefi {
        missing.push(script.template(Line::LacksUefi));
    }
    if facts.needs_secure_boot && !mapping.secure_boot {
        missing.push(script.template(Line::LacksSecureBoot));
    }
    if facts.needs_tpm && mapping.tpm.is_none_or(|t| t.version != TpmVersion::V2_0) {
        missing.push(script.template(Line::LacksTpm));
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Where this installer gets a virtio storage driver: `Ok(None)` built in, `Ok(Some((file, path)))`
/// from an attached medium it can read drivers from, `Err` why it has none (in the script's words).
fn virtio_storage_driver(
    facts: &GuestFacts,
    mapping: &DiskMapping,
    media: &AttachedMediaSummary,
    script: &InstallerScript,
) -> Result<Option<(String, String)>, String> {
    let none = || script.template(Line::WhyNotVirtio).to_owned();
    match facts.virtio_storage {
        DriverSource::BuiltIn => Ok(None),
        DriverSource::Unavailable => Err(none()),
        source => {
            let readable = |disk: &MappedDisk| match source {
                DriverSource::Floppy => disk.device == DeviceType::Floppy,
                _ => matches!(disk.device, DeviceType::Cdrom | DeviceType::Floppy),
            };
            // A real installer scans its controllers, so the first medium in domain order wins.
            mapping
                .disks
                .iter()
                .filter(|d| readable(d))
                .find_map(|d| {
                    media.storage_driver.get(&d.file_name).map(|path| Some((d.file_name.clone(), path.clone())))
                })
                .ok_or_else(none)
        }
    }
}

fn run_installer(mut console: Console, input: GuestInput<'_>, facts: &GuestFacts, boot_disk: &MappedDisk) -> GuestRun {
    let mapping = input.mapping;
    let script = InstallerScript::for_guest(facts);
    let windows = facts.family == OsFamily::Windows;
    console.wait(Duration::from_secs(1));
    console.say_all(script.render(Line::Banner, &[(Hole::BootDevice, &boot_disk.dev)]));
    console.wait(Duration::from_secs(2));

    if let Some(missing) = missing_hardware(facts, mapping, &script) {
        console.say_all(script.render(Line::Refused, &[(Hole::Missing, &missing)]));
        let reason = format!("the machine lacks {missing}");
        return finish(console, None, None, GuestResult::InstallerRefused { reason });
    }
    if !facts.unattended {
        console.say_all(script.render(Line::Waiting, &[]));
        return finish(console, None, None, GuestResult::InstallerWaiting);
    }

    // I3: one driver for every virtio disk, found (or not) once.
    let virtio_driver = virtio_storage_driver(facts, mapping, input.media, &script);
    let reads_drivers = matches!(facts.virtio_storage, DriverSource::Cdrom | DriverSource::Floppy);
    if reads_drivers
        && input.media.non_fat_floppy.as_deref().is_some_and(|file| mapping.disk(file).is_some())
        && virtio_driver.is_err()
    {
        console.say_all(script.render(Line::BadFloppy, &[]));
    }
    let mut refusals = Vec::new();
    let mut target = None;
    for disk in &mapping.disks {
        if disk.device != DeviceType::Disk || disk.readonly || disk.file_name == boot_disk.file_name {
            continue;
        }
        // Any other bus is always usable; a virtio disk only with the driver.
        let usable = if disk.bus == DiskBus::Virtio { virtio_driver.clone() } else { Ok(None) };
        match usable {
            Ok(driver) => {
                target = Some((disk, driver));
                break;
            }
            Err(why) => refusals.push(format!("{} ({}): {why}", disk.dev, disk.bus)),
        }
    }
    let Some((disk, driver)) = target else {
        let refusals =
            if refusals.is_empty() { script.template(Line::NoWritableDisk).to_owned() } else { refusals.join("; ") };
        console.say_all(script.render(Line::NoDisk, &[(Hole::Refusals, &refusals)]));
        let reason = format!("installer found no disk: {refusals}");
        return finish(console, None, None, GuestResult::NoTargetDisk { reason });
    };
    if let Some((file, path)) = &driver {
        let from = mapping.disk(file).map(|d| d.dev.as_str()).unwrap_or(file);
        console.say_all(script.render(Line::LoadedDriver, &[(Hole::DriverPath, path), (Hole::DriverMedium, from)]));
    }
    let size = disk.created_size_bytes();
    let needed = u64::from(facts.min_disk_gb) << 30;
    if let Some(size) = size
        && size < needed
    {
        let lines = script.render(Line::TooSmall, &[(Hole::TargetDevice, &disk.dev), (Hole::Size, &human_size(size))]);
        let reason = lines.last().and_then(|l| l.split_once(": ")).map(|(_, r)| r.to_owned()).unwrap_or_default();
        console.say_all(lines);
        return finish(console, None, None, GuestResult::NoTargetDisk { reason });
    }
    let bus = disk.bus.to_string();
    console.say_all(script.render(Line::Installing, &[(Hole::TargetDevice, &disk.dev), (Hole::TargetBus, &bus)]));
    console.wait(Duration::from_secs(u64::from(facts.install_seconds)));

    let (virtio_storage_driver, virtio_storage_driver_source) = match virtio_driver {
        Ok(None) => (Some("virtio_blk".to_string()), None),
        Ok(Some((file, path))) => {
            let dev = mapping.disk(&file).map(|d| d.dev.clone()).unwrap_or(file);
            (Some("viostor".to_string()), Some(format!("{dev}:{path}")))
        }
        Err(_) => (None, None),
    };
    let mut network_drivers: Vec<String> = match (facts.family, facts.virtio_storage) {
        (OsFamily::Linux, DriverSource::Unavailable) => vec!["e1000".into(), "8139cp".into()],
        (OsFamily::Linux, _) => vec!["virtio_net".into(), "e1000".into(), "8139cp".into()],
        (OsFamily::Windows, _) => vec!["e1000".into(), "rtl8139".into()],
    };
    if windows && input.media.network_driver.keys().any(|f| mapping.disk(f).is_some()) {
        network_drivers.push("netkvm".into());
    }
    let system = InstalledSystem {
        facts: facts.clone(),
        firmware: mapping.firmware,
        virtio_storage_driver,
        virtio_storage_driver_source,
        network_drivers,
        agent: facts.agent,
        installed_on: disk.dev.clone(),
    };
    console.say_all(script.render(Line::Complete, &[]));
    if !windows {
        console.say(format!("[{:>12.6}] reboot: Power down", console.now.as_secs_f64()));
    }
    console.wait(Duration::from_secs(1));
    let off = console.now;
    let write = InstallWrite { file_name: disk.file_name.clone(), system };
    let result = GuestResult::Installed { file_name: disk.file_name.clone(), dev: disk.dev.clone() };
    finish(console, Some(off), Some(write), result)
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 30 { format!("{} GiB", bytes >> 30) } else { format!("{} MiB", bytes >> 20) }
}

fn boot_installed(
    mut console: Console,
    input: GuestInput<'_>,
    system: &InstalledSystem,
    disk: &MappedDisk,
) -> GuestRun {
    let facts = &system.facts;
    let mapping = input.mapping;
    let start = console.now;
    let boot = Duration::from_secs(u64::from(facts.boot_seconds.max(4)));
    let at = |fraction: f64| start + boot.mul_f64(fraction);
    let up = |t: Duration| (t - start).as_secs_f64();
    let has_driver = disk.bus != DiskBus::Virtio || system.virtio_storage_driver.is_some();
    let config_drive = mapping.disks.iter().any(|d| d.source == DiskSource::ConfigDrive);
    let ts = |t: Duration| {
        input
            .started_at
            .checked_add(jiff::SignedDuration::try_from(t).unwrap_or(jiff::SignedDuration::ZERO))
            .unwrap_or(input.started_at)
    };

    match facts.family {
        OsFamily::Linux => {
            console.now = at(0.0);
            console.say(format!("[    0.000000] Linux version (kernel of {})", facts.name));
            console.say(
                "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=LABEL=root ro console=tty0 console=ttyS0,115200n8",
            );
            console.now = at(0.1);
            if !has_driver {
                let line = format!(
                    "[{:>12.6}] VFS: Cannot open root device \"LABEL=root\" or unknown-block(0,0): error -6",
                    up(console.now)
                );
                console.say(line);
                let reason =
                    "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)".to_string();
                console.say(format!("[{:>12.6}] {reason}", up(console.now)));
                return finish(console, None, None, GuestResult::OsCrashed { reason });
            }
            let disk_line = match disk.bus {
                DiskBus::Virtio => format!("virtio_blk virtio1: [{}] attached", disk.dev),
                DiskBus::Ide => format!("ata1.00: ATA-7: QEMU HARDDISK, 2.5+, max UDMA/100 ({})", disk.dev),
                _ => format!("sd 0:0:0:0: [{}] Attached SCSI disk", disk.dev),
            };
            console.say(format!("[{:>12.6}] {disk_line}", up(console.now)));
            console.now = at(0.2);
            console.say(format!(
                "[{:>12.6}] EXT4-fs ({}1): mounted filesystem with ordered data mode.",
                up(console.now),
                disk.dev
            ));
            let virt = mapping.virt_type;
            console.say(format!("[{:>12.6}] systemd[1]: Detected virtualization {virt}.", up(console.now)));
            console.now = at(0.3);
            console.say(format!("Welcome to {}!", facts.name));
            let mut agent_finished = false;
            if system.agent == Some(GuestAgent::CloudInit) {
                let datasource =
                    if config_drive { "DataSourceConfigDrive [net,ver=2][source=/dev/sr0]" } else { "DataSourceNone" };
                for (fraction, stage) in
                    [(0.5, "init-local"), (0.6, "init"), (0.8, "modules:config"), (0.9, "modules:final")]
                {
                    console.now = at(fraction);
                    console.say(format!(
                        "Cloud-init v. {CLOUD_INIT_VERSION} running '{stage}' at {}. Up {:.2} seconds.",
                        cloud_init_time(ts(console.now)),
                        up(console.now)
                    ));
                }
                if !config_drive {
                    console.say("[CLOUDINIT] util.py[WARNING]: No active datasource found; used fallback datasource DataSourceNone");
                }
                console.now = at(1.0);
                console.say(format!(
                    "Cloud-init v. {CLOUD_INIT_VERSION} finished at {}. Datasource {datasource}.  Up {:.2} seconds",
                    cloud_init_time(ts(console.now)),
                    up(console.now)
                ));
                agent_finished = true;
            }
            console.now = at(1.0);
            console.say("");
            console.say(format!("{} login: ", facts.distro));
            finish(console, None, None, GuestResult::OsRunning { agent_finished })
        }
        OsFamily::Windows => {
            console.now = at(0.0);
            if !has_driver {
                console.now = at(0.2);
                console.say("*** STOP: 0x0000007B (0xFFFFF880009A9928,0xFFFFFFFFC0000034,0x0000000000000000,0x0000000000000000)");
                console.say("INACCESSIBLE_BOOT_DEVICE");
                let reason = format!(
                    "bug check 0x0000007B INACCESSIBLE_BOOT_DEVICE: no viostor driver for the virtio boot disk {}",
                    disk.dev
                );
                return finish(console, None, None, GuestResult::OsCrashed { reason });
            }
            console.now = at(0.3);
            console.say("Computer is booting, SAC started and initialized.");
            let mut agent_finished = false;
            if system.agent == Some(GuestAgent::CloudbaseInit) {
                let log = |t: Duration, level: &str, module: &str, text: &str| {
                    format!("{} 1804 {level} {module} [-] {text}", cloudbase_time(ts(t)))
                };
                console.now = at(0.6);
                console.say(log(
                    console.now,
                    "INFO",
                    "cloudbaseinit.init",
                    &format!("Cloudbase-Init version: {CLOUDBASE_INIT_VERSION}"),
                ));
                console.say(log(
                    console.now,
                    "INFO",
                    "cloudbaseinit.init",
                    "Executing plugins for stage 'PRE_NETWORKING':",
                ));
                console.now = at(0.7);
                console.say(log(
                    console.now,
                    "INFO",
                    "cloudbaseinit.init",
                    "Executing plugins for stage 'PRE_METADATA_DISCOVERY':",
                ));
                console.now = at(0.8);
                if config_drive {
                    console.say(log(
                        console.now,
                        "INFO",
                        "cloudbaseinit.init",
                        "Metadata service loaded: 'ConfigDriveService'",
                    ));
                    console.say(log(console.now, "INFO", "cloudbaseinit.init", "Executing plugins for stage 'MAIN':"));
                } else {
                    console.say(log(console.now, "ERROR", "cloudbaseinit.init", "No metadata service found"));
                }
                console.now = at(1.0);
                console.say(log(console.now, "INFO", "cloudbaseinit.init", "Plugins execution done"));
                agent_finished = true;
            }
            console.now = at(1.0);
            finish(console, None, None, GuestResult::OsRunning { agent_finished })
        }
    }
}

fn cloud_init_time(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

fn cloudbase_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// What a device holds before the first power-on of an instance booted from an installation ISO.
pub fn initial_contents(facts: &GuestFacts, mapping: &DiskMapping) -> Vec<DeviceContent> {
    mapping
        .disks
        .iter()
        .map(|d| match (d.source, d.device) {
            (DiskSource::BootImage, DeviceType::Cdrom) => DeviceContent::Installer(Box::new(facts.clone())),
            (DiskSource::BootImage, _) => DeviceContent::Data { what: "ISO 9660 volume".into(), boot_signature: false },
            (DiskSource::BlankRoot { .. } | DiskSource::Ephemeral { .. } | DiskSource::Swap { .. }, _) => {
                DeviceContent::Blank
            }
            (DiskSource::VirtioIso, _) => {
                DeviceContent::Data { what: "VirtIO driver ISO".into(), boot_signature: false }
            }
            (DiskSource::DriverFloppy, _) => {
                DeviceContent::Data { what: "driver floppy".into(), boot_signature: false }
            }
            (DiskSource::ConfigDrive, _) => DeviceContent::Data { what: "config drive".into(), boot_signature: false },
        })
        .collect()
}

/// Rule S1 for a run that already happened: what a snapshot of the first disk holds, given the run.
pub fn outcome_of_run(mapping: &DiskMapping, run: &GuestRun) -> Outcome {
    let first = mapping.first_disk();
    match &run.result {
        GuestResult::Installed { file_name, dev } => match first {
            Some(first) if &first.file_name == file_name => Outcome {
                kind: OutcomeKind::ImageOk,
                reason: format!("installed onto {file_name} ({dev}), the first disk, which the snapshot captures"),
            },
            Some(first) if first.source == DiskSource::BootImage => Outcome {
                kind: OutcomeKind::IsoCopy,
                reason: format!(
                    "installed onto {file_name} ({dev}), but the snapshot captures the first disk, {} ({} {}): the installation ISO",
                    first.file_name,
                    first.device.as_str(),
                    first.dev
                ),
            },
            Some(first) => Outcome {
                kind: OutcomeKind::NoTargetDisk,
                reason: format!(
                    "installed onto {file_name} ({dev}), but the snapshot captures the first disk, {}, which stays blank",
                    first.file_name
                ),
            },
            None => Outcome { kind: OutcomeKind::Rejected, reason: "the instance has no disk".into() },
        },
        GuestResult::NoTargetDisk { reason } => Outcome { kind: OutcomeKind::NoTargetDisk, reason: reason.clone() },
        GuestResult::InstallerRefused { reason } => {
            Outcome { kind: OutcomeKind::Rejected, reason: format!("the installer refused the machine: {reason}") }
        }
        GuestResult::InstallerWaiting => Outcome {
            kind: OutcomeKind::NeedsConsole,
            reason: "the installation medium has no answer file; the installer waits at the console".into(),
        },
        GuestResult::NoBootableDevice => {
            Outcome { kind: OutcomeKind::Rejected, reason: "the firmware found no bootable device".into() }
        }
        GuestResult::BootLoaderHung { dev } => {
            Outcome { kind: OutcomeKind::Rejected, reason: format!("boot code on {dev} started nothing") }
        }
        GuestResult::OsRunning { .. } | GuestResult::OsCrashed { .. } => Outcome {
            kind: OutcomeKind::Rejected,
            reason: "an installed system booted instead of the installer".into(),
        },
    }
}

/// The expected outcome of installing the OS `facts` describes on an instance with `mapping`,
/// with drivers on the attached media as `media` says: rules F1-S1, no files involved.
pub fn expected_outcome(facts: &GuestFacts, mapping: &DiskMapping, media: &AttachedMediaSummary) -> Outcome {
    let devices = initial_contents(facts, mapping);
    let run = run_guest(GuestInput { mapping, devices: &devices, media, started_at: Timestamp::UNIX_EPOCH });
    outcome_of_run(mapping, &run)
}

/// [`expected_outcome`] from the request, with a refused mapping as `rejected` (Nova's or libvirt's message as the reason).
pub fn expected_outcome_for_request(
    facts: &GuestFacts,
    request: &super::blockinfo::MappingRequest<'_>,
    media: &AttachedMediaSummary,
) -> Outcome {
    match super::blockinfo::disk_mapping(request) {
        Ok(mapping) => expected_outcome(facts, &mapping, media),
        Err(e) => Outcome { kind: OutcomeKind::Rejected, reason: e.nova_fault() },
    }
}

#[cfg(test)]
mod tests;
