//! Generated installer ISOs boot on a real PC: qemu-system-x86_64 runs the tiny installer from the ISO, which installs onto the disk, and the disk then boots.

use std::path::Path;
use std::time::Duration;

use guestsim::media::qemu::{Machine, QemuError};
use guestsim::media::tiny_installer::{BOOTED, FINISHED, NO_DISK, STARTED, installed_mbr};
use guestsim::media::{OsIsoOptions, os_installer_iso_to_file};

use crate::support::*;

fn first_sector(disk: &Path, dir: &Path) -> Vec<u8> {
    let raw = dir.join("disk.raw");
    run("qemu-img", &["convert", "-O", "raw", path_str(disk), path_str(&raw)]);
    let mut sector = vec![0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(&raw).expect("opens the converted disk"), &mut sector)
        .expect("reads its first sector");
    sector
}

#[test]
fn the_installer_iso_installs_onto_a_virtio_disk_and_the_disk_boots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let iso = dir.path().join("ubuntu.iso");
    os_installer_iso_to_file(&ubuntu_2404(), &OsIsoOptions::default(), &iso).expect("writes");
    let disk = dir.path().join("disk.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", path_str(&disk), "64M"]);

    let serial = Machine::install(dir.path(), &iso, &disk, Duration::from_secs(120)).expect("the installer powers off");
    let started = serial.find(STARTED).unwrap_or_else(|| panic!("no {STARTED:?}: {serial}"));
    let finished = serial.find(FINISHED).unwrap_or_else(|| panic!("no {FINISHED:?}: {serial}"));
    assert!(started < finished, "{serial}");

    let mbr = first_sector(&disk, dir.path());
    let expected = installed_mbr();
    assert_eq!(&mbr[..446], &expected[..446], "the boot code");
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    let sectors = u32::from_le_bytes(mbr[446 + 12..446 + 16].try_into().expect("4 bytes"));
    assert_eq!(sectors, 64 * 2048 - 2048, "the partition spans the disk from sector 2048");

    let drive = format!("file={},if=virtio,format=qcow2", disk.display());
    let mut boot = Machine::start(dir.path(), "boot", &["-drive", &drive]).expect("qemu starts");
    let serial = boot.wait_for(BOOTED, Duration::from_secs(120)).expect("the installed disk boots");
    assert!(!serial.contains(STARTED), "the installed disk must not start the installer: {serial}");
}

#[test]
fn the_installer_drives_a_virtio_disk_the_bios_does_not_map() {
    // libvirt's command line: the CD-ROM alone in the boot order, and `-boot strict=on`, so that
    // SeaBIOS gives the virtio disk no drive number (Nova's ephemeral disk on a stock ISO boot).
    let dir = tempfile::tempdir().expect("temp dir");
    let iso = dir.path().join("ubuntu.iso");
    os_installer_iso_to_file(&ubuntu_2404(), &OsIsoOptions::default(), &iso).expect("writes");
    let disk = dir.path().join("disk.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", path_str(&disk), "32M"]);
    let cdrom = format!("file={},if=none,id=cd0,media=cdrom,format=raw", iso.display());
    let drive = format!("file={},if=none,id=disk0,format=qcow2", disk.display());
    let mut install = Machine::start(
        dir.path(),
        "strict",
        &[
            "-drive",
            &cdrom,
            "-device",
            "ide-cd,drive=cd0,bootindex=1",
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=disk0",
            "-boot",
            "strict=on",
        ],
    )
    .expect("qemu starts");
    install.wait_powered_off(Duration::from_secs(120)).expect("the installer powers off");
    let serial = install.serial();
    assert!(serial.contains("first virtio disk") && serial.contains(FINISHED), "{serial}");
    let mbr = first_sector(&disk, dir.path());
    assert_eq!(&mbr[..446], &installed_mbr()[..446]);
    let sectors = u32::from_le_bytes(mbr[446 + 12..446 + 16].try_into().expect("4 bytes"));
    assert_eq!(sectors, 32 * 2048 - 2048, "sized from the device's capacity");
}

#[test]
fn without_a_hard_disk_the_installer_says_so_and_waits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let iso = dir.path().join("windows.iso");
    os_installer_iso_to_file(&windows_2012(), &OsIsoOptions::default(), &iso).expect("writes");
    let cdrom = format!("file={},media=cdrom,format=raw", iso.display());
    let mut machine = Machine::start(dir.path(), "nodisk", &["-machine", "q35", "-drive", &cdrom, "-boot", "d"])
        .expect("qemu starts");
    machine.wait_for(NO_DISK, Duration::from_secs(120)).expect("the installer says it found no disk");
    std::thread::sleep(Duration::from_millis(500));
    assert!(machine.exited().expect("waits").is_none(), "the installer must wait, not power off");
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
