//! `isoharness media`: write the installation media mockstack would generate for a guest, so
//! that people can drive mockstack with their own tools (the `openstack` CLI, Terraform, Packer).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::exit;
use crate::scenario::{Scenario, VirtioWinBuild};

#[derive(Debug, Args)]
pub struct MediaArgs {
    /// The guest, from a scenario file's `[guest]` table.
    #[arg(long, conflicts_with = "guest")]
    pub scenario: Option<PathBuf>,
    /// The guest on the command line, as TOML `key = value` pairs separated by `;`, e.g.
    /// `name="My Linux"; family="linux"; release="1"; distro="ubuntu"; arch="x86_64";
    /// virtio_storage="built-in"; firmware="bios"; min_ram_mb=512; min_disk_gb=4;
    /// install_seconds=600; boot_seconds=20`.
    #[arg(long)]
    pub guest: Option<String>,
    /// Also write the VirtIO-win driver ISO of this build.
    #[arg(long, value_enum)]
    pub virtio_win: Option<VirtioWinBuild>,
    /// Also write the x86/amd64 driver floppy for the guest's architecture.
    #[arg(long)]
    pub floppy: bool,
    /// Folder to write into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

pub fn run(args: MediaArgs) -> anyhow::Result<u8> {
    let (name, guest) = match (&args.scenario, &args.guest) {
        (Some(path), _) => {
            let s = Scenario::load(path)?;
            (s.name, s.guest)
        }
        (None, Some(text)) => {
            let toml_text = text.replace(';', "\n");
            let guest: guestsim::guest::GuestFacts =
                toml::from_str(&toml_text).map_err(|e| anyhow::anyhow!("--guest: {}", e.message()))?;
            let name = guest.name.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            (name, guest)
        }
        (None, None) => anyhow::bail!("give --scenario FILE or --guest 'key=value; ...'"),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let iso = args.out.join(format!("{name}.iso"));
    guestsim::media::os_iso::os_installer_iso_to_file(&guest, &Default::default(), &iso)
        .with_context(|| format!("cannot write {}", iso.display()))?;
    println!("{}", iso.display());
    if let Some(build) = args.virtio_win {
        use guestsim::media::virtio_win::virtio_win_iso_to_file;
        let spec = build.spec();
        let path = args.out.join(format!("{}.iso", spec.volume_id()));
        virtio_win_iso_to_file(&spec, &path).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    if args.floppy {
        use guestsim::media::virtio_win::{DriverFloppySpec, FloppyArch, driver_floppy_to_file};
        let arch = FloppyArch::for_guest(guest.arch).context("driver floppies exist for x86 and amd64 guests only")?;
        let path = args.out.join(arch.image_name());
        driver_floppy_to_file(&DriverFloppySpec::for_arch(arch), &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(exit::OK)
}
