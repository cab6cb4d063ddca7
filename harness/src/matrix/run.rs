//! Running the matrix: every (scenario, layout) cell through the whole workflow, each layout on
//! its own embedded mockstack, cells in parallel; and the expected outcome of every cell.

use std::time::Instant;

use std::sync::OnceLock;

use futures_util::StreamExt;
use guestsim::{Layout, Outcome, OutcomeKind};

use guestsim::guest::{GuestFacts, Medium};
use guestsim::hypervisor::blockinfo::{DiskSource, FlavorDisks, ImageMeta, MappingRequest, VirtType, disk_mapping};
use guestsim::hypervisor::installer::{expected_outcome, summarize_media};
use guestsim::media::floppy::FloppyImage;
use guestsim::media::iso9660::IsoImage;
use guestsim::media::virtio_win::{DriverFloppySpec, FloppyArch, driver_floppy as write_floppy, virtio_win_iso};

use super::report::{Cell, MatrixReport};
use crate::domxml;
use crate::scenario::{Scenario, VirtioWinBuild};
use crate::target::{Embedded, MediaCache, media_for};
use crate::workflow::MediaFiles;
use crate::workflow::ledger::{Ledger, Live};
use crate::workflow::{
    BuildOptions, BuildReport, Driver, DriverMedia, ImageRequest, LAYOUT_STEP, LayoutPlan, StepStatus, run_build,
};

/// The outcome the installer rules derive for a scenario on a layout, with the reason: the
/// same rules the simulated compute host follows ([`guestsim::hypervisor::installer`]), fed
/// with the layout's disk mapping and the driver media the cloud offers, but no cloud.
pub fn expected(scenario: &Scenario, layout: Layout) -> Outcome {
    let image = ImageMeta {
        disk_format: "iso".into(),
        properties: scenario.image.iso_properties.clone().into_iter().collect(),
    };
    let request = MappingRequest {
        layout,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks {
            root_gb: u64::from(scenario.flavor.disk_gb),
            ephemeral_gb: u64::from(scenario.flavor.ephemeral_gb),
            swap_mb: u64::from(scenario.flavor.swap_mb),
        },
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: FloppyArch::for_guest(scenario.guest.arch).is_some(),
    };
    match disk_mapping(&request) {
        Err(e) => Outcome::new(OutcomeKind::Rejected, e.nova_fault()),
        Ok(mapping) => {
            let virtio = driver_iso(scenario.media.virtio_win);
            let floppy = FloppyArch::for_guest(scenario.guest.arch).map(driver_floppy);
            let mut media: Vec<(&str, &dyn Medium)> = Vec::new();
            for disk in &mapping.disks {
                match disk.source {
                    DiskSource::VirtioIso => media.push((disk.file_name.as_str(), virtio)),
                    DiskSource::DriverFloppy => {
                        if let Some(f) = floppy {
                            media.push((disk.file_name.as_str(), f));
                        }
                    }
                    _ => {}
                }
            }
            let summary = summarize_media(&scenario.guest, &mapping, &media);
            expected_outcome(&scenario.guest, &mapping, &summary)
        }
    }
}

/// The generated VirtIO-win ISO of a build, read back as the guest would see it (made once).
fn driver_iso(build: VirtioWinBuild) -> &'static IsoImage {
    static FULL: OnceLock<IsoImage> = OnceLock::new();
    static RHEL: OnceLock<IsoImage> = OnceLock::new();
    let cell = match build {
        VirtioWinBuild::Full => &FULL,
        VirtioWinBuild::Rhel => &RHEL,
    };
    cell.get_or_init(|| {
        let mut bytes = Vec::new();
        virtio_win_iso(&build.spec(), &mut bytes).expect("the generated VirtIO-win ISO writes to memory");
        IsoImage::from_bytes(bytes).expect("the generated VirtIO-win ISO reads back")
    })
}

/// The generated driver floppy of an architecture, read back (made once).
fn driver_floppy(arch: FloppyArch) -> &'static FloppyImage {
    static X86: OnceLock<FloppyImage> = OnceLock::new();
    static AMD64: OnceLock<FloppyImage> = OnceLock::new();
    let cell = if arch == FloppyArch::X86 { &X86 } else { &AMD64 };
    cell.get_or_init(|| {
        let mut bytes = Vec::new();
        write_floppy(&DriverFloppySpec::for_arch(arch), &mut bytes).expect("the generated floppy writes to memory");
        FloppyImage::from_bytes(bytes).expect("the generated floppy reads back")
    })
}

/// One embedded cloud of a matrix: its layout and the scenarios that run on it (all of one VirtIO-win build and,
/// where its host attaches one, one floppy architecture).
struct CloudShare<'a> {
    layout: Layout,
    members: Vec<&'a Scenario>,
}

/// Runs every cell against embedded mockstacks (one per layout and driver-ISO build), `jobs` at a time.
///
/// The clouds are split between one thread per core, each running its clouds and their cells on a one-thread
/// runtime: a cell is a chain of requests each waiting for its answer, and with client and server on different
/// workers every request woke the other CPU (see `Cli::runtime`).
pub async fn run_embedded(scenarios: &[Scenario], layouts: &[Layout], jobs: usize) -> anyhow::Result<MatrixReport> {
    let started = Instant::now();
    let scratch = tempfile::Builder::new().prefix("isoharness-matrix-").tempdir()?;
    let ledger = Ledger::open_scratch(&scratch.path().join("ledger.jsonl"))?;
    let media_dir = scratch.path().join("media");
    std::fs::create_dir_all(&media_dir)?;
    let media = MediaCache::new(&media_dir);
    // One cloud per (layout, driver ISO build, floppy architecture): a compute host attaches
    // the one VirtIO ISO and the one floppy its operator configured (and is offered only what it attaches, what the
    // builds would upload themselves); the floppy tells clouds apart only where it is attached.
    let floppy_of = |s: &Scenario, layout: Layout| {
        FloppyArch::for_guest(s.guest.arch).filter(|_| layout.driver_media().driver_floppy)
    };
    let mut clouds: Vec<(Layout, VirtioWinBuild, Option<FloppyArch>)> = Vec::new();
    for layout in layouts {
        for s in scenarios {
            let key = (*layout, s.media.virtio_win, floppy_of(s, *layout));
            if !clouds.contains(&key) {
                clouds.push(key);
            }
        }
    }
    let mut clouds: Vec<CloudShare> = clouds
        .into_iter()
        .map(|(layout, build, floppy)| CloudShare {
            layout,
            members: scenarios
                .iter()
                .filter(|s| (s.media.virtio_win, floppy_of(s, layout)) == (build, floppy))
                .collect(),
        })
        .collect();
    // Largest first onto the thread with the fewest cells so far.
    clouds.sort_by_key(|c| std::cmp::Reverse(c.members.len()));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(jobs.max(1)).min(clouds.len()).max(1);
    let mut shares: Vec<Vec<(usize, CloudShare)>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, cloud) in clouds.into_iter().enumerate() {
        let lightest =
            (0..threads).min_by_key(|&t| shares[t].iter().map(|(_, c)| c.members.len()).sum::<usize>()).unwrap_or(0);
        shares[lightest].push((index, cloud));
    }
    let jobs_per_thread = jobs.max(1).div_ceil(threads);
    let (ledger, media, scratch_path) = (&ledger, &media, scratch.path());
    let run_all = || {
        std::thread::scope(|scope| {
            let running: Vec<_> = shares
                .into_iter()
                .map(|share| {
                    scope.spawn(move || -> anyhow::Result<Vec<Cell>> {
                        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                        runtime.block_on(run_share(share, jobs_per_thread, ledger, media, scratch_path))
                    })
                })
                .collect();
            let mut cells = Vec::new();
            for thread in running {
                cells.extend(thread.join().map_err(|_| anyhow::anyhow!("a matrix thread panicked"))??);
            }
            anyhow::Ok(cells)
        })
    };
    // The threads block this one until the matrix is done; a worker of a multi-thread runtime says so first.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let mut cells = if multi_thread { tokio::task::block_in_place(run_all)? } else { run_all()? };
    cells.sort_by(|a, b| (a.scenario.as_str(), a.layout).cmp(&(b.scenario.as_str(), b.layout)));
    Ok(MatrixReport {
        cloud: "embedded mockstack".into(),
        layouts: layouts.to_vec(),
        layout_used: None,
        cells,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The clouds of one thread: started and offered their driver media together, then their cells, `jobs` at a time.
async fn run_share(
    share: Vec<(usize, CloudShare<'_>)>,
    jobs: usize,
    ledger: &Ledger,
    media: &MediaCache,
    scratch: &std::path::Path,
) -> anyhow::Result<Vec<Cell>> {
    // Concurrently: one after the other, the clouds' set-up was most of a matrix's fixed cost.
    let started = futures_util::future::try_join_all(share.iter().map(|(_, cloud)| async move {
        let first = cloud.members[0];
        let embedded = Embedded::start_for(cloud.layout, first).await?;
        let driver = embedded.driver().await?;
        offer_driver_media(&driver, first, &media.embedded_media(first)?, cloud.layout.driver_media()).await?;
        anyhow::Ok((embedded, driver))
    }))
    .await?;
    let mut work = Vec::new();
    for ((group, cloud), (_, driver)) in share.iter().zip(&started) {
        for scenario in &cloud.members {
            work.push((*group, driver, cloud.layout, *scenario));
        }
    }
    let cells: Vec<Cell> = futures_util::stream::iter(work)
        .map(|(group, driver, layout, scenario)| async move {
            let dir = scratch.join(format!("{group}-{}", scenario.name));
            let run_id = format!("{}-{layout}", crate::workflow::RunId::new());
            let files = media.embedded_media(scenario);
            run_cell_with_media(driver, ledger, scenario, layout, &dir, files, &run_id).await
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    for (embedded, _) in started {
        embedded.mock.shutdown().await?;
    }
    Ok(cells)
}

/// Uploads the driver media a scenario's cloud offers every guest (public, like the article's
/// prerequisite), so that parallel cells share them instead of racing to upload their own.
pub async fn offer_driver_media<D: Driver>(
    driver: &D,
    scenario: &Scenario,
    media: &MediaFiles,
    offered: DriverMedia,
) -> anyhow::Result<()> {
    let media = media.clone();
    let wanted = [
        (scenario.media.virtio_win_image.clone(), media.virtio_iso.filter(|_| offered.virtio_iso), "iso"),
        (media.driver_floppy_image.unwrap_or_default(), media.driver_floppy.filter(|_| offered.driver_floppy), "raw"),
    ];
    let known = media.known_md5;
    for (name, file, disk_format) in wanted {
        let Some(file) = file else { continue };
        let image = driver
            .create_image(&ImageRequest {
                name: name.clone(),
                disk_format: disk_format.into(),
                container_format: "bare".into(),
                visibility: "public".into(),
                properties: Default::default(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot offer {name}: {e}"))?;
        let uploaded = match known.get(&file) {
            Some(md5) => driver.upload_image_known(&image.id, &file, md5).await,
            None => driver.upload_image(&image.id, &file).await,
        };
        uploaded.map_err(|e| anyhow::anyhow!("cannot upload {name}: {e}"))?;
    }
    Ok(())
}

/// One cell: media, the whole workflow, the domain XML check.
pub async fn run_cell<D: Driver>(
    driver: &D,
    ledger: &Ledger,
    scenario: &Scenario,
    layout: Layout,
    dir: &std::path::Path,
    embedded: bool,
    run_id: &str,
) -> Cell {
    let media =
        std::fs::create_dir_all(dir).map_err(anyhow::Error::from).and_then(|()| media_for(scenario, embedded, dir));
    run_cell_with_media(driver, ledger, scenario, layout, dir, media, run_id).await
}

/// One cell with its media already prepared (or the reason they could not be).
pub async fn run_cell_with_media<D: Driver>(
    driver: &D,
    ledger: &Ledger,
    scenario: &Scenario,
    layout: Layout,
    dir: &std::path::Path,
    media: anyhow::Result<MediaFiles>,
    run_id: &str,
) -> Cell {
    let run = build_cell(driver, ledger, dir, scenario, media, run_id, LayoutPlan::Unknown).await;
    cell_of(scenario, layout, run)
}

/// A cell's build, before the layout its expectation derives from is known (`--layout auto` learns it from a
/// build).
struct CellRun {
    report: BuildReport,
    wall: Instant,
    virtual_seconds: f64,
}

/// Runs a cell's build; a run that could not start keeps its reason in the report.
async fn build_cell<D: Driver>(
    driver: &D,
    ledger: &Ledger,
    dir: &std::path::Path,
    scenario: &Scenario,
    media: anyhow::Result<MediaFiles>,
    run_id: &str,
    layout: LayoutPlan,
) -> CellRun {
    let wall = Instant::now();
    let mut run = CellRun { report: BuildReport::default(), wall, virtual_seconds: 0.0 };
    if let Err(e) = std::fs::create_dir_all(dir) {
        run.report.reason = format!("cannot create {}: {e}", dir.display());
        return run;
    }
    let media = match media {
        Ok(m) => m,
        Err(e) => {
            run.report.reason = format!("{e:#}");
            return run;
        }
    };
    let options = BuildOptions {
        poll_min: std::time::Duration::from_secs(5),
        poll_max: std::time::Duration::from_secs(120),
        layout,
        ..BuildOptions::new(run_id, dir)
    };
    let started = driver.elapsed();
    run.report = run_build(driver, ledger, scenario, &media, &options).await;
    run.virtual_seconds = driver.elapsed().saturating_sub(started).as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    run
}

/// The cell of a build on `layout`: the expectation the rules derive for that layout, what the build observed, and
/// the check of its domain XML as that layout.
fn cell_of(scenario: &Scenario, layout: Layout, run: CellRun) -> Cell {
    let report = run.report;
    let observed_by = super::twin::Observed::of(&report);
    let mut cell = Cell {
        scenario: scenario.name.clone(),
        guest: scenario.guest.name.clone(),
        reconstruction: scenario.about.reconstruction,
        layout,
        expected: expected(scenario, layout),
        pinned: scenario.expect.get(&layout).copied(),
        observed: report.outcome,
        reason: report.reason,
        evidence: report.evidence,
        xml_findings: Vec::new(),
        wall_seconds: 0.0,
        virtual_seconds: run.virtual_seconds,
        api_calls: 0,
        not_runnable: None,
        twin: None,
        observed_by,
    };
    if let Some(xml) = &report.domain_xml {
        match domxml::check_xml(xml, &domxml::Expectation::Builtin(layout)) {
            Ok(r) => {
                cell.xml_findings = r
                    .findings
                    .iter()
                    .filter(|f| f.severity == domxml::Severity::Error)
                    .map(|f| format!("{}:{}: {} {}", f.line, f.column, f.rule, f.message))
                    .collect()
            }
            Err(e) => cell.xml_findings.push(format!("unparseable domain XML: {e}")),
        }
    }
    cell.wall_seconds = run.wall.elapsed().as_secs_f64();
    cell
}

/// The media a matrix on a real cloud uploads (`isoharness matrix --media`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MatrixMedia {
    /// Each scenario's own installer (`[media] iso` or `image`) and VirtIO-win ISO
    #[default]
    Scenario,
    /// The media the embedded run generates (the installer ISO carrying the tiny installer, the VirtIO-win ISO; no
    /// driver floppy); cells of guests the tiny installer cannot stand for are not run
    Generated,
}

/// What a real cloud cannot give a guest (`matrix --cloud-lacks`): the cells of guests that need it are not run, as
/// they would judge the cloud's configuration rather than the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudLack {
    /// UEFI firmware (no OVMF on the compute hosts)
    Uefi,
    /// Secure Boot (no firmware with enrolled keys, or no SMM)
    SecureBoot,
    /// A virtual TPM (`[libvirt] swtpm_enabled` off, or no key manager for Nova's vTPM secrets)
    Tpm,
}

impl CloudLack {
    fn needed_by(self, guest: &GuestFacts) -> bool {
        match self {
            CloudLack::Uefi => guest.firmware == guestsim::guest::Firmware::Uefi,
            CloudLack::SecureBoot => guest.needs_secure_boot,
            CloudLack::Tpm => guest.needs_tpm,
        }
    }

    fn what(self) -> &'static str {
        match self {
            CloudLack::Uefi => "UEFI firmware",
            CloudLack::SecureBoot => "Secure Boot",
            CloudLack::Tpm => "a TPM",
        }
    }
}

/// The media a real cloud's cells upload, and what that cloud cannot give a guest.
#[derive(Debug, Clone, Default)]
pub struct RealMedia {
    pub media: MatrixMedia,
    /// Only with [`MatrixMedia::Generated`].
    pub cloud_lacks: Vec<CloudLack>,
}

/// Why a scenario's cell is not runnable on a real hypervisor with generated media (`--media generated`), or `None`
/// when it is: the tiny installer those media boot stands for x86 BIOS guests on i440fx machines and x86_64 UEFI
/// guests ([`guestsim::media::tiny_installer::cannot_stand_for`]), and the cloud must be able to give the guest what
/// it needs (`lacks`).
pub fn not_runnable_with_generated_media(scenario: &Scenario, lacks: &[CloudLack]) -> Option<String> {
    if let Some(why) = guestsim::media::tiny_installer::cannot_stand_for(&scenario.guest) {
        return Some(why);
    }
    let missing: Vec<&str> = lacks.iter().filter(|lack| lack.needed_by(&scenario.guest)).map(|l| l.what()).collect();
    if !missing.is_empty() {
        return Some(format!(
            "the guest needs {}, which this cloud cannot give (--cloud-lacks)",
            missing.join(" and ")
        ));
    }
    // The install server's machine type comes from the ISO's properties (Nova boots from the ISO), else the image's.
    // Under UEFI the firmware's drivers reach every controller; the BIOS installer drives only an i440fx's.
    if scenario.guest.firmware == guestsim::guest::Firmware::Uefi {
        return None;
    }
    let image = &scenario.image;
    let machine = image.iso_properties.get("hw_machine_type").or(image.properties.get("hw_machine_type"));
    machine.filter(|m| m.contains("q35")).map(|m| {
        format!(
            "the BIOS tiny installer drives the i440fx machine's PIIX IDE controller and legacy virtio devices, and \
             this scenario asks for hw_machine_type={m} (AHCI and modern virtio)"
        )
    })
}

/// Whether two cells' media attach the same driver media under the same names.
fn same_driver_media(a: &MediaFiles, b: &MediaFiles) -> bool {
    (&a.virtio_iso, &a.driver_floppy, &a.driver_floppy_image)
        == (&b.virtio_iso, &b.driver_floppy, &b.driver_floppy_image)
}

/// Offers a group of cells' driver media on a real cloud under the names its compute hosts look up, each recorded in
/// the ledger under `run_id` before it exists, so that an interrupted matrix deletes them too; the cells then find
/// them by name and leave them alone. Returns what was created (to delete once the group is done), even on error.
async fn offer_recorded<D: Driver>(
    driver: &D,
    ledger: &Ledger,
    run_id: &str,
    scenario: &Scenario,
    files: &MediaFiles,
) -> (Vec<Live>, anyhow::Result<()>) {
    use crate::workflow::ledger::{Entry, Event, ResourceKind};
    let wanted = [
        (scenario.media.virtio_win_image.clone(), files.virtio_iso.as_ref(), "iso"),
        (files.driver_floppy_image.clone().unwrap_or_default(), files.driver_floppy.as_ref(), "raw"),
    ];
    let mut offered = Vec::new();
    for (name, file, disk_format) in wanted {
        let Some(file) = file.filter(|_| !name.is_empty()) else { continue };
        // The cloud's own copy, when it has one, is what its hosts attach: a second image of that name would make
        // the lookup ambiguous.
        match driver.images_named(&name).await {
            Ok(found) if found.iter().any(|i| i.status == "active") => continue,
            Ok(_) => {}
            Err(e) => return (offered, Err(anyhow::anyhow!("cannot look up {name}: {e}"))),
        }
        let entry = |id: Option<&str>, event| Entry {
            run: run_id.to_owned(),
            cloud: driver.describe(),
            kind: ResourceKind::Image,
            name: name.clone(),
            id: id.map(String::from),
            event,
        };
        let offer = async {
            driver.record(ledger, &entry(None, Event::Intent))?;
            let request = ImageRequest {
                name: name.clone(),
                disk_format: disk_format.into(),
                container_format: "bare".into(),
                visibility: "private".into(),
                properties: Default::default(),
            };
            let created = driver.create_image(&request).await;
            let image = match created {
                Ok(image) => image,
                Err(e) => {
                    let _ = driver.record(ledger, &entry(None, Event::Deleted));
                    anyhow::bail!("cannot offer {name}: {e}");
                }
            };
            driver.record(ledger, &entry(Some(&image.id), Event::Created))?;
            anyhow::Ok(image.id)
        };
        let id = match offer.await {
            Ok(id) => id,
            Err(e) => return (offered, Err(e)),
        };
        offered.push(Live {
            run: run_id.to_owned(),
            cloud: driver.describe(),
            kind: ResourceKind::Image,
            name: name.clone(),
            id: Some(id.clone()),
        });
        let uploaded = match files.known_md5.get(file) {
            Some(md5) => driver.upload_image_known(&id, file, md5).await,
            None => driver.upload_image(&id, file).await,
        };
        if let Err(e) = uploaded {
            return (offered, Err(anyhow::anyhow!("cannot upload {name}: {e}")));
        }
    }
    (offered, Ok(()))
}

/// The cell of a scenario not run on this hypervisor: its expectation derived all the same, nothing observed.
fn not_runnable_cell(scenario: &Scenario, layout: Layout, why: String) -> Cell {
    let report = BuildReport { reason: why.clone(), ..BuildReport::default() };
    let mut cell = cell_of(scenario, layout, CellRun { report, wall: Instant::now(), virtual_seconds: 0.0 });
    cell.not_runnable = Some(why);
    cell
}

/// How long a real-hypervisor boot test waits for the tiny installer's system (it boots in seconds).
const STAND_IN_BOOT_TIMEOUT_S: u64 = 60;

/// One cell on a real cloud: its run id recorded, its media (the scenario's own, or generated into `generated`),
/// the build.
async fn real_cell<D: Driver>(
    driver: &D,
    ledger: &Ledger,
    scratch: &std::path::Path,
    scenario: &Scenario,
    plan: LayoutPlan,
    run_ids: &std::sync::Mutex<Vec<String>>,
    generated: Option<&MediaCache>,
) -> CellRun {
    let dir = scratch.join(&scenario.name);
    let run_id = String::from(crate::workflow::RunId::new());
    run_ids.lock().unwrap_or_else(|p| p.into_inner()).push(run_id.clone());
    // The driver floppy only where the layout is known to attach one: Glance refuses a floppy uploaded as `raw` unless
    // its `mbr` safety check is non-fatal (its GPT inspector takes the FAT boot sector for an MBR without partitions),
    // which an operator of the floppy layout must set, and nobody else need.
    let floppy = matches!(&plan, LayoutPlan::Known(used) if used.layout.driver_media().driver_floppy);
    let media = std::fs::create_dir_all(&dir).map_err(anyhow::Error::from).and_then(|()| match generated {
        Some(cache) => cache.embedded_media_attached(scenario, DriverMedia { virtio_iso: true, driver_floppy: floppy }),
        None => media_for(scenario, false, &dir),
    });
    // The system the tiny installer installs prints a login prompt within seconds and runs no guest agent: on a real
    // hypervisor the boot test waits for that prompt, not for the agent the guest would run, and not for as long as
    // the guest itself might take (an ISO copy never boots, so its boot test waits out the whole timeout).
    let stand_in;
    let scenario = match generated {
        Some(_) => {
            let mut completion = scenario.completion.clone();
            completion.boot_timeout_s = completion.boot_timeout_s.min(STAND_IN_BOOT_TIMEOUT_S);
            // The tiny system's prompt on a real hypervisor; on a simulated one (a test double) the guest's own lines.
            let own = crate::workflow::validate::default_boot_console(None, Some(scenario.guest.family));
            completion.boot_console = Some(format!("{}|{own}", regex::escape(guestsim::media::tiny_installer::BOOTED)));
            let guest = GuestFacts { agent: None, ..scenario.guest.clone() };
            stand_in = Scenario { guest, completion, ..scenario.clone() };
            &stand_in
        }
        None => scenario,
    };
    build_cell(driver, ledger, &dir, scenario, media, &run_id, plan).await
}

/// Why a matrix on a real cloud could not learn its layout (`--layout auto`); the cells it ran were cleaned up.
#[derive(Debug, thiserror::Error)]
pub enum LayoutNotLearnt {
    /// The first install server's domain is none of the built-in layouts, or could not be fetched.
    #[error("{reason}\n{evidence}")]
    Unrecognised { reason: String, evidence: String },
    /// No cell's install server got a domain to recognise (every one stopped before).
    #[error(
        "no install server got a domain whose XML the layout could be recognised from ({reasons}); give --layout NAME"
    )]
    NoDomain { reasons: String },
}

/// Runs every scenario on a real cloud whose compute hosts implement the layout `plan` names or, with
/// [`LayoutPlan::Recognise`], the layout recognised from the first install server's domain XML: the first cells
/// run alone, one after the other, until one's server has a domain, and the rest, once the layout is known, `jobs`
/// at a time. `run_ids` receives each cell's run id before it starts, so that an interrupted matrix cleans up
/// exactly its own resources. With [`MatrixMedia::Generated`] every cell uploads generated media, and the cells of
/// guests the tiny installer cannot stand for ([`not_runnable_with_generated_media`]) are not run at all: nothing is
/// created for them, and the report says why.
pub async fn run_real<'a, D: Driver>(
    driver: &D,
    ledger: &Ledger,
    scenarios: &'a [Scenario],
    plan: &LayoutPlan,
    jobs: usize,
    run_ids: &std::sync::Mutex<Vec<String>>,
    media: &RealMedia,
) -> anyhow::Result<MatrixReport> {
    let RealMedia { media, cloud_lacks: lacks } = media;
    let (media, lacks) = (*media, lacks.as_slice());
    let started = Instant::now();
    let scratch = tempfile::Builder::new().prefix("isoharness-matrix-").tempdir()?;
    let scratch_path = scratch.path();
    let cache = match media {
        MatrixMedia::Scenario => None,
        MatrixMedia::Generated => {
            let dir = scratch_path.join("media");
            std::fs::create_dir_all(&dir)?;
            Some(MediaCache::new(&dir))
        }
    };
    let generated = cache.as_ref();
    let (mut runnable, mut skipped): (Vec<&Scenario>, Vec<(&Scenario, String)>) = (Vec::new(), Vec::new());
    for scenario in scenarios {
        match generated.and_then(|_| not_runnable_with_generated_media(scenario, lacks)) {
            Some(why) => skipped.push((scenario, why)),
            None => runnable.push(scenario),
        }
    }
    let scenarios = runnable;
    let mut runs: Vec<(&Scenario, CellRun)> = Vec::new();
    let used = match plan {
        LayoutPlan::Known(used) => used.clone(),
        LayoutPlan::Unknown => anyhow::bail!("on a real cloud the matrix needs the layout its compute hosts implement"),
        LayoutPlan::Recognise => {
            let mut used = None;
            for scenario in scenarios.iter().copied() {
                let run =
                    real_cell(driver, ledger, scratch_path, scenario, LayoutPlan::Recognise, run_ids, generated).await;
                let failed = run.report.steps.iter().find(|s| s.step == LAYOUT_STEP && s.status == StepStatus::Failed);
                if let Some(step) = failed {
                    return Err(LayoutNotLearnt::Unrecognised {
                        reason: format!("{}: {}", scenario.name, step.detail),
                        evidence: run.report.evidence.join("\n"),
                    }
                    .into());
                }
                used = run.report.layout.clone();
                runs.push((scenario, run));
                if used.is_some() {
                    break;
                }
            }
            let Some(used) = used else {
                let reasons = runs.iter().map(|(s, r)| format!("{}: {}", s.name, r.report.reason)).collect::<Vec<_>>();
                return Err(LayoutNotLearnt::NoDomain { reasons: reasons.join("; ") }.into());
            };
            used
        }
    };
    let rest: Vec<&Scenario> =
        scenarios.iter().copied().filter(|s| !runs.iter().any(|(r, _)| r.name == s.name)).collect();
    let run_cells = |cells: Vec<&'a Scenario>| {
        let used = &used;
        futures_util::stream::iter(cells)
            .map(move |scenario| {
                let plan = LayoutPlan::Known(used.clone());
                async move {
                    (scenario, real_cell(driver, ledger, scratch_path, scenario, plan, run_ids, generated).await)
                }
            })
            .buffer_unordered(jobs.max(1))
            .collect::<Vec<(&Scenario, CellRun)>>()
    };
    match generated {
        None => runs.extend(run_cells(rest).await),
        // A patched Nova finds the driver media by name, so concurrent cells must not each upload (and delete) their
        // own: the cells that attach the same media run together, with those media offered once for them all.
        Some(cache) => {
            let attached = used.layout.driver_media();
            let mut groups: Vec<(MediaFiles, Vec<&Scenario>)> = Vec::new();
            for scenario in rest {
                let files = cache.embedded_media_attached(scenario, attached)?;
                let same = |(group, _): &&mut (MediaFiles, Vec<&Scenario>)| same_driver_media(group, &files);
                match groups.iter_mut().find(same) {
                    Some((_, members)) => members.push(scenario),
                    None => groups.push((files, vec![scenario])),
                }
            }
            for (files, members) in groups {
                let offer_run = String::from(crate::workflow::RunId::new());
                run_ids.lock().unwrap_or_else(|p| p.into_inner()).push(offer_run.clone());
                let (offered, result) = offer_recorded(driver, ledger, &offer_run, members[0], &files).await;
                if result.is_ok() {
                    runs.extend(run_cells(members).await);
                }
                for live in &offered {
                    crate::workflow::run_delete_live(driver, ledger, live).await;
                }
                result?;
            }
        }
    }
    let mut cells: Vec<Cell> = runs.into_iter().map(|(scenario, run)| cell_of(scenario, used.layout, run)).collect();
    cells.extend(skipped.into_iter().map(|(scenario, why)| not_runnable_cell(scenario, used.layout, why)));
    cells.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    Ok(MatrixReport {
        cloud: driver.describe(),
        layouts: vec![used.layout],
        layout_used: Some(used),
        cells,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"));
        Scenario::load(&path).expect("a scenario of the repository")
    }

    #[test]
    fn the_expectation_keeps_the_kind_and_reason_the_rules_derive() {
        let mut attended = scenario("ubuntu-24.04");
        attended.guest.unattended = false;
        let attended = expected(&attended, Layout::Patched);
        assert_eq!(attended.kind, OutcomeKind::NeedsConsole, "{}", attended.reason);
        assert!(attended.reason.contains("no answer file"), "{}", attended.reason);

        let stock = expected(&scenario("ubuntu-24.04"), Layout::Stock);
        assert_eq!(stock.kind, OutcomeKind::IsoCopy);
        assert!(stock.reason.contains("the installation ISO"), "{}", stock.reason);
    }
}
