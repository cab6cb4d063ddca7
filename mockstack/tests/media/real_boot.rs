//! Generated installer ISOs boot on a real PC: qemu-system-x86_64 runs the tiny installer from the ISO, which installs onto the disk, and the disk then boots.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mockstack::media::tiny_installer::{BOOTED, FINISHED, NO_DISK, STARTED, installed_mbr};
use mockstack::media::{OsIsoOptions, os_installer_iso_to_file};

use crate::support::*;

const QEMU: &str = "qemu-system-x86_64";

/// A QEMU machine with its serial port in a file; killed when dropped.
struct Machine {
    child: Child,
    serial: std::path::PathBuf,
}

impl Machine {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Machine {
        let serial = dir.join(format!("{name}.serial"));
        let child = Command::new(QEMU)
            // KVM where the machine has it, software emulation otherwise.
            .args(["-accel", "kvm", "-accel", "tcg", "-m", "64", "-display", "none", "-nic", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {QEMU} ({e}): `cargo xtask setup` installs qemu-system-x86"));
        Machine { child, serial }
    }

    fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Waits until the serial output holds `text`; panics with what it holds after `timeout`.
    fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let serial = self.serial();
            if serial.contains(text) {
                return serial;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!("qemu exited ({status}) before printing {text:?}; serial:\n{serial}\nstderr:\n{stderr}");
            }
            assert!(Instant::now() < deadline, "no {text:?} on the serial port after {timeout:?}; it holds:\n{serial}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the guest to power the machine off (QEMU exits 0).
    fn wait_powered_off(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                assert!(status.success(), "qemu exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the guest did not power off in {timeout:?}: {}", self.serial());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let drive = format!("file={},if=virtio,format=qcow2", disk.display());
    let cdrom = format!("file={},media=cdrom,format=raw", iso.display());

    let mut install = Machine::start(dir.path(), "install", &["-drive", &drive, "-drive", &cdrom, "-boot", "d"]);
    install.wait_powered_off(Duration::from_secs(120));
    let serial = install.serial();
    let started = serial.find(STARTED).unwrap_or_else(|| panic!("no {STARTED:?}: {serial}"));
    let finished = serial.find(FINISHED).unwrap_or_else(|| panic!("no {FINISHED:?}: {serial}"));
    assert!(started < finished, "{serial}");

    let mbr = first_sector(&disk, dir.path());
    let expected = installed_mbr();
    assert_eq!(&mbr[..446], &expected[..446], "the boot code");
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    let sectors = u32::from_le_bytes(mbr[446 + 12..446 + 16].try_into().expect("4 bytes"));
    assert_eq!(sectors, 64 * 2048 - 2048, "the partition spans the disk from sector 2048");

    let mut boot = Machine::start(dir.path(), "boot", &["-drive", &drive]);
    let serial = boot.wait_for(BOOTED, Duration::from_secs(120));
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
    );
    install.wait_powered_off(Duration::from_secs(120));
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
    let mut machine = Machine::start(dir.path(), "nodisk", &["-machine", "q35", "-drive", &cdrom, "-boot", "d"]);
    machine.wait_for(NO_DISK, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    assert!(machine.child.try_wait().expect("waits").is_none(), "the installer must wait, not power off");
}
