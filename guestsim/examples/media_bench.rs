//! Prints how long generating each mockstack medium takes and how large it is (`cargo run --release -p guestsim --example media_bench`).

use std::time::{Duration, Instant};

use guestsim::guest::{Arch, DriverSource, Firmware, GuestAgent, GuestFacts, OsFamily};
use guestsim::media::{
    DriverFloppySpec, FloppyArch, IsoImage, MediaError, OsIsoOptions, VirtioWinSpec, driver_floppy, os_installer_iso,
    virtio_win_iso,
};
use guestsim::sniff;

const ROUNDS: u32 = 50;

fn guest(
    name: &str,
    family: OsFamily,
    distro: &str,
    release: &str,
    storage: DriverSource,
    folder: Option<&str>,
) -> GuestFacts {
    GuestFacts {
        name: name.to_owned(),
        family,
        release: release.to_owned(),
        distro: distro.to_owned(),
        arch: Arch::X86_64,
        virtio_storage: storage,
        virtio_win_folder: folder.map(str::to_owned),
        floppy_folder: None,
        firmware: Firmware::Bios,
        needs_tpm: false,
        needs_secure_boot: false,
        min_ram_mb: 2048,
        min_disk_gb: 20,
        install_seconds: 600,
        boot_seconds: 30,
        agent: Some(GuestAgent::CloudInit),
        unattended: true,
    }
}

/// Runs `generate` ROUNDS times; returns the median duration and the size of the last output.
fn measure(
    generate: impl Fn(&mut Vec<u8>) -> Result<(), MediaError>,
) -> Result<(Duration, usize, Vec<u8>), MediaError> {
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..ROUNDS {
        bytes.clear();
        let start = Instant::now();
        generate(&mut bytes)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], bytes.len(), bytes))
}

/// Writes one medium into a buffer.
type Generator<'a> = Box<dyn Fn(&mut Vec<u8>) -> Result<(), MediaError> + 'a>;

fn main() -> Result<(), MediaError> {
    let ubuntu = guest("Ubuntu Server", OsFamily::Linux, "ubuntu", "24.04", DriverSource::BuiltIn, None);
    let windows = guest("Windows Server 2022", OsFamily::Windows, "windows", "2022", DriverSource::Cdrom, Some("2k22"));
    let options = OsIsoOptions::default();
    let virtio = VirtioWinSpec::current();
    let floppy = DriverFloppySpec::for_arch(FloppyArch::Amd64);
    let media: [(&str, Generator); 4] = [
        ("os iso, Ubuntu 24.04", Box::new(|out| os_installer_iso(&ubuntu, &options, out))),
        ("os iso, Windows Server 2022", Box::new(|out| os_installer_iso(&windows, &options, out))),
        ("virtio-win 0.1.285 iso", Box::new(|out| virtio_win_iso(&virtio, out))),
        ("virtio-win_amd64.vfd", Box::new(|out| driver_floppy(&floppy, out))),
    ];
    println!("{:<30} {:>12} {:>12} {:>12}", "medium", "generate", "size", "parse");
    println!("(medians of {ROUNDS} rounds; parse includes copying the image)");
    for (name, generate) in &media {
        let (elapsed, size, bytes) = measure(generate)?;
        let parse = if bytes.get(sniff::ISO9660_DESCRIPTOR_OFFSET as usize..).is_some_and(sniff::is_iso9660) {
            let (parse, _, _) = measure(|_| IsoImage::from_bytes(bytes.clone()).map(drop))?;
            format!("{:.3} ms", parse.as_secs_f64() * 1e3)
        } else {
            "-".to_owned()
        };
        println!("{name:<30} {:>9.3} ms {:>9} KiB {parse:>12}", elapsed.as_secs_f64() * 1e3, size / 1024);
    }
    Ok(())
}
