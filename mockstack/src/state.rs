//! The shared state of one mockstack: configuration, clock, identities, tokens, each service's tables and the journal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::TokenStore;
use crate::clock::{Clock, ClockMode};
use crate::identity::IdentitySet;
use crate::journal::Journal;
use guestsim::layout::Layout;

/// How a mockstack is set up. `Config::default()` is what `isoharness mock` starts with.
#[derive(Debug, Clone)]
pub struct Config {
    pub identities: IdentitySet,
    pub token_ttl: Duration,
    pub clock: ClockMode,
    /// Where image data and instance disks live; a fresh temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    pub region: String,
    /// Largest image upload accepted, as Glance's `image_size_cap` (default 1 TiB).
    pub image_size_cap: u64,
    /// The libvirt driver behaviour the simulated compute host follows.
    pub layout: Layout,
    /// The Glance image (name or id) a patched Nova attaches as the VirtIO-driver CD-ROM,
    /// like a `[libvirt] virtio_win_image` option would name it. `None` is the option unset: no driver CD-ROM. An
    /// ISO build on a patched host faults when it names no image the instance's project can see.
    pub virtio_win_image: Option<String>,
    /// The Glance image (name or id) the `patched-floppy` layout attaches as the driver floppy (`None`: no floppy;
    /// a name that finds no image faults the build, like `virtio_win_image`).
    pub driver_floppy_image: Option<String>,
    /// Every project's compute quota (Nova's defaults: 10 instances, 20 cores, 50 GiB of RAM).
    pub quota: crate::nova::quota::Quota,
    /// How long a client may take to send a request's headers (the request line included) before the connection
    /// is closed: Apache's `mod_reqtimeout` in front of devstack's services allows 20 s.
    pub header_read_timeout: Duration,
    /// The fault rules applied to requests from the start (`isoharness mock --faults FILE`); empty by default.
    pub faults: crate::faults::FaultPlan,
}

/// [`Config::header_read_timeout`]'s default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for Config {
    fn default() -> Self {
        Config {
            identities: IdentitySet::builtin(),
            token_ttl: crate::auth::DEFAULT_TOKEN_TTL,
            clock: ClockMode::Real,
            state_dir: None,
            region: "RegionOne".into(),
            image_size_cap: 1 << 40,
            layout: Layout::Patched,
            virtio_win_image: Some(guestsim::DEFAULT_VIRTIO_WIN_IMAGE.into()),
            driver_floppy_image: Some(guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE.into()),
            quota: crate::nova::quota::DEFAULT_QUOTA,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            faults: crate::faults::FaultPlan::default(),
        }
    }
}

/// Handle on one mockstack's state; cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppStateInner>,
}

/// What every clone of an [`AppState`] shares.
struct AppStateInner {
    config: Config,
    clock: Arc<Clock>,
    tokens: TokenStore,
    journal: Journal,
    faults: crate::faults::Faults,
    glance: crate::glance::GlanceState,
    nova: crate::nova::NovaState,
    base_url: OnceLock<String>,
    data_dir: PathBuf,
    // Kept so the temporary directory lives exactly as long as the state.
    _temp_dir: Option<tempfile::TempDir>,
}

impl AppState {
    pub fn new(config: Config) -> std::io::Result<AppState> {
        let (data_dir, temp_dir) = match &config.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("mockstack-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let clock = Arc::new(Clock::new(config.clock));
        let glance = crate::glance::GlanceState::new(&data_dir.join("images"))?;
        glance.configure(clock.clone(), config.image_size_cap);
        let nova = crate::nova::NovaState::new(&data_dir.join("instances"))?;
        let faults = crate::faults::Faults::new(&config.faults);
        Ok(AppState {
            inner: Arc::new(AppStateInner {
                config,
                clock,
                tokens: TokenStore::default(),
                journal: Journal::default(),
                faults,
                glance,
                nova,
                base_url: OnceLock::new(),
                data_dir,
                _temp_dir: temp_dir,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.inner.clock
    }

    pub fn tokens(&self) -> &TokenStore {
        &self.inner.tokens
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    pub fn faults(&self) -> &crate::faults::Faults {
        &self.inner.faults
    }

    pub fn identities(&self) -> &IdentitySet {
        &self.inner.config.identities
    }

    pub fn glance(&self) -> &crate::glance::GlanceState {
        &self.inner.glance
    }

    pub fn nova(&self) -> &crate::nova::NovaState {
        &self.inner.nova
    }

    /// Names of the servers, images and flavors whose name starts with `prefix`, as
    /// `kind name (id)`: what a run that cleans up after itself must leave empty.
    pub fn leftovers(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for id in self.nova().server_ids() {
            if let Some(server) = self.nova().server(&id)
                && server.name.starts_with(prefix)
            {
                out.push(format!("server {} ({id})", server.name));
            }
        }
        for (id, name) in self.glance().inventory() {
            if let Some(name) = name.filter(|n| n.starts_with(prefix)) {
                out.push(format!("image {name} ({id})"));
            }
        }
        for flavor in self.nova().flavors().all() {
            if flavor.name.starts_with(prefix) {
                out.push(format!("flavor {} ({})", flavor.name, flavor.id));
            }
        }
        out
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Sets the URL clients reach this mockstack at (once, when the listener is bound).
    pub fn set_base_url(&self, url: String) {
        let _ = self.inner.base_url.set(url);
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.inner.base_url.get().map(String::as_str).unwrap_or("http://127.0.0.1")
    }

    pub fn identity_url(&self) -> String {
        format!("{}/identity", self.base_url())
    }

    pub fn image_url(&self) -> String {
        format!("{}/image", self.base_url())
    }

    pub fn compute_url(&self) -> String {
        format!("{}/compute/v2.1", self.base_url())
    }
}
