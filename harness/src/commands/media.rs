//! `isoharness media`: write the installation media mockstack's guests understand (the same generation a build
//! uploads), so that people can drive mockstack with their own tools (the `openstack` CLI, Terraform, Packer).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use guestsim::media::virtio_win::FloppyArch;
use harness::exit::ExitStatus;
use harness::scenario::{Scenario, VirtioWinBuild};
use harness::target::{generate_floppy, generate_installer, generate_virtio_win};

use super::CommandError;

/// The exit statuses `media` ends with.
pub const STATUSES: &[ExitStatus] = &[ExitStatus::Ok, ExitStatus::Usage];

#[derive(Debug, Args)]
pub struct MediaArgs {
    /// The guest, from a scenario file's `[guest]` table
    #[arg(long, value_name = "FILE", conflicts_with = "guest")]
    pub scenario: Option<PathBuf>,
    /// The guest on the command line, as TOML `key = value` pairs separated by `;`, e.g.
    /// `name="My Linux"; family="linux"; release="1"; distro="ubuntu"; arch="x86_64";
    /// virtio_storage="built-in"; firmware="bios"; min_ram_mb=512; min_disk_gb=4;
    /// install_seconds=600; boot_seconds=20`
    #[arg(long, value_name = "FACTS")]
    pub guest: Option<String>,
    /// Also write the VirtIO-win driver ISO of this build
    #[arg(long, value_enum, value_name = "BUILD")]
    pub virtio_win: Option<VirtioWinBuild>,
    /// Also write the driver floppy for the guest's architecture (x86 or amd64)
    #[arg(long)]
    pub floppy: bool,
    /// The directory to write into (created if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

/// Writes the media and prints each file's path on stdout.
pub fn run(args: MediaArgs) -> anyhow::Result<ExitStatus> {
    let (name, guest) = match (&args.scenario, &args.guest) {
        (Some(path), _) => {
            let s = Scenario::load(path)?;
            (s.name, s.guest)
        }
        (None, Some(text)) => {
            let toml_text = text.replace(';', "\n");
            let guest: guestsim::guest::GuestFacts =
                toml::from_str(&toml_text).map_err(|e| CommandError::usage(format!("--guest: {}", e.message())))?;
            let name = guest.name.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            (name, guest)
        }
        (None, None) => return Err(CommandError::usage("give --scenario FILE or --guest 'key=value; ...'")),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let iso = args.out.join(format!("{name}.iso"));
    generate_installer(&guest, &iso)?;
    println!("{}", iso.display());
    if let Some(build) = args.virtio_win {
        let path = args.out.join(format!("{}.iso", build.spec().volume_id()));
        generate_virtio_win(build, &path)?;
        println!("{}", path.display());
    }
    if args.floppy {
        let arch = FloppyArch::for_guest(guest.arch)
            .ok_or_else(|| CommandError::usage("driver floppies exist for x86 and amd64 guests only"))?;
        let path = args.out.join(arch.image_name());
        generate_floppy(guest.arch, &path)?;
        println!("{}", path.display());
    }
    Ok(ExitStatus::Ok)
}
