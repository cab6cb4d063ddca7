//! `isoharness mock`: serve mockstack, print where, and optionally the `OS_*` exports or a clouds.yaml entry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use guestsim::Layout;
use mockstack::{ClockMode, Config, IdentitySet, MockStack};

#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to listen on (loopback only by default).
    #[arg(long, default_value = "127.0.0.1:8774")]
    pub listen: SocketAddr,
    /// Identity file (TOML: domains, projects, users and their roles); built-in set when absent.
    #[arg(long)]
    pub identities: Option<PathBuf>,
    /// Print ready-to-paste `OS_*` exports for the admin user.
    #[arg(long)]
    pub print_env: bool,
    /// Write a clouds.yaml with an entry named `mockstack` (and one per built-in user) to FILE.
    #[arg(long, value_name = "FILE")]
    pub clouds_yaml: Option<PathBuf>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Clock: real, scaled:FACTOR or manual.
    #[arg(long, default_value = "real")]
    pub clock: ClockMode,
    /// The libvirt driver behaviour to simulate.
    #[arg(long, default_value = "patched")]
    pub layout: Layout,
    /// Keep image data and instance disks in DIR instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Largest image upload accepted, in bytes.
    #[arg(long)]
    pub image_size_cap: Option<u64>,
    /// Glance image (name or id) a patched compute host attaches as the VirtIO-driver CD-ROM.
    #[arg(long, default_value = guestsim::DEFAULT_VIRTIO_WIN_IMAGE)]
    pub virtio_win_image: String,
    /// Glance image (name or id) the patched-floppy layout attaches as the driver floppy.
    #[arg(long, default_value = guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE)]
    pub driver_floppy_image: String,
}

impl MockArgs {
    /// Resolves the arguments into a mockstack configuration (no IO but reading the identity file).
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let identities = match &self.identities {
            Some(path) => IdentitySet::load(path)?,
            None => IdentitySet::builtin(),
        };
        let mut config = Config {
            identities,
            token_ttl: Duration::from_secs(self.token_ttl),
            clock: self.clock,
            state_dir: self.state_dir.clone(),
            layout: self.layout,
            virtio_win_image: Some(self.virtio_win_image.clone()),
            driver_floppy_image: Some(self.driver_floppy_image.clone()),
            ..Config::default()
        };
        if let Some(cap) = self.image_size_cap {
            config.image_size_cap = cap;
        }
        Ok(config)
    }
}

pub async fn run(args: MockArgs) -> anyhow::Result<u8> {
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
        std::fs::write(path, clouds_yaml(&mock)).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {} (clouds: mockstack, mockstack-<user>)", path.display());
    }
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    eprintln!("stopping mockstack");
    mock.shutdown().await?;
    Ok(crate::cli::exit::OK)
}

/// A clouds.yaml with `mockstack` (the admin) and `mockstack-<user>` for every user with a project.
pub fn clouds_yaml(mock: &MockStack) -> String {
    let state = mock.state();
    let ids = state.identities();
    let mut out = String::from("clouds:\n");
    for user in &ids.users {
        let Some(project_id) = user.roles.keys().next() else { continue };
        let Some(project) = ids.project(project_id) else { continue };
        let name = if user.name == "admin" { "mockstack".to_string() } else { format!("mockstack-{}", user.name) };
        out.push_str(&format!(
            "  {name}:\n    auth:\n      auth_url: {auth}\n      username: {user}\n      password: {pw}\n      project_name: {project}\n      user_domain_id: {ud}\n      project_domain_id: {pd}\n    region_name: {region}\n    interface: public\n    identity_api_version: 3\n",
            auth = mock.auth_url(),
            user = yaml_str(&user.name),
            pw = yaml_str(&user.password),
            project = yaml_str(&project.name),
            ud = user.domain_id,
            pd = project.domain_id,
            region = state.config().region,
        ));
    }
    out
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}
