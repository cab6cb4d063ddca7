//! Simulated guest tests: the article's outcomes per OS and layout, each failure mode's console, and the installed boot.

use super::*;
use crate::hypervisor::blockinfo::{FlavorDisks, ImageMeta, MappingRequest, VirtType, disk_mapping};
use crate::hypervisor::testing::{MemMedium, driver_floppy, os_table, virtio_win_iso};
use crate::layout::Layout;

fn mapping_for(facts: &GuestFacts, props: &[(&str, &str)], layout: Layout, ephemeral: bool) -> DiskMapping {
    let image = ImageMeta::new("iso", props.iter().copied());
    let root = u64::from(facts.min_disk_gb);
    disk_mapping(&MappingRequest {
        layout,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: root, ephemeral_gb: if ephemeral { root } else { 0 }, swap_mb: 0 },
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: true,
    })
    .unwrap()
}

fn media_for(facts: &GuestFacts, mapping: &DiskMapping) -> AttachedMediaSummary {
    let (iso, floppy) = (virtio_win_iso(), driver_floppy());
    let mut media: Vec<(&str, &dyn Medium)> = Vec::new();
    if mapping.disk("disk.virtio").is_some() {
        media.push(("disk.virtio", &iso));
    }
    if mapping.disk("disk.floppy").is_some() {
        media.push(("disk.floppy", &floppy));
    }
    summarize_media(facts, mapping, &media)
}

/// The article's outcomes for every Table-1 row and today's releases: (name, stock with ephemeral, stock without, patched, patched-floppy).
const EXPECTED: &[(&str, &str, &str, &str, &str)] = &[
    ("RHEL 6.4", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("CentOS 6.4", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("Ubuntu 12.04 LTS", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("SLES 11 SP2", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("Fedora 18", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("Windows 7", "no-target-disk", "no-target-disk", "image-ok", "image-ok"),
    ("Windows 8", "no-target-disk", "no-target-disk", "image-ok", "image-ok"),
    ("Windows Server 2008 R2", "no-target-disk", "no-target-disk", "image-ok", "image-ok"),
    ("Windows Server 2012", "no-target-disk", "no-target-disk", "image-ok", "image-ok"),
    ("Windows Server 2003 R2", "no-target-disk", "no-target-disk", "no-target-disk", "image-ok"),
    ("Windows XP", "no-target-disk", "no-target-disk", "no-target-disk", "image-ok"),
    ("RHEL 4", "no-target-disk", "no-target-disk", "no-target-disk", "no-target-disk"),
    ("Ubuntu 24.04 LTS", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("RHEL 9", "iso-copy", "no-target-disk", "image-ok", "image-ok"),
    ("Windows Server 2022", "no-target-disk", "no-target-disk", "image-ok", "image-ok"),
    ("Windows 11", "no-target-disk", "no-target-disk", "image-ok", "image-ok"),
];

#[test]
fn outcomes_follow_the_article_for_every_os_and_layout() {
    let table = os_table();
    assert_eq!(table.len(), EXPECTED.len());
    for ((facts, props), expected) in table.iter().zip(EXPECTED) {
        assert_eq!(facts.name, expected.0);
        let cells = [
            (Layout::Stock, true, expected.1),
            (Layout::Stock, false, expected.2),
            (Layout::Patched, false, expected.3),
            (Layout::PatchedFloppy, false, expected.4),
        ];
        for (layout, ephemeral, want) in cells {
            let mapping = mapping_for(facts, props, layout, ephemeral);
            let outcome = expected_outcome(facts, &mapping, &media_for(facts, &mapping));
            assert_eq!(
                outcome.kind.as_str(),
                want,
                "{} on {layout} (ephemeral {ephemeral}): {}",
                facts.name,
                outcome.reason
            );
        }
    }
}

fn facts_named(name: &str) -> (GuestFacts, Vec<(&'static str, &'static str)>) {
    os_table().into_iter().find(|(f, _)| f.name == name).unwrap()
}

fn run(facts: &GuestFacts, mapping: &DiskMapping) -> GuestRun {
    let devices = initial_contents(facts, mapping);
    let media = media_for(facts, mapping);
    run_guest(GuestInput {
        mapping,
        devices: &devices,
        media: &media,
        started_at: "2026-11-24T18:30:00Z".parse().unwrap(),
    })
}

#[test]
fn reasons_name_what_was_missing() {
    let (w2012, props) = facts_named("Windows Server 2012");
    let stock = mapping_for(&w2012, &props, Layout::Stock, true);
    let outcome = expected_outcome(&w2012, &stock, &media_for(&w2012, &stock));
    assert_eq!(
        outcome.reason,
        "installer found no disk: vda (virtio): viostor for Windows Server 2012 not on any readable medium"
    );
    let (xp, props) = facts_named("Windows XP");
    let patched = mapping_for(&xp, &props, Layout::Patched, false);
    let outcome = expected_outcome(&xp, &patched, &media_for(&xp, &patched));
    assert_eq!(
        outcome.reason,
        "installer found no disk: vda (virtio): viostor for Windows XP not on any attached floppy"
    );
    let (rhel, _) = facts_named("RHEL 6.4");
    let stock = mapping_for(&rhel, &[], Layout::Stock, true);
    let outcome = expected_outcome(&rhel, &stock, &AttachedMediaSummary::default());
    assert_eq!(
        outcome.reason,
        "installed onto disk.eph0 (vda), but the snapshot captures the first disk, disk (cdrom hda): the installation ISO"
    );
    let stock = mapping_for(&rhel, &[], Layout::Stock, false);
    let outcome = expected_outcome(&rhel, &stock, &AttachedMediaSummary::default());
    assert_eq!(outcome.reason, "installer found no disk: the instance has no writable disk");
}

#[test]
fn windows_11_needs_uefi_secure_boot_and_a_tpm() {
    let (w11, _) = facts_named("Windows 11");
    let mapping = mapping_for(&w11, &[("os_type", "windows")], Layout::Patched, false);
    let outcome = expected_outcome(&w11, &mapping, &media_for(&w11, &mapping));
    assert_eq!(outcome.kind, OutcomeKind::Rejected);
    assert_eq!(
        outcome.reason,
        "the installer refused the machine: the machine lacks UEFI firmware (hw_firmware_type=uefi), Secure Boot (os_secure_boot=required on a q35 machine), a TPM 2.0 (hw_tpm_version=2.0)"
    );
    let run = run(&w11, &mapping);
    assert!(run.console.iter().any(|l| l.text == "This PC can't run Windows 11"));
    assert_eq!(run.power_off_at, None);
    // IDE on q35 is refused by the cloud itself.
    let image = ImageMeta::new("iso", [("hw_machine_type", "q35"), ("hw_cdrom_bus", "ide")]);
    let request = MappingRequest {
        layout: Layout::Patched,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: 64, ephemeral_gb: 0, swap_mb: 0 },
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: false,
    };
    let outcome = expected_outcome_for_request(&w11, &request, &AttachedMediaSummary::default());
    assert_eq!(outcome.kind, OutcomeKind::Rejected);
    assert!(outcome.reason.contains("IDE controllers are unsupported"), "{}", outcome.reason);
}

#[test]
fn small_disks_and_attended_installs_stop_the_installer() {
    let (ubuntu, _) = facts_named("Ubuntu 24.04 LTS");
    let image = ImageMeta::new("iso", []);
    let mapping = disk_mapping(&MappingRequest {
        layout: Layout::Patched,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: 5, ephemeral_gb: 0, swap_mb: 0 },
        config_drive: false,
        virtio_iso_found: false,
        driver_floppy_found: false,
    })
    .unwrap();
    let outcome = expected_outcome(&ubuntu, &mapping, &AttachedMediaSummary::default());
    assert_eq!(outcome.kind, OutcomeKind::NoTargetDisk);
    assert_eq!(outcome.reason, "installer found no disk: vda is 5 GiB but Ubuntu 24.04 LTS needs at least 10 GiB");
    let mut attended = ubuntu.clone();
    attended.unattended = false;
    let mapping = mapping_for(&attended, &[], Layout::Patched, false);
    assert_eq!(expected_outcome(&attended, &mapping, &AttachedMediaSummary::default()).kind, OutcomeKind::NeedsConsole);
}

fn console_text(run: &GuestRun) -> String {
    run.console.iter().map(|l| format!("{:>8.1}s {}", l.at.as_secs_f64(), l.text)).collect::<Vec<_>>().join("\n")
}

fn snapshot(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/hypervisor"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn installs_write_the_system_and_power_off() {
    let (w2012, props) = facts_named("Windows Server 2012");
    let mapping = mapping_for(&w2012, &props, Layout::Patched, false);
    let run = run(&w2012, &mapping);
    let write = run.install.clone().unwrap();
    assert_eq!(write.file_name, "disk.newos");
    assert_eq!(write.system.virtio_storage_driver.as_deref(), Some("viostor"));
    assert_eq!(write.system.virtio_storage_driver_source.as_deref(), Some("hdb:/viostor/2k12/amd64/viostor.inf"));
    assert!(write.system.network_drivers.contains(&"netkvm".to_string()));
    assert_eq!(run.power_off_at, Some(Duration::from_millis(1000 + 1000 + 2000 + 600_000 + 1000)));
    snapshot("console-install-windows-2012-patched", &console_text(&run));

    let (rhel, _) = facts_named("RHEL 9");
    let run = super::tests::run(&rhel, &mapping_for(&rhel, &[], Layout::Stock, true));
    assert_eq!(run.install.as_ref().unwrap().file_name, "disk.eph0");
    snapshot("console-install-rhel-9-stock", &console_text(&run));

    let (xp, props) = facts_named("Windows XP");
    let run = super::tests::run(&xp, &mapping_for(&xp, &props, Layout::Patched, false));
    assert_eq!(run.power_off_at, None);
    snapshot("console-no-disk-windows-xp-patched", &console_text(&run));
}

fn boot_from(system: InstalledSystem, props: &[(&str, &str)], config_drive: bool) -> GuestRun {
    let image = ImageMeta::new("qcow2", props.iter().copied());
    let mapping = disk_mapping(&MappingRequest {
        layout: Layout::Stock,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: 40, ephemeral_gb: 0, swap_mb: 0 },
        config_drive,
        virtio_iso_found: false,
        driver_floppy_found: false,
    })
    .unwrap();
    let mut devices = vec![DeviceContent::Installed(Box::new(system))];
    if config_drive {
        devices.push(DeviceContent::Data { what: "config drive".into(), boot_signature: false });
    }
    run_guest(GuestInput {
        mapping: &mapping,
        devices: &devices,
        media: &AttachedMediaSummary::default(),
        started_at: "2026-11-24T18:30:00Z".parse().unwrap(),
    })
}

fn installed(facts: &GuestFacts, firmware: Firmware, virtio: Option<&str>) -> InstalledSystem {
    InstalledSystem {
        facts: facts.clone(),
        firmware,
        virtio_storage_driver: virtio.map(Into::into),
        virtio_storage_driver_source: None,
        network_drivers: vec![],
        agent: facts.agent,
        installed_on: "vda".into(),
    }
}

#[test]
fn installed_systems_boot_by_their_drivers() {
    let (ubuntu, _) = facts_named("Ubuntu 24.04 LTS");
    let run = boot_from(installed(&ubuntu, Firmware::Bios, Some("virtio_blk")), &[], true);
    assert_eq!(run.result, GuestResult::OsRunning { agent_finished: true });
    snapshot("console-boot-ubuntu-24.04", &console_text(&run));

    let (w2012, _) = facts_named("Windows Server 2012");
    let run = boot_from(installed(&w2012, Firmware::Bios, None), &[("os_type", "windows")], false);
    assert!(matches!(&run.result, GuestResult::OsCrashed { reason } if reason.starts_with("bug check 0x0000007B")));
    assert!(run.console.iter().any(|l| l.text == "INACCESSIBLE_BOOT_DEVICE"));
    // The same system on IDE boots fine, and cloudbase-init reports the missing metadata.
    let run = boot_from(installed(&w2012, Firmware::Bios, None), &[("hw_disk_bus", "ide")], false);
    assert_eq!(run.result, GuestResult::OsRunning { agent_finished: true });
    snapshot("console-boot-windows-2012-ide", &console_text(&run));

    let (rhel4, _) = facts_named("RHEL 4");
    let run = boot_from(installed(&rhel4, Firmware::Bios, None), &[], false);
    assert!(matches!(&run.result, GuestResult::OsCrashed { reason } if reason.contains("Unable to mount root fs")));

    // A GPT (UEFI) install does not boot under BIOS.
    let run = boot_from(installed(&ubuntu, Firmware::Uefi, Some("virtio_blk")), &[], false);
    assert_eq!(run.result, GuestResult::NoBootableDevice);
}

#[test]
fn iso_copies_and_blank_disks_do_not_boot() {
    let (ubuntu, _) = facts_named("Ubuntu 24.04 LTS");
    let image = ImageMeta::new("qcow2", []);
    let mapping = disk_mapping(&MappingRequest {
        layout: Layout::Patched,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: 10, ephemeral_gb: 10, swap_mb: 0 },
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: false,
    })
    .unwrap();
    let devices = [DeviceContent::Data { what: "ISO 9660 volume".into(), boot_signature: false }, DeviceContent::Blank];
    let no_media = AttachedMediaSummary::default();
    let input =
        |devices| GuestInput { mapping: &mapping, devices, media: &no_media, started_at: Timestamp::UNIX_EPOCH };
    let run = run_guest(input(&devices));
    assert_eq!(run.result, GuestResult::NoBootableDevice);
    snapshot("console-iso-copy-booted", &console_text(&run));
    // A hybrid ISO would have booted the installer again, which installs onto another disk, never its own.
    let hybrid = [DeviceContent::Installer(Box::new(ubuntu)), DeviceContent::Blank];
    let again = run_guest(input(&hybrid)).result;
    assert_eq!(again, GuestResult::Installed { file_name: "disk.eph0".into(), dev: "vdb".into() });
}

#[test]
fn drivers_are_found_where_each_installer_looks() {
    let (w7, props) = facts_named("Windows 7");
    let (xp, xp_props) = facts_named("Windows XP");
    let mapping = mapping_for(&w7, &props, Layout::PatchedFloppy, false);
    let (iso, floppy) = (virtio_win_iso(), driver_floppy());
    let both: Vec<(&str, &dyn Medium)> = vec![("disk.virtio", &iso), ("disk.floppy", &floppy)];
    let summary = summarize_media(&w7, &mapping, &both);
    assert_eq!(summary.storage_driver.get("disk.virtio").map(String::as_str), Some("/viostor/w7/amd64/viostor.inf"));
    assert_eq!(summary.storage_driver.get("disk.floppy").map(String::as_str), Some("/amd64/win7/viostor.inf"));
    assert_eq!(summary.network_driver.get("disk.virtio").map(String::as_str), Some("/netkvm/w7/amd64/netkvm.inf"));
    // Text-mode setup reads the floppy only, and only with txtsetup.oem at its root.
    let mapping = mapping_for(&xp, &xp_props, Layout::PatchedFloppy, false);
    let summary = summarize_media(&xp, &mapping, &both);
    assert_eq!(summary.storage_driver.keys().collect::<Vec<_>>(), ["disk.floppy"]);
    let mut bare = floppy.clone();
    bare.files.remove("/txtsetup.oem");
    let summary = summarize_media(&xp, &mapping, &[("disk.floppy", &bare)]);
    assert!(summary.storage_driver.is_empty());
    // Media attached under names the mapping does not have, or as disks, are not read.
    let summary = summarize_media(&w7, &mapping_for(&w7, &props, Layout::Stock, true), &both);
    assert!(summary.storage_driver.is_empty());
    // A current driver ISO without the old folder has nothing for the old OS.
    let (w2003, props) = facts_named("Windows Server 2003 R2");
    let mut modern = MemMedium::new("virtio-win");
    modern.files =
        iso.files.iter().filter(|(k, _)| !k.contains("/2k3/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mapping = mapping_for(&w2003, &props, Layout::Patched, false);
    assert!(summarize_media(&w2003, &mapping, &[("disk.virtio", &modern)]).storage_driver.is_empty());
    assert_eq!(facts_from_medium(&crate::hypervisor::testing::installer_medium(&w7)).unwrap(), Some(w7));
    assert_eq!(facts_from_medium(&iso).unwrap(), None);
    let broken = MemMedium::new("x").with(GUEST_FACTS_PATH, b"name = 1");
    let err = facts_from_medium(&broken).unwrap_err();
    assert!(err.starts_with("/.isoharness/guest.toml on medium \"x\", line 1"), "{err}");
}

#[test]
fn a_floppy_without_fat_is_reported_by_the_installers_that_read_drivers_from_it() {
    let script_line = |facts: &GuestFacts| InstallerScript::for_guest(facts).render(Line::BadFloppy, &[]).remove(0);
    for name in ["Windows XP", "Windows Server 2012", "Ubuntu 24.04 LTS"] {
        let (facts, props) = facts_named(name);
        let mapping = mapping_for(&facts, &props, Layout::PatchedFloppy, true);
        let devices = initial_contents(&facts, &mapping);
        let mut media = media_for(&facts, &mapping);
        media.storage_driver.remove("disk.floppy");
        media.non_fat_floppy = Some("disk.floppy".into());
        let run = run_guest(GuestInput {
            mapping: &mapping,
            devices: &devices,
            media: &media,
            started_at: Timestamp::UNIX_EPOCH,
        });
        let said = run.console.iter().any(|l| l.text == script_line(&facts));
        match facts.virtio_storage {
            // Its only driver medium is the floppy: it says so, and finds no disk.
            DriverSource::Floppy => {
                assert!(said, "{name}: {:?}", run.console);
                assert!(matches!(run.result, GuestResult::NoTargetDisk { .. }), "{name}");
            }
            // The driver CD-ROM has viostor: the floppy is never read.
            DriverSource::Cdrom => assert!(!said && matches!(run.result, GuestResult::Installed { .. }), "{name}"),
            _ => assert!(!said, "{name}: an installer with virtio built in reads no drivers"),
        }
    }
}
