//! Generated installer ISOs boot on a real PC: qemu-system-x86_64 runs the tiny installer from the ISO, which installs onto the disk, and the disk then boots.

use std::path::Path;
use std::time::Duration;

use guestsim::guest::{Arch, DriverSource, Firmware, GuestFacts};
use guestsim::media::qemu::{Machine, QemuError};
use guestsim::media::tiny_installer::{BOOTED, STARTED, installed_mbr};
use guestsim::media::{
    BootEntry, BootPlatform, DriverFloppySpec, FloppyArch, IsoBuilder, OsIsoOptions, VirtioWinSpec,
    driver_floppy_to_file, os_installer_iso_to_file, virtio_win_iso_to_file,
};
use guestsim::script::{Hole, InstallerScript, Line};

use crate::support::*;

fn first_sector(disk: &Path, dir: &Path) -> Vec<u8> {
    let raw = dir.join("disk.raw");
    let _ = std::fs::remove_file(&raw);
    let (input, output) = (format!("if={}", path_str(disk)), format!("of={}", path_str(&raw)));
    run("qemu-img", &["dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1", &input, &output]);
    let mut sector = vec![0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(&raw).expect("opens the converted disk"), &mut sector)
        .expect("reads its first sector");
    sector
}

/// One device of a machine laid out as libvirt lays out Nova's i440fx guests: IDE positions by channel and unit, the
/// floppy on the FDC, virtio disks on PCI in order; only the boot device has a boot index, and `-boot strict=on`.
enum Device<'a> {
    Cdrom { iso: &'a Path, position: u8 },
    IdeDisk { disk: &'a Path, position: u8 },
    VirtioDisk(&'a Path),
    Floppy(&'a Path),
}

fn libvirt_like(devices: &[Device<'_>]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut booted = false;
    for (index, device) in devices.iter().enumerate() {
        let id = format!("d{index}");
        let mut boot = || if booted { String::new() } else { (booted = true, ",bootindex=1".to_owned()).1 };
        match device {
            Device::Cdrom { iso, position } => {
                args.push("-drive".into());
                args.push(format!("file={},if=none,id={id},media=cdrom,format=raw,readonly=on", iso.display()));
                args.push("-device".into());
                args.push(format!("ide-cd,drive={id},bus=ide.{},unit={}{}", position / 2, position % 2, boot()));
            }
            Device::IdeDisk { disk, position } => {
                args.push("-drive".into());
                args.push(format!("file={},if=none,id={id},format=qcow2", disk.display()));
                args.push("-device".into());
                args.push(format!("ide-hd,drive={id},bus=ide.{},unit={}", position / 2, position % 2));
            }
            Device::VirtioDisk(disk) => {
                args.push("-drive".into());
                args.push(format!("file={},if=none,id={id},format=qcow2", disk.display()));
                args.push("-device".into());
                args.push(format!("virtio-blk-pci,drive={id}"));
            }
            Device::Floppy(image) => {
                args.push("-drive".into());
                args.push(format!("file={},if=none,id={id},format=raw,readonly=on", image.display()));
                args.push("-device".into());
                args.push(format!("floppy,unit=0,drive={id}"));
            }
        }
    }
    args.push("-boot".into());
    args.push("strict=on".into());
    args
}

fn blank_disk(dir: &Path, name: &str, megabytes: u64) -> std::path::PathBuf {
    let disk = dir.join(name);
    run("qemu-img", &["create", "-q", "-f", "qcow2", path_str(&disk), &format!("{megabytes}M")]);
    disk
}

fn installer_iso(dir: &Path, facts: &GuestFacts) -> std::path::PathBuf {
    let iso = dir.join("installer.iso");
    os_installer_iso_to_file(facts, &OsIsoOptions::default(), &iso).expect("writes");
    iso
}

fn lines(script: &InstallerScript, line: Line, holes: &[(Hole, &str)]) -> Vec<String> {
    script.render(line, holes)
}

fn assert_said(serial: &str, expected: &[String]) {
    for line in expected {
        assert!(serial.lines().any(|l| l.trim_end() == line), "no line {line:?} in:\n{serial}");
    }
}

/// Runs a machine until the installer powers it off, or (`waits`) until it prints its last expected line and
/// shows it is waiting rather than powering off.
fn run_installer(dir: &Path, devices: &[Device<'_>], expect_last: &str, waits: bool) -> String {
    let args = libvirt_like(devices);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut machine = Machine::start(dir, "install", &args).expect("qemu starts");
    if waits {
        let serial = machine.wait_for(expect_last, Duration::from_secs(120)).expect("the installer says it");
        std::thread::sleep(Duration::from_millis(500));
        assert!(machine.exited().expect("waits").is_none(), "the installer must wait, not power off: {serial}");
        serial
    } else {
        machine.wait_powered_off(Duration::from_secs(120)).expect("the installer powers off");
        let serial = machine.serial();
        assert!(serial.contains(expect_last), "{serial}");
        serial
    }
}

/// Runs a machine whose installer must stop: it prints `expected` and waits, powered on.
fn stops_and_waits(dir: &Path, devices: &[Device<'_>], expected: &[String]) -> String {
    let serial = run_installer(dir, devices, expected.last().expect("a line"), true);
    assert_said(&serial, expected);
    serial
}

fn partition_sectors(mbr: &[u8]) -> u32 {
    u32::from_le_bytes(mbr[446 + 12..446 + 16].try_into().expect("4 bytes"))
}

#[test]
fn a_guest_with_virtio_built_in_installs_onto_the_virtio_disk_the_bios_does_not_map_and_the_disk_boots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = ubuntu_2404();
    let script = InstallerScript::for_guest(&facts);
    let iso = installer_iso(dir.path(), &facts);
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480 + 64);
    let complete = lines(&script, Line::Complete, &[]);
    let serial = run_installer(
        dir.path(),
        &[Device::Cdrom { iso: &iso, position: 0 }, Device::VirtioDisk(&disk)],
        &complete[0],
        false,
    );
    assert_said(&serial, &lines(&script, Line::Banner, &[]));
    assert_said(
        &serial,
        &lines(&script, Line::Installing, &[(Hole::TargetDevice, "vda"), (Hole::TargetBus, "virtio")]),
    );
    let started = serial.find(STARTED).unwrap_or_else(|| panic!("no {STARTED:?}: {serial}"));
    assert!(started < serial.find(&complete[0]).expect("completes"), "{serial}");

    let mbr = first_sector(&disk, dir.path());
    let expected = installed_mbr();
    assert_eq!(&mbr[..446], &expected[..446], "the boot code");
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    assert_eq!(partition_sectors(&mbr), (20_480 + 64) * 2048 - 2048, "the partition spans the disk from sector 2048");

    let drive = format!("file={},if=virtio,format=qcow2", disk.display());
    let mut boot = Machine::start(dir.path(), "boot", &["-drive", &drive]).expect("qemu starts");
    let serial = boot.wait_for(BOOTED, Duration::from_secs(120)).expect("the installed disk boots");
    assert!(!serial.contains(STARTED), "the installed disk must not start the installer: {serial}");
}

#[test]
fn a_cdrom_guest_loads_viostor_from_the_virtio_win_cd_and_installs_onto_the_virtio_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = windows_2012();
    let script = InstallerScript::for_guest(&facts);
    let iso = installer_iso(dir.path(), &facts);
    let virtio_win = dir.path().join("virtio-win.iso");
    virtio_win_iso_to_file(&VirtioWinSpec::current(), &virtio_win).expect("writes");
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let complete = lines(&script, Line::Complete, &[]);
    let serial = run_installer(
        dir.path(),
        &[
            Device::VirtioDisk(&disk),
            Device::Cdrom { iso: &iso, position: 0 },
            Device::Cdrom { iso: &virtio_win, position: 1 },
        ],
        &complete[0],
        false,
    );
    let driver = guestsim::script::cdrom_driver_path(&facts, "viostor").expect("a folder");
    assert_said(&serial, &lines(&script, Line::Banner, &[(Hole::BootDevice, "hda")]));
    assert_said(
        &serial,
        &lines(&script, Line::LoadedDriver, &[(Hole::DriverPath, &driver), (Hole::DriverMedium, "hdb")]),
    );
    assert_said(
        &serial,
        &lines(&script, Line::Installing, &[(Hole::TargetDevice, "vda"), (Hole::TargetBus, "virtio")]),
    );
    assert_eq!(&first_sector(&disk, dir.path())[..446], &installed_mbr()[..446]);
}

#[test]
fn a_cdrom_guest_without_its_driver_folder_refuses_the_virtio_disk_says_so_and_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = windows_2012();
    let script = InstallerScript::for_guest(&facts);
    let iso = installer_iso(dir.path(), &facts);
    // A driver CD with its folders in the wrong place: viostor/amd64/2k12 instead of viostor/2k12/amd64.
    let broken = dir.path().join("broken.iso");
    let mut builder = IsoBuilder::new("virtio-win-broken", fixed_time()).expect("builder");
    builder.add_file("/viostor/amd64/2k12/viostor.inf", b"[Version]\n".to_vec()).expect("adds");
    builder.write(&mut std::fs::File::create(&broken).expect("creates")).expect("writes");
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let why = script.template(Line::WhyNotVirtio).to_owned();
    let expected = lines(&script, Line::NoDisk, &[(Hole::Refusals, &format!("vda (virtio): {why}"))]);
    stops_and_waits(
        dir.path(),
        &[
            Device::VirtioDisk(&disk),
            Device::Cdrom { iso: &iso, position: 0 },
            Device::Cdrom { iso: &broken, position: 1 },
        ],
        &expected,
    );
    assert!(first_sector(&disk, dir.path()).iter().all(|b| *b == 0), "the disk stays blank");
}

#[test]
fn a_floppy_guest_reads_viostor_from_the_driver_floppy_and_refuses_a_floppy_without_fat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = windows_xp();
    let script = InstallerScript::for_guest(&facts);
    let iso = installer_iso(dir.path(), &facts);
    let floppy = dir.path().join("virtio-win_x86.vfd");
    driver_floppy_to_file(&DriverFloppySpec::for_arch(FloppyArch::X86), &floppy).expect("writes");
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let complete = lines(&script, Line::Complete, &[]);
    let serial = run_installer(
        dir.path(),
        &[Device::VirtioDisk(&disk), Device::Cdrom { iso: &iso, position: 0 }, Device::Floppy(&floppy)],
        &complete[0],
        false,
    );
    let driver = guestsim::script::floppy_driver_path(&facts, "viostor").expect("a folder");
    assert_said(
        &serial,
        &lines(&script, Line::LoadedDriver, &[(Hole::DriverPath, &driver), (Hole::DriverMedium, "fda")]),
    );
    assert_eq!(&first_sector(&disk, dir.path())[..446], &installed_mbr()[..446]);

    let junk = dir.path().join("junk.vfd");
    std::fs::write(&junk, vec![0x5a; 1_474_560]).expect("writes");
    let disk = blank_disk(dir.path(), "disk2.qcow2", 20_480);
    let why = script.template(Line::WhyNotVirtio).to_owned();
    let expected = lines(&script, Line::NoDisk, &[(Hole::Refusals, &format!("vda (virtio): {why}"))]);
    let serial = run_installer(
        dir.path(),
        &[Device::VirtioDisk(&disk), Device::Cdrom { iso: &iso, position: 0 }, Device::Floppy(&junk)],
        expected.last().expect("two lines"),
        true,
    );
    assert_said(&serial, &lines(&script, Line::BadFloppy, &[]));
    assert_said(&serial, &expected);
    assert!(first_sector(&disk, dir.path()).iter().all(|b| *b == 0), "the disk stays blank");
}

#[test]
fn a_guest_without_a_virtio_driver_never_touches_a_virtio_disk_and_installs_onto_an_ide_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = facts("Red Hat Enterprise Linux 4", "4", "rhel", Arch::I686, DriverSource::Unavailable);
    let script = InstallerScript::for_guest(&facts);
    let iso = installer_iso(dir.path(), &facts);
    let virtio = blank_disk(dir.path(), "virtio.qcow2", 20_480);
    let ide = blank_disk(dir.path(), "ide.qcow2", 20_480 + 48);
    let complete = lines(&script, Line::Complete, &[]);
    let serial = run_installer(
        dir.path(),
        &[
            Device::Cdrom { iso: &iso, position: 0 },
            Device::VirtioDisk(&virtio),
            Device::IdeDisk { disk: &ide, position: 2 },
        ],
        &complete[0],
        false,
    );
    assert_said(&serial, &lines(&script, Line::Installing, &[(Hole::TargetDevice, "hdc"), (Hole::TargetBus, "ide")]));
    assert!(first_sector(&virtio, dir.path()).iter().all(|b| *b == 0), "the virtio disk stays blank");
    let mbr = first_sector(&ide, dir.path());
    assert_eq!(&mbr[..446], &installed_mbr()[..446]);
    assert_eq!(partition_sectors(&mbr), (20_480 + 48) * 2048 - 2048);

    let virtio = blank_disk(dir.path(), "virtio2.qcow2", 20_480);
    let why = script.template(Line::WhyNotVirtio).to_owned();
    let expected = lines(&script, Line::NoDisk, &[(Hole::Refusals, &format!("vda (virtio): {why}"))]);
    stops_and_waits(dir.path(), &[Device::Cdrom { iso: &iso, position: 0 }, Device::VirtioDisk(&virtio)], &expected);
}

#[test]
fn without_a_disk_or_with_one_too_small_the_installer_says_so_and_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let facts = ubuntu_2404();
    let script = InstallerScript::for_guest(&facts);
    let iso = installer_iso(dir.path(), &facts);
    let none = script.template(Line::NoWritableDisk).to_owned();
    let expected = lines(&script, Line::NoDisk, &[(Hole::Refusals, &none)]);
    let serial =
        run_installer(dir.path(), &[Device::Cdrom { iso: &iso, position: 0 }], expected.last().expect("two"), true);
    assert_said(&serial, &expected);

    let needs_more = GuestFacts { min_disk_gb: 1, ..facts };
    let script = InstallerScript::for_guest(&needs_more);
    let iso = installer_iso(dir.path(), &needs_more);
    let disk = blank_disk(dir.path(), "small.qcow2", 512);
    let expected = lines(&script, Line::TooSmall, &[(Hole::TargetDevice, "vda"), (Hole::Size, "512 MiB")]);
    stops_and_waits(dir.path(), &[Device::Cdrom { iso: &iso, position: 0 }, Device::VirtioDisk(&disk)], &expected);
    assert!(first_sector(&disk, dir.path()).iter().all(|b| *b == 0), "the disk stays blank");
}

#[test]
fn a_guest_that_needs_uefi_refuses_a_bios_machine_and_an_attended_one_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let uefi = GuestFacts { firmware: Firmware::Uefi, ..windows_2012() };
    let script = InstallerScript::for_guest(&uefi);
    let iso = installer_iso(dir.path(), &uefi);
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let lacks = script.template(Line::LacksUefi).to_owned();
    let expected = lines(&script, Line::Refused, &[(Hole::Missing, &lacks)]);
    stops_and_waits(dir.path(), &[Device::Cdrom { iso: &iso, position: 0 }, Device::VirtioDisk(&disk)], &expected);

    let attended = GuestFacts { unattended: false, ..ubuntu_2404() };
    let script = InstallerScript::for_guest(&attended);
    let iso = installer_iso(dir.path(), &attended);
    let expected = lines(&script, Line::Waiting, &[]);
    stops_and_waits(dir.path(), &[Device::Cdrom { iso: &iso, position: 0 }, Device::VirtioDisk(&disk)], &expected);
    assert!(first_sector(&disk, dir.path()).iter().all(|b| *b == 0), "the disk stays blank");
}

#[test]
fn an_iso_without_the_installer_configuration_says_it_cannot_install() {
    let dir = tempfile::tempdir().expect("temp dir");
    let iso = dir.path().join("bare.iso");
    let mut builder = IsoBuilder::new("BARE", fixed_time()).expect("builder");
    builder.add_file("/boot/tiny.img", guestsim::media::tiny_installer::BOOT_IMAGE.to_vec()).expect("adds");
    builder = builder.boot(BootEntry {
        platform: BootPlatform::Bios,
        image: "/boot/tiny.img".into(),
        load_sectors: Some(guestsim::media::tiny_installer::LOAD_SECTORS),
    });
    builder.write(&mut std::fs::File::create(&iso).expect("creates")).expect("writes");
    let disk = blank_disk(dir.path(), "disk.qcow2", 20_480);
    let serial = run_installer(
        dir.path(),
        &[Device::Cdrom { iso: &iso, position: 0 }, Device::VirtioDisk(&disk)],
        "cannot install",
        true,
    );
    assert!(serial.contains("no /.isoharness/installer.cfg"), "{serial}");
    assert!(first_sector(&disk, dir.path()).iter().all(|b| *b == 0), "the disk stays blank");
}

#[test]
fn a_machine_that_exits_or_stays_silent_is_reported_with_what_it_left() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.qcow2");
    let drive = format!("file={},format=qcow2", missing.display());
    let mut broken = Machine::start(dir.path(), "broken", &["-drive", &drive]).expect("qemu starts");
    match broken.wait_for(BOOTED, Duration::from_secs(60)) {
        Err(QemuError::Exited { status, stderr, .. }) => {
            assert!(!status.success() && stderr.contains("missing.qcow2"), "{status}: {stderr}")
        }
        other => panic!("a machine whose disk is missing exits at once: {other:?}"),
    }

    // Nothing to boot: the BIOS gives up on the screen, and the serial port stays empty.
    let mut silent = Machine::start(dir.path(), "silent", &[]).expect("qemu starts");
    match silent.wait_for(BOOTED, Duration::from_secs(2)) {
        Err(error @ QemuError::TimedOut { .. }) => {
            assert!(
                error.to_string().contains(&format!("no sign of {BOOTED:?} on the serial port after 2s")),
                "{error}"
            )
        }
        other => panic!("a machine with nothing to boot times out: {other:?}"),
    }
}

#[test]
fn the_committed_boot_image_is_nasms_assembly_of_its_source() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media/tiny_installer/boot.asm");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("boot.bin");
    run("nasm", &["-f", "bin", "-o", path_str(&out), path_str(&source)]);
    let assembled = std::fs::read(&out).expect("nasm wrote it");
    assert!(
        assembled == guestsim::media::tiny_installer::BOOT_IMAGE.as_slice(),
        "boot.bin is not the assembly of boot.asm: run `nasm -f bin -o boot.bin boot.asm` in {}",
        source.parent().expect("a folder").display()
    );
}
