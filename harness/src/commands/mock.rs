//! `isoharness mock`: serve mockstack until Ctrl-C, say where on stderr, and print the `OS_*` exports (stdout) or
//! write a clouds.yaml when asked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use guestsim::Layout;
use harness::exit::ExitStatus;
use mockstack::faults::FaultPlan;
use mockstack::{ClockMode, Config, IdentitySet, MockStack};

/// The exit statuses `mock` ends with.
pub const STATUSES: &[ExitStatus] = &[ExitStatus::Ok, ExitStatus::Usage];

#[derive(Debug, Args)]
pub struct MockArgs {
    /// The address to listen on (loopback only by default)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8774")]
    pub listen: SocketAddr,
    /// The identity file (TOML: domains, projects, users and their roles); the built-in set when absent
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// Print ready-to-paste `OS_*` exports for the admin user on stdout
    #[arg(long)]
    pub print_env: bool,
    /// Write a clouds.yaml with an entry named `mockstack` (the admin) and one per built-in user to FILE
    #[arg(long, value_name = "FILE")]
    pub clouds_yaml: Option<PathBuf>,
    /// How long a token lives, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub token_ttl: u64,
    /// The cloud's clock: real (wall time), scaled:FACTOR (FACTOR times faster: scaled:60 makes a 30-minute
    /// install take 30 s) or manual (moves 1 s per request, or on POST /mockstack/clock/advance)
    #[arg(long, value_name = "CLOCK", default_value = "real")]
    pub clock: ClockMode,
    /// The disk layout the simulated compute host gives an instance booted from an ISO
    #[arg(long, value_enum, default_value_t = Layout::Patched)]
    pub layout: Layout,
    /// Keep image data and instance disks in DIR instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The largest image upload accepted, in bytes (Glance's image_size_cap; larger uploads get 413)
    #[arg(long, value_name = "BYTES")]
    pub image_size_cap: Option<u64>,
    /// The Glance image (name or id) a patched compute host attaches as the VirtIO-driver CD-ROM to an ISO boot; a
    /// build faults when no such image exists, as the patched Nova's `[libvirt] virtio_win_image`; '' unsets it (no
    /// driver CD-ROM)
    #[arg(long, value_name = "NAME", default_value = guestsim::DEFAULT_VIRTIO_WIN_IMAGE)]
    pub virtio_win_image: String,
    /// The Glance image (name or id) the patched-floppy layout attaches as the driver floppy (a build faults when
    /// it does not exist); '' unsets it (no floppy)
    #[arg(long, value_name = "NAME", default_value = guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE)]
    pub driver_floppy_image: String,
    /// How many seconds a client may take to send a request's headers before its connection is closed (Apache's
    /// mod_reqtimeout in front of devstack allows 20)
    #[arg(long, value_name = "SECONDS", default_value_t = mockstack::state::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_read_timeout: u64,
    /// A faults file (TOML: rules that answer matching requests with an error, a delay, a dropped connection or
    /// throttling, seeded so a run replays); the rules can be changed later with PUT /mockstack/faults
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
}

impl MockArgs {
    /// Resolves the arguments into a mockstack configuration (no IO but reading the identity file).
    fn to_config(&self) -> anyhow::Result<Config> {
        let identities = match &self.identities {
            Some(path) => IdentitySet::load(path)?,
            None => IdentitySet::builtin(),
        };
        // A faults file's errors are bad input (exit 2), located as FILE:LINE:COLUMN.
        let faults = match &self.faults {
            Some(path) => FaultPlan::load(path)?,
            None => FaultPlan::default(),
        };
        let mut config = Config {
            identities,
            token_ttl: Duration::from_secs(self.token_ttl),
            clock: self.clock,
            state_dir: self.state_dir.clone(),
            layout: self.layout,
            virtio_win_image: unless_empty(&self.virtio_win_image),
            driver_floppy_image: unless_empty(&self.driver_floppy_image),
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            faults,
            ..Config::default()
        };
        if let Some(cap) = self.image_size_cap {
            config.image_size_cap = cap;
        }
        Ok(config)
    }
}

/// An option's value, or unset for `''` (as an empty `[libvirt]` option of the patched Nova).
fn unless_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

pub async fn run(args: MockArgs) -> anyhow::Result<ExitStatus> {
    let config = args.to_config()?;
    let builtin = args.identities.is_none();
    let mock =
        MockStack::start(config, args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let state = mock.state();
    eprintln!("mockstack listening on {} (layout {})", mock.url(), state.config().layout);
    eprintln!("  identity  {}/v3", state.identity_url());
    eprintln!("  image     {}", state.image_url());
    eprintln!("  compute   {}", state.compute_url());
    eprintln!("users (role@project):");
    eprint!("{}", state.identities().summary());
    if builtin {
        eprintln!("(built-in identities: each password is `mockstack-<user name>`)");
    }
    let faults = state.faults().report();
    if let Some(rules) = faults["rules"].as_array().filter(|r| !r.is_empty()) {
        // The seed is printed so that a run whose file named none can be replayed with it.
        eprintln!("faults: {} rule(s), seed {}", rules.len(), faults["seed"]);
    }
    if args.print_env
        && let Some(admin) = state.identities().user_by_name("admin")
    {
        println!("export OS_AUTH_URL={}", mock.auth_url());
        println!("export OS_IDENTITY_API_VERSION=3");
        println!("export OS_USERNAME={}", admin.name);
        println!("export OS_PASSWORD={}", admin.password);
        println!("export OS_PROJECT_NAME=admin");
        println!("export OS_USER_DOMAIN_ID=default");
        println!("export OS_PROJECT_DOMAIN_ID=default");
        println!("export OS_REGION_NAME={}", state.config().region);
        println!("export OS_INTERFACE=public");
    }
    if let Some(path) = &args.clouds_yaml {
        std::fs::write(path, mock.clouds_yaml()).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {} (clouds: mockstack, mockstack-<user>)", path.display());
    }
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    eprintln!("stopping mockstack");
    mock.shutdown().await?;
    Ok(ExitStatus::Ok)
}
