//! Running the steps of one build, and cleaning up after it whatever happens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guestsim::OutcomeKind;
use regex::Regex;
use serde::Serialize;

use super::decide::{self, ImageVerdict, InstallRules, InstallVerdict, Poller, ServerVerdict};
use super::ledger::{Entry, Event, Ledger, LedgerError, Live, ResourceKind};
use super::validate::{self, ValidationReport};
use super::{
    Driver, DriverMedia, FlavorInfo, ImageChange, ImageInfo, ImageRequest, LAYOUT_STEP, LayoutPlan, LayoutSource,
    LayoutUsed, ServerInfo, ServerRequest, StoppedBy,
};
use crate::cloud::CloudError;
use crate::scenario::Scenario;

/// Called as each step finishes, for progress output (a terminal line, a JSON event).
pub type StepListener = std::sync::Arc<dyn Fn(&StepReport) + Send + Sync>;

/// How one build runs.
#[derive(Clone)]
pub struct BuildOptions {
    /// Prefix of every resource name this run creates, e.g. `ih-3f2a9c1d`.
    pub run_id: String,
    /// Keep the final image (and only it) when the build succeeds.
    pub keep: bool,
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Boot a server from the final image to check it comes up (validate-image's boot test).
    pub boot_test: bool,
    /// Where downloads of the snapshot go while it is inspected.
    pub scratch_dir: PathBuf,
    pub on_step: Option<StepListener>,
    /// The layout the compute host implements: known, unknown, or to be recognised from the install server.
    pub layout: LayoutPlan,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("run_id", &self.run_id)
            .field("keep", &self.keep)
            .field("poll_min", &self.poll_min)
            .field("poll_max", &self.poll_max)
            .field("boot_test", &self.boot_test)
            .field("scratch_dir", &self.scratch_dir)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl BuildOptions {
    pub fn new(run_id: impl Into<String>, scratch_dir: &Path) -> BuildOptions {
        BuildOptions {
            run_id: run_id.into(),
            keep: false,
            poll_min: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
            boot_test: true,
            scratch_dir: scratch_dir.to_path_buf(),
            on_step: None,
            layout: LayoutPlan::Unknown,
        }
    }
}

/// The media files of a build, prepared by the caller: generated for mockstack, the scenario's
/// real files for a real cloud.
#[derive(Debug, Clone, Default)]
pub struct MediaFiles {
    /// The installer ISO to upload, or None when the scenario names an existing image.
    pub os_iso: Option<PathBuf>,
    /// An existing Glance image holding the installer (never deleted).
    pub os_image: Option<String>,
    /// The VirtIO-win ISO to upload when no image of that name exists.
    pub virtio_iso: Option<PathBuf>,
    /// The driver floppy to upload when no image of that name exists.
    pub driver_floppy: Option<PathBuf>,
    pub driver_floppy_image: Option<String>,
    /// The hex md5 of files this run wrote itself (generated media), taken as they were written, so that their
    /// uploads need not hash them again.
    pub known_md5: BTreeMap<PathBuf, String>,
}

/// How a step of a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    pub status: StepStatus,
    pub detail: String,
    /// Time the step took on the cloud's clock (virtual on mockstack).
    pub seconds: f64,
}

/// Everything one build found out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildReport {
    pub scenario: String,
    pub run_id: String,
    pub cloud: String,
    /// The layout the compute host implements, when known: given, the embedded mockstack's, or recognised.
    pub layout: Option<LayoutUsed>,
    pub steps: Vec<StepReport>,
    /// What the run produced; None when it stopped for a reason that says nothing about the
    /// layout (a transport error, an interrupted run).
    pub outcome: Option<OutcomeKind>,
    pub reason: String,
    /// Who stopped a run that has no outcome: the cloud, or what the run was given.
    pub stopped_by: Option<StoppedBy>,
    pub console_url: Option<String>,
    /// The console lines that explain a failed install or boot.
    pub evidence: Vec<String>,
    pub domain_xml: Option<String>,
    /// The install server's console when the install step ended (its last lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install_console: Vec<String>,
    pub validation: Option<ValidationReport>,
    /// The final image, when it was kept.
    pub image_id: Option<String>,
    pub cleanup: Vec<String>,
    /// Wall-clock seconds the build took here.
    pub wall_seconds: f64,
}

/// How many of the console's last lines a report keeps from the install.
const INSTALL_CONSOLE_LINES: usize = 60;

/// Why a step stopped the build.
enum Stop {
    /// The run says something about the layout: record this outcome.
    Outcome(OutcomeKind, String, Vec<String>),
    /// Something went wrong that says nothing about the layout.
    Error(StoppedBy, String),
}

impl From<CloudError> for Stop {
    fn from(e: CloudError) -> Stop {
        Stop::Error(StoppedBy::of(&e), e.to_string())
    }
}

impl From<LedgerError> for Stop {
    fn from(e: LedgerError) -> Stop {
        match std::error::Error::source(&e) {
            Some(cause) => Stop::Error(StoppedBy::Input, format!("{e}: {cause}")),
            None => Stop::Error(StoppedBy::Input, e.to_string()),
        }
    }
}

struct Build<'a, C: Driver> {
    cloud: &'a C,
    ledger: &'a Ledger,
    scenario: &'a Scenario,
    options: &'a BuildOptions,
    report: BuildReport,
    /// Resources this run created and has not deleted, in creation order.
    created: Vec<(ResourceKind, String, String)>,
    /// Resources whose creation was asked for but not confirmed: they may exist, by name.
    pending: Vec<(ResourceKind, String)>,
}

/// Runs the whole workflow for one scenario, then deletes everything it created (keeping the
/// final image with `keep` when the outcome is `image-ok`). Never returns early without cleanup.
pub async fn run_build<C: Driver>(
    cloud: &C,
    ledger: &Ledger,
    scenario: &Scenario,
    media: &MediaFiles,
    options: &BuildOptions,
) -> BuildReport {
    let wall = Instant::now();
    let mut build = Build {
        cloud,
        ledger,
        scenario,
        options,
        report: BuildReport {
            scenario: scenario.name.clone(),
            run_id: options.run_id.clone(),
            cloud: cloud.describe(),
            layout: match &options.layout {
                LayoutPlan::Known(used) => Some(used.clone()),
                LayoutPlan::Unknown | LayoutPlan::Recognise => None,
            },
            steps: Vec::new(),
            outcome: None,
            reason: String::new(),
            stopped_by: None,
            console_url: None,
            evidence: Vec::new(),
            domain_xml: None,
            install_console: Vec::new(),
            validation: None,
            image_id: None,
            cleanup: Vec::new(),
            wall_seconds: 0.0,
        },
        created: Vec::new(),
        pending: Vec::new(),
    };
    match build.steps(media).await {
        Ok(final_image) => {
            build.report.outcome = Some(OutcomeKind::ImageOk);
            if options.keep {
                build.keep(&final_image);
                build.report.image_id = Some(final_image);
            }
        }
        Err(Stop::Outcome(outcome, reason, evidence)) => {
            build.report.outcome = Some(outcome);
            build.report.reason = reason;
            build.report.evidence = evidence;
        }
        Err(Stop::Error(by, message)) => {
            build.report.stopped_by = Some(by);
            build.report.reason = message;
        }
    }
    build.cleanup().await;
    build.report.wall_seconds = wall.elapsed().as_secs_f64();
    build.report
}

impl<C: Driver> Build<'_, C> {
    fn name(&self, suffix: &str) -> String {
        format!("{}-{}{suffix}", self.options.run_id, self.scenario.name)
    }

    fn step(&mut self, step: &'static str, status: StepStatus, detail: impl Into<String>, started: Duration) {
        let seconds = (self.cloud.elapsed().saturating_sub(started)).as_secs_f64();
        let report = StepReport { step, status, detail: detail.into(), seconds };
        if let Some(listener) = &self.options.on_step {
            listener(&report);
        }
        self.report.steps.push(report);
    }

    fn entry(&self, kind: ResourceKind, name: &str, id: Option<&str>, event: Event) -> Entry {
        Entry {
            run: self.options.run_id.clone(),
            cloud: self.report.cloud.clone(),
            kind,
            name: name.to_string(),
            id: id.map(String::from),
            event,
        }
    }

    fn intent(&mut self, kind: ResourceKind, name: &str) -> Result<(), Stop> {
        self.pending.push((kind, name.to_string()));
        Ok(self.cloud.record(self.ledger, &self.entry(kind, name, None, Event::Intent))?)
    }

    fn created(&mut self, kind: ResourceKind, name: &str, id: &str) -> Result<(), Stop> {
        self.pending.retain(|(k, n)| !(*k == kind && n == name));
        self.created.push((kind, name.to_string(), id.to_string()));
        Ok(self.cloud.record(self.ledger, &self.entry(kind, name, Some(id), Event::Created))?)
    }

    /// Forgets the final image: it belongs to the user now.
    fn keep(&mut self, image_id: &str) {
        if let Some(at) = self.created.iter().position(|(k, _, id)| *k == ResourceKind::Image && id == image_id) {
            let (kind, name, id) = self.created.remove(at);
            let _ = self.cloud.record(self.ledger, &self.entry(kind, &name, Some(&id), Event::Deleted));
        }
    }

    async fn steps(&mut self, media: &MediaFiles) -> Result<String, Stop> {
        let iso = self.ensure_installer(media).await?;
        self.ensure_driver_media(media).await?;
        let flavor = self.ensure_flavor().await?;
        let server = self.boot(&iso, &flavor).await?;
        if self.options.layout == LayoutPlan::Recognise {
            self.recognise_layout(&server).await?;
        }
        self.wait_install(&server).await?;
        self.fetch_domain_xml(&server).await;
        let image = self.snapshot(&server).await?;
        self.update_image(&image, &flavor).await?;
        self.release(ResourceKind::Server, &server.id).await;
        self.validate(&image).await?;
        Ok(image)
    }

    /// Deletes a resource the run no longer needs before the run ends: the install server once its snapshot is
    /// active, so that the boot test needs room on the cloud for one server, not two.
    async fn release(&mut self, kind: ResourceKind, id: &str) {
        let Some(at) = self.created.iter().position(|(k, _, created)| *k == kind && created == id) else { return };
        let (kind, name, id) = self.created.remove(at);
        let live =
            Live { run: self.options.run_id.clone(), cloud: self.report.cloud.clone(), kind, name, id: Some(id) };
        let line = delete_live(self.cloud, self.ledger, &live).await;
        self.report.cleanup.push(line);
    }

    /// Step 1: the OS ISO in Glance: an existing image, one with the same name and checksum, or an upload.
    async fn ensure_installer(&mut self, media: &MediaFiles) -> Result<String, Stop> {
        let started = self.cloud.elapsed();
        if let Some(name) = &media.os_image {
            let found = self.cloud.images_named(name).await?;
            let image = found.into_iter().find(|i| i.status == "active").ok_or_else(|| {
                Stop::Error(
                    StoppedBy::Input,
                    format!("the scenario names image `{name}`, which is not an active image in this cloud"),
                )
            })?;
            self.step("upload-iso", StepStatus::Skipped, format!("using existing image {}", image.id), started);
            return Ok(image.id);
        }
        let Some(path) = &media.os_iso else {
            return Err(Stop::Error(
                StoppedBy::Input,
                "no installer ISO: set media.iso or media.image in the scenario".into(),
            ));
        };
        let props = self.scenario.image.iso_properties.clone();
        let known = media.known_md5.get(path).map(String::as_str);
        let (id, detail) = self.ensure_uploaded(&self.name("-iso"), path, known, "iso", props).await?;
        self.step("upload-iso", StepStatus::Ok, detail, started);
        Ok(id)
    }

    /// The VirtIO driver ISO and the driver floppy, which a patched compute host finds by name.
    /// Reused when the cloud has them, uploaded when a file is given unless the compute host is known not to attach
    /// it (an embedded mockstack's); missing media are an error only for a guest that needs them (Windows: the ISO;
    /// text-mode setup: the floppy).
    async fn ensure_driver_media(&mut self, media: &MediaFiles) -> Result<(), Stop> {
        let started = self.cloud.elapsed();
        use guestsim::guest::{DriverSource, OsFamily};
        let guest = &self.scenario.guest;
        let needed = DriverMedia {
            virtio_iso: guest.family == OsFamily::Windows,
            driver_floppy: guest.virtio_storage == DriverSource::Floppy,
        };
        // Where the compute host is known (an embedded mockstack's, or the layout the build was given), what it does not
        // attach makes no difference to the build.
        let given = match &self.options.layout {
            LayoutPlan::Known(used) => Some(used.layout.driver_media()),
            LayoutPlan::Unknown | LayoutPlan::Recognise => None,
        };
        let wanted = self.cloud.attached_driver_media().or(given).unwrap_or(DriverMedia::ALL);
        let iso_need =
            if guest.virtio_storage == DriverSource::Cdrom { "viostor from a CD-ROM" } else { "its drivers" };
        let media_list = [
            (
                self.scenario.media.virtio_win_image.clone(),
                media.virtio_iso.clone(),
                "iso",
                needed.virtio_iso,
                wanted.virtio_iso,
                ("VirtIO-win ISO", iso_need),
            ),
            (
                media.driver_floppy_image.clone().unwrap_or_default(),
                media.driver_floppy.clone(),
                "raw",
                needed.driver_floppy,
                wanted.driver_floppy,
                ("driver floppy", "viostor from a floppy"),
            ),
        ];
        let (mut done, mut passed_over) = (Vec::new(), Vec::new());
        for (name, file, disk_format, needed, wanted, (medium, need)) in media_list {
            if name.is_empty() || (file.is_none() && !needed) {
                continue;
            }
            if !wanted {
                passed_over.push(if needed {
                    format!("{name}: skipped: the compute host attaches no {medium}, and this guest needs {need}")
                } else {
                    format!("{name}: skipped: the compute host attaches no {medium}, and the guest does without it")
                });
                continue;
            }
            let known = file.as_ref().and_then(|f| media.known_md5.get(f)).map(String::as_str);
            done.push(self.ensure_named(&name, file.as_deref(), known, disk_format).await?);
        }
        // Only media the host attaches were made ready: a step that made none ready did not run.
        let status = if done.is_empty() { StepStatus::Skipped } else { StepStatus::Ok };
        done.extend(passed_over);
        let detail = if done.is_empty() { "the guest needs no driver media".to_string() } else { done.join("; ") };
        self.step("driver-media", status, detail, started);
        Ok(())
    }

    /// An image the compute host finds by name: reused when active, uploaded otherwise.
    async fn ensure_named(
        &mut self,
        name: &str,
        file: Option<&Path>,
        known_md5: Option<&str>,
        disk_format: &str,
    ) -> Result<String, Stop> {
        let found = self.cloud.images_named(name).await?;
        if let Some(image) = found.iter().find(|i| i.status == "active") {
            return Ok(format!("{name}: using existing image {}", image.id));
        }
        let Some(file) = file else {
            return Err(Stop::Error(
                StoppedBy::Input,
                format!("no image named `{name}` in the cloud and no file to upload for it"),
            ));
        };
        let (id, detail) = self.ensure_uploaded(name, file, known_md5, disk_format, BTreeMap::new()).await?;
        Ok(format!("{name}: {detail} ({id})"))
    }

    /// Uploads `file` as image `name`, unless an active image of that name has the same md5 (`known_md5`, when the
    /// run wrote the file and hashed it then).
    async fn ensure_uploaded(
        &mut self,
        name: &str,
        file: &Path,
        known_md5: Option<&str>,
        disk_format: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<(String, String), Stop> {
        let unreadable = |e: std::io::Error| Stop::Error(StoppedBy::Input, format!("{}: {e}", file.display()));
        self.cloud.check_readable(file).await.map_err(unreadable)?;
        // The file's md5 is only needed when an active image of that name could be the same data: reading the file
        // once more for nothing was a tenth of a build on an embedded cloud.
        let mut md5: Option<String> = None;
        let base = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base_name = base.trim_end_matches(".iso");
        for candidate in [name, base_name] {
            for image in self.cloud.images_named(candidate).await? {
                if image.status != "active" || image.checksum.is_none() {
                    continue;
                }
                let local = match &md5 {
                    Some(m) => m,
                    None => md5.insert(match known_md5 {
                        Some(known) => known.to_string(),
                        None => self.cloud.md5_of_file(file).await.map_err(unreadable)?,
                    }),
                };
                if image.checksum.as_deref() == Some(local.as_str()) {
                    return Ok((image.id.clone(), format!("reused {} (same md5)", image.id)));
                }
            }
        }
        self.intent(ResourceKind::Image, name)?;
        let image = self
            .cloud
            .create_image(&ImageRequest {
                name: name.to_string(),
                disk_format: disk_format.to_string(),
                container_format: "bare".into(),
                visibility: "private".into(),
                properties,
            })
            .await?;
        self.created(ResourceKind::Image, name, &image.id)?;
        let digests = match known_md5 {
            Some(md5) => self.cloud.upload_image_known(&image.id, file, md5).await?,
            None => self.cloud.upload_image(&image.id, file).await?,
        };
        let stored = self.cloud.image(&image.id).await?;
        match stored {
            Some(i) if i.status == "active" && i.checksum.is_some() && i.checksum == digests.md5 => {}
            Some(i) => {
                return Err(Stop::Error(
                    StoppedBy::Cloud,
                    format!(
                        "upload of {} did not verify: status {}, checksum {:?}, local md5 {}",
                        file.display(),
                        i.status,
                        i.checksum,
                        digests.md5.as_deref().unwrap_or("unknown")
                    ),
                ));
            }
            None => return Err(Stop::Error(StoppedBy::Cloud, format!("image {} vanished after upload", image.id))),
        }
        Ok((image.id, format!("uploaded {} bytes", digests.bytes)))
    }

    /// A flavor with exactly the scenario's sizes, or one created for the run.
    async fn ensure_flavor(&mut self) -> Result<FlavorInfo, Stop> {
        let started = self.cloud.elapsed();
        let spec = &self.scenario.flavor;
        let flavors = self.cloud.flavors().await?;
        if let Some(name) = &spec.name {
            let flavor = flavors.into_iter().find(|f| &f.name == name || &f.id == name).ok_or_else(|| {
                Stop::Error(
                    StoppedBy::Input,
                    format!("the scenario names flavor `{name}`, which this cloud does not have"),
                )
            })?;
            self.step("flavor", StepStatus::Skipped, format!("using flavor {}", flavor.name), started);
            return Ok(flavor);
        }
        let wanted = FlavorInfo {
            id: String::new(),
            name: self.name("-flavor"),
            vcpus: spec.vcpus,
            ram_mb: spec.ram_mb,
            disk_gb: spec.disk_gb,
            ephemeral_gb: spec.ephemeral_gb,
            swap_mb: spec.swap_mb,
        };
        let same = |f: &FlavorInfo| {
            (f.vcpus, f.ram_mb, f.disk_gb, f.ephemeral_gb, f.swap_mb)
                == (wanted.vcpus, wanted.ram_mb, wanted.disk_gb, wanted.ephemeral_gb, wanted.swap_mb)
        };
        // Another run's flavor may go away under us: only flavors no run created are shared.
        let ours = |f: &FlavorInfo| f.name.starts_with("ih-");
        if let Some(flavor) = flavors.into_iter().find(|f| same(f) && !ours(f)) {
            self.step("flavor", StepStatus::Skipped, format!("using flavor {} (same sizes)", flavor.name), started);
            return Ok(flavor);
        }
        self.intent(ResourceKind::Flavor, &wanted.name)?;
        let flavor = self.cloud.create_flavor(&wanted).await.map_err(|e| {
            Stop::Error(
                StoppedBy::Input,
                format!("{e} (creating a flavor needs the admin role; name an existing one in [flavor] name)"),
            )
        })?;
        self.created(ResourceKind::Flavor, &wanted.name, &flavor.id)?;
        self.step("flavor", StepStatus::Ok, format!("created flavor {}", flavor.name), started);
        Ok(flavor)
    }

    /// Step 2: boot from the ISO and wait until the guest runs.
    async fn boot(&mut self, iso: &str, flavor: &FlavorInfo) -> Result<ServerInfo, Stop> {
        let started = self.cloud.elapsed();
        let name = self.name("-install");
        self.intent(ResourceKind::Server, &name)?;
        let id = match self
            .cloud
            .create_server(&ServerRequest { name: name.clone(), image_id: iso.into(), flavor_id: flavor.id.clone() })
            .await
        {
            Ok(id) => id,
            Err(e) if e.is_refusal() => {
                self.step("boot", StepStatus::Failed, e.to_string(), started);
                return Err(Stop::Outcome(OutcomeKind::Rejected, e.to_string(), Vec::new()));
            }
            Err(e) => return Err(e.into()),
        };
        self.created(ResourceKind::Server, &name, &id)?;
        let mut poller = Poller::new(self.options.poll_min, self.options.poll_max);
        let server = loop {
            let server = self
                .cloud
                .server(&id)
                .await?
                .ok_or_else(|| Stop::Error(StoppedBy::Cloud, format!("server {id} vanished")))?;
            if server.status != "BUILD" {
                match decide::server_verdict(&server, &server.status) {
                    ServerVerdict::Failed(reason) => {
                        self.step("boot", StepStatus::Failed, reason.clone(), started);
                        return Err(Stop::Outcome(OutcomeKind::Rejected, reason, Vec::new()));
                    }
                    ServerVerdict::Reached => break server,
                    ServerVerdict::Wait => {}
                }
            }
            if self.cloud.elapsed().saturating_sub(started) > Duration::from_secs(1800) {
                return Err(Stop::Error(
                    StoppedBy::Cloud,
                    format!("server {id} still {} after 30 minutes", server.status),
                ));
            }
            let pause = poller.next(&format!("{}/{:?}", server.status, server.task_state));
            self.cloud.sleep(pause).await;
        };
        self.report.console_url = self.cloud.console_url(&id).await.ok().flatten();
        self.step("boot", StepStatus::Ok, format!("server {id} {}", server.status), started);
        Ok(server)
    }

    /// Steps 3 to 5: the unattended install, until the guest powers off or the console says so.
    async fn wait_install(&mut self, server: &ServerInfo) -> Result<(), Stop> {
        let started = self.cloud.elapsed();
        let completion = &self.scenario.completion;
        let compile = |p: &Option<String>| p.as_deref().and_then(|p| Regex::new(p).ok());
        let rules = InstallRules {
            deadline: completion.install_timeout(),
            inactivity: Duration::from_secs(completion.inactivity_timeout_s),
            success_console: compile(&completion.success_console),
            failure_console: compile(&completion.failure_console),
        };
        let mut poller = Poller::new(self.options.poll_min, self.options.poll_max);
        let mut last_console = String::new();
        let mut last_read = String::new();
        let mut console_changed = started;
        loop {
            let now_server = self
                .cloud
                .server(&server.id)
                .await?
                .ok_or_else(|| Stop::Error(StoppedBy::Cloud, "the server vanished".into()))?;
            let console = self.cloud.console_log(&server.id).await.unwrap_or_default();
            let now = self.cloud.elapsed();
            if console != last_console {
                last_console = console.clone();
                console_changed = now;
            }
            let verdict = decide::install_verdict(
                &now_server,
                &console,
                now.saturating_sub(started),
                now.saturating_sub(console_changed),
                &rules,
            );
            // A guest that powered itself off has no console on a libvirt host (ConsoleNotAvailable): what it printed
            // is the last console read while it ran.
            if !console.is_empty() {
                last_read.clone_from(&console);
            }
            if !matches!(verdict, InstallVerdict::Wait) {
                let lines: Vec<&str> = last_read.lines().collect();
                let tail = &lines[lines.len().saturating_sub(INSTALL_CONSOLE_LINES)..];
                self.report.install_console = tail.iter().map(|l| l.trim_end().to_owned()).collect();
            }
            match verdict {
                InstallVerdict::Wait => {}
                InstallVerdict::Finished { how } => {
                    self.step("install", StepStatus::Ok, how, started);
                    return Ok(());
                }
                InstallVerdict::Failed { outcome, reason, evidence } => {
                    self.step("install", StepStatus::Failed, reason.clone(), started);
                    return Err(Stop::Outcome(outcome, reason, evidence));
                }
            }
            let pause = poller.next(&format!("{}/{:?}/{}", now_server.status, now_server.task_state, console.len()));
            self.cloud.sleep(pause).await;
        }
    }

    /// `--layout auto`: the layout the compute host gave the install server, recognised from its domain XML as
    /// check-xml recognises it. A domain that is none of the built-in layouts stops the build as bad input, with
    /// check-xml's findings as the evidence.
    async fn recognise_layout(&mut self, server: &ServerInfo) -> Result<(), Stop> {
        let started = self.cloud.elapsed();
        let xml = match self.cloud.domain_xml(server).await {
            Ok(Some(xml)) => xml,
            Ok(None) => {
                let reason = "--layout auto recognises the layout from the install server's domain XML, and no domain \
                              XML source is configured"
                    .to_string();
                self.step(LAYOUT_STEP, StepStatus::Failed, reason.clone(), started);
                return Err(Stop::Error(StoppedBy::Input, reason));
            }
            Err(e) => {
                let reason = format!("cannot fetch the domain XML to recognise the layout from: {e}");
                self.step(LAYOUT_STEP, StepStatus::Failed, reason.clone(), started);
                return Err(Stop::Error(StoppedBy::of(&e), reason));
            }
        };
        let recognised = crate::domxml::recognise_layout(&xml);
        self.report.domain_xml = Some(xml);
        match recognised {
            Ok(layout) => {
                let used = LayoutUsed { layout, source: LayoutSource::Recognised { server: server.name.clone() } };
                self.step(LAYOUT_STEP, StepStatus::Ok, used.to_string(), started);
                self.report.layout = Some(used);
                Ok(())
            }
            Err(unrecognised) => {
                let reason = format!(
                    "the layout of {}'s domain XML is not recognised (stock, patched or patched-floppy): give \
                     --layout NAME if its compute host implements one of them",
                    server.name
                );
                self.step(LAYOUT_STEP, StepStatus::Failed, reason.clone(), started);
                let file = format!("domain XML of {}", server.name);
                self.report.evidence = unrecognised.render_human(&file).lines().map(String::from).collect();
                Err(Stop::Error(StoppedBy::Input, reason))
            }
        }
    }

    async fn fetch_domain_xml(&mut self, server: &ServerInfo) {
        let started = self.cloud.elapsed();
        let admin_view = self.cloud.server(&server.id).await.ok().flatten().unwrap_or_else(|| server.clone());
        match self.cloud.domain_xml(&admin_view).await {
            Ok(Some(xml)) => {
                self.report.domain_xml = Some(xml);
                self.step("domain-xml", StepStatus::Ok, "fetched", started);
            }
            Ok(None) => self.step("domain-xml", StepStatus::Skipped, "no domain XML source configured", started),
            Err(e) => self.step("domain-xml", StepStatus::Failed, e.to_string(), started),
        }
    }

    /// Step 6: snapshot, and wait for the image; the server stays until the image is active.
    async fn snapshot(&mut self, server: &ServerInfo) -> Result<String, Stop> {
        let started = self.cloud.elapsed();
        let name = self.scenario.image_name();
        let name = if self.options.keep { name } else { format!("{}-{name}", self.options.run_id) };
        self.intent(ResourceKind::Image, &name)?;
        let id = self.cloud.snapshot(&server.id, &name).await?;
        self.created(ResourceKind::Image, &name, &id)?;
        let mut poller = Poller::new(self.options.poll_min, self.options.poll_max);
        loop {
            let image = self.cloud.image(&id).await?;
            match decide::image_verdict(image.as_ref()) {
                ImageVerdict::Active => break,
                ImageVerdict::Failed(reason) => {
                    self.step("snapshot", StepStatus::Failed, reason.clone(), started);
                    return Err(Stop::Error(StoppedBy::Cloud, reason));
                }
                ImageVerdict::Wait => {}
            }
            if self.cloud.elapsed().saturating_sub(started) > Duration::from_secs(3600) {
                return Err(Stop::Error(StoppedBy::Cloud, format!("snapshot {id} not active after an hour")));
            }
            let status = image.map(|i| i.status).unwrap_or_default();
            let pause = poller.next(&status);
            self.cloud.sleep(pause).await;
        }
        self.step("snapshot", StepStatus::Ok, format!("image {id} active"), started);
        Ok(id)
    }

    /// Step 7: make the snapshot an ordinary image, with the scenario's metadata.
    async fn update_image(&mut self, image: &str, flavor: &FlavorInfo) -> Result<(), Stop> {
        let started = self.cloud.elapsed();
        let mut changes = vec![ImageChange::Set("image_type".into(), "image".into())];
        for (k, v) in &self.scenario.image.properties {
            changes.push(ImageChange::Set(k.clone(), v.clone()));
        }
        let min_disk = u64::from(self.scenario.guest.min_disk_gb.max(1)).min(u64::from(flavor.disk_gb.max(1)));
        changes.push(ImageChange::SetNumber("min_disk".into(), min_disk));
        changes.push(ImageChange::SetNumber("min_ram".into(), u64::from(self.scenario.guest.min_ram_mb)));
        let updated = self.cloud.update_image(image, &changes).await?;
        self.step(
            "update-image",
            StepStatus::Ok,
            format!("image_type={}", updated.properties.get("image_type").map(String::as_str).unwrap_or("?")),
            started,
        );
        Ok(())
    }

    /// The image validator's checks, boot test included: they decide image-ok or iso-copy.
    async fn validate(&mut self, image: &str) -> Result<(), Stop> {
        let started = self.cloud.elapsed();
        let mut request = validate::ValidationRequest::for_scenario(self.scenario);
        request.boot_test = self.options.boot_test;
        request.scratch_dir = self.options.scratch_dir.clone();
        request.name_prefix = self.name("-boot");
        let report = validate::validate_image(self.cloud, self.ledger, &self.options.run_id, image, &request).await;
        let verdict = report.verdict();
        self.report.validation = Some(report.clone());
        match verdict {
            validate::Verdict::Installed => {
                self.step("validate", StepStatus::Ok, "the image is an installed OS and boots", started);
                Ok(())
            }
            validate::Verdict::IsoCopy(reason, evidence) => {
                self.step("validate", StepStatus::Failed, reason.clone(), started);
                Err(Stop::Outcome(OutcomeKind::IsoCopy, reason, evidence))
            }
            validate::Verdict::Failed(reason, evidence) => {
                self.step("validate", StepStatus::Failed, reason.clone(), started);
                Err(Stop::Outcome(OutcomeKind::Rejected, reason, evidence))
            }
            validate::Verdict::Error(by, reason) => Err(Stop::Error(by, reason)),
        }
    }

    /// Deletes what the run created, servers first (waiting until they are gone), then images and flavors.
    async fn cleanup(&mut self) {
        let mut all: Vec<(ResourceKind, String, Option<String>)> =
            std::mem::take(&mut self.created).into_iter().map(|(k, n, id)| (k, n, Some(id))).collect();
        all.extend(std::mem::take(&mut self.pending).into_iter().map(|(k, n)| (k, n, None)));
        all.sort_by_key(|(kind, _, _)| kind.cleanup_rank());
        for (kind, name, id) in all {
            let live = Live { run: self.options.run_id.clone(), cloud: self.report.cloud.clone(), kind, name, id };
            let line = delete_live(self.cloud, self.ledger, &live).await;
            self.report.cleanup.push(line);
        }
    }
}

/// Deletes one resource from the ledger (finding it by name when its id was never learnt),
/// waits for servers to go, and records the deletion. Returns a line for the report.
pub async fn delete_live<C: Driver>(cloud: &C, ledger: &Ledger, live: &Live) -> String {
    let ids: Vec<String> = match &live.id {
        Some(id) => vec![id.clone()],
        None => match live.kind {
            ResourceKind::Server => {
                cloud.servers_named(&live.name).await.map(|v| v.into_iter().map(|s| s.id).collect()).unwrap_or_default()
            }
            ResourceKind::Image => {
                cloud.images_named(&live.name).await.map(|v| v.into_iter().map(|i| i.id).collect()).unwrap_or_default()
            }
            ResourceKind::Flavor => cloud
                .flavors()
                .await
                .map(|v| v.into_iter().filter(|f| f.name == live.name).map(|f| f.id).collect())
                .unwrap_or_default(),
        },
    };
    let mut failures = Vec::new();
    for id in &ids {
        let result = match live.kind {
            ResourceKind::Server => delete_server_and_wait(cloud, id).await,
            ResourceKind::Image => cloud.delete_image(id).await,
            ResourceKind::Flavor => cloud.delete_flavor(id).await,
        };
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    let kind = live.kind;
    if failures.is_empty() {
        let _ = cloud.record(
            ledger,
            &Entry {
                run: live.run.clone(),
                cloud: live.cloud.clone(),
                kind: live.kind,
                name: live.name.clone(),
                id: live.id.clone(),
                event: Event::Deleted,
            },
        );
        if ids.is_empty() {
            format!("{kind} {}: never created", live.name)
        } else {
            format!("deleted {kind} {} ({})", live.name, ids.join(", "))
        }
    } else {
        format!("could not delete {kind} {}: {}", live.name, failures.join("; "))
    }
}

async fn delete_server_and_wait<C: Driver>(cloud: &C, id: &str) -> Result<(), CloudError> {
    cloud.delete_server(id).await?;
    let started = cloud.elapsed();
    let mut poller = Poller::new(Duration::from_secs(1), Duration::from_secs(10));
    while let Some(server) = cloud.server(id).await? {
        if cloud.elapsed().saturating_sub(started) > Duration::from_secs(600) {
            return Err(CloudError::WaitTimeout {
                what: format!("server {id} to go after delete (still {})", server.status),
                waited: Duration::from_secs(600),
            });
        }
        cloud.sleep(poller.next(&server.status)).await;
    }
    Ok(())
}

/// Deletes every live resource of the ledger that lives in `cloud` (all runs, or one).
pub async fn cleanup_live<C: Driver>(
    cloud: &C,
    ledger: &Ledger,
    run: Option<&str>,
    dry_run: bool,
) -> Result<Vec<String>, LedgerError> {
    let here = cloud.describe();
    let mut lines = Vec::new();
    for live in Ledger::live(ledger.path())? {
        if live.cloud != here || run.is_some_and(|r| r != live.run) {
            continue;
        }
        if dry_run {
            lines.push(format!(
                "would delete {:?} {} ({})",
                live.kind,
                live.name,
                live.id.as_deref().unwrap_or("id unknown: by name")
            ));
        } else {
            lines.push(delete_live(cloud, ledger, &live).await);
        }
    }
    Ok(lines)
}

impl ImageInfo {
    /// A property's value, whether Glance keeps it as a core field or an extra property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}
