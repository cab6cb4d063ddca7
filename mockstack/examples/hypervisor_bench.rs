//! Times one whole simulated ISO install on the hypervisor module: mapping, domain XML, disk files, install, snapshot, boot.
//!
//! `cargo run --release -p mockstack --example hypervisor_bench [ITERATIONS]`

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mockstack::guest::{Arch, DriverSource, Firmware, GuestAgent, GuestFacts, Medium, OsFamily};
use mockstack::hypervisor::{
    DomainSpec, FlavorDisks, FlavorInfo, Host, ImageFile, ImageInfo, ImageMeta, InstanceSources, MappingRequest,
    VirtType, disk_mapping, render_domain,
};
use mockstack::layout::Layout;

/// A medium stored as `path\0content\0...` (the bench must not depend on the real ISO writer).
struct FileMedium {
    files: BTreeMap<String, Vec<u8>>,
}

impl Medium for FileMedium {
    fn volume_id(&self) -> &str {
        "BENCH"
    }
    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(&path.trim_start_matches('/').to_ascii_lowercase())
    }
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(&path.trim_start_matches('/').to_ascii_lowercase()).cloned()
    }
    fn files(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }
}

fn encode(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, content) in files {
        out.extend(path.as_bytes());
        out.push(0);
        out.extend(hex(content).as_bytes());
        out.push(0);
    }
    // Pad to whole 2 KiB sectors, as an ISO would be.
    out.resize(out.len().div_ceil(2048) * 2048 + 512 * 1024, 0);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(bytes: &[u8]) -> Result<FileMedium, String> {
    let mut files = BTreeMap::new();
    let mut parts = bytes.split(|&b| b == 0).filter(|p| !p.is_empty());
    while let (Some(path), Some(content)) = (parts.next(), parts.next()) {
        let text = std::str::from_utf8(content).map_err(|e| e.to_string())?;
        let content: Result<Vec<u8>, _> =
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16)).collect();
        files.insert(String::from_utf8_lossy(path).to_ascii_lowercase(), content.map_err(|e| e.to_string())?);
    }
    Ok(FileMedium { files })
}

fn facts(windows: bool) -> GuestFacts {
    GuestFacts {
        name: if windows { "Windows Server 2012".into() } else { "Ubuntu 24.04 LTS".into() },
        family: if windows { OsFamily::Windows } else { OsFamily::Linux },
        release: if windows { "2012".into() } else { "24.04".into() },
        distro: if windows { "windows".into() } else { "ubuntu".into() },
        arch: Arch::X86_64,
        virtio_storage: if windows { DriverSource::Cdrom } else { DriverSource::BuiltIn },
        virtio_win_folder: windows.then(|| "2k12".into()),
        floppy_folder: None,
        firmware: Firmware::Bios,
        needs_tpm: false,
        needs_secure_boot: false,
        min_ram_mb: 1024,
        min_disk_gb: 10,
        install_seconds: 900,
        boot_seconds: 40,
        agent: Some(if windows { GuestAgent::CloudbaseInit } else { GuestAgent::CloudInit }),
        unattended: true,
    }
}

#[derive(Default)]
struct Timings(BTreeMap<&'static str, Vec<Duration>>);

impl Timings {
    fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0.entry(stage).or_default().push(start.elapsed());
        out
    }
}

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images)?;
    let virtio = images.join("virtio-win.iso");
    std::fs::write(
        &virtio,
        encode(&[("viostor/2k12/amd64/viostor.inf", b"[Version]"), ("NetKVM/2k12/amd64/netkvm.inf", b"x")]),
    )?;
    let opener: Arc<mockstack::hypervisor::MediumOpener> = Arc::new(|path: &Path| {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        decode(&bytes).map(|m| Box::new(m) as Box<dyn Medium + Send + Sync>)
    });
    let host = Host::new(dir.path().join("instances"), opener);
    let started = "2026-11-24T18:30:00Z".parse()?;

    for windows in [false, true] {
        let facts = facts(windows);
        let iso = images.join(if windows { "windows.iso" } else { "linux.iso" });
        std::fs::write(&iso, encode(&[(".isoharness/guest.toml", toml::to_string(&facts)?.as_bytes())]))?;
        let props: Vec<(&str, &str)> = if windows { vec![("os_type", "windows")] } else { vec![] };
        let image = ImageMeta::new("iso", props.iter().copied());
        let flavor = FlavorDisks { root_gb: 20, ephemeral_gb: 0, swap_mb: 0 };
        let mut t = Timings::default();
        let total = Instant::now();
        for i in 0..iterations {
            let mapping = t.time("1 mapping", || {
                disk_mapping(&MappingRequest {
                    layout: Layout::Patched,
                    virt_type: VirtType::Kvm,
                    image: &image,
                    flavor,
                    config_drive: false,
                    virtio_iso_found: true,
                    driver_floppy_found: false,
                })
            })?;
            let spec = DomainSpec {
                instance_id: i as u64 + 1,
                uuid: format!("00000000-0000-4000-8000-{i:012}"),
                display_name: "bench".into(),
                creation_time: "2026-11-24 18:30:00".into(),
                flavor: FlavorInfo {
                    id: "1".into(),
                    name: "bench".into(),
                    memory_mb: 2048,
                    vcpus: 2,
                    root_gb: 20,
                    ephemeral_gb: 0,
                    swap_mb: 0,
                },
                image: ImageInfo {
                    id: "img".into(),
                    disk_format: "iso".into(),
                    container_format: "bare".into(),
                    min_disk: 0,
                    min_ram: 0,
                },
                image_properties: image.properties.clone(),
                user_id: "u".into(),
                user_name: "u".into(),
                project_id: "p".into(),
                project_name: "p".into(),
                instances_path: "/var/lib/nova/instances".into(),
                interfaces: vec![],
                vnc: true,
            };
            t.time("2 domain xml", || render_domain(&spec, &mapping))?;
            let sources = InstanceSources {
                boot_image: ImageFile { path: iso.clone(), disk_format: "iso".into() },
                virtio_iso: Some(ImageFile { path: virtio.clone(), disk_format: "iso".into() }),
                driver_floppy: None,
            };
            let instance = t.time("3 create disks", || host.create_instance(&spec.uuid, mapping.clone(), sources))?;
            let run = t.time("4 power on + run guest", || host.power_on(&instance, started))?;
            t.time("5 write installed system", || host.complete(&instance, &run))?;
            let snapshot = images.join("snapshot.qcow2");
            t.time("6 snapshot", || host.snapshot_root(&instance, &snapshot))?;
            let boot_mapping = disk_mapping(&MappingRequest {
                image: &ImageMeta::new("qcow2", props.iter().copied()),
                ..MappingRequest {
                    layout: Layout::Patched,
                    virt_type: VirtType::Kvm,
                    image: &image,
                    flavor,
                    config_drive: false,
                    virtio_iso_found: true,
                    driver_floppy_found: false,
                }
            })?;
            let boot_sources = InstanceSources {
                boot_image: ImageFile { path: snapshot.clone(), disk_format: "qcow2".into() },
                virtio_iso: None,
                driver_floppy: None,
            };
            let booted = host.create_instance(&format!("{}-boot", spec.uuid), boot_mapping, boot_sources)?;
            let boot = t.time("7 boot the snapshot", || host.power_on(&booted, started))?;
            anyhow::ensure!(
                matches!(boot.result, mockstack::hypervisor::GuestResult::OsRunning { agent_finished: true }),
                "the snapshot did not boot: {:?}",
                boot.result
            );
            t.time("8 delete", || host.delete(&instance).and_then(|()| host.delete(&booted)))?;
        }
        let elapsed = total.elapsed();
        println!(
            "{}: {iterations} install+snapshot+boot cycles in {:.2?} ({:.2?} per cycle, {:.0} cycles/s)",
            facts.name,
            elapsed,
            elapsed / iterations as u32,
            iterations as f64 / elapsed.as_secs_f64()
        );
        for (stage, samples) in &t.0 {
            let mut sorted = samples.clone();
            sorted.sort();
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            println!(
                "  {stage:<26} mean {mean:>10.2?}  median {:>10.2?}  max {:>10.2?}",
                sorted[sorted.len() / 2],
                sorted[sorted.len() - 1]
            );
        }
    }
    Ok(())
}
