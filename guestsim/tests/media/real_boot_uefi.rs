//! Generated installer ISOs boot on a real UEFI PC: OVMF on a q35 machine runs the UEFI tiny installer from the ISO's
//! EFI El Torito entry, with the CD-ROMs on the AHCI controller and virtio disks on PCI Express, as libvirt lays out a
//! Nova UEFI guest. Secure Boot runs with Debian's published test keys enrolled, the TPM is a real swtpm.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use guestsim::guest::{Arch, DriverSource, Firmware, GuestFacts};
use guestsim::media::qemu::{Machine, Ovmf};
use guestsim::media::tiny_installer::{BOOTED, STARTED};
use guestsim::media::{
    BootEntry, BootPlatform, FloppyBuilder, FloppySize, IsoBuilder, OsIsoOptions, VirtioWinSpec,
    os_installer_iso_to_file, virtio_win_iso_to_file,
};
use guestsim::script::{Hole, InstallerScript, Line};

use crate::support::*;

/// How long an install may take under software emulation (about 20 s here, 10 of them the installer's linger).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(180);

/// One device of a q35 machine laid out as libvirt lays out Nova's UEFI guests: SATA devices on the AHCI controller's
/// ports (libvirt's `unit`), virtio disks on PCI Express; the first device listed is the one the firmware boots.
enum Device<'a> {
    SataCdrom { iso: &'a Path, port: u8 },
    SataDisk { disk: &'a Path, port: u8 },
    VirtioDisk(&'a Path),
}

fn q35_like(devices: &[Device<'_>]) -> Vec<String> {
    let mut args = Vec::new();
    for (index, device) in devices.iter().enumerate() {
        let id = format!("d{index}");
        let boot = if index == 0 { ",bootindex=1" } else { "" };
        let (drive, device) = match device {
            Device::SataCdrom { iso, port } => (
                format!("file={},if=none,id={id},media=cdrom,format=raw,readonly=on", iso.display()),
                format!("ide-cd,drive={id},bus=ide.{port}{boot}"),
            ),
            Device::SataDisk { disk, port } => (
                format!("file={},if=none,id={id},format=qcow2", disk.display()),
                format!("ide-hd,drive={id},bus=ide.{port}{boot}"),
            ),
            Device::VirtioDisk(disk) => (
                format!("file={},if=none,id={id},format=qcow2", disk.display()),
                format!("virtio-blk-pci,drive={id}{boot}"),
            ),
        };
        args.extend(["-drive".to_owned(), drive, "-device".to_owned(), device]);
    }
    args
}

fn blank_disk(dir: &Path, name: &str, megabytes: u64) -> PathBuf {
    let disk = dir.join(name);
    run("qemu-img", &["create", "-q", "-f", "qcow2", path_str(&disk), &format!("{megabytes}M")]);
    disk
}

fn sectors(disk: &Path, dir: &Path, count: usize) -> Vec<u8> {
    let raw = dir.join("sectors.raw");
    let _ = std::fs::remove_file(&raw);
    let (input, output) = (format!("if={}", path_str(disk)), format!("of={}", path_str(&raw)));
    run("qemu-img", &["dd", "-f", "qcow2", "-O", "raw", "bs=512", &format!("count={count}"), &input, &output]);
    std::fs::read(&raw).expect("reads the converted sectors")
}

fn windows_server_2025() -> GuestFacts {
    GuestFacts {
        firmware: Firmware::Uefi,
        virtio_win_folder: Some("2k25".into()),
        ..facts("Windows Server 2025", "2025", "windows", Arch::X86_64, DriverSource::Cdrom)
    }
}

fn windows_11() -> GuestFacts {
    let facts = facts("Windows 11", "11", "windows", Arch::X86_64, DriverSource::Cdrom);
    assert!(facts.needs_secure_boot && facts.needs_tpm && facts.firmware == Firmware::Uefi);
    facts
}

fn media(dir: &Path, facts: &GuestFacts) -> (PathBuf, PathBuf) {
    let iso = dir.join("installer.iso");
    os_installer_iso_to_file(facts, &OsIsoOptions::default(), &iso).expect("writes the installer ISO");
    let virtio_win = dir.join("virtio-win.iso");
    virtio_win_iso_to_file(&VirtioWinSpec::current(), &virtio_win).expect("writes the VirtIO-win ISO");
    (iso, virtio_win)
}

fn assert_said(serial: &str, expected: &[String]) {
    for line in expected {
        assert!(serial.lines().any(|l| l.trim_end() == line), "no line {line:?} in:\n{serial}");
    }
}

/// Starts a q35 machine on `firmware` with `devices` and the `extra` arguments (a TPM).
fn start(dir: &Path, name: &str, firmware: Ovmf, devices: &[Device<'_>], extra: &[&str]) -> Machine {
    let mut args = q35_like(devices);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Machine::start_uefi(dir, name, firmware, &args).expect("qemu starts")
}

/// Runs the machine until the installer powers it off; returns the serial port.
fn installs(dir: &Path, firmware: Ovmf, devices: &[Device<'_>], extra: &[&str]) -> String {
    let mut machine = start(dir, "install", firmware, devices, extra);
    machine.wait_powered_off(INSTALL_TIMEOUT).unwrap_or_else(|e| panic!("the installer powers off: {e}"));
    machine.serial()
}

/// Runs the machine until its installer prints `last`, and checks that it waits there rather than powering off.
fn stops_and_waits(dir: &Path, firmware: Ovmf, devices: &[Device<'_>], extra: &[&str], last: &str) -> String {
    let mut machine = start(dir, "stops", firmware, devices, extra);
    let serial = machine.wait_for(last, INSTALL_TIMEOUT).unwrap_or_else(|e| panic!("the installer says it: {e}"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(machine.exited().expect("waits").is_none(), "the installer must wait, not power off: {serial}");
    serial
}

/// A disk the UEFI installer wrote: a protective MBR, then the primary GPT header.
fn assert_gpt(disk: &Path, dir: &Path) {
    let head = sectors(disk, dir, 2);
    assert_eq!(head[446 + 4], 0xEE, "a protective MBR's partition");
    assert_eq!(&head[510..512], &[0x55, 0xAA]);
    assert_eq!(&head[512..520], b"EFI PART", "the primary GPT header");
}

#[test]
fn a_uefi_cdrom_guest_loads_viostor_from_the_second_sata_cd_installs_a_gpt_disk_and_the_disk_boots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = windows_server_2025();
    let script = InstallerScript::for_guest(&facts);
    let (iso, virtio_win) = media(dir.path(), &facts);
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let serial = installs(
        dir.path(),
        Ovmf::Plain,
        &[
            Device::SataCdrom { iso: &iso, port: 0 },
            Device::SataCdrom { iso: &virtio_win, port: 1 },
            Device::VirtioDisk(&disk),
        ],
        &[],
    );
    let driver = guestsim::script::cdrom_driver_path(&facts, "viostor").expect("a folder");
    assert_said(&serial, &script.render(Line::Banner, &[(Hole::BootDevice, "sda")]));
    assert_said(
        &serial,
        &script.render(Line::LoadedDriver, &[(Hole::DriverPath, &driver), (Hole::DriverMedium, "sdb")]),
    );
    assert_said(&serial, &script.render(Line::Installing, &[(Hole::TargetDevice, "vda"), (Hole::TargetBus, "virtio")]));
    assert_said(&serial, &script.render(Line::Complete, &[]));
    assert_gpt(&disk, dir.path());

    let mut boot = start(dir.path(), "boot", Ovmf::Plain, &[Device::VirtioDisk(&disk)], &[]);
    let serial = boot.wait_for(BOOTED, INSTALL_TIMEOUT).unwrap_or_else(|e| panic!("the installed disk boots: {e}"));
    assert!(!serial.contains(STARTED), "the installed disk must not start the installer: {serial}");
}

#[test]
fn without_its_driver_cd_a_uefi_cdrom_guest_refuses_the_virtio_disk_and_with_none_uses_a_sata_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = windows_server_2025();
    let script = InstallerScript::for_guest(&facts);
    let (iso, _) = media(dir.path(), &facts);
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let why = script.render(Line::WhyNotVirtio, &[]).join(" ");
    let expected = script.render(Line::NoDisk, &[(Hole::Refusals, &format!("vda (virtio): {why}"))]);
    let devices = [Device::SataCdrom { iso: &iso, port: 0 }, Device::VirtioDisk(&disk)];
    let serial = stops_and_waits(dir.path(), Ovmf::Plain, &devices, &[], expected.last().expect("two lines"));
    assert_said(&serial, &expected);
    assert!(sectors(&disk, dir.path(), 1).iter().all(|b| *b == 0), "the refused disk stays blank");

    // A SATA disk needs no driver: the installer takes it, still refusing the virtio one.
    let sata = blank_disk(dir.path(), "sata.qcow2", 20_480);
    let devices = [
        Device::SataCdrom { iso: &iso, port: 0 },
        Device::VirtioDisk(&disk),
        Device::SataDisk { disk: &sata, port: 2 },
    ];
    let serial = installs(dir.path(), Ovmf::Plain, &devices, &[]);
    assert_said(&serial, &script.render(Line::Installing, &[(Hole::TargetDevice, "sdc"), (Hole::TargetBus, "sata")]));
    assert_gpt(&sata, dir.path());
    assert!(sectors(&disk, dir.path(), 1).iter().all(|b| *b == 0), "the virtio disk stays blank");
}

/// A TPM 2.0 emulator for one machine, stopped when dropped.
struct Swtpm {
    child: Child,
    socket: PathBuf,
}

impl Swtpm {
    fn start(dir: &Path) -> Swtpm {
        let state = dir.join("tpm");
        std::fs::create_dir_all(&state).expect("creates the TPM's state directory");
        let socket = state.join("swtpm.sock");
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--terminate")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm starts (`cargo xtask setup` installs it)");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(socket.exists(), "swtpm made no control socket at {}", socket.display());
        Swtpm { child, socket }
    }

    fn qemu_args(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", self.socket.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-crb,tpmdev=tpm0".into(),
        ]
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_guest_that_needs_secure_boot_and_a_tpm_installs_with_both_and_names_each_one_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = windows_11();
    let script = InstallerScript::for_guest(&facts);
    let (iso, virtio_win) = media(dir.path(), &facts);
    let disk = blank_disk(dir.path(), "disk.qcow2", u64::from(facts.min_disk_gb) * 1024);
    let devices = [
        Device::SataCdrom { iso: &iso, port: 0 },
        Device::SataCdrom { iso: &virtio_win, port: 1 },
        Device::VirtioDisk(&disk),
    ];
    let missing = |lines: &[Line]| {
        let items: Vec<String> = lines.iter().map(|l| script.render(*l, &[]).join(" ")).collect();
        script.render(Line::Refused, &[(Hole::Missing, &items.join(", "))])
    };

    let plain = missing(&[Line::LacksSecureBoot, Line::LacksTpm]);
    let serial = stops_and_waits(dir.path(), Ovmf::Plain, &devices, &[], plain.last().expect("lines"));
    assert_said(&serial, &plain);

    let no_tpm = missing(&[Line::LacksTpm]);
    let serial = stops_and_waits(dir.path(), Ovmf::SecureBootTestKeys, &devices, &[], no_tpm.last().expect("lines"));
    assert_said(&serial, &no_tpm);
    assert!(sectors(&disk, dir.path(), 1).iter().all(|b| *b == 0), "a refused machine's disk stays blank");

    let tpm = Swtpm::start(dir.path());
    let tpm_args = tpm.qemu_args();
    let tpm_args: Vec<&str> = tpm_args.iter().map(String::as_str).collect();
    let serial = installs(dir.path(), Ovmf::SecureBootTestKeys, &devices, &tpm_args);
    assert!(!serial.contains(&no_tpm[0]), "{serial}");
    assert_said(&serial, &script.render(Line::Installing, &[(Hole::TargetDevice, "vda"), (Hole::TargetBus, "virtio")]));
    assert_gpt(&disk, dir.path());
}

#[test]
fn secure_boot_runs_the_signed_installer_and_refuses_the_same_program_unsigned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unsigned = std::fs::read(efi_source_dir().join("installer.efi")).expect("the committed unsigned program");
    let mut esp = FloppyBuilder::new(FloppySize::Floppy1440K, "EFIBOOT", fixed_time()).expect("a label");
    esp.add_file("EFI/BOOT/BOOTX64.EFI", unsigned).expect("adds");
    let mut image = Vec::new();
    esp.write(&mut image).expect("formats");
    let mut builder = IsoBuilder::new("UNSIGNED", fixed_time()).expect("a volume id");
    builder.add_file("/efiboot.img", image).expect("adds");
    let iso = dir.path().join("unsigned.iso");
    builder
        .boot(BootEntry { platform: BootPlatform::Efi, image: "/efiboot.img".into(), load_sectors: None })
        .write(&mut std::fs::File::create(&iso).expect("creates"))
        .expect("writes");
    let cdrom = [Device::SataCdrom { iso: &iso, port: 0 }];
    let mut machine = start(dir.path(), "unsigned", Ovmf::SecureBootTestKeys, &cdrom, &[]);
    let serial = machine.wait_for("Access Denied", INSTALL_TIMEOUT).unwrap_or_else(|e| panic!("refused: {e}"));
    assert!(!serial.contains(STARTED), "Secure Boot must not run an unsigned program: {serial}");

    // The signed one, from the generated ISO, runs under the same firmware.
    let facts = ubuntu_2404();
    let (iso, _) = media(dir.path(), &facts);
    let cdrom = [Device::SataCdrom { iso: &iso, port: 0 }];
    let mut machine = start(dir.path(), "signed", Ovmf::SecureBootTestKeys, &cdrom, &[]);
    machine.wait_for(STARTED, INSTALL_TIMEOUT).unwrap_or_else(|e| panic!("the signed program runs: {e}"));
}

fn efi_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media/tiny_installer/efi")
}

#[test]
fn the_committed_efi_programs_are_the_build_of_their_source_and_the_signed_one_verifies() {
    let out = tempfile::tempdir().expect("temp dir");
    run("sh", &[path_str(&efi_source_dir().join("build.sh")), path_str(out.path())]);
    for name in ["installer.efi", "bootx64.efi"] {
        let built = std::fs::read(out.path().join(name)).expect("build.sh wrote it");
        let committed = std::fs::read(efi_source_dir().join(name)).expect("committed");
        assert!(
            built == committed,
            "{name} is not the build of installer.c: run `sh build.sh` in {:?}",
            efi_source_dir()
        );
    }
    assert_eq!(
        guestsim::media::tiny_installer::EFI_PROGRAM,
        std::fs::read(efi_source_dir().join("bootx64.efi")).unwrap()
    );
    run(
        "sbverify",
        &["--cert", "/usr/share/ovmf/PkKek-1-snakeoil.pem", path_str(&efi_source_dir().join("bootx64.efi"))],
    );
}
