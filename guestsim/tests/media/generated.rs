//! Generated media: OS installer ISOs, the VirtIO-win ISO and driver floppies, and the driver lookup rule.

use guestsim::guest::{Arch, DriverSource, GuestFacts, Medium};
use guestsim::media::{
    DriverFloppySpec, FloppyArch, FloppyImage, IsoImage, MediaError, OsIsoOptions, VirtioWinSpec, driver_floppy,
    find_driver, guest_facts, inf_target, open_medium, os_installer_iso, os_installer_iso_to_file, os_volume_id,
    virtio_win_iso,
};

use crate::support::*;

fn os_iso(facts: &GuestFacts) -> IsoImage {
    let mut bytes = Vec::new();
    os_installer_iso(facts, &OsIsoOptions::default(), &mut bytes).expect("generates");
    IsoImage::from_bytes(bytes).expect("parses")
}

fn virtio_iso(spec: &VirtioWinSpec) -> IsoImage {
    let mut bytes = Vec::new();
    virtio_win_iso(spec, &mut bytes).expect("generates");
    IsoImage::from_bytes(bytes).expect("parses")
}

fn floppy(arch: FloppyArch) -> FloppyImage {
    let mut bytes = Vec::new();
    driver_floppy(&DriverFloppySpec::for_arch(arch), &mut bytes).expect("generates");
    FloppyImage::from_bytes(bytes).expect("parses")
}

/// A listing for snapshots: volume id, boot entries and files with sizes.
fn listing(image: &IsoImage) -> String {
    let mut text = format!("volume id: {}\n", image.volume_id());
    for entry in image.boot_entries() {
        text.push_str(&format!(
            "boot: platform {:#04x}, load {} sectors, image {}\n",
            entry.platform_id,
            entry.load_sectors,
            entry.image.as_deref().unwrap_or("?")
        ));
    }
    for file in image.file_paths() {
        text.push_str(&format!("{file} ({} bytes)\n", image.file_size(file).unwrap_or(0)));
    }
    text
}

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/media"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn installer_iso_listings() {
    let settings = snapshot_settings();
    settings.bind(|| {
        insta::assert_snapshot!("os_iso_ubuntu_24_04", listing(&os_iso(&ubuntu_2404())));
        insta::assert_snapshot!("os_iso_windows_server_2012", listing(&os_iso(&windows_2012())));
        insta::assert_snapshot!("os_iso_windows_xp", listing(&os_iso(&windows_xp())));
        let rhel = facts("Red Hat Enterprise Linux", "9.4", "rhel", Arch::X86_64, DriverSource::BuiltIn);
        insta::assert_snapshot!("os_iso_rhel_9_4", listing(&os_iso(&rhel)));
    });
}

#[test]
fn virtio_win_listing() {
    let image = virtio_iso(&VirtioWinSpec::current());
    snapshot_settings().bind(|| insta::assert_snapshot!("virtio_win_0_1_285", listing(&image)));
}

#[test]
fn installer_isos_carry_their_facts_and_stay_small() {
    for facts in [ubuntu_2404(), windows_2012(), windows_xp()] {
        let mut bytes = Vec::new();
        os_installer_iso(&facts, &OsIsoOptions::default(), &mut bytes).expect("generates");
        // Most of it is the UEFI installer's EFI system partition, a 1.44 MB FAT image as real ISOs carry.
        assert!(bytes.len() < 2 << 20, "{}: {} bytes", facts.name, bytes.len());
        let image = IsoImage::from_bytes(bytes).expect("parses");
        assert_eq!(guest_facts(&image).expect("valid facts"), Some(facts.clone()));
        assert!(!image.boot_entries().is_empty(), "{} is bootable", facts.name);
        for entry in image.boot_entries() {
            assert!(entry.image.is_some(), "{}: boot entry points at a file", facts.name);
        }
    }
    assert_eq!(guest_facts(&virtio_iso(&VirtioWinSpec::current())).expect("no facts"), None);
}

#[test]
fn generated_media_are_deterministic() {
    let generate = |facts: &GuestFacts| {
        let mut bytes = Vec::new();
        os_installer_iso(facts, &OsIsoOptions::default(), &mut bytes).expect("generates");
        bytes
    };
    assert_eq!(generate(&windows_2012()), generate(&windows_2012()));
    assert_eq!(generate(&ubuntu_2404()), generate(&ubuntu_2404()));
    let virtio = || {
        let mut bytes = Vec::new();
        virtio_win_iso(&VirtioWinSpec::current(), &mut bytes).expect("generates");
        bytes
    };
    assert_eq!(virtio(), virtio());
    let vfd = || {
        let mut bytes = Vec::new();
        driver_floppy(&DriverFloppySpec::for_arch(FloppyArch::X86), &mut bytes).expect("generates");
        bytes
    };
    assert_eq!(vfd(), vfd());
}

#[test]
fn volume_ids_follow_the_family_and_distro_rules() {
    let check = |facts: GuestFacts, expected: &str| assert_eq!(os_volume_id(&facts), expected, "{}", facts.name);
    let linux = |distro: &str, release: &str, arch: Arch| facts(distro, release, distro, arch, DriverSource::BuiltIn);
    check(ubuntu_2404(), "Ubuntu-Server 24.04 LTS amd64");
    check(linux("ubuntu", "12.04", Arch::I686), "Ubuntu-Server 12.04 LTS i386");
    check(linux("ubuntu", "23.10", Arch::X86_64), "Ubuntu-Server 23.10 amd64");
    check(linux("rhel", "9.4", Arch::X86_64), "RHEL-9-4-0-BaseOS-x86_64");
    check(linux("rhel", "6.4", Arch::X86_64), "RHEL-6.4 Server.x86_64");
    check(linux("centos", "6.4", Arch::X86_64), "CentOS_6.4_Final");
    check(linux("centos", "9", Arch::Aarch64), "CentOS-Stream-9-BaseOS-aarch64");
    check(linux("fedora", "18", Arch::X86_64), "Fedora 18 x86_64 DVD");
    check(linux("sles", "11 SP2", Arch::X86_64), "SLES-11-SP2-DVD-x86_64");
    check(linux("debian", "12.5.0", Arch::X86_64), "Debian 12.5.0 amd64 n");
    check(linux("arch", "2024.04.01", Arch::X86_64), "Arch-2024.04.01-x86_64");
    check(windows_2012(), "SSS_X64FRE_EN-US_DV5");
    check(facts("Windows 7", "7", "windows", Arch::I686, DriverSource::Cdrom), "CCSA_X86FRE_EN-US_DV5");
    check(facts("Windows 11", "11", "windows", Arch::Aarch64, DriverSource::Cdrom), "CCSA_A64FRE_EN-US_DV5");
}

#[test]
fn windows_answer_files_name_the_driver_paths() {
    let image = os_iso(&windows_2012());
    let xml = String::from_utf8(image.read("/AUTOUNATTEND.XML").expect("answer file")).expect("utf-8");
    assert!(xml.contains(r"<Path>E:\viostor\2k12\amd64</Path>"), "{xml}");
    assert!(xml.contains(r"<Path>E:\NetKVM\2k12\amd64</Path>"), "{xml}");
    assert!(xml.contains("shutdown /s /t 0"), "{xml}");
    let xp = os_iso(&windows_xp());
    let sif = String::from_utf8(xp.read("/i386/winnt.sif").expect("text-mode answer file")).expect("utf-8");
    assert!(sif.contains("[MassStorageDrivers]"), "{sif}");
    assert!(!xp.exists("/sources/install.wim"), "text-mode media have no wim");
    let attended = GuestFacts { unattended: false, ..windows_2012() };
    assert!(!os_iso(&attended).exists("/autounattend.xml"));
    let ubuntu = os_iso(&ubuntu_2404());
    let autoinstall = String::from_utf8(ubuntu.read("/autoinstall.yaml").expect("autoinstall")).expect("utf-8");
    assert!(autoinstall.contains("shutdown: poweroff"), "{autoinstall}");
    let md5sums = String::from_utf8(ubuntu.read("/md5sum.txt").expect("md5sum.txt")).expect("utf-8");
    let kernel = ubuntu.read("/casper/vmlinuz").expect("kernel");
    assert!(md5sums.contains(&format!("{}  ./casper/vmlinuz", hex::encode(md5::Md5::digest(&kernel)))), "{md5sums}");
}

use md5::Digest;

#[test]
fn virtio_win_layout_follows_the_packaging_rules() {
    let image = virtio_iso(&VirtioWinSpec::current());
    assert_eq!(image.volume_id(), "virtio-win-0.1.285");
    let dirs = image.dir_paths();
    let has = |dir: &str| dirs.iter().any(|d| d == dir);
    let check = |driver: &str, os: &str, arch: &str, expected: bool| {
        assert_eq!(has(&format!("/{driver}/{os}/{arch}")), expected, "{driver}/{os}/{arch}");
    };
    check("viostor", "xp", "x86", true);
    check("vioscsi", "xp", "x86", false);
    check("vioscsi", "2k8", "amd64", true);
    check("viostor", "2k8", "x86", true);
    check("viostor", "2k8R2", "x86", false);
    check("viostor", "2k8R2", "amd64", true);
    check("viostor", "w7", "x86", true);
    check("viostor", "w10", "ARM64", true);
    check("viostor", "w11", "x86", false);
    check("viostor", "w11", "ARM64", true);
    check("viostor", "2k22", "ARM64", false);
    check("viostor", "2k25", "ARM64", true);
    check("NetKVM", "2k19", "amd64", true);
    check("Balloon", "w8.1", "x86", true);
    check("vioserial", "2k12R2", "amd64", true);
    for present in ["/amd64/w10", "/amd64/2k16", "/amd64/2k25", "/i386/w10", "/guest-agent", "/data"] {
        assert!(has(present), "{present}");
    }
    assert!(!has("/i386/2k16") && !has("/amd64/w7"), "shortcut folders start at Windows 10 / Server 2016");
    assert!(image.exists("/virtio-win-guest-tools.exe"));
    let info: serde_json::Value =
        serde_json::from_slice(&image.read("/data/info.json").expect("info.json")).expect("json");
    let listed = info["drivers"].as_array().expect("drivers").len();
    let infs = image.file_paths().iter().filter(|f| f.ends_with(".inf") && f.matches('/').count() == 4).count();
    assert_eq!(listed, infs, "info.json lists every driver build");

    let rhel = virtio_iso(&VirtioWinSpec::rhel_style());
    assert!(!rhel.exists("/viostor/xp") && !rhel.exists("/viostor/2k3") && !rhel.exists("/viostor/2k8"));
    assert!(rhel.exists("/viostor/2k8R2/amd64/viostor.inf"));
    let unknown = VirtioWinSpec { os_folders: ["w95".to_owned()].into(), ..VirtioWinSpec::current() };
    assert!(matches!(virtio_win_iso(&unknown, &mut Vec::new()), Err(MediaError::InvalidPath { .. })));
}

#[test]
fn driver_infs_say_which_os_and_arch_they_target() {
    let image = virtio_iso(&VirtioWinSpec::current());
    let mut checked = 0;
    for file in image.file_paths().iter().filter(|f| f.ends_with(".inf") && f.matches('/').count() == 4) {
        let parts: Vec<&str> = file.split('/').collect();
        let (os, arch) = (parts[2], parts[3]);
        let inf = String::from_utf8(image.read(file).expect("readable")).expect("utf-8");
        let target = inf_target(&inf).unwrap_or_else(|| panic!("{file} has a [Manufacturer] decoration"));
        assert_eq!(target.arch.virtio_win_folder(), arch, "{file}");
        assert_eq!(target.release().map(|r| r.folder), Some(os), "{file}: {target:?}");
        checked += 1;
    }
    // xp 8, 2k3 8, 2k8 10, 2k8R2 5, w7 10, w8 10, w8.1 10, 2k12 5, 2k12R2 5, w10 15, 2k16 5, 2k19 5, w11 10, 2k22 5, 2k25 10
    assert_eq!(checked, 121);
}

#[test]
fn driver_floppies_look_like_the_virtio_win_vfds() {
    let x86 = floppy(FloppyArch::X86);
    assert_eq!(x86.volume_id(), "VIRTIO-WIN");
    assert!(x86.exists("/disk1") && x86.exists("/txtsetup.oem"));
    assert!(x86.exists("/i386/WinXP/viostor.inf") && x86.exists("/i386/Win2003/netkvm.inf"));
    assert!(!x86.exists("/i386/WinXP/vioscsi.inf"), "vioscsi starts at Server 2008");
    assert!(x86.exists("/i386/Win2008/vioscsi.sys"));
    let txtsetup = String::from_utf8(x86.read("/TXTSETUP.OEM").expect("txtsetup")).expect("utf-8");
    assert!(txtsetup.contains(r"driver  = d1, \i386\WinXP\viostor.sys, viostor"), "{txtsetup}");
    assert!(txtsetup.contains("[Disks]") && txtsetup.contains(r"\disk1"), "{txtsetup}");
    let amd64 = floppy(FloppyArch::Amd64);
    assert!(amd64.exists("/amd64/Win2008R2/viostor.inf") && !amd64.exists("/i386"));
    let bad =
        DriverFloppySpec { os_folders: vec!["Win2019".to_owned()], ..DriverFloppySpec::for_arch(FloppyArch::X86) };
    assert!(driver_floppy(&bad, &mut Vec::new()).is_err(), "no x86 build for Server 2019");
}

#[test]
fn generated_media_pass_the_real_tools() {
    let dir = tempfile::tempdir().expect("temp dir");
    let iso = dir.path().join("win2012.iso");
    os_installer_iso_to_file(&windows_2012(), &OsIsoOptions::default(), &iso).expect("writes");
    let ours = IsoImage::open(&iso).expect("parses");
    assert_eq!(xorriso_files(&iso), ours.file_paths());
    let report = run("xorriso", &["-indev", path_str(&iso), "-report_el_torito", "plain"]);
    assert!(report.contains("El Torito img path :   1  /boot/etfsboot.com"), "{report}");
    assert!(report.contains("El Torito img path :   2  /efi/microsoft/boot/efisys.bin"), "{report}");
    let description = run("isoinfo", &["-d", "-i", path_str(&iso)]);
    assert!(description.contains("Volume id: SSS_X64FRE_EN-US_DV5"), "{description}");

    let virtio = dir.path().join("virtio-win.iso");
    guestsim::media::virtio_win_iso_to_file(&VirtioWinSpec::current(), &virtio).expect("writes");
    assert_eq!(xorriso_files(&virtio), IsoImage::open(&virtio).expect("parses").file_paths());

    let vfd = dir.path().join("virtio-win_amd64.vfd");
    guestsim::media::driver_floppy_to_file(&DriverFloppySpec::for_arch(FloppyArch::Amd64), &vfd).expect("writes");
    let mdir = run("mdir", &["-i", path_str(&vfd), "::/"]);
    assert!(mdir.contains("Volume in drive : is VIRTIO-WIN"), "{mdir}");
    let txtsetup = dir.path().join("txtsetup.oem");
    run("mcopy", &["-i", path_str(&vfd), "::/txtsetup.oem", path_str(&txtsetup)]);
    assert_eq!(
        std::fs::read(&txtsetup).expect("copied"),
        open_medium(&vfd).expect("opens").read("/txtsetup.oem").expect("ours")
    );
}

#[test]
fn find_driver_follows_the_installer_rules() {
    let current = virtio_iso(&VirtioWinSpec::current());
    let rhel = virtio_iso(&VirtioWinSpec::rhel_style());
    let x86_floppy = floppy(FloppyArch::X86);
    let amd64_floppy = floppy(FloppyArch::Amd64);
    let ubuntu = os_iso(&ubuntu_2404());
    let win = |name: &str, arch: Arch, source: DriverSource| facts(name, "", "windows", arch, source);
    let check = |medium: &dyn Medium, facts: GuestFacts, expected: Option<&str>| {
        let found = find_driver(medium, "viostor", &facts);
        assert_eq!(found.as_deref(), expected, "{} {:?} on {}", facts.name, facts.arch, medium.volume_id());
        if let Some(path) = found {
            let inf = String::from_utf8(medium.read(&path).expect("readable")).expect("utf-8");
            assert_eq!(inf_target(&inf).map(|t| t.arch), Some(facts.arch), "{path}");
        }
    };
    let cd = DriverSource::Cdrom;
    let fd = DriverSource::Floppy;
    check(&current, windows_2012(), Some("/viostor/2k12/amd64/viostor.inf"));
    check(&rhel, windows_2012(), Some("/viostor/2k12/amd64/viostor.inf"));
    check(&current, win("Windows Server 2008", Arch::I686, cd), Some("/viostor/2k8/x86/viostor.inf"));
    check(&rhel, win("Windows Server 2008", Arch::I686, cd), None);
    check(&current, win("Windows 11", Arch::Aarch64, cd), Some("/viostor/w11/ARM64/viostor.inf"));
    check(&current, win("Windows Server 2019", Arch::I686, cd), None);
    check(&current, windows_xp(), None);
    check(&x86_floppy, windows_xp(), Some("/i386/WinXP/viostor.inf"));
    check(&amd64_floppy, windows_xp(), None);
    check(&amd64_floppy, win("Windows Server 2003 R2", Arch::X86_64, fd), Some("/amd64/Win2003/viostor.inf"));
    check(&amd64_floppy, win("Windows 7", Arch::X86_64, cd), Some("/amd64/Win7/viostor.inf"));
    check(&x86_floppy, windows_2012(), None);
    check(&current, ubuntu_2404(), None);
    check(&ubuntu, windows_2012(), None);
}

#[test]
fn malformed_guest_facts_are_located() {
    let check = |toml: &[u8], expected: &str| {
        let mut builder = guestsim::media::IsoBuilder::new("BROKEN", fixed_time()).expect("valid");
        builder.add_file(".isoharness/guest.toml", toml.to_vec()).expect("valid");
        let mut bytes = Vec::new();
        builder.write(&mut bytes).expect("writes");
        let image = IsoImage::from_bytes(bytes).expect("parses");
        let error = guest_facts(&image).expect_err("malformed").to_string();
        assert!(error.contains(expected), "expected {expected:?} in {error:?}");
    };
    let valid = toml::to_string(&windows_2012()).expect("serializes");
    check(valid.replace("family = \"windows\"", "family = \"beos\"").as_bytes(), "line 2, column 10: unknown variant");
    check(format!("{valid}colour = \"blue\"\n").as_bytes(), "unknown field `colour`");
    check(b"name = \"x\"\nfamily = ", "line 2");
    check(b"name = \"\xff\"\n", "line 1, column 9: not utf-8");
    check(b"name = \"Windows\"\n", "missing field");
}
