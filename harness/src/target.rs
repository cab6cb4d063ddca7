//! Where a command runs: a real cloud named by `--os-cloud`/`OS_CLOUD` (or `OS_*`), or an
//! embedded mockstack started in-process with a virtual clock; and the installation media a run uploads, generated
//! here for every caller (builds, the matrix's cache, `isoharness media`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use guestsim::Layout;
use guestsim::guest::{Arch, GuestFacts};
use guestsim::media::virtio_win::FloppyArch;
use mockstack::{ClockMode, Config, MockStack};

use crate::cloud::config::{
    AuthMethod, CloudConfig, ConfigOrigin, DomainRef, Interface, ProjectRef, Scope, TlsVerify, UserRef,
};
use crate::cloud::{ClientOptions, Cloud, CloudError, ConfigRequest, Secret};
use crate::driver::{DomainXmlSource, HttpDriver, RunClock};
use crate::scenario::{Scenario, VirtioWinBuild};
use crate::workflow::{DriverMedia, MediaFiles};

/// A running embedded mockstack and the admin connection to it.
pub struct Embedded {
    pub mock: MockStack,
    pub layout: Layout,
}

impl Embedded {
    /// Starts mockstack on 127.0.0.1 with a manual clock: the harness's waits advance time.
    pub async fn start(layout: Layout, virtio_win_image: &str) -> anyhow::Result<Embedded> {
        Embedded::start_with(layout, virtio_win_image, Some(guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE)).await
    }

    /// An embedded mockstack for `scenario`'s builds: its VirtIO-win image, and the driver floppy option unset when
    /// no floppy exists for the guest's architecture (an operator configures no floppy it does not have; a name
    /// without an image would fault every ISO build on patched-floppy).
    pub async fn start_for(layout: Layout, scenario: &Scenario) -> anyhow::Result<Embedded> {
        let floppy = FloppyArch::for_guest(scenario.guest.arch).map(|_| guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE);
        Embedded::start_with(layout, &scenario.media.virtio_win_image, floppy).await
    }

    /// Starts mockstack with its compute host's driver-media options (`None`: unset).
    pub async fn start_with(
        layout: Layout,
        virtio_win_image: &str,
        driver_floppy_image: Option<&str>,
    ) -> anyhow::Result<Embedded> {
        let config = Config {
            clock: ClockMode::Manual { tick: std::time::Duration::from_millis(500) },
            layout,
            virtio_win_image: Some(virtio_win_image.to_string()),
            driver_floppy_image: driver_floppy_image.map(String::from),
            // Room for every cell of a parallel matrix: each holds an install and a boot-test server.
            quota: mockstack::nova::quota::Quota { instances: 1000, cores: 4000, ram_mb: 16 << 20 },
            ..Config::default()
        };
        let mock = MockStack::start(config, "127.0.0.1:0".parse().expect("literal address"))
            .await
            .context("cannot start the embedded mockstack")?;
        Ok(Embedded { mock, layout })
    }

    /// What `isoharness build` starts for one scenario: an embedded mockstack of `layout` and, on other threads
    /// meanwhile, the media its compute host uses, written into `dir`.
    pub async fn start_with_media(
        scenario: &Scenario,
        layout: Layout,
        dir: &Path,
    ) -> anyhow::Result<(Embedded, MediaFiles)> {
        let (for_media, dir) = (scenario.clone(), dir.to_path_buf());
        let media = tokio::task::spawn_blocking(move || {
            MediaCache::new(&dir).embedded_media_attached(&for_media, layout.driver_media())
        });
        let embedded = Embedded::start_for(layout, scenario).await;
        let media = media.await.map_err(|_| anyhow::anyhow!("the media generation panicked"))??;
        Ok((embedded?, media))
    }

    /// The admin's cloud configuration (the built-in identities).
    pub fn cloud_config(&self) -> anyhow::Result<CloudConfig> {
        let state = self.mock.state();
        let admin = state.identities().user_by_name("admin").context("the embedded mockstack has no admin user")?;
        Ok(CloudConfig {
            name: format!("mockstack-{}", self.layout),
            origin: ConfigOrigin::Environment,
            auth_url: self.mock.auth_url(),
            auth: AuthMethod::Password {
                user: UserRef::Name { name: admin.name.clone(), domain: DomainRef::Id("default".into()) },
                password: Secret::new(admin.password.clone()),
                scope: Scope::Project(ProjectRef::Name {
                    name: "admin".into(),
                    domain: DomainRef::Id("default".into()),
                }),
            },
            region_name: Some(state.config().region.clone()),
            interface: Interface::Public,
            tls: TlsVerify::PlainHttp,
            api_timeout: None,
        })
    }

    pub async fn driver(&self) -> anyhow::Result<HttpDriver> {
        let cloud = Cloud::connect(self.cloud_config()?, ClientOptions::default())
            .await
            .context("cannot authenticate to the embedded mockstack")?;
        Ok(HttpDriver::new(
            cloud,
            RunClock::Mock(self.mock.state().clock().clone()),
            DomainXmlSource::MockAdmin(self.mock.url().to_string()),
        )
        .with_attached_driver_media(self.layout.driver_media()))
    }
}

/// Connects to the real cloud `request` names (clouds.yaml, `OS_*`), authenticating at once: bad configuration
/// fails here as [`CloudError::Config`], an unreachable or refusing cloud as another [`CloudError`].
pub async fn connect_real(request: &ConfigRequest, domain_xml: DomainXmlSource) -> Result<HttpDriver, CloudError> {
    let config = crate::cloud::config::load(request)?;
    let cloud = Cloud::connect(config, ClientOptions::default()).await?;
    Ok(HttpDriver::new(cloud, RunClock::Real(Instant::now()), domain_xml))
}

/// The media files for a build: generated for mockstack into `dir`, the scenario's own files
/// (relative to the scenario file) for a real cloud.
pub fn media_for(scenario: &Scenario, embedded: bool, dir: &Path) -> anyhow::Result<MediaFiles> {
    if embedded {
        return MediaCache::new(dir).embedded_media(scenario);
    }
    let mut files = MediaFiles {
        driver_floppy_image: Some(guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE.to_string()),
        ..MediaFiles::default()
    };
    let base = scenario.path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
    files.os_iso = scenario.media.iso.as_ref().map(resolve);
    files.os_image = scenario.media.image.clone();
    files.virtio_iso = scenario.media.virtio_win_iso.as_ref().map(resolve);
    if files.os_iso.is_none() && files.os_image.is_none() {
        anyhow::bail!(
            "{}: a real cloud needs the installer: set `media.iso` (a path) or `media.image` (a Glance image)",
            scenario.path.display()
        );
    }
    Ok(files)
}

/// The generated media of the builds of one run, each distinct file written once into `dir`: media are
/// deterministic, so the cells of a matrix share one VirtIO-win ISO per build, one floppy per architecture and one
/// installer ISO per scenario instead of writing megabytes per cell. Each file's md5 is taken once, as it is
/// written, so that its uploads (to every cloud of a matrix) need not hash it again. Safe to share between
/// concurrent cells.
pub struct MediaCache {
    dir: PathBuf,
    /// Each file written, with its md5.
    written: Mutex<HashMap<PathBuf, String>>,
}

impl MediaCache {
    pub fn new(dir: &Path) -> MediaCache {
        MediaCache { dir: dir.to_path_buf(), written: Mutex::new(HashMap::new()) }
    }

    /// The media of a build on an embedded mockstack: the scenario's installer ISO and the driver media.
    pub fn embedded_media(&self, scenario: &Scenario) -> anyhow::Result<MediaFiles> {
        // The article's prerequisite: the cloud offers the driver media to every guest, so an
        // embedded mockstack gets them whatever the guest; the compute host decides from them.
        self.embedded_media_attached(scenario, DriverMedia::ALL)
    }

    /// The media of a build on an embedded mockstack whose compute host attaches `attached`: the build passes over
    /// driver media the host does not attach (`ensure_driver_media`), so they are not generated.
    pub fn embedded_media_attached(&self, scenario: &Scenario, attached: DriverMedia) -> anyhow::Result<MediaFiles> {
        type Generate<'a> = Box<dyn FnOnce(&Path) -> anyhow::Result<()> + Send + 'a>;
        let build = scenario.media.virtio_win;
        let installer = self.dir.join(format!("{}.iso", scenario.name));
        let virtio_iso = attached.virtio_iso.then(|| self.dir.join(format!("virtio-win-{build:?}.iso").to_lowercase()));
        let driver_floppy = FloppyArch::for_guest(scenario.guest.arch)
            .filter(|_| attached.driver_floppy)
            .map(|arch| self.dir.join(format!("virtio-win-floppy-{arch:?}.vfd").to_lowercase()));
        let mut wanted: Vec<(PathBuf, Generate)> =
            vec![(installer.clone(), Box::new(|p| generate_installer(&scenario.guest, p)))];
        if let Some(path) = &virtio_iso {
            wanted.push((path.clone(), Box::new(move |p| generate_virtio_win(build, p))));
        }
        if let Some(path) = &driver_floppy {
            wanted.push((path.clone(), Box::new(|p| generate_floppy(scenario.guest.arch, p))));
        }
        let paths: Vec<PathBuf> = wanted.iter().map(|(p, _)| p.clone()).collect();
        let mut written = self.written.lock().map_err(|_| anyhow::anyhow!("a media generation panicked"))?;
        wanted.retain(|(path, _)| !written.contains_key(path));
        // Each missing file written and hashed on its own thread: a build waited for one after the other. Every
        // file written is uploaded at least once, and its md5 read back from the page cache while the other files
        // are still being written costs less than on the build's path.
        let made: Vec<anyhow::Result<(PathBuf, String)>> = std::thread::scope(|scope| {
            let threads: Vec<_> = wanted
                .into_iter()
                .map(|(path, generate)| {
                    scope.spawn(move || {
                        generate(&path)?;
                        let md5 = crate::cloud::transfer::md5_file(&path)
                            .with_context(|| format!("cannot read back {}", path.display()))?;
                        Ok((path, md5))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a media generation panicked"))))
                .collect()
        });
        for result in made {
            let (path, md5) = result?;
            written.insert(path, md5);
        }
        let mut files = MediaFiles {
            driver_floppy_image: Some(guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE.to_string()),
            os_iso: Some(installer),
            virtio_iso,
            driver_floppy,
            ..MediaFiles::default()
        };
        for path in &paths {
            if let Some(md5) = written.get(path) {
                files.known_md5.insert(path.clone(), md5.clone());
            }
        }
        Ok(files)
    }
}

/// Writes the installer ISO of `guest` (a real, bootable ISO 9660 image carrying the guest's facts).
pub fn generate_installer(guest: &GuestFacts, path: &Path) -> anyhow::Result<()> {
    use guestsim::media::os_iso::{OsIsoOptions, os_installer_iso_to_file};
    os_installer_iso_to_file(guest, &OsIsoOptions::default(), path)
        .with_context(|| format!("cannot write the installer ISO of {} to {}", guest.name, path.display()))
}

/// Writes the VirtIO-win driver ISO of `build`.
pub fn generate_virtio_win(build: VirtioWinBuild, path: &Path) -> anyhow::Result<()> {
    use guestsim::media::virtio_win::virtio_win_iso_to_file;
    virtio_win_iso_to_file(&build.spec(), path)
        .with_context(|| format!("cannot write the VirtIO-win ISO to {}", path.display()))
}

/// Writes the driver floppy for guests of `arch`.
pub fn generate_floppy(arch: Arch, path: &Path) -> anyhow::Result<()> {
    use guestsim::media::virtio_win::{DriverFloppySpec, driver_floppy_to_file};
    let floppy = FloppyArch::for_guest(arch)
        .with_context(|| format!("driver floppies exist for x86 and amd64 guests only, not {arch:?}"))?;
    driver_floppy_to_file(&DriverFloppySpec::for_arch(floppy), path)
        .with_context(|| format!("cannot write the driver floppy to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.toml")))
            .expect("a scenario of the repository")
    }

    #[test]
    fn the_media_cache_writes_each_medium_once_and_shares_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MediaCache::new(dir.path());
        let (ubuntu, windows) = (scenario("ubuntu-24.04"), scenario("windows-server-2022"));
        let first = cache.embedded_media(&ubuntu).unwrap();
        let virtio = first.virtio_iso.clone().unwrap();
        let written = std::fs::metadata(&virtio).unwrap().modified().unwrap();
        let second = cache.embedded_media(&windows).unwrap();
        assert_eq!(second.virtio_iso.as_ref(), Some(&virtio), "one VirtIO-win ISO per build");
        assert_eq!(std::fs::metadata(&virtio).unwrap().modified().unwrap(), written, "not written again");
        assert_ne!(first.os_iso, second.os_iso, "one installer ISO per scenario");
        // The cached files are exactly what a fresh generation writes.
        std::fs::create_dir(dir.path().join("fresh")).unwrap();
        let fresh = media_for(&windows, true, &dir.path().join("fresh")).unwrap_or_else(|e| panic!("{e:#}"));
        for (cached, fresh) in [(second.os_iso, fresh.os_iso), (second.virtio_iso, fresh.virtio_iso)] {
            assert_eq!(std::fs::read(cached.unwrap()).unwrap(), std::fs::read(fresh.unwrap()).unwrap());
        }
    }

    #[test]
    fn a_build_generates_only_the_driver_media_its_compute_host_attaches() {
        let windows = scenario("windows-server-2003-r2");
        for layout in [Layout::Stock, Layout::Patched, Layout::PatchedFloppy] {
            let dir = tempfile::tempdir().unwrap();
            let attached = layout.driver_media();
            let media = MediaCache::new(dir.path()).embedded_media_attached(&windows, attached).unwrap();
            assert_eq!(media.virtio_iso.is_some(), attached.virtio_iso, "{layout}");
            assert_eq!(media.driver_floppy.is_some(), attached.driver_floppy, "{layout}");
            let written: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
            let expected: Vec<&PathBuf> =
                [&media.os_iso, &media.virtio_iso, &media.driver_floppy].into_iter().flatten().collect();
            assert_eq!(written.len(), expected.len(), "{layout}: {written:?}");
            // Each file's md5 was taken when it was written, and is the file's.
            for path in expected {
                let known = media.known_md5.get(path).unwrap_or_else(|| panic!("{layout}: no md5 for {path:?}"));
                let md5 = crate::cloud::transfer::md5_file(path).unwrap();
                assert_eq!(known, &md5, "{layout}: {path:?}");
            }
        }
    }
}
