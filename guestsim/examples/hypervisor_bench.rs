//! Times one whole simulated ISO install on the hypervisor module: mapping, domain XML, disk files, install, snapshot, boot.
//!
//! `cargo run --release -p guestsim --example hypervisor_bench [ITERATIONS]`

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guestsim::guest::{Arch, DriverSource, Firmware, GuestAgent, GuestFacts, OsFamily};
use guestsim::hypervisor::{
    DomainFlavor, DomainImage, DomainSpec, FlavorDisks, Host, ImageMeta, InstanceSources, MappingRequest, SourceImage,
    VirtType, disk_mapping, render_domain,
};
use guestsim::layout::Layout;

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
    guestsim::media::virtio_win_iso_to_file(&guestsim::media::VirtioWinSpec::current(), &virtio)?;
    let opener: Arc<guestsim::hypervisor::MediumOpener> =
        Arc::new(|path: &Path| guestsim::media::open_medium(path).map_err(|e| e.to_string()));
    let host = Host::new(dir.path().join("instances"), opener);
    let started = "2026-11-24T18:30:00Z".parse()?;

    for windows in [false, true] {
        let facts = facts(windows);
        let iso = images.join(if windows { "windows.iso" } else { "linux.iso" });
        guestsim::media::os_installer_iso_to_file(&facts, &guestsim::media::OsIsoOptions::default(), &iso)?;
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
                flavor: DomainFlavor {
                    id: "1".into(),
                    name: "bench".into(),
                    memory_mb: 2048,
                    vcpus: 2,
                    root_gb: 20,
                    ephemeral_gb: 0,
                    swap_mb: 0,
                },
                image: DomainImage {
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
                boot_image: SourceImage { path: iso.clone(), disk_format: "iso".into() },
                virtio_iso: Some(SourceImage { path: virtio.clone(), disk_format: "iso".into() }),
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
                boot_image: SourceImage { path: snapshot.clone(), disk_format: "qcow2".into() },
                virtio_iso: None,
                driver_floppy: None,
            };
            let booted = host.create_instance(&format!("{}-boot", spec.uuid), boot_mapping, boot_sources)?;
            let boot = t.time("7 boot the snapshot", || host.power_on(&booted, started))?;
            anyhow::ensure!(
                matches!(boot.result, guestsim::hypervisor::GuestResult::OsRunning { agent_finished: true }),
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
