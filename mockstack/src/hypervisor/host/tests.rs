//! Host tests: real files end to end (install, snapshot, boot from the snapshot) agree with the rules' expected outcomes.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::hypervisor::blockinfo::{FlavorDisks, ImageMeta, MappingRequest, VirtType, disk_mapping};
use crate::hypervisor::installer::{
    AttachedMediaSummary, GuestResult, Outcome, OutcomeKind, expected_outcome, outcome_of_run, summarize_media,
};
use crate::hypervisor::testing::{MemMedium, driver_floppy, installer_medium, os_table, virtio_win_iso};
use crate::layout::Layout;

fn opener() -> Arc<MediumOpener> {
    Arc::new(|path: &Path| {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        MemMedium::from_bytes(&bytes).map(|m| Box::new(m) as Box<dyn Medium + Send + Sync>)
    })
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
    fs::write(images.join("virtio-win.iso"), virtio_win_iso().to_bytes()).unwrap();
    fs::write(images.join("virtio-win.vfd"), driver_floppy().to_bytes()).unwrap();
    let host = Host::new(dir.path().join("instances"), opener());
    Fixture { _dir: dir, host, images }
}

fn start() -> Timestamp {
    "2026-11-24T18:30:00Z".parse().unwrap()
}

fn sources(f: &Fixture, boot: &Path, format: &str) -> InstanceSources {
    InstanceSources {
        boot_image: ImageFile { path: boot.to_path_buf(), disk_format: format.into() },
        virtio_iso: Some(ImageFile { path: f.images.join("virtio-win.iso"), disk_format: "iso".into() }),
        driver_floppy: Some(ImageFile { path: f.images.join("virtio-win.vfd"), disk_format: "raw".into() }),
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
    let iso = f.images.join(format!("os-{n}.iso"));
    fs::write(&iso, installer_medium(facts).to_bytes()).unwrap();
    let root = u64::from(facts.min_disk_gb);
    let flavor =
        FlavorDisks { root_gb: root, ephemeral_gb: if layout == Layout::Stock { root } else { 0 }, swap_mb: 0 };
    let m = mapping(layout, "iso", props, flavor);
    let expected = {
        let (iso_medium, floppy_medium) = (virtio_win_iso(), driver_floppy());
        let media: Vec<(&str, &dyn Medium)> = vec![("disk.virtio", &iso_medium), ("disk.floppy", &floppy_medium)];
        expected_outcome(facts, &m, &summarize_media(facts, &m, &media))
    };
    let instance = f.host.create_instance(&format!("install-{n}"), m.clone(), sources(f, &iso, "iso")).unwrap();
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
    let booted = f.host.create_instance(&format!("boot-{n}"), booted_mapping, sources(f, &snapshot, "qcow2")).unwrap();
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
    // Pad the medium to a whole number of 2 KiB sectors like a real ISO.
    let mut bytes = installer_medium(&facts).to_bytes();
    bytes.resize(bytes.len().div_ceil(2048) * 2048, b' ');
    let iso = f.images.join("rhel9.iso");
    fs::write(&iso, &bytes).unwrap();
    let m = mapping(Layout::Stock, "iso", &[], FlavorDisks { root_gb: 10, ephemeral_gb: 10, swap_mb: 0 });
    let instance = f.host.create_instance("68a8f3c6-04f3-4a3a-9183-b66d49f2ccb4", m, sources(&f, &iso, "iso")).unwrap();
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
    let err = f.host.create_instance("x1", m.clone(), sources(&f, &missing, "iso")).unwrap_err();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
    let err = f.host.create_instance("../escape", m.clone(), sources(&f, &missing, "iso")).unwrap_err();
    assert_eq!(err.to_string(), "invalid instance uuid \"../escape\"");
    let mut no_virtio = sources(&f, &missing, "iso");
    no_virtio.virtio_iso = None;
    fs::write(&missing, b"not a medium").unwrap();
    let err = f.host.create_instance("x2", m.clone(), no_virtio).unwrap_err();
    assert_eq!(err.to_string(), "no image given for disk.virtio");
    // An unreadable medium is data the firmware cannot boot, not a host failure.
    let instance = f.host.create_instance("x3", m, sources(&f, &missing, "iso")).unwrap();
    let run = f.host.power_on(&instance, start()).unwrap();
    assert_eq!(run.result, GuestResult::NoBootableDevice);
    assert_eq!(AttachedMediaSummary::default(), AttachedMediaSummary::default());
}
