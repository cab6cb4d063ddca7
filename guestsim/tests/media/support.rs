//! Shared helpers of the media tests: running the real image tools and building sample volumes.

use std::path::Path;
use std::process::Command;

use guestsim::media::{BootEntry, BootPlatform, IsoBuilder};
use jiff::civil::DateTime;

pub fn fixed_time() -> DateTime {
    "2024-04-23T12:34:56".parse().expect("valid literal")
}

/// Runs a tool and returns its stdout; fails the test with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn run_bytes(program: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are utf-8")
}

/// Files as `xorriso -find / -type f` lists them, sorted, with a leading `/`.
pub fn xorriso_files(iso: &Path) -> Vec<String> {
    let out = run("xorriso", &["-indev", path_str(iso), "-find", "/", "-type", "f"]);
    let mut files: Vec<String> = out
        .lines()
        .filter_map(|line| line.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')))
        .map(|line| line.replace("'\"'\"'", "'"))
        .collect();
    files.sort();
    files
}

/// Files as `isoinfo -J -f` lists them (directories removed by knowing them), sorted and deduplicated.
pub fn isoinfo_joliet_entries(iso: &Path) -> Vec<String> {
    let out = run("isoinfo", &["-J", "-f", "-i", path_str(iso)]);
    let mut entries: Vec<String> = out.lines().map(str::to_owned).collect();
    entries.sort();
    entries.dedup();
    entries
}

/// A small bootable tree with deep folders, an empty file and folder, odd names and a multi-extent file.
pub fn sample_builder() -> IsoBuilder {
    let mut builder = IsoBuilder::new("SAMPLE_VOLUME", fixed_time())
        .expect("valid volume id")
        .system_id("LINUX")
        .max_extent_sectors(2)
        .boot(BootEntry { platform: BootPlatform::Bios, image: "isolinux/isolinux.bin".into(), load_sectors: None })
        .boot(BootEntry { platform: BootPlatform::Efi, image: "images/efiboot.img".into(), load_sectors: None });
    let files: &[(&str, Vec<u8>)] = &[
        ("isolinux/isolinux.bin", vec![0xAA; 2048]),
        ("images/efiboot.img", vec![0xBB; 5000]),
        ("Readme.TXT", b"hello".to_vec()),
        ("a/b/c/d/e/f/g/h/i/j/deep file name with spaces.txt", b"deep".to_vec()),
        ("multi/extent.bin", (0..10_000u32).map(|i| (i % 251) as u8).collect()),
        ("empty", Vec::new()),
        ("unicode/Grüße ünd € 名前.txt", "ucs-2".as_bytes().to_vec()),
        ("same-prefix-name-number-1.longextension", b"1".to_vec()),
        ("same-prefix-name-number-2.longextension", b"2".to_vec()),
    ];
    for (path, content) in files {
        builder.add_file(path, content.clone()).expect("valid path");
    }
    builder.add_dir("empty-folder").expect("valid path");
    builder
}

pub fn sample_iso() -> Vec<u8> {
    let mut bytes = Vec::new();
    sample_builder().write(&mut bytes).expect("sample iso writes");
    bytes
}

use guestsim::guest::{Arch, DriverSource, Firmware, GuestAgent, GuestFacts, OsFamily};

/// Guest facts for a test, with the driver folders an OS of that name has.
pub fn facts(name: &str, release: &str, distro: &str, arch: Arch, virtio_storage: DriverSource) -> GuestFacts {
    let family = if distro == "windows" { OsFamily::Windows } else { OsFamily::Linux };
    let folder = |iso: &str, floppy: &str| (Some(iso.to_owned()), Some(floppy.to_owned()));
    let (virtio_win_folder, floppy_folder) = match name {
        "Windows XP" => folder("xp", "WinXP"),
        "Windows Server 2003 R2" => folder("2k3", "Win2003"),
        "Windows Server 2008" => folder("2k8", "Win2008"),
        "Windows 7" => folder("w7", "Win7"),
        "Windows Server 2012" => folder("2k12", "Win2012"),
        "Windows Server 2019" => folder("2k19", "Win2019"),
        "Windows 11" => folder("w11", "Win11"),
        _ => (None, None),
    };
    let uefi = name == "Windows 11" || arch == Arch::Aarch64;
    GuestFacts {
        name: name.to_owned(),
        family,
        release: release.to_owned(),
        distro: distro.to_owned(),
        arch,
        virtio_storage,
        virtio_win_folder,
        floppy_folder,
        firmware: if uefi { Firmware::Uefi } else { Firmware::Bios },
        needs_tpm: name == "Windows 11",
        needs_secure_boot: name == "Windows 11",
        min_ram_mb: 2048,
        min_disk_gb: 20,
        install_seconds: 600,
        boot_seconds: 30,
        agent: Some(if family == OsFamily::Windows { GuestAgent::CloudbaseInit } else { GuestAgent::CloudInit }),
        unattended: true,
    }
}

pub fn ubuntu_2404() -> GuestFacts {
    facts("Ubuntu Server", "24.04", "ubuntu", Arch::X86_64, DriverSource::BuiltIn)
}

pub fn windows_2012() -> GuestFacts {
    facts("Windows Server 2012", "2012", "windows", Arch::X86_64, DriverSource::Cdrom)
}

pub fn windows_xp() -> GuestFacts {
    facts("Windows XP", "xp", "windows", Arch::I686, DriverSource::Floppy)
}
