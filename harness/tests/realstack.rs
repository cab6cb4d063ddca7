//! `isoharness build` and `isoharness validate-image` against the local real cloud (`cargo xtask realstack up`): the workflow completes, the verdict fits what the compute driver does, and nothing is left behind.
//!
//! The real cloud runs Nova with one of two compute drivers (`ISOHARNESS_REALSTACK_COMPUTE`):
//! `fake`, the project's driver that behaves like the libvirt driver for an ISO boot, or `libvirt`,
//! Nova's own libvirt driver on libvirtd and QEMU, where the ISO's tiny installer really runs,
//! installs onto the first disk it can use and powers the guest off. Its Nova is stock or carries
//! the project's ISO-install patch series (`ISOHARNESS_REALSTACK_LAYOUT=stock|patched`, libvirt
//! only). On stock Nova the snapshot is the ISO (as qcow2), so the right verdict is `iso-copy`,
//! and a server booted from it shows no booted OS; on patched Nova the snapshot is the installed
//! blank root disk, so the verdict is `image-ok` and the boot test reaches the installed system's
//! login prompt. With libvirt the build also fetches the real domain XML (`virsh dumpxml`,
//! through `ISOHARNESS_REALSTACK_LIBVIRT_URI`), which the build recognises as the cloud's layout
//! (`--layout auto`), which check-xml must recognise too, and which must match mockstack's
//! rendering of the same layout device by device. validate-image must pass a disk the tiny
//! installer installed. Without `ISOHARNESS_REALSTACK_CLOUDS` (a clouds.yaml with the cloud
//! `realstack`) the trials are listed as ignored, with the reason printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use guestsim::Layout;
use guestsim::media::qemu::Machine;
use harness::cloud::config::{ConfigEnv, ConfigRequest, DiskFiles, resolve};
use harness::cloud::glance::ImageQuery;
use harness::cloud::{ClientOptions, Cloud};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const ENV: &str = "ISOHARNESS_REALSTACK_CLOUDS";
const COMPUTE_ENV: &str = "ISOHARNESS_REALSTACK_COMPUTE";
const LIBVIRT_URI_ENV: &str = "ISOHARNESS_REALSTACK_LIBVIRT_URI";
const LAYOUT_ENV: &str = "ISOHARNESS_REALSTACK_LAYOUT";
const CLOUD: &str = "realstack";

/// The compute driver behind the real cloud's Nova.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compute {
    Fake,
    Libvirt,
}

impl Compute {
    fn from_env() -> Result<Compute, String> {
        match std::env::var(COMPUTE_ENV).as_deref() {
            Err(_) | Ok("fake") => Ok(Compute::Fake),
            Ok("libvirt") => Ok(Compute::Libvirt),
            Ok(other) => Err(format!("{COMPUTE_ENV}={other}: fake or libvirt")),
        }
    }
}

/// The disk layout the real cloud's Nova implements: stock, or patched with the project's
/// ISO-install series (`nova-patches/iso-install/`), which only Nova's libvirt driver carries.
fn layout_from_env(compute: Compute) -> Result<Layout, String> {
    let layout = match std::env::var(LAYOUT_ENV).as_deref() {
        Err(_) | Ok("stock") => Layout::Stock,
        Ok("patched") => Layout::Patched,
        Ok(other) => return Err(format!("{LAYOUT_ENV}={other}: stock or patched")),
    };
    if layout != Layout::Stock && compute != Compute::Libvirt {
        return Err(format!("{LAYOUT_ENV}={layout} needs {COMPUTE_ENV}=libvirt: the fake driver is stock Nova's"));
    }
    Ok(layout)
}

/// `--domain-xml-command` for the libvirt mode: virsh against the cloud's own libvirtd.
fn domain_xml_command() -> Result<String, String> {
    let uri = std::env::var(LIBVIRT_URI_ENV).map_err(|_| format!("{COMPUTE_ENV}=libvirt needs {LIBVIRT_URI_ENV}"))?;
    Ok(format!("virsh -c '{uri}' dumpxml {{instance}}"))
}

/// The guest whose installer ISO `isoharness media` writes. No guest agent: the system the tiny installer
/// installs prints a login prompt and runs no cloud-init, so the boot test waits for the prompt.
const GUEST: &str = "name=\"Realstack Linux\"; family=\"linux\"; release=\"1\"; distro=\"ubuntu\"; arch=\"x86_64\"; \
                     virtio_storage=\"built-in\"; firmware=\"bios\"; min_ram_mb=512; min_disk_gb=1; \
                     install_seconds=60; boot_seconds=20";

const SCENARIO: &str = r#"# A small Linux install on the local real cloud (written by harness/tests/realstack.rs).
[scenario]
description = "a Linux installer ISO booted on the local real cloud"
reconstruction = false
tags = ["linux", "realstack"]

[guest]
name = "Realstack Linux"
family = "linux"
release = "1"
distro = "ubuntu"
arch = "x86_64"
virtio_storage = "built-in"
firmware = "bios"
min_ram_mb = 512
min_disk_gb = 1
install_seconds = 60
boot_seconds = 20

[media]
iso = "realstack-linux.iso"
{virtio_win}
[flavor]
vcpus = 1
ram_mb = 512
disk_gb = 1
ephemeral_gb = 1

[image.properties]
os_type = "linux"
os_distro = "ubuntu"
hw_disk_bus = "virtio"

[completion]
install_timeout_s = 600
inactivity_timeout_s = 0
boot_timeout_s = {boot_timeout}
"#;

/// The scenario, with the VirtIO-win ISO a patched cloud's Nova attaches when there is one. A snapshot of the
/// ISO never boots, so its boot test waits out the whole timeout: a minute there; a snapshot of the installed
/// system shows its login prompt as soon as it boots, so a longer timeout costs nothing and spares a busy
/// machine's software-emulated boot a false failure.
fn scenario_text(virtio_win: Option<&Path>) -> String {
    let line = virtio_win.map(|p| format!("virtio_win_iso = {:?}\n", p.display().to_string())).unwrap_or_default();
    let boot_timeout = if virtio_win.is_some() { 300 } else { 60 };
    SCENARIO.replace("{virtio_win}", &line).replace("{boot_timeout}", &boot_timeout.to_string())
}

fn isoharness(clouds: &Path, args: &[&str]) -> Result<(i32, String, String), String> {
    let output = Command::new(env!("CARGO_BIN_EXE_isoharness"))
        .args(args)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        // Every run names its own ledger; none may fall back on the user's.
        .env("XDG_STATE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("realstack-state"))
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL")
        .output()
        .map_err(|e| format!("cannot run isoharness: {e}"))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

async fn connect(clouds: &Path) -> Result<Cloud, String> {
    let env = ConfigEnv {
        vars: BTreeMap::from([("OS_CLIENT_CONFIG_FILE".to_string(), clouds.display().to_string())]),
        current_dir: PathBuf::from("/nonexistent"),
        home_dir: None,
    };
    let request = ConfigRequest { cloud: Some(CLOUD.into()), region_name: None };
    let config = resolve(&request, &env, &DiskFiles).map_err(|e| e.to_string())?;
    Cloud::connect(config, ClientOptions::default()).await.map_err(|e| e.to_string())
}

/// Every server, image and flavor of the cloud, as `kind name (id)`.
async fn inventory(clouds: &Path) -> Result<BTreeSet<String>, String> {
    let cloud = connect(clouds).await?;
    let mut all = BTreeSet::new();
    let glance = cloud.glance().await.map_err(|e| e.to_string())?;
    for image in glance.list_images(&ImageQuery::default()).await.map_err(|e| e.to_string())? {
        all.insert(format!("image {} ({})", image.name.unwrap_or_default(), image.id));
    }
    let nova = cloud.nova().await.map_err(|e| e.to_string())?;
    for flavor in nova.list_flavors().await.map_err(|e| e.to_string())? {
        all.insert(format!("flavor {} ({})", flavor.name, flavor.id));
    }
    let token = cloud.token().await.map_err(|e| e.to_string())?;
    let compute = cloud.endpoint("compute").await.map_err(|e| e.to_string())?;
    let servers: Value = reqwest::Client::new()
        .get(format!("{compute}/servers/detail?all_tenants=1&deleted=false"))
        .header("X-Auth-Token", token.value.expose())
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    for server in servers["servers"].as_array().cloned().unwrap_or_default() {
        all.insert(format!("server {} ({})", server["name"], server["id"]));
    }
    let _ = cloud.revoke_token().await;
    Ok(all)
}

/// Fails unless the cloud holds exactly what it held before.
fn nothing_left(runtime: &tokio::runtime::Runtime, clouds: &Path, before: &BTreeSet<String>) -> Result<(), Failed> {
    let after = runtime.block_on(inventory(clouds))?;
    let left: Vec<&String> = after.difference(before).collect();
    if left.is_empty() { Ok(()) } else { Err(format!("left behind on the real cloud: {left:?}").into()) }
}

/// The installer ISO (and, for a patched cloud, the VirtIO-win ISO its Nova attaches), as `isoharness media` writes them.
struct Media {
    iso: PathBuf,
    virtio_win: Option<PathBuf>,
}

fn media(dir: &Path, clouds: &Path, with_virtio_win: bool) -> Result<Media, Failed> {
    let out = dir.display().to_string();
    let mut args = vec!["media", "--guest", GUEST, "--out", &out];
    if with_virtio_win {
        args.extend(["--virtio-win", "full"]);
    }
    let (code, stdout, stderr) = isoharness(clouds, &args)?;
    if code != 0 {
        return Err(format!("isoharness media exited {code}: {stderr}").into());
    }
    let mut written = stdout.lines().map(PathBuf::from);
    let iso = written.next().unwrap_or_default();
    if iso.file_name().and_then(|n| n.to_str()) != Some("realstack-linux.iso") {
        return Err(
            format!("isoharness media wrote {}, the scenario expects realstack-linux.iso", iso.display()).into()
        );
    }
    let virtio_win = written.next();
    if with_virtio_win && virtio_win.is_none() {
        return Err(format!("isoharness media --virtio-win wrote no driver ISO: {stdout}").into());
    }
    Ok(Media { iso, virtio_win })
}

/// Runs `isoharness build` of `scenario` on the real cloud (`--layout auto` where the domain XML can be read) and
/// returns its exit code and JSON report.
fn build_on_realstack(clouds: &Path, scenario: &Path, ledger: &Path, compute: Compute) -> Result<(i32, Value), Failed> {
    let started = std::time::Instant::now();
    let scenario = scenario.display().to_string();
    let ledger = ledger.display().to_string();
    let mut args = vec!["build", "--os-cloud", CLOUD, "--scenario", &scenario, "--ledger", &ledger, "--format", "json"];
    let xml_command = if compute == Compute::Libvirt { Some(domain_xml_command()?) } else { None };
    if let Some(command) = &xml_command {
        args.extend(["--domain-xml-command", command, "--layout", "auto"]);
    }
    let (code, stdout, stderr) = isoharness(clouds, &args)?;
    println!("realstack: isoharness build took {:.0} s", started.elapsed().as_secs_f64());
    let report = build_report(&stdout)
        .ok_or_else(|| format!("build printed no JSON report; stdout:\n{stdout}\nstderr:\n{stderr}"))?;
    Ok((code, report))
}

/// The report `build --format json` printed: its JSON lines are one `step` event per finished step, then the `report`.
fn build_report(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "report")
        .map(|event| event["report"].clone())
}

/// A build report's outcome and steps, for failure messages.
fn summary(report: &Value) -> String {
    let steps: Vec<String> = report["steps"]
        .as_array()
        .map(|s| s.iter().map(|s| format!("{} {} {}", s["step"], s["status"], s["detail"])).collect())
        .unwrap_or_default();
    format!("outcome {} ({}); steps:\n{}", report["outcome"], report["reason"], steps.join("\n"))
}

fn build_trial(clouds: &Path) -> Result<(), Failed> {
    let compute = Compute::from_env()?;
    let layout = layout_from_env(compute)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let media = media(dir.path(), clouds, layout != Layout::Stock)?;
    let scenario = dir.path().join("realstack-linux.toml");
    std::fs::write(&scenario, scenario_text(media.virtio_win.as_deref())).map_err(|e| e.to_string())?;
    let before = runtime.block_on(inventory(clouds))?;
    let (code, report) = build_on_realstack(clouds, &scenario, &dir.path().join("ledger.jsonl"), compute)?;
    let step = |name: &str| report["steps"].as_array().and_then(|s| s.iter().find(|s| s["step"] == name)).cloned();
    let install = step("install").ok_or("no install step")?;
    if install["status"] != "ok" || install["detail"] != "the guest powered off" {
        return Err(format!("the install should end with the guest powering off: {}", summary(&report)).into());
    }
    let validation = &report["validation"];
    let content = check(validation, "content").cloned().ok_or("no content check in the validation")?;
    let boot = check(validation, "boot").cloned().ok_or("no boot check in the validation")?;
    let content_detail = content["detail"].as_str().unwrap_or("");
    let boot_detail = boot["detail"].as_str().unwrap_or("");
    if layout == Layout::Stock {
        if report["outcome"] != "iso-copy" || code != 1 {
            return Err(
                format!("expected iso-copy with exit 1 (findings), got exit {code}: {}", summary(&report)).into()
            );
        }
        if !content_detail.contains("ISO 9660") {
            return Err(format!("the snapshot should hold the ISO: {content}").into());
        }
        // Proven an ISO copy by its content, the snapshot is not booted: it could only wait out the timeout.
        if boot["status"] != "skip" || !boot_detail.contains("ISO 9660") {
            return Err(format!("the ISO copy should not be booted: {boot}").into());
        }
    } else {
        if report["outcome"] != "image-ok" || code != 0 {
            return Err(format!("expected image-ok with exit 0, got exit {code}: {}", summary(&report)).into());
        }
        if content["status"] != "pass" || content_detail.contains("ISO 9660") {
            return Err(format!("the snapshot should hold the installed system: {content}").into());
        }
        if boot["status"] != "pass" || !boot["evidence"].to_string().contains("login:") {
            return Err(format!("the boot test should reach the installed system's login prompt: {boot}").into());
        }
    }
    if compute == Compute::Libvirt {
        check_real_domain_xml(clouds, &report, dir.path(), layout)?;
        mockstack_agrees(clouds, &scenario, &report, layout)?;
    }
    let cleanup = report["cleanup"].as_array().cloned().unwrap_or_default();
    if cleanup.iter().any(|l| l.as_str().is_some_and(|l| l.starts_with("could not"))) {
        return Err(format!("cleanup failed: {cleanup:?}").into());
    }
    nothing_left(&runtime, clouds, &before)
}

/// On a patched cloud whose VirtIO-win image is missing, the install server fails with the fault
/// naming the `[libvirt]` option (never a silent boot without drivers): the cloud rejected the
/// install (exit 1, a finding), and the build leaves nothing behind.
fn missing_virtio_win_trial(clouds: &Path) -> Result<(), Failed> {
    let compute = Compute::from_env()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    media(dir.path(), clouds, false)?;
    let scenario = dir.path().join("realstack-linux.toml");
    std::fs::write(&scenario, scenario_text(None)).map_err(|e| e.to_string())?;
    let before = runtime.block_on(inventory(clouds))?;
    let (code, report) = build_on_realstack(clouds, &scenario, &dir.path().join("ledger.jsonl"), compute)?;
    let reason = report["reason"].as_str().unwrap_or("");
    if code != 1 || report["outcome"] != "rejected" || !reason.contains("[libvirt] virtio_win_image") {
        return Err(format!(
            "a missing VirtIO-win image should fail the install server with the fault naming \
             [libvirt] virtio_win_image (outcome rejected, exit 1); got exit {code}: {}",
            summary(&report)
        )
        .into());
    }
    nothing_left(&runtime, clouds, &before)
}

/// The domain XML the build fetched from libvirtd is what Nova of `layout` writes for an ISO boot, and the
/// validator, told nothing, recognises it as that layout with no error; on stock Nova it says the snapshot takes
/// the ISO (DX031), on patched Nova it does not.
fn check_real_domain_xml(clouds: &Path, report: &Value, dir: &Path, layout: Layout) -> Result<(), Failed> {
    let xml = report["domain_xml"].as_str().ok_or("the build fetched no domain XML")?;
    if !xml.contains("<nova:instance") || !xml.contains("device='cdrom'") {
        return Err(format!("not the domain of a Nova ISO boot:\n{xml}").into());
    }
    let path = dir.join("domain.xml");
    std::fs::write(&path, xml).map_err(|e| e.to_string())?;
    let (code, stdout, stderr) =
        isoharness(clouds, &["check-xml", &path.display().to_string(), "--layout", "auto", "--format", "json"])?;
    let checked: Value =
        serde_json::from_str(&stdout).map_err(|e| format!("check-xml printed no JSON ({e}): {stdout}{stderr}"))?;
    let file = &checked["files"][0];
    let says_iso = file["findings"].as_array().is_some_and(|f| f.iter().any(|f| f["rule"] == "DX031"));
    if code != 0 || file["layout_detected"] != layout.as_str() || file["counts"]["error"] != 0 {
        return Err(format!(
            "check-xml should recognise {layout} Nova and find no error; got exit {code}: {checked}\n{xml}"
        )
        .into());
    }
    if says_iso != (layout == Layout::Stock) {
        return Err(format!(
            "check-xml should say the snapshot takes the ISO (DX031) exactly on stock Nova; layout {layout}: {checked}"
        )
        .into());
    }
    Ok(())
}

/// Uploads `qcow2` as a private Linux image, runs `validate-image` on it with a flavor made for
/// the purpose, deletes both, and returns the exit code and the JSON report.
fn validate_image_file(
    runtime: &tokio::runtime::Runtime,
    clouds: &Path,
    qcow2: &Path,
    ledger: &Path,
) -> Result<(i32, Value), Failed> {
    let image_id = runtime.block_on(async {
        let cloud = connect(clouds).await?;
        let glance = cloud.glance().await.map_err(|e| e.to_string())?;
        let new = harness::cloud::glance::NewImage {
            name: "realstack-iso-copy".into(),
            disk_format: Some("qcow2".into()),
            container_format: Some("bare".into()),
            visibility: Some("private".into()),
            min_disk: Some(1),
            min_ram: Some(512),
            properties: BTreeMap::from([
                ("os_type".to_string(), "linux".to_string()),
                ("os_distro".to_string(), "ubuntu".to_string()),
                ("image_type".to_string(), "image".to_string()),
            ]),
            ..Default::default()
        };
        let image = glance.create_image(&new).await.map_err(|e| e.to_string())?;
        glance.upload_file(&image.id, qcow2, None).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(image.id)
    })?;
    // The boot test needs a flavor; the cloud has none of its own.
    let flavor = runtime.block_on(async {
        let cloud = connect(clouds).await?;
        let nova = cloud.nova().await.map_err(|e| e.to_string())?;
        let new = harness::cloud::nova::NewFlavor {
            name: "realstack-validate".into(),
            ram: 512,
            vcpus: 1,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            is_public: true,
            id: None,
        };
        nova.create_flavor(&new).await.map(|f| f.id).map_err(|e| e.to_string())
    });
    let result = flavor.clone().map_err(Failed::from).and_then(|_| {
        isoharness(
            clouds,
            &[
                "validate-image",
                "--os-cloud",
                CLOUD,
                &image_id,
                "--expect-os",
                "linux",
                // The scenario's boot timeout: an ISO copy never shows a booted OS on real libvirt.
                "--boot-timeout",
                "60",
                "--ledger",
                &ledger.display().to_string(),
                "--format",
                "json",
            ],
        )
        .map_err(Failed::from)
    });
    runtime.block_on(async {
        let cloud = connect(clouds).await?;
        cloud.glance().await.map_err(|e| e.to_string())?.delete_image(&image_id).await.map_err(|e| e.to_string())?;
        if let Ok(id) = &flavor {
            cloud.nova().await.map_err(|e| e.to_string())?.delete_flavor(id).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    let (code, stdout, stderr) = result?;
    let report: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("validate-image printed no JSON report ({e}); stderr:\n{stderr}"))?;
    Ok((code, report))
}

/// The same scenario on an embedded mockstack with the real cloud's layout reaches the verdict the real libvirt
/// driver gave, fails the same validation checks, and renders the same devices: the same machine family, and disk
/// by disk in domain order the same kind, target, bus, read-only flag and instance-directory file, and the same
/// boot order.
fn mockstack_agrees(clouds: &Path, scenario: &Path, real: &Value, layout: Layout) -> Result<(), Failed> {
    let scenario = scenario.display().to_string();
    let (_, stdout, stderr) =
        isoharness(clouds, &["build", "--scenario", &scenario, "--layout", layout.as_str(), "--format", "json"])?;
    let mock =
        build_report(&stdout).ok_or_else(|| format!("the embedded build printed no JSON report; stderr:\n{stderr}"))?;
    let (mock_devices, real_devices) = (devices(&mock)?, devices(real)?);
    let (mock_failed, real_failed) = (failed_checks(&mock["validation"]), failed_checks(&real["validation"]));
    if mock["outcome"] != real["outcome"] || mock_failed != real_failed || mock_devices != real_devices {
        return Err(format!(
            "mockstack ({layout}) and Nova's libvirt driver disagree:\n  outcome {} / {}\n  failed checks \
             {mock_failed:?} / {real_failed:?}\n  devices {mock_devices:#?}\n      / {real_devices:#?}",
            mock["outcome"], real["outcome"],
        )
        .into());
    }
    Ok(())
}

/// The install domain of a build report, as the facts a layout fixes (`matrix::twin::domain_devices`).
fn devices(report: &Value) -> Result<Vec<String>, String> {
    let xml = report["domain_xml"].as_str().ok_or("no domain XML in the report")?;
    Ok(harness::matrix::twin::domain_devices(xml))
}

/// The ids of the checks a validation report (`isoharness.validate-image` JSON) failed, in its order.
fn failed_checks(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|c| {
            c.iter().filter(|c| c["status"] == "fail").map(|c| c["id"].as_str().unwrap_or("").to_string()).collect()
        })
        .unwrap_or_default()
}

/// The check `id` of a validation report.
fn check<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    report["checks"].as_array().and_then(|c| c.iter().find(|c| c["id"] == id))
}

/// Runs `qemu-img VERB` with the arguments `args` adds; an error unless it succeeds.
fn qemu_img(verb: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> Result<(), Failed> {
    let mut command = Command::new("qemu-img");
    command.arg(verb);
    let status = args(&mut command).status().map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !status.success() {
        return Err(format!("qemu-img {verb} failed: {status}").into());
    }
    Ok(())
}

fn validate_trial(clouds: &Path) -> Result<(), Failed> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let iso = media(dir.path(), clouds, false)?.iso;
    let before = runtime.block_on(inventory(clouds))?;
    // What the stock snapshot of an ISO boot is: the ISO as qcow2, turned into an image (step 7).
    let qcow2 = dir.path().join("iso-copy.qcow2");
    qemu_img("convert", |c| c.args(["-f", "raw", "-O", "qcow2"]).arg(&iso).arg(&qcow2))?;
    let ledger = dir.path().join("ledger.jsonl");
    let (code, report) = validate_image_file(&runtime, clouds, &qcow2, &ledger)?;
    let failed = failed_checks(&report);
    if code != 1 || failed != ["content"] {
        return Err(format!(
            "an ISO copy fails exactly `content` (exit 1), and is not booted; got exit {code}, failed {failed:?}: \
             {report}"
        )
        .into());
    }
    let boot_skipped = check(&report, "boot").is_some_and(|c| c["status"] == "skip");
    if !boot_skipped {
        return Err(format!("the ISO copy should not be booted: {report}").into());
    }
    for (id, wanted) in [("content", "ISO 9660"), ("boot", "ISO 9660"), ("real-format", "qcow2"), ("checksum", "md5")] {
        let detail = check(&report, id).map(|c| c["detail"].as_str().unwrap_or("").to_string()).unwrap_or_default();
        if !detail.contains(wanted) {
            return Err(format!("check `{id}` should mention `{wanted}`: {detail:?}").into());
        }
    }
    nothing_left(&runtime, clouds, &before)
}

/// A disk the ISO's tiny installer installed, under QEMU on this machine, passes every check, the
/// boot test on the cloud's real hypervisor included.
fn installed_disk_trial(clouds: &Path) -> Result<(), Failed> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let iso = media(dir.path(), clouds, false)?.iso;
    let before = runtime.block_on(inventory(clouds))?;
    let disk = dir.path().join("installed.qcow2");
    qemu_img("create", |c| c.args(["-q", "-f", "qcow2"]).arg(&disk).arg("1G"))?;
    Machine::install(dir.path(), &iso, &disk, std::time::Duration::from_secs(120))
        .map_err(|e| format!("the tiny installer: {e}"))?;
    let ledger = dir.path().join("ledger.jsonl");
    let (code, report) = validate_image_file(&runtime, clouds, &disk, &ledger)?;
    if code != 0 || !failed_checks(&report).is_empty() {
        return Err(format!("an installed disk passes validate-image (exit 0); got exit {code}: {report}").into());
    }
    let boot = check(&report, "boot").cloned();
    let evidence = boot.as_ref().map(|b| b["evidence"].to_string()).unwrap_or_default();
    if boot.as_ref().map(|b| &b["status"]) != Some(&Value::from("pass")) || !evidence.contains("login:") {
        return Err(format!("the boot test should see the installed system's login prompt: {boot:?}").into());
    }
    nothing_left(&runtime, clouds, &before)
}

/// The scenarios of the real matrix CI runs on each libvirt layout: between them every outcome kind a layout gives
/// (stock: iso-copy and no-target-disk; patched: image-ok and no-target-disk), a guest that loads viostor from a
/// CD-ROM, a floppy guest and a guest without a virtio driver.
const MATRIX_SUBSET: &str = "{ubuntu-24.04,windows-server-2012,windows-xp,rhel-4}";

/// `isoharness matrix --media generated` on the real cloud for [`MATRIX_SUBSET`]: every cell meets the rules and
/// agrees with the same cell on an embedded mockstack, and nothing is left behind.
fn matrix_subset_trial(clouds: &Path) -> Result<(), Failed> {
    let layout = layout_from_env(Compute::Libvirt)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let before = runtime.block_on(inventory(clouds))?;
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = scenarios.display().to_string();
    let xml = domain_xml_command()?;
    let args = ["matrix", "--os-cloud", "realstack", "--media", "generated", "--layout", layout.as_str()];
    let (code, stdout, stderr) = isoharness(
        clouds,
        &[
            &args[..],
            &["--scenarios", &scenarios, "--filter", MATRIX_SUBSET, "--domain-xml-command", &xml, "--jobs", "2"],
        ]
        .concat(),
    )?;
    if code != 0 {
        return Err(format!(
            "the real matrix subset on {layout} should pass and agree (exit 0), got {code}:\n{stdout}\n{stderr}"
        )
        .into());
    }
    nothing_left(&runtime, clouds, &before)
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // The trials share the one real cloud, and each checks that it leaves it as it found it.
    args.test_threads = Some(1);
    let clouds = std::env::var_os(ENV).map(PathBuf::from);
    if clouds.is_none() {
        println!(
            "realstack: {ENV} is not set, so these trials are ignored: bring the local real cloud up \
             (`cargo xtask realstack up`) and point {ENV} at its clouds.yaml, or run `cargo xtask test`"
        );
    }
    let trial = |name: &str, body: fn(&Path) -> Result<(), Failed>| {
        let clouds = clouds.clone();
        let ignored = clouds.is_none();
        let trial = Trial::test(name, move || match &clouds {
            Some(path) => body(path),
            None => Ok(()),
        });
        if ignored { trial.with_kind(format!("needs {ENV}")).with_ignored_flag(true) } else { trial }
    };
    let compute = Compute::from_env();
    let libvirt = compute == Ok(Compute::Libvirt);
    let patched = compute.and_then(layout_from_env).is_ok_and(|l| l != Layout::Stock);
    // A trial runs when the cloud is there and `runs_here` holds; otherwise it is listed as ignored, saying why.
    let only = |trial: Trial, runs_here: bool, why: String| {
        if runs_here || clouds.is_none() { trial } else { trial.with_kind(why).with_ignored_flag(true) }
    };
    let layout_independent = format!("needs {LAYOUT_ENV}=stock: it does not depend on the layout");
    let trials = vec![
        trial(
            "realstack: isoharness build of a Linux ISO gives the layout's verdict (stock: iso-copy, patched: \
             image-ok) and leaves nothing behind",
            build_trial,
        ),
        only(
            trial("realstack: isoharness validate-image finds the ISO copy", validate_trial),
            !patched,
            layout_independent.clone(),
        ),
        only(
            trial("realstack: validate-image passes an installed disk on the real hypervisor", installed_disk_trial),
            libvirt && !patched,
            format!("needs {COMPUTE_ENV}=libvirt and {LAYOUT_ENV}=stock"),
        ),
        only(
            trial(
                "realstack: the real matrix of a guest of every kind meets the rules and agrees with mockstack",
                matrix_subset_trial,
            ),
            libvirt,
            format!("needs {COMPUTE_ENV}=libvirt"),
        ),
        only(
            trial(
                "realstack: a patched Nova whose VirtIO-win image is missing faults the install, naming the option",
                missing_virtio_win_trial,
            ),
            patched,
            format!("needs {LAYOUT_ENV}=patched"),
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
