//! Image validation, the build's last step and `isoharness validate-image`: prove that an image is
//! what it claims to be, from its metadata, its data (downloaded and read by the [`Driver`]) and a
//! boot test, against any [`Driver`].
//!
//! Checks (ids are stable; see the README): `status`, `formats`, `image-type`, `properties`,
//! `min-sizes`, `visibility`, `size`, `checksum`, `os-hash`, `real-format`, `content`, `boot`.

use std::path::PathBuf;
use std::time::Duration;

use guestsim::guest::{GuestAgent, OsFamily};
use regex::Regex;
use serde::Serialize;

use super::decide::{Poller, ServerVerdict, server_verdict};
use super::ledger::{Entry, Event, Ledger, Live, ResourceKind};
use super::{Driver, FlavorInfo, ImageInfo, ServerRequest, StoppedBy};
use crate::inspect::{self, Content};
use crate::scenario::Scenario;

/// What the operator expects of the image.
#[derive(Debug, Clone)]
pub struct ValidationRequest {
    pub expect_os: Option<OsFamily>,
    /// The agent whose "finished" line the boot test waits for.
    pub agent: Option<GuestAgent>,
    /// What marks a booted image instead, when the scenario says (`completion.boot_console`).
    pub boot_console: Option<Regex>,
    /// Expected visibility, when the operator asked for one.
    pub visibility: Option<String>,
    /// The image must no longer be a snapshot (step 7 done).
    pub require_image_type_image: bool,
    pub boot_test: bool,
    pub boot_timeout: Duration,
    /// A flavor for the boot test; the smallest fitting one when None.
    pub flavor: Option<String>,
    pub scratch_dir: PathBuf,
    /// Name of the boot-test server (a run prefix keeps it findable by cleanup).
    pub name_prefix: String,
}

impl ValidationRequest {
    pub fn for_scenario(scenario: &Scenario) -> ValidationRequest {
        ValidationRequest {
            expect_os: Some(scenario.guest.family),
            agent: scenario.guest.agent,
            // Checked when the scenario was loaded.
            boot_console: scenario.completion.boot_console.as_deref().and_then(|p| Regex::new(p).ok()),
            visibility: Some(scenario.image.visibility.clone()),
            require_image_type_image: true,
            boot_test: true,
            boot_timeout: Duration::from_secs(scenario.completion.boot_timeout_s),
            flavor: None,
            scratch_dir: std::env::temp_dir(),
            name_prefix: format!("ih-validate-{}", scenario.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: CheckStatus,
    /// A failed required check fails the validation; others only warn.
    pub required: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub image_id: String,
    pub image_name: String,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspection: Option<inspect::Inspection>,
    pub cleanup: Vec<String>,
    /// Who kept the image from being looked at at all (the `image` check says why); None when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<StoppedBy>,
}

/// The conclusion the workflow draws from a validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Installed,
    /// The image holds the ISO, not the installed disk.
    IsoCopy(String, Vec<String>),
    Failed(String, Vec<String>),
    /// The image could not be validated at all.
    Error(StoppedBy, String),
}

impl ValidationReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| !(c.required && c.status == CheckStatus::Fail))
    }

    pub fn verdict(&self) -> Verdict {
        if let Some(by) = self.stopped_by {
            let reason = self.checks.iter().find(|c| c.id == "image").map(|c| c.detail.clone()).unwrap_or_default();
            return Verdict::Error(by, reason);
        }
        let iso = matches!(self.inspection.as_ref().map(|i| &i.content), Some(Content::Iso9660 { .. }));
        let first_failure = self.checks.iter().find(|c| c.required && c.status == CheckStatus::Fail);
        match (iso, first_failure) {
            (true, _) => {
                let boot = self.checks.iter().find(|c| c.id == "boot").map(|c| c.evidence.clone()).unwrap_or_default();
                let content = self.checks.iter().find(|c| c.id == "content").map(|c| c.detail.clone());
                Verdict::IsoCopy(content.unwrap_or_default(), boot)
            }
            (false, None) => Verdict::Installed,
            (false, Some(c)) => Verdict::Failed(format!("{}: {}", c.id, c.detail), c.evidence.clone()),
        }
    }
}

/// Runs every check; never leaves a server behind (the boot test's server goes into the ledger).
pub async fn validate_image<C: Driver>(
    cloud: &C,
    ledger: &Ledger,
    run_id: &str,
    image_ref: &str,
    request: &ValidationRequest,
) -> ValidationReport {
    let mut report = ValidationReport {
        image_id: image_ref.to_string(),
        image_name: String::new(),
        checks: Vec::new(),
        inspection: None,
        cleanup: Vec::new(),
        stopped_by: None,
    };
    let image = match find_image(cloud, image_ref).await {
        Ok(image) => image,
        Err((by, message)) => {
            report.checks.push(check("image", CheckStatus::Fail, true, message));
            report.stopped_by = Some(by);
            return report;
        }
    };
    report.image_id = image.id.clone();
    report.image_name = image.name.clone();
    metadata_checks(&image, request, &mut report.checks);
    let data = data_checks(cloud, &image, request, &mut report).await;
    // An image proven to hold the installer's ISO is an ISO copy whatever it boots into; booting it would only wait
    // out the boot timeout (the firmware says nothing on the serial console) or start the installer again.
    let installer_copy = matches!(data.as_ref().map(|d| &d.content), Some(Content::Iso9660 { .. }));
    if installer_copy {
        report.checks.push(check(
            "boot",
            CheckStatus::Skip,
            true,
            "skipped: the image holds the installer's ISO 9660 volume, not an installed system",
        ));
    } else if request.boot_test {
        boot_test(cloud, ledger, run_id, &image, request, data.as_ref(), &mut report).await;
    } else {
        report.checks.push(check("boot", CheckStatus::Skip, true, "skipped (--no-boot)"));
    }
    report
}

fn check(id: &'static str, status: CheckStatus, required: bool, detail: impl Into<String>) -> Check {
    Check { id, status, required, detail: detail.into(), evidence: Vec::new() }
}

fn pass_fail(ok: bool) -> CheckStatus {
    if ok { CheckStatus::Pass } else { CheckStatus::Fail }
}

/// The image an id or a name means; a cloud that fails the lookup is told apart from a reference that names no
/// single image.
async fn find_image<C: Driver>(cloud: &C, image_ref: &str) -> Result<ImageInfo, (StoppedBy, String)> {
    // Glance's schema caps names at 255 characters (ids are 36): a longer reference names nothing, and asking would
    // only send the cloud a URL some front ends refuse (414) or drop.
    let length = image_ref.chars().count();
    if length > GLANCE_NAME_MAX {
        let start: String = image_ref.chars().take(40).collect();
        return Err((
            StoppedBy::Input,
            format!(
                "`{start}…` ({length} characters) cannot name an image: Glance's ids and names are at most \
                 {GLANCE_NAME_MAX} characters"
            ),
        ));
    }
    if let Ok(Some(image)) = cloud.image(image_ref).await {
        return Ok(image);
    }
    let named = cloud.images_named(image_ref).await.map_err(|e| (StoppedBy::of(&e), e.to_string()))?;
    match named.len() {
        0 => Err((StoppedBy::Input, format!("no image with id or name `{image_ref}`"))),
        1 => Ok(named.into_iter().next().expect("one")),
        n => Err((StoppedBy::Input, format!("{n} images are named `{image_ref}`: give the id"))),
    }
}

fn metadata_checks(image: &ImageInfo, request: &ValidationRequest, checks: &mut Vec<Check>) {
    checks.push(check("status", pass_fail(image.status == "active"), true, format!("status {}", image.status)));
    let disk = image.disk_format.as_deref().unwrap_or("none");
    let container = image.container_format.as_deref().unwrap_or("none");
    checks.push(check(
        "formats",
        pass_fail(disk != "none" && container == "bare"),
        true,
        format!("disk_format {disk}, container_format {container}"),
    ));
    let image_type = image.property("image_type");
    if request.require_image_type_image {
        checks.push(check(
            "image-type",
            pass_fail(image_type != Some("snapshot")),
            true,
            match image_type {
                Some("snapshot") => "image_type is still `snapshot`: step 7 (image-update) was not done".to_string(),
                Some(t) => format!("image_type {t}"),
                None => "no image_type (an uploaded image)".to_string(),
            },
        ));
    }
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for key in ["os_type", "os_distro"] {
        if image.property(key).is_none() {
            missing.push(key);
        }
    }
    if let (Some(expected), Some(os_type)) = (request.expect_os, image.property("os_type")) {
        let expected = expected.as_str();
        if os_type != expected {
            wrong.push(format!("os_type is {os_type}, expected {expected}"));
        }
    }
    if (image.property("os_type") == Some("windows") || request.expect_os == Some(OsFamily::Windows))
        && image.property("hw_vif_model").is_none()
    {
        wrong.push(
            "no hw_vif_model: Windows has no virtio-net driver in the box; set e1000 or virtio with NetKVM installed"
                .into(),
        );
    }
    let mut detail = Vec::new();
    if !missing.is_empty() {
        detail.push(format!("missing {}", missing.join(", ")));
    }
    detail.extend(wrong.iter().cloned());
    checks.push(check(
        "properties",
        pass_fail(missing.is_empty() && wrong.is_empty()),
        true,
        if detail.is_empty() { "os_type, os_distro present".to_string() } else { detail.join("; ") },
    ));
    if let Some(visibility) = &request.visibility {
        checks.push(check(
            "visibility",
            pass_fail(&image.visibility == visibility),
            false,
            format!("visibility {}, expected {visibility}", image.visibility),
        ));
    }
}

/// Has the driver download the data (streamed to a scratch file) and inspect it, and checks size and hashes.
async fn data_checks<C: Driver>(
    cloud: &C,
    image: &ImageInfo,
    request: &ValidationRequest,
    report: &mut ValidationReport,
) -> Option<inspect::Inspection> {
    if image.status != "active" {
        report.checks.push(check("size", CheckStatus::Skip, true, "no data: the image is not active"));
        return None;
    }
    let download = match cloud.download_and_inspect(&image.id, &request.scratch_dir).await {
        Ok(d) => d,
        Err(e) => {
            report.checks.push(check("size", CheckStatus::Fail, true, e.to_string()));
            return None;
        }
    };
    let digest = &download.digest;
    let checks = &mut report.checks;
    checks.push(check(
        "size",
        pass_fail(image.size == Some(digest.bytes)),
        true,
        format!("{} bytes downloaded, Glance says {:?}", digest.bytes, image.size),
    ));
    checks.push(check(
        "checksum",
        pass_fail(image.checksum.is_some() && image.checksum == digest.md5),
        true,
        format!(
            "md5 {} (Glance {})",
            digest.md5.as_deref().unwrap_or("unknown"),
            image.checksum.as_deref().unwrap_or("none")
        ),
    ));
    let sha_ok = match (image.os_hash_algo.as_deref(), image.os_hash_value.as_deref()) {
        (Some("sha512"), Some(v)) => digest.sha512.as_deref() == Some(v),
        _ => false,
    };
    checks.push(check(
        "os-hash",
        pass_fail(sha_ok),
        true,
        format!(
            "{} {}",
            image.os_hash_algo.as_deref().unwrap_or("no algo"),
            if sha_ok { "matches" } else { "differs" }
        ),
    ));
    let inspection = match download.inspection {
        Ok(i) => i,
        Err(e) => {
            checks.push(check("real-format", CheckStatus::Fail, true, e.to_string()));
            return None;
        }
    };
    let declared = image.disk_format.as_deref().unwrap_or("");
    checks.push(check(
        "real-format",
        pass_fail(inspection.format.glance_names().contains(&declared)),
        true,
        format!(
            "data is {:?}, virtual size {} bytes; disk_format says {declared}",
            inspection.format, inspection.virtual_size
        )
        .to_lowercase(),
    ));
    let gib = 1u64 << 30;
    let needed_gb = inspection.virtual_size.div_ceil(gib);
    checks.push(check(
        "min-sizes",
        pass_fail(image.min_disk >= needed_gb && image.min_disk > 0),
        false,
        format!("min_disk {} GB for a virtual size of {needed_gb} GB; min_ram {} MB", image.min_disk, image.min_ram),
    ));
    let (ok, detail) = match &inspection.content {
        Content::InstalledDisk { table } => (true, format!("an installed disk ({table})")),
        Content::Iso9660 { volume_id } => (
            false,
            format!("the data is an ISO 9660 volume (`{volume_id}`): a copy of the installer, not the installed disk"),
        ),
        Content::Empty => (false, "the disk is empty: nothing was installed on it".to_string()),
        Content::Unknown => (false, "no partition table or boot sector".to_string()),
    };
    checks.push(check("content", pass_fail(ok), true, detail));
    report.inspection = Some(inspection.clone());
    Some(inspection)
}

/// Console lines that show a boot went wrong, and what they mean.
const BOOT_FAILURES: &[(&str, &str)] = &[
    ("No bootable device", "no bootable device"),
    ("not a bootable disk", "no bootable device"),
    ("INACCESSIBLE_BOOT_DEVICE", "Windows cannot reach its boot disk (no storage driver for the bus)"),
    ("Press any key to boot from CD", "the installer started again"),
    ("Windows Setup", "the installer started again"),
    ("Starting installer", "the installer started again"),
    ("Welcome to the installer", "the installer started again"),
];

fn boot_success_pattern(request: &ValidationRequest) -> Regex {
    if let Some(pattern) = &request.boot_console {
        return pattern.clone();
    }
    Regex::new(default_boot_console(request.agent, request.expect_os)).expect("built-in patterns compile")
}

/// What marks a booted image by default: the agent's finish line, else the OS's login prompt or, for Windows, the
/// Emergency Management Services line.
pub fn default_boot_console(agent: Option<GuestAgent>, os: Option<OsFamily>) -> &'static str {
    match agent {
        Some(GuestAgent::CloudInit) => r"Cloud-init v\. \S+ finished at",
        Some(GuestAgent::CloudbaseInit) => r"Plugins execution done",
        None => match os {
            // Emergency Management Services announce a booted Windows on the serial console.
            Some(OsFamily::Windows) => r"SAC started and initialized|Plugins execution done",
            _ => r"login:|Cloud-init v\. \S+ finished at",
        },
    }
}

async fn boot_test<C: Driver>(
    cloud: &C,
    ledger: &Ledger,
    run_id: &str,
    image: &ImageInfo,
    request: &ValidationRequest,
    data: Option<&inspect::Inspection>,
    report: &mut ValidationReport,
) {
    if image.status != "active" {
        report.checks.push(check("boot", CheckStatus::Skip, true, "the image is not active"));
        return;
    }
    let flavor = match pick_flavor(cloud, run_id, image, data, request).await {
        Ok(f) => f,
        Err(message) => {
            report.checks.push(check("boot", CheckStatus::Fail, true, message));
            return;
        }
    };
    let name = format!("{}-{}", request.name_prefix, &image.id[..image.id.len().min(8)]);
    let entry = |id: Option<&str>, event| Entry {
        run: run_id.to_string(),
        cloud: cloud.describe(),
        kind: ResourceKind::Server,
        name: name.clone(),
        id: id.map(String::from),
        event,
    };
    if let Err(e) = cloud.record(ledger, &entry(None, Event::Intent)) {
        report.checks.push(check("boot", CheckStatus::Fail, true, e.to_string()));
        return;
    }
    let created =
        cloud.create_server(&ServerRequest { name: name.clone(), image_id: image.id.clone(), flavor_id: flavor }).await;
    let id = match created {
        Ok(id) => id,
        Err(e) => {
            let _ = cloud.record(ledger, &entry(None, Event::Deleted));
            report.checks.push(check("boot", CheckStatus::Fail, true, format!("cannot boot the image: {e}")));
            return;
        }
    };
    let _ = cloud.record(ledger, &entry(Some(&id), Event::Created));
    let result = watch_boot(cloud, &id, request).await;
    report.checks.push(result);
    let live =
        Live { run: run_id.to_string(), cloud: cloud.describe(), kind: ResourceKind::Server, name, id: Some(id) };
    report.cleanup.push(super::run_delete_live(cloud, ledger, &live).await);
}

async fn watch_boot<C: Driver>(cloud: &C, id: &str, request: &ValidationRequest) -> Check {
    let success = boot_success_pattern(request);
    let started = cloud.elapsed();
    let mut poller = Poller::new(Duration::from_secs(2), Duration::from_secs(15));
    loop {
        let server = match cloud.server(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return check("boot", CheckStatus::Fail, true, "the boot-test server vanished"),
            Err(e) => return check("boot", CheckStatus::Fail, true, e.to_string()),
        };
        if let ServerVerdict::Failed(reason) = server_verdict(&server, "ACTIVE") {
            return check("boot", CheckStatus::Fail, true, reason);
        }
        let console = cloud.console_log(id).await.unwrap_or_default();
        if let Some((line, meaning)) = console
            .lines()
            .find_map(|l| BOOT_FAILURES.iter().find(|(m, _)| l.contains(m)).map(|(_, meaning)| (l, meaning)))
        {
            let mut c = check("boot", CheckStatus::Fail, true, meaning.to_string());
            c.evidence = vec![line.to_string()];
            return c;
        }
        if let Some(m) = success.find(&console) {
            let line = console[m.start()..].lines().next().unwrap_or("").to_string();
            let mut c = check("boot", CheckStatus::Pass, true, format!("booted: console shows `{}`", success.as_str()));
            c.evidence = vec![line];
            return c;
        }
        if server.status == "SHUTOFF" && server.task_state.is_none() {
            let mut c = check("boot", CheckStatus::Fail, true, "the server powered off during boot");
            c.evidence = console.lines().rev().take(3).map(String::from).collect();
            return c;
        }
        let waited = cloud.elapsed().saturating_sub(started);
        if waited >= request.boot_timeout {
            let mut c = check(
                "boot",
                CheckStatus::Fail,
                true,
                format!("no sign of a booted OS after {}s", request.boot_timeout.as_secs()),
            );
            c.evidence = console.lines().rev().take(3).map(String::from).collect();
            return c;
        }
        cloud.sleep(poller.next(&format!("{}/{:?}/{}", server.status, server.task_state, console.len()))).await;
    }
}

/// The longest image name Glance's schema allows.
const GLANCE_NAME_MAX: usize = 255;

/// The smallest flavor whose disk and RAM fit the image.
async fn pick_flavor<C: Driver>(
    cloud: &C,
    run_id: &str,
    image: &ImageInfo,
    data: Option<&inspect::Inspection>,
    request: &ValidationRequest,
) -> Result<String, String> {
    let flavors = cloud.flavors().await.map_err(|e| e.to_string())?;
    if let Some(wanted) = &request.flavor {
        return flavors
            .into_iter()
            .find(|f| &f.name == wanted || &f.id == wanted)
            .map(|f| f.id)
            .ok_or_else(|| format!("no flavor `{wanted}`"));
    }
    let virtual_gb = data.map(|d| d.virtual_size.div_ceil(1 << 30)).unwrap_or(0);
    let disk_needed = image.min_disk.max(virtual_gb);
    smallest_fitting(&flavors, disk_needed, image.min_ram, run_id)
        .map(|f| f.id.clone())
        .ok_or_else(|| format!("no flavor with at least {disk_needed} GB disk and {} MB RAM", image.min_ram))
}

/// The smallest flavor with `disk_gb` and `ram_mb`, preferring flavors no other run created: runs sharing a cloud
/// (the cells of a matrix) delete their own flavors when they finish, possibly under a boot test that chose one.
fn smallest_fitting<'a>(flavors: &'a [FlavorInfo], disk_gb: u64, ram_mb: u64, run_id: &str) -> Option<&'a FlavorInfo> {
    let other_runs = |f: &FlavorInfo| f.name.starts_with("ih-") && !f.name.starts_with(&format!("{run_id}-"));
    let fitting = || flavors.iter().filter(|f| u64::from(f.disk_gb) >= disk_gb && u64::from(f.ram_mb) >= ram_mb);
    // Smallest by what the cloud must find room for: every disk the flavor gives, then memory, then CPUs.
    let size = |f: &&FlavorInfo| {
        (u64::from(f.disk_gb) + u64::from(f.ephemeral_gb) + u64::from(f.swap_mb) / 1024, f.ram_mb, f.vcpus)
    };
    fitting().filter(|f| !other_runs(f)).min_by_key(size).or_else(|| fitting().min_by_key(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(name: &str, disk_gb: u32, ram_mb: u32) -> FlavorInfo {
        FlavorInfo { id: name.into(), name: name.into(), vcpus: 1, ram_mb, disk_gb, ..FlavorInfo::default() }
    }

    #[test]
    fn the_boot_flavor_is_the_smallest_fit_avoiding_other_runs_flavors() {
        let flavors = [
            flavor("m1.large", 80, 8192),
            flavor("m1.small", 20, 2048),
            flavor("ih-aaaaaaaa-rhel-flavor", 10, 1024),
            flavor("ih-bbbbbbbb-sles-flavor", 12, 1024),
        ];
        let pick = |disk, ram, run| smallest_fitting(&flavors, disk, ram, run).map(|f| f.name.as_str());
        assert_eq!(pick(10, 512, "ih-cccccccc"), Some("m1.small"), "another run's flavor may vanish");
        assert_eq!(pick(10, 512, "ih-bbbbbbbb"), Some("ih-bbbbbbbb-sles-flavor"), "this run's own is fine");
        assert_eq!(pick(30, 512, "ih-cccccccc"), Some("m1.large"));
        assert_eq!(pick(100, 512, "ih-cccccccc"), None);
        let only_theirs = [flavor("ih-aaaaaaaa-rhel-flavor", 10, 1024)];
        assert_eq!(
            smallest_fitting(&only_theirs, 1, 1, "ih-cccccccc").map(|f| f.id.as_str()),
            Some("ih-aaaaaaaa-rhel-flavor")
        );
    }

    #[test]
    fn the_boot_flavor_counts_every_disk_the_cloud_must_find_room_for() {
        let with_ephemeral = FlavorInfo { ephemeral_gb: 40, ..flavor("ih-cccccccc-win-flavor", 40, 2048) };
        let with_swap = FlavorInfo { swap_mb: 8192, ..flavor("m1.swap", 40, 2048) };
        let flavors = [with_ephemeral, with_swap, flavor("m1.medium", 44, 4096)];
        let pick = |disk, ram| smallest_fitting(&flavors, disk, ram, "ih-cccccccc").map(|f| f.name.as_str());
        assert_eq!(pick(40, 2048), Some("m1.medium"), "44 GB in all, against 48 and 80");
        assert_eq!(pick(45, 2048), None);
    }
}
