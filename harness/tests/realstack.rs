//! `isoharness build` and `isoharness validate-image` against the local real cloud (`cargo xtask realstack up`): the workflow completes, the verdict fits what the compute driver does, and nothing is left behind.
//!
//! The real cloud runs stock Nova with one of two compute drivers (`ISOHARNESS_REALSTACK_COMPUTE`):
//! `fake`, the project's driver that behaves like the libvirt driver for an ISO boot, or `libvirt`,
//! Nova's own libvirt driver on libvirtd and QEMU, where the ISO's tiny installer really runs,
//! installs onto the flavor's ephemeral disk and powers the guest off. Either way the snapshot is
//! the ISO (as qcow2), so the right verdict is `iso-copy`, and a server booted from it shows no
//! booted OS. With libvirt the build also fetches the real domain XML (`virsh dumpxml`, through
//! `ISOHARNESS_REALSTACK_LIBVIRT_URI`), which the validator must recognise as stock Nova's, and
//! validate-image must pass a disk the tiny installer installed. Without
//! `ISOHARNESS_REALSTACK_CLOUDS` (a clouds.yaml with the cloud `realstack`) the trials are listed
//! as ignored, with the reason printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use guestsim::media::qemu::Machine;
use harness::cloud::config::{ConfigEnv, ConfigRequest, DiskFiles, resolve};
use harness::cloud::glance::ImageQuery;
use harness::cloud::{ClientOptions, Cloud};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const ENV: &str = "ISOHARNESS_REALSTACK_CLOUDS";
const COMPUTE_ENV: &str = "ISOHARNESS_REALSTACK_COMPUTE";
const LIBVIRT_URI_ENV: &str = "ISOHARNESS_REALSTACK_LIBVIRT_URI";
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

    /// What the boot test reports for a disk holding only the ISO. The fake driver writes
    /// SeaBIOS's `No bootable device.` to the console log; real SeaBIOS prints it on the VGA
    /// screen only, so on libvirt the serial console stays silent until the boot test gives up.
    fn unbootable_detail(self) -> &'static str {
        match self {
            Compute::Fake => "no bootable device",
            Compute::Libvirt => "no sign of a booted OS",
        }
    }
}

/// `--domain-xml-command` for the libvirt mode: virsh against the cloud's own libvirtd.
fn domain_xml_command() -> Result<String, String> {
    let uri = std::env::var(LIBVIRT_URI_ENV).map_err(|_| format!("{COMPUTE_ENV}=libvirt needs {LIBVIRT_URI_ENV}"))?;
    Ok(format!("virsh -c '{uri}' dumpxml {{instance}}"))
}

/// The guest whose installer ISO `isoharness media` writes.
const GUEST: &str = "name=\"Realstack Linux\"; family=\"linux\"; release=\"1\"; distro=\"ubuntu\"; arch=\"x86_64\"; \
                     virtio_storage=\"built-in\"; firmware=\"bios\"; min_ram_mb=512; min_disk_gb=1; \
                     install_seconds=60; boot_seconds=20; agent=\"cloud-init\"";

const SCENARIO: &str = r#"# A small Linux install on the local real cloud (written by harness/tests/realstack.rs).
[scenario]
description = "a Linux installer ISO booted on stock Nova"
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
agent = "cloud-init"

[media]
iso = "realstack-linux.iso"

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
boot_timeout_s = 60
"#;

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

fn media(dir: &Path, clouds: &Path) -> Result<PathBuf, Failed> {
    let out = dir.display().to_string();
    let (code, stdout, stderr) = isoharness(clouds, &["media", "--guest", GUEST, "--out", &out])?;
    if code != 0 {
        return Err(format!("isoharness media exited {code}: {stderr}").into());
    }
    let iso = PathBuf::from(stdout.lines().next().unwrap_or_default());
    if iso.file_name().and_then(|n| n.to_str()) != Some("realstack-linux.iso") {
        return Err(
            format!("isoharness media wrote {}, the scenario expects realstack-linux.iso", iso.display()).into()
        );
    }
    Ok(iso)
}

fn build_trial(clouds: &Path) -> Result<(), Failed> {
    let compute = Compute::from_env()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    media(dir.path(), clouds)?;
    let scenario = dir.path().join("realstack-linux.toml");
    std::fs::write(&scenario, SCENARIO).map_err(|e| e.to_string())?;
    let ledger = dir.path().join("ledger.jsonl");
    let before = runtime.block_on(inventory(clouds))?;
    let started = std::time::Instant::now();
    let scenario = scenario.display().to_string();
    let ledger = ledger.display().to_string();
    let mut args = vec!["build", "--os-cloud", CLOUD, "--scenario", &scenario, "--ledger", &ledger, "--format", "json"];
    let xml_command = if compute == Compute::Libvirt { Some(domain_xml_command()?) } else { None };
    if let Some(command) = &xml_command {
        args.extend(["--domain-xml-command", command]);
    }
    let (code, stdout, stderr) = isoharness(clouds, &args)?;
    println!("realstack: isoharness build took {:.0} s", started.elapsed().as_secs_f64());
    // `build --format json` prints JSON lines: one `step` event per finished step, then the `report`.
    let report: Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "report")
        .map(|event| event["report"].clone())
        .ok_or_else(|| format!("build printed no JSON report; stdout:\n{stdout}\nstderr:\n{stderr}"))?;
    let summary = |report: &Value| {
        let steps: Vec<String> = report["steps"]
            .as_array()
            .map(|s| s.iter().map(|s| format!("{} {} {}", s["step"], s["status"], s["detail"])).collect())
            .unwrap_or_default();
        format!("outcome {} ({}); steps:\n{}", report["outcome"], report["reason"], steps.join("\n"))
    };
    if report["outcome"] != "iso-copy" {
        return Err(format!("expected the verdict iso-copy, got {}", summary(&report)).into());
    }
    if code != 1 {
        return Err(format!("an iso-copy build exits 1 (findings), it exited {code}").into());
    }
    let step = |name: &str| report["steps"].as_array().and_then(|s| s.iter().find(|s| s["step"] == name)).cloned();
    let install = step("install").ok_or("no install step")?;
    if install["status"] != "ok" || install["detail"] != "the guest powered off" {
        return Err(format!("the install should end with the guest powering off: {}", summary(&report)).into());
    }
    let content = report["validation"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "content"))
        .cloned()
        .ok_or("no content check in the validation")?;
    if !content["detail"].as_str().unwrap_or("").contains("ISO 9660") {
        return Err(format!("the snapshot should hold the ISO: {content}").into());
    }
    let boot = report["validation"]["checks"].as_array().and_then(|c| c.iter().find(|c| c["id"] == "boot")).cloned();
    let boot_failed = boot.as_ref().is_some_and(|b| {
        b["status"] == "fail" && b["detail"].as_str().is_some_and(|d| d.starts_with(compute.unbootable_detail()))
    });
    if !boot_failed {
        return Err(format!("booting the snapshot should show `{}`: {boot:?}", compute.unbootable_detail()).into());
    }
    if compute == Compute::Libvirt {
        check_real_domain_xml(clouds, &report, dir.path())?;
        mockstack_agrees(clouds, &scenario, &report)?;
    }
    let cleanup = report["cleanup"].as_array().cloned().unwrap_or_default();
    if cleanup.iter().any(|l| l.as_str().is_some_and(|l| l.starts_with("could not"))) {
        return Err(format!("cleanup failed: {cleanup:?}").into());
    }
    nothing_left(&runtime, clouds, &before)
}

/// The domain XML the build fetched from libvirtd is what stock Nova writes for an ISO boot, and
/// the validator, told nothing, recognises it as such.
fn check_real_domain_xml(clouds: &Path, report: &Value, dir: &Path) -> Result<(), Failed> {
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
    if code != 0 || file["layout_detected"] != "stock" || file["counts"]["error"] != 0 || !says_iso {
        return Err(format!(
            "check-xml should detect stock Nova, find no error and say the snapshot takes the ISO (DX031); \
             got exit {code}: {checked}"
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

/// The same scenario on an embedded mockstack with the stock layout reaches the verdict the real
/// libvirt driver gave, fails the same validation checks, and renders the same disks.
fn mockstack_agrees(clouds: &Path, scenario: &str, real: &Value) -> Result<(), Failed> {
    let (_, stdout, stderr) =
        isoharness(clouds, &["build", "--scenario", scenario, "--layout", "stock", "--format", "json"])?;
    let mock = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "report")
        .map(|event| event["report"].clone())
        .ok_or_else(|| format!("the embedded build printed no JSON report; stderr:\n{stderr}"))?;
    let disks = |report: &Value| -> Result<Vec<String>, String> {
        let xml = report["domain_xml"].as_str().ok_or("no domain XML in the report")?;
        let domain = harness::domxml::parse(xml).map_err(|e| e.to_string())?;
        // The machine type without its QEMU version: pc-i440fx-7.2 and pc-i440fx-8.2 are one layout.
        let machine = domain.os.as_ref().and_then(|os| os.machine.as_deref()).unwrap_or("none");
        let mut summary = vec![format!("machine {}", machine.rsplit_once('-').map_or(machine, |(family, _)| family))];
        summary.extend(domain.disks.iter().map(|disk| {
            let file =
                disk.source.as_ref().and_then(|s| s.value.path()).and_then(|p| p.rsplit('/').next()).unwrap_or("");
            format!(
                "{:?} {} {} readonly={} {}",
                disk.device,
                disk.target_dev().unwrap_or("?"),
                disk.bus().unwrap_or("?"),
                disk.readonly,
                file
            )
        }));
        Ok(summary)
    };
    let (mock_disks, real_disks) = (disks(&mock)?, disks(real)?);
    let (mock_failed, real_failed) = (failed_checks(&mock["validation"]), failed_checks(&real["validation"]));
    if mock["outcome"] != real["outcome"] || mock_failed != real_failed || mock_disks != real_disks {
        return Err(format!(
            "mockstack (stock) and Nova's libvirt driver disagree:\n  outcome {} / {}\n  failed checks {mock_failed:?} / \
             {real_failed:?}\n  disks {mock_disks:?}\n      / {real_disks:?}",
            mock["outcome"], real["outcome"],
        )
        .into());
    }
    Ok(())
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
    let compute = Compute::from_env()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let iso = media(dir.path(), clouds)?;
    let before = runtime.block_on(inventory(clouds))?;
    // What the stock snapshot of an ISO boot is: the ISO as qcow2, turned into an image (step 7).
    let qcow2 = dir.path().join("iso-copy.qcow2");
    qemu_img("convert", |c| c.args(["-f", "raw", "-O", "qcow2"]).arg(&iso).arg(&qcow2))?;
    let ledger = dir.path().join("ledger.jsonl");
    let (code, report) = validate_image_file(&runtime, clouds, &qcow2, &ledger)?;
    let failed = failed_checks(&report);
    if code != 1 || failed != ["content", "boot"] {
        return Err(format!(
            "an ISO copy fails exactly `content` and `boot` (exit 1); got exit {code}, failed {failed:?}: {report}"
        )
        .into());
    }
    for (id, wanted) in
        [("content", "ISO 9660"), ("boot", compute.unbootable_detail()), ("real-format", "qcow2"), ("checksum", "md5")]
    {
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
    let iso = media(dir.path(), clouds)?;
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

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // Both trials use the one real cloud, and each checks that it leaves it as it found it.
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
    let mut trials = vec![
        trial("realstack: isoharness build of a Linux ISO gives iso-copy and leaves nothing behind", build_trial),
        trial("realstack: isoharness validate-image finds the ISO copy", validate_trial),
    ];
    let libvirt = Compute::from_env() == Ok(Compute::Libvirt);
    let installed =
        trial("realstack: validate-image passes an installed disk on the real hypervisor", installed_disk_trial);
    trials.push(if libvirt || clouds.is_none() {
        installed
    } else {
        installed.with_kind(format!("needs {COMPUTE_ENV}=libvirt")).with_ignored_flag(true)
    });
    libtest_mimic::run(&args, trials).exit_code()
}
