//! Acceptance of `build`: the whole workflow against mockstack, for a Linux and a Windows guest
//! on the stock and patched layouts, with the API call sequence, nothing left behind, a failure
//! injected mid-run, and a run killed with SIGKILL then cleaned up by `isoharness cleanup`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use guestsim::{Layout, OutcomeKind};
use harness::cloud::transfer::TransferDigest;
use harness::cloud::{ApiFailure, CloudError};
use harness::scenario::Scenario;
use harness::target::{Embedded, media_for};
use harness::workflow::ledger::Ledger;
use harness::workflow::{
    BuildOptions, DownloadError, Driver, FlavorInfo, ImageChange, ImageInfo, ImageRequest, InspectedDownload,
    ServerInfo, ServerRequest, StoppedBy, run_build,
};
use mockstack::{ClockMode, Config, MockStack};

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds `name` on a fresh embedded mockstack of `layout`; returns the report and the calls made.
async fn build(name: &str, layout: Layout) -> (harness::workflow::BuildReport, Vec<String>, Vec<String>) {
    let scenario = scenario(name);
    let embedded = Embedded::start(layout, &scenario.media.virtio_win_image).await.unwrap();
    let driver = embedded.driver().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.jsonl")).unwrap();
    let media = media_for(&scenario, true, dir.path()).unwrap();
    let options = BuildOptions::new("ih-test0001", dir.path());
    embedded.mock.state().journal().clear();
    let report = run_build(&driver, &ledger, &scenario, &media, &options).await;
    let calls =
        embedded.mock.state().journal().entries().iter().map(|e| format!("{} {}", e.service, e.call())).collect();
    let state = embedded.mock.state();
    let mut leftovers = state.leftovers("ih-");
    leftovers.extend(state.glance().inventory().into_iter().map(|(id, name)| format!("image {name:?} ({id})")));
    leftovers.extend(state.nova().server_ids().into_iter().map(|id| format!("server {id}")));
    leftovers.sort();
    leftovers.dedup();
    (report, calls, leftovers)
}

/// Collapses ids in paths so call sequences compare across runs.
fn shape(call: &str) -> String {
    let re = regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    re.replace_all(call, "{id}").into_owned()
}

/// The calls in order, with repeats (polls) collapsed into one.
fn sequence(calls: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for call in calls.iter().map(|c| shape(c)) {
        if out.last() != Some(&call) {
            out.push(call);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_follow_the_layout_for_linux_and_windows() {
    let cases = [
        ("ubuntu-24.04", Layout::Patched, Some(OutcomeKind::ImageOk)),
        ("ubuntu-24.04", Layout::Stock, Some(OutcomeKind::IsoCopy)),
        ("windows-server-2012", Layout::Patched, Some(OutcomeKind::ImageOk)),
        ("windows-server-2012", Layout::Stock, Some(OutcomeKind::NoTargetDisk)),
    ];
    for (name, layout, expected) in cases {
        let (report, calls, leftovers) = build(name, layout).await;
        assert_eq!(report.outcome, expected, "{name} on {layout}: {}\n{:#?}", report.reason, report.steps);
        assert!(leftovers.is_empty(), "{name} on {layout} left {leftovers:?}");
        assert!(report.cleanup.iter().all(|l| !l.starts_with("could not")), "{:?}", report.cleanup);
        assert!(!calls.is_empty());
    }
}

/// An embedded cloud's compute host is known: a build uploads the driver media that host attaches (the VirtIO-win
/// ISO unless stock, the floppy on patched-floppy) and not the others, which could not change the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_media_follow_what_the_embedded_host_attaches() {
    for (layout, iso, floppy) in
        [(Layout::Stock, false, false), (Layout::Patched, true, false), (Layout::PatchedFloppy, true, true)]
    {
        let (report, _, _) = build("ubuntu-24.04", layout).await;
        let step = report.steps.iter().find(|s| s.step == "driver-media").expect("a driver-media step");
        for (name, attached) in [("virtio-win", iso), ("virtio-win-floppy", floppy)] {
            let uploaded = step.detail.split("; ").any(|d| d.starts_with(&format!("{name}: uploaded")));
            assert_eq!(uploaded, attached, "{name} on {layout}: {}", step.detail);
        }
        let expected = [(Layout::Stock, OutcomeKind::IsoCopy), (Layout::Patched, OutcomeKind::ImageOk)];
        if let Some((_, outcome)) = expected.iter().find(|(l, _)| *l == layout) {
            assert_eq!(report.outcome, Some(*outcome), "{layout}: {}", report.reason);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_sequence_is_the_seven_steps() {
    let (report, calls, _) = build("ubuntu-24.04", Layout::Patched).await;
    assert_eq!(report.outcome, Some(OutcomeKind::ImageOk), "{}", report.reason);
    let seq = sequence(&calls);
    // Each step's characteristic call, in the order the article gives them.
    let milestones = [
        "image POST /v2/images",
        "image PUT /v2/images/{id}/file",
        "compute POST /v2.1/flavors",
        "compute POST /v2.1/servers",
        "compute POST /v2.1/servers/{id}/remote-consoles",
        "compute POST /v2.1/servers/{id}/action",
        "image GET /v2/images/{id}",
        "image PATCH /v2/images/{id}",
        "image GET /v2/images/{id}/file",
        "compute DELETE /v2.1/servers/{id}",
        "image DELETE /v2/images/{id}",
        "compute DELETE /v2.1/flavors/{id}",
    ];
    let mut at = 0;
    for milestone in milestones {
        let found = seq[at..].iter().position(|c| c == milestone);
        assert!(found.is_some(), "`{milestone}` missing after position {at} in:\n{}", seq.join("\n"));
        at += found.unwrap_or(0);
    }
    // The server is never deleted before its snapshot is active.
    let snapshot_active = seq.iter().position(|c| c == "image PATCH /v2/images/{id}").unwrap();
    let first_delete = seq.iter().position(|c| c == "compute DELETE /v2.1/servers/{id}").unwrap();
    assert!(first_delete > snapshot_active);
}

/// A driver that fails one call, as a cloud might in the middle of a run.
struct FailingSnapshot<D>(D);

impl<D: Driver> Driver for FailingSnapshot<D> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
    async fn sleep(&self, d: Duration) {
        self.0.sleep(d).await
    }
    fn resources_outlive_process(&self) -> bool {
        self.0.resources_outlive_process()
    }
    async fn images_named(&self, name: &str) -> Result<Vec<ImageInfo>, CloudError> {
        self.0.images_named(name).await
    }
    async fn image(&self, id: &str) -> Result<Option<ImageInfo>, CloudError> {
        self.0.image(id).await
    }
    async fn create_image(&self, image: &ImageRequest) -> Result<ImageInfo, CloudError> {
        self.0.create_image(image).await
    }
    async fn upload_image(&self, id: &str, file: &Path) -> Result<TransferDigest, CloudError> {
        self.0.upload_image(id, file).await
    }
    async fn upload_image_known(&self, id: &str, file: &Path, md5: &str) -> Result<TransferDigest, CloudError> {
        self.0.upload_image_known(id, file, md5).await
    }
    async fn download_and_inspect(&self, id: &str, scratch_dir: &Path) -> Result<InspectedDownload, DownloadError> {
        self.0.download_and_inspect(id, scratch_dir).await
    }
    async fn check_readable(&self, file: &Path) -> std::io::Result<()> {
        self.0.check_readable(file).await
    }
    async fn md5_of_file(&self, file: &Path) -> std::io::Result<String> {
        self.0.md5_of_file(file).await
    }
    async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<ImageInfo, CloudError> {
        self.0.update_image(id, changes).await
    }
    async fn delete_image(&self, id: &str) -> Result<(), CloudError> {
        self.0.delete_image(id).await
    }
    async fn flavors(&self) -> Result<Vec<FlavorInfo>, CloudError> {
        self.0.flavors().await
    }
    async fn create_flavor(&self, flavor: &FlavorInfo) -> Result<FlavorInfo, CloudError> {
        self.0.create_flavor(flavor).await
    }
    async fn delete_flavor(&self, id: &str) -> Result<(), CloudError> {
        self.0.delete_flavor(id).await
    }
    async fn create_server(&self, server: &ServerRequest) -> Result<String, CloudError> {
        self.0.create_server(server).await
    }
    async fn server(&self, id: &str) -> Result<Option<ServerInfo>, CloudError> {
        self.0.server(id).await
    }
    async fn servers_named(&self, name: &str) -> Result<Vec<ServerInfo>, CloudError> {
        self.0.servers_named(name).await
    }
    async fn console_log(&self, id: &str) -> Result<String, CloudError> {
        self.0.console_log(id).await
    }
    async fn console_url(&self, id: &str) -> Result<Option<String>, CloudError> {
        self.0.console_url(id).await
    }
    async fn snapshot(&self, _server_id: &str, _name: &str) -> Result<String, CloudError> {
        Err(CloudError::Server(Box::new(ApiFailure {
            method: "POST".into(),
            url: "/servers/{id}/action".into(),
            status: 502,
            request_id: None,
            message: "injected: the connection dropped during createImage".into(),
        })))
    }
    async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        self.0.delete_server(id).await
    }
    async fn domain_xml(&self, server: &ServerInfo) -> Result<Option<String>, CloudError> {
        self.0.domain_xml(server).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_run_still_cleans_up() {
    let scenario = scenario("windows-server-2012");
    let embedded = Embedded::start(Layout::Patched, &scenario.media.virtio_win_image).await.unwrap();
    let driver = FailingSnapshot(embedded.driver().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.jsonl");
    let ledger = Ledger::open(&ledger_path).unwrap();
    let media = media_for(&scenario, true, dir.path()).unwrap();
    let report = run_build(&driver, &ledger, &scenario, &media, &BuildOptions::new("ih-fail0001", dir.path())).await;
    assert_eq!(report.outcome, None);
    assert_eq!(report.stopped_by, Some(StoppedBy::Cloud), "a server error stops the run as the cloud's failure");
    assert!(report.reason.contains("injected"), "{}", report.reason);
    assert_eq!(embedded.mock.state().leftovers("ih-"), Vec::<String>::new());
    let live = Ledger::live(&ledger_path).unwrap();
    assert!(live.is_empty(), "the ledger still lists live resources: {live:?}\n{:?}", report.cleanup);
}

/// An upload that skips hashing because the run knows the file's md5 is still checked against what Glance stored:
/// a known md5 that is wrong stops the build, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_md5_that_glance_does_not_confirm_stops_the_build() {
    let scenario = scenario("ubuntu-24.04");
    let embedded = Embedded::start(Layout::Patched, &scenario.media.virtio_win_image).await.unwrap();
    let driver = embedded.driver().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.jsonl")).unwrap();
    let mut media = media_for(&scenario, true, dir.path()).unwrap();
    let iso = media.os_iso.clone().unwrap();
    let known = media.known_md5.get(&iso).expect("the generated ISO's md5");
    assert_eq!(known, &harness::cloud::transfer::md5_file(&iso).unwrap(), "the md5 of the ISO");
    media.known_md5.insert(iso, "0".repeat(32));
    let report = run_build(&driver, &ledger, &scenario, &media, &BuildOptions::new("ih-md5x0001", dir.path())).await;
    assert_eq!(report.outcome, None);
    assert_eq!(report.stopped_by, Some(StoppedBy::Cloud), "the cloud stored other bytes than were sent");
    assert!(report.reason.contains("did not verify"), "{}", report.reason);
    assert_eq!(embedded.mock.state().leftovers("ih-"), Vec::<String>::new());
}

/// A scenario naming an installer image the cloud does not have stops the run as bad input, not as the cloud's
/// failure: the exit status tells the user to fix the scenario rather than to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installer_image_the_cloud_lacks_is_bad_input() {
    let scenario = scenario("ubuntu-24.04");
    let embedded = Embedded::start(Layout::Patched, &scenario.media.virtio_win_image).await.unwrap();
    let driver = embedded.driver().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.jsonl")).unwrap();
    let mut media = media_for(&scenario, true, dir.path()).unwrap();
    media.os_image = Some("no-such-installer".into());
    let report = run_build(&driver, &ledger, &scenario, &media, &BuildOptions::new("ih-noimg001", dir.path())).await;
    assert_eq!(report.outcome, None);
    assert_eq!(report.stopped_by, Some(StoppedBy::Input));
    assert!(report.reason.contains("no-such-installer"), "{}", report.reason);
    assert_eq!(embedded.mock.state().leftovers("ih-"), Vec::<String>::new());
}

fn isoharness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isoharness"))
}

/// Waits until the ledger shows a created server, so the kill lands mid-install.
fn wait_for_server(ledger: &Path) {
    for _ in 0..600 {
        let text = std::fs::read_to_string(ledger).unwrap_or_default();
        if text.lines().any(|l| l.contains("\"kind\":\"server\"") && l.contains("\"event\":\"created\"")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no server appeared in {}", ledger.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_cleaned_up_by_the_cleanup_command() {
    // A real-time-ish clock: the install takes long enough to kill the build in the middle.
    let config = Config { clock: ClockMode::Scaled(10.0), ..Config::default() };
    let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, mock.clouds_yaml()).unwrap();
    let ledger: PathBuf = dir.path().join("ledger.jsonl");
    let scenario_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ubuntu-24.04.toml");
    // The real-cloud path needs the installer as a file: write it with `isoharness media`.
    let media_dir = dir.path().join("media");
    // And the VirtIO-win ISO: the patched host attaches it to every ISO boot, and faults the build without it.
    let out = isoharness()
        .args(["media", "--virtio-win", "full", "--scenario"])
        .arg(&scenario_file)
        .arg("--out")
        .arg(&media_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    let virtio = written.lines().find(|l| !l.ends_with("ubuntu-24.04.iso")).expect("the VirtIO-win ISO's path");
    let text = std::fs::read_to_string(&scenario_file).unwrap().replace(
        "[media]\n",
        &format!(
            "[media]\niso = {:?}\nvirtio_win_iso = {virtio:?}\n",
            media_dir.join("ubuntu-24.04.iso").display().to_string()
        ),
    );
    let scenario_copy = dir.path().join("ubuntu-24.04.toml");
    std::fs::write(&scenario_copy, text).unwrap();

    let env = |cmd: &mut Command| {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OS_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("OS_CLIENT_CONFIG_FILE", &clouds).env("HOME", dir.path());
    };
    let mut build = isoharness();
    env(&mut build);
    build
        .args(["build", "--os-cloud", "mockstack", "--no-boot", "--scenario"])
        .arg(&scenario_copy)
        .arg("--ledger")
        .arg(&ledger)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = build.spawn().unwrap();
    tokio::task::block_in_place(|| wait_for_server(&ledger));
    child.kill().unwrap(); // SIGKILL: no cleanup can run in the process
    child.wait().unwrap();
    assert!(!mock.state().leftovers("ih-").is_empty(), "the killed run should have left resources");

    let mut cleanup = isoharness();
    env(&mut cleanup);
    let out = tokio::task::block_in_place(|| {
        cleanup.args(["cleanup", "--os-cloud", "mockstack", "--ledger"]).arg(&ledger).output().unwrap()
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mock.state().leftovers("ih-"), Vec::<String>::new(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(Ledger::live(&ledger).unwrap().is_empty());
}

/// The domain XML comes through the client's request layer like every call: retried, and in the call log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_xml_is_fetched_through_the_call_log() {
    let scenario = scenario("ubuntu-24.04");
    let embedded = Embedded::start(Layout::Patched, &scenario.media.virtio_win_image).await.unwrap();
    let driver = embedded.driver().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.jsonl")).unwrap();
    let media = media_for(&scenario, true, dir.path()).unwrap();
    let report = run_build(&driver, &ledger, &scenario, &media, &BuildOptions::new("ih-test0004", dir.path())).await;
    assert!(report.domain_xml.as_deref().is_some_and(|x| x.contains("<domain")), "{}", report.reason);
    let fetched: Vec<_> = driver
        .cloud()
        .call_log()
        .records()
        .into_iter()
        .filter(|r| r.service == "mockstack" && r.url.ends_with("/domain.xml"))
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0].status, Some(200));
}
