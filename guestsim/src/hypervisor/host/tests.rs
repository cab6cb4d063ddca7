//! Host tests: real files end to end (install, snapshot, boot from the snapshot) agree with the rules' expected outcomes.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::hypervisor::blockinfo::{FlavorDisks, ImageMeta, MappingRequest, VirtType, disk_mapping};
use crate::hypervisor::installer::{
    AttachedMediaSummary, GuestResult, expected_outcome, outcome_of_run, summarize_media,
};
use crate::hypervisor::testing::os_table;
use crate::layout::Layout;
use crate::media::{DriverFloppySpec, FloppyArch, OsIsoOptions, VirtioWinSpec};
use crate::outcome::{Outcome, OutcomeKind};

/// The opener mockstack uses: the real ISO 9660 / FAT reader.
fn opener() -> Arc<MediumOpener> {
    Arc::new(|path: &Path| crate::media::open_medium(path).map_err(|e| e.to_string()))
}

fn os_iso(f: &Fixture, facts: &GuestFacts, name: &str) -> PathBuf {
    let path = f.images.join(name);
    crate::media::os_installer_iso_to_file(facts, &OsIsoOptions::default(), &path).unwrap();
    path
}

fn floppy_for(f: &Fixture, facts: &GuestFacts) -> PathBuf {
    let arch = FloppyArch::for_guest(facts.arch).unwrap_or(FloppyArch::Amd64);
    f.images.join(arch.image_name())
}

struct Fixture {
    _dir: tempfile::TempDir,
    host: Host,
    images: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    fs::create_dir_all(&images).unwrap();
    crate::media::virtio_win_iso_to_file(&VirtioWinSpec::current(), &images.join("virtio-win.iso")).unwrap();
    for arch in [FloppyArch::X86, FloppyArch::Amd64] {
        crate::media::driver_floppy_to_file(&DriverFloppySpec::for_arch(arch), &images.join(arch.image_name()))
            .unwrap();
    }
    let host = Host::new(dir.path().join("instances"), opener());
    Fixture { _dir: dir, host, images }
}

fn start() -> Timestamp {
    "2026-11-24T18:30:00Z".parse().unwrap()
}

fn sources(f: &Fixture, boot: &Path, format: &str, floppy: PathBuf) -> InstanceSources {
    InstanceSources {
        boot_image: SourceImage { path: boot.to_path_buf(), disk_format: format.into() },
        virtio_iso: Some(SourceImage { path: f.images.join("virtio-win.iso"), disk_format: "iso".into() }),
        driver_floppy: Some(SourceImage { path: floppy, disk_format: "raw".into() }),
    }
}

fn mapping(layout: Layout, format: &str, props: &[(&str, &str)], flavor: FlavorDisks) -> DiskMapping {
    let image = ImageMeta::new(format, props.iter().copied());
    disk_mapping(&MappingRequest {
        layout,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor,
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: true,
    })
    .unwrap()
}

/// Runs one cell with real files: install, snapshot, then boot a new instance from the snapshot.
/// Returns the outcome read from the files and the result of booting the snapshot.
fn run_cell(
    f: &Fixture,
    facts: &GuestFacts,
    props: &[(&str, &str)],
    layout: Layout,
    n: usize,
) -> (Outcome, GuestResult) {
    let iso = os_iso(f, facts, &format!("os-{n}.iso"));
    let floppy = floppy_for(f, facts);
    let root = u64::from(facts.min_disk_gb);
    let flavor =
        FlavorDisks { root_gb: root, ephemeral_gb: if layout == Layout::Stock { root } else { 0 }, swap_mb: 0 };
    let m = mapping(layout, "iso", props, flavor);
    let expected = {
        let virtio = crate::media::open_medium(&f.images.join("virtio-win.iso")).unwrap();
        let floppy = crate::media::open_medium(&floppy).unwrap();
        let media: Vec<(&str, &dyn Medium)> = vec![("disk.virtio", virtio.as_ref()), ("disk.floppy", floppy.as_ref())];
        expected_outcome(facts, &m, &summarize_media(facts, &m, &media))
    };
    let instance =
        f.host.create_instance(&format!("install-{n}"), m.clone(), sources(f, &iso, "iso", floppy.clone())).unwrap();
    let run = f.host.power_on(&instance, start()).unwrap();
    f.host.complete(&instance, &run).unwrap();
    let snapshot = f.images.join(format!("snapshot-{n}.qcow2"));
    let info = f.host.snapshot_root(&instance, &snapshot).unwrap();
    assert_eq!(info.captured_file, m.first_disk().unwrap().file_name);

    // The outcome as a person would find it: an install that never finished (the server never
    // reaches SHUTOFF) is what the console says; a finished one is what the snapshot holds.
    let observed = match (&run.result, system::inspect(&snapshot).unwrap()) {
        (GuestResult::Installed { .. }, DiskContent::Installed(_)) => OutcomeKind::ImageOk,
        (GuestResult::Installed { .. }, _) if snapshot_equals(&snapshot, &iso) => OutcomeKind::IsoCopy,
        (GuestResult::Installed { .. }, content) => panic!("{}: snapshot holds {content:?}", facts.name),
        _ => outcome_of_run(&m, &run).kind,
    };
    let outcome = Outcome { kind: observed, reason: outcome_of_run(&m, &run).reason };
    assert_eq!(
        outcome.kind, expected.kind,
        "{} on {layout}: files say {:?}, rules say {:?}",
        facts.name, outcome, expected
    );

    // Boot the snapshot as an image (its properties inherited from the ISO's).
    let booted_mapping = mapping(layout, "qcow2", props, FlavorDisks { root_gb: root, ephemeral_gb: 0, swap_mb: 0 });
    let booted =
        f.host.create_instance(&format!("boot-{n}"), booted_mapping, sources(f, &snapshot, "qcow2", floppy)).unwrap();
    let boot_run = f.host.power_on(&booted, start()).unwrap();
    let console = fs::read_to_string(booted.console_log()).unwrap();
    assert_eq!(console, boot_run.console_until(Duration::MAX));
    f.host.delete(&instance).unwrap();
    f.host.delete(&booted).unwrap();
    assert!(!instance.dir.exists());
    (outcome, boot_run.result)
}

fn snapshot_equals(snapshot: &Path, raw: &Path) -> bool {
    let source = fs::read(raw).unwrap();
    let content = qcow2::read_image_range(snapshot, 0, source.len()).unwrap();
    content == source
        && qcow2::read_image_range(snapshot, source.len() as u64, 1 << 20).unwrap().iter().all(|&b| b == 0)
}

#[test]
fn files_agree_with_the_rules_for_every_os_and_layout() {
    let f = fixture();
    let mut n = 0;
    for (facts, props) in os_table() {
        for layout in Layout::ALL {
            n += 1;
            let (outcome, booted) = run_cell(&f, &facts, &props, layout, n);
            match outcome.kind {
                OutcomeKind::ImageOk => {
                    assert_eq!(booted, GuestResult::OsRunning { agent_finished: true }, "{} on {layout}", facts.name)
                }
                OutcomeKind::IsoCopy => assert_eq!(booted, GuestResult::NoBootableDevice, "{} on {layout}", facts.name),
                _ => {}
            }
        }
    }
}

#[test]
fn stock_snapshot_is_the_iso_byte_for_byte() {
    let f = fixture();
    let (facts, _) = os_table().into_iter().find(|(f, _)| f.name == "RHEL 9").unwrap();
    let iso = os_iso(&f, &facts, "rhel9.iso");
    let bytes = fs::read(&iso).unwrap();
    let m = mapping(Layout::Stock, "iso", &[], FlavorDisks { root_gb: 10, ephemeral_gb: 10, swap_mb: 0 });
    let floppy = floppy_for(&f, &facts);
    let instance =
        f.host.create_instance("68a8f3c6-04f3-4a3a-9183-b66d49f2ccb4", m, sources(&f, &iso, "iso", floppy)).unwrap();
    let run = f.host.power_on(&instance, start()).unwrap();
    assert_eq!(run.power_off_at, Some(Duration::from_millis(500 + 1000 + 2000 + 600_000 + 1000)));
    f.host.complete(&instance, &run).unwrap();
    let out = f.images.join("snap.qcow2");
    let info = f.host.snapshot_root(&instance, &out).unwrap();
    assert_eq!(info.captured_file, "disk");
    assert_eq!(info.virtual_size, bytes.len() as u64);
    let raw = f.images.join("snap.raw");
    qcow2::to_raw(&out, &raw).unwrap();
    assert_eq!(fs::read(&raw).unwrap(), bytes);
    assert_eq!(system::inspect(&out).unwrap(), DiskContent::Iso9660 { boot_signature: false });
    // The installed system sat untouched on disk.eph0.
    let eph = instance.dir.join("disk.eph0");
    assert!(matches!(system::inspect(&eph).unwrap(), DiskContent::Installed(_)));
    let listing: Vec<String> =
        fs::read_dir(&instance.dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let mut listing = listing;
    listing.sort();
    assert_eq!(listing, ["console.log", "disk", "disk.eph0"]);
}

#[test]
fn bad_input_gives_clear_errors() {
    let f = fixture();
    let m = mapping(Layout::Patched, "iso", &[], FlavorDisks { root_gb: 1, ephemeral_gb: 0, swap_mb: 0 });
    let missing = f.images.join("missing.iso");
    let floppy = f.images.join(FloppyArch::Amd64.image_name());
    let err = f.host.create_instance("x1", m.clone(), sources(&f, &missing, "iso", floppy.clone())).unwrap_err();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
    let err = f.host.create_instance("../escape", m.clone(), sources(&f, &missing, "iso", floppy.clone())).unwrap_err();
    assert_eq!(err.to_string(), "invalid instance uuid \"../escape\"");
    let mut no_virtio = sources(&f, &missing, "iso", floppy.clone());
    no_virtio.virtio_iso = None;
    fs::write(&missing, b"not a medium").unwrap();
    let err = f.host.create_instance("x2", m.clone(), no_virtio).unwrap_err();
    assert_eq!(err.to_string(), "no image given for disk.virtio");
    // An unreadable medium is data the firmware cannot boot, not a host failure.
    let instance = f.host.create_instance("x3", m, sources(&f, &missing, "iso", floppy)).unwrap();
    let run = f.host.power_on(&instance, start()).unwrap();
    assert_eq!(run.result, GuestResult::NoBootableDevice);
    assert_eq!(AttachedMediaSummary::default(), AttachedMediaSummary::default());
}

#[test]
fn read_only_media_are_converted_once_and_shared() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    let (facts, _) = os_table().into_iter().find(|(f, _)| f.name == "RHEL 9").unwrap();
    let iso = os_iso(&f, &facts, "rhel9.iso");
    let m = mapping(Layout::Patched, "iso", &[], FlavorDisks { root_gb: 10, ephemeral_gb: 0, swap_mb: 0 });
    let floppy = floppy_for(&f, &facts);
    let a = f.host.create_instance("a1", m.clone(), sources(&f, &iso, "iso", floppy.clone())).unwrap();
    let b = f.host.create_instance("b2", m.clone(), sources(&f, &iso, "iso", floppy.clone())).unwrap();
    let virtio = |i: &Instance| i.dir.join("disk.virtio");
    assert_eq!(fs::metadata(virtio(&a)).unwrap().ino(), fs::metadata(virtio(&b)).unwrap().ino(), "one shared file");
    let fresh = f.images.join("fresh.qcow2");
    qcow2::convert_raw_file(&f.images.join("virtio-win.iso"), &fresh).unwrap();
    assert_eq!(fs::read(virtio(&a)).unwrap(), fs::read(&fresh).unwrap(), "the same bytes a conversion writes");
    // Deleting one instance leaves the other's media intact.
    f.host.delete(&a).unwrap();
    assert_eq!(fs::read(virtio(&b)).unwrap(), fs::read(&fresh).unwrap());
    // A data file rewritten under the same name is converted again.
    let other = VirtioWinSpec::rhel_style();
    crate::media::virtio_win_iso_to_file(&other, &f.images.join("virtio-win.iso")).unwrap();
    let c = f.host.create_instance("c3", m, sources(&f, &iso, "iso", floppy)).unwrap();
    assert_ne!(fs::metadata(virtio(&c)).unwrap().ino(), fs::metadata(virtio(&b)).unwrap().ino());
    qcow2::convert_raw_file(&f.images.join("virtio-win.iso"), &fresh).unwrap();
    assert_eq!(fs::read(virtio(&c)).unwrap(), fs::read(&fresh).unwrap());
}
