//! `--layout auto` through the `isoharness` binary, against a mockstack served as a real cloud (clouds.yaml, real
//! time on a fast clock): the layout recognised from the install server's domain XML, fetched the way a real cloud's
//! is (`--domain-xml-command`, here curl on the mock's admin route instead of `virsh dumpxml`), or read from
//! `--domain-xml-file`; auto without a domain XML source, or on the embedded mockstack, is bad input; a domain that is
//! no Nova layout stops the run with check-xml's findings and leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use guestsim::Layout;
use harness::cloud::config::{ConfigEnv, ConfigRequest, resolve};
use harness::cloud::{ClientOptions, Cloud};
use harness::scenario::VirtioWinBuild;
use mockstack::{ClockMode, Config, MockStack};
use serde_json::Value;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A Linux guest that installs in a minute of the mock's time.
const SCENARIO: &str = r#"[scenario]
description = "a Linux installer ISO on a mockstack served as a real cloud"

[guest]
name = "Served Linux"
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
iso = "served-linux.iso"
# A patched cloud attaches its VirtIO-win image to every ISO boot: the build uploads it when the cloud has none.
virtio_win_iso = "virtio-win.iso"

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

/// A mockstack of `layout` served on 127.0.0.1 like a real cloud, a clouds.yaml naming it `mockstack`, a scenario
/// directory with its media, and an admin token for the domain XML command.
struct Served {
    mock: MockStack,
    dir: tempfile::TempDir,
    token: String,
}

impl Served {
    async fn start(layout: Layout) -> Served {
        // Fast enough that a one-minute install passes between two of the client's polls.
        let config = Config { clock: ClockMode::Scaled(200.0), layout, ..Config::default() };
        let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), mock.clouds_yaml()).unwrap();
        let scenarios = dir.path().join("scenarios");
        std::fs::create_dir(&scenarios).unwrap();
        std::fs::write(scenarios.join("served-linux.toml"), SCENARIO).unwrap();
        let scenario = harness::scenario::Scenario::load(&scenarios.join("served-linux.toml")).unwrap();
        harness::target::generate_installer(&scenario.guest, &scenarios.join("served-linux.iso")).unwrap();
        harness::target::generate_virtio_win(VirtioWinBuild::Full, &scenarios.join("virtio-win.iso")).unwrap();
        let token = admin_token(&mock).await;
        Served { mock, dir, token }
    }

    fn scenario(&self) -> PathBuf {
        self.dir.path().join("scenarios/served-linux.toml")
    }

    /// What `virsh -c URI dumpxml {instance}` is to a real cloud: the mock's admin route, which takes the instance
    /// name as virsh does.
    fn domain_xml_command(&self) -> String {
        format!(
            "curl -sSf -H 'X-Auth-Token: {}' {}/mockstack/servers/{{instance}}/domain.xml",
            self.token,
            self.mock.url()
        )
    }

    /// `isoharness` with this cloud's clouds.yaml and no other cloud in its environment.
    fn isoharness(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_isoharness"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OS_") {
                command.env_remove(key);
            }
        }
        let home = self.dir.path();
        command
            .env("HOME", home)
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("OS_CLIENT_CONFIG_FILE", home.join("clouds.yaml"))
            .current_dir(root())
            .arg(args[0])
            .arg("--ledger")
            .arg(home.join("ledger.jsonl"))
            .args(&args[1..]);
        command
    }

    /// What the runs left in the cloud: every server, and every image.
    fn leftovers(&self) -> Vec<String> {
        let state = self.mock.state();
        let mut left: Vec<String> = state.nova().server_ids().into_iter().map(|id| format!("server {id}")).collect();
        left.extend(state.glance().inventory().into_iter().map(|(id, name)| format!("image {name:?} ({id})")));
        left.extend(state.leftovers("ih-"));
        left
    }
}

async fn admin_token(mock: &MockStack) -> String {
    let vars: BTreeMap<String, String> = [
        ("OS_AUTH_URL", mock.auth_url().as_str()),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", "mockstack-admin"),
        ("OS_PROJECT_NAME", "admin"),
        ("OS_USER_DOMAIN_ID", "default"),
        ("OS_PROJECT_DOMAIN_ID", "default"),
        ("OS_IDENTITY_API_VERSION", "3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let env = ConfigEnv { vars, current_dir: PathBuf::from("/nonexistent"), home_dir: None };
    let config = resolve(&ConfigRequest::default(), &env, &|_: &Path| None).unwrap();
    let cloud = Cloud::connect(config, ClientOptions::default()).await.unwrap();
    cloud.token().await.unwrap().value.expose().to_string()
}

/// The build's JSON report (the last line of `--format json`).
fn json_report(out: &Output) -> Value {
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no report: {}", show(out)));
    let event: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {}", show(out)));
    event["report"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_recognises_a_stock_and_a_patched_cloud_from_the_install_servers_domain_xml() {
    // Stock: auto is the default with a domain XML source; the snapshot is the ISO (a finding).
    let served = Served::start(Layout::Stock).await;
    let (scenario, command) = (served.scenario(), served.domain_xml_command());
    let args = ["build", "--os-cloud", "mockstack", "--no-boot", "--format", "json", "--domain-xml-command", &command];
    let out = served.isoharness(&args).arg("--scenario").arg(&scenario).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "iso-copy: {}", show(&out));
    let report = json_report(&out);
    assert_eq!(report["outcome"], "iso-copy", "{report}");
    assert_eq!(report["layout"]["layout"], "stock", "{report}");
    assert_eq!(report["layout"]["source"], "recognised", "{report}");
    let server = report["layout"]["server"].as_str().unwrap();
    assert!(server.starts_with("ih-") && server.ends_with("-install"), "{server}");
    assert_eq!(served.leftovers(), Vec::<String>::new());

    // The matrix: the first cell recognises the layout, every cell's expectation is stock's.
    let scenarios = served.dir.path().join("scenarios");
    let out = served
        .isoharness(&["matrix", "--os-cloud", "mockstack", "--format", "json", "--domain-xml-command", &command])
        .arg("--scenarios")
        .arg(&scenarios)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let matrix: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(matrix["layout_used"]["layout"], "stock", "{matrix}");
    assert_eq!(matrix["layout_used"]["source"], "recognised", "{matrix}");
    assert_eq!(matrix["cells"][0]["layout"], "stock", "{matrix}");
    assert_eq!(matrix["cells"][0]["expected"]["kind"], "iso-copy", "{matrix}");
    served.mock.shutdown().await.unwrap();

    // Patched, `--layout auto` given, the human report.
    let served = Served::start(Layout::Patched).await;
    let (scenario, command) = (served.scenario(), served.domain_xml_command());
    let args = ["build", "--os-cloud", "mockstack", "--no-boot", "--layout", "auto", "--domain-xml-command", &command];
    let out = served.isoharness(&args).arg("--scenario").arg(&scenario).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "image-ok: {}", show(&out));
    let stdout = text(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("layout: ")).unwrap_or_else(|| panic!("{}", show(&out)));
    assert!(line.starts_with("layout: patched (recognised from ih-"), "{line}");
    assert!(line.ends_with("-install's domain XML)"), "{line}");
    assert!(stdout.contains("outcome: image-ok"), "{stdout}");
    assert_eq!(served.leftovers(), Vec::<String>::new());
    served.mock.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_needs_a_domain_xml_source_and_a_real_cloud() {
    let served = Served::start(Layout::Patched).await;
    let scenario = served.scenario();
    let out = served
        .isoharness(&["build", "--os-cloud", "mockstack", "--layout", "auto"])
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no domain XML source is given"), "{stderr}");
    assert!(stderr.contains("--domain-xml-command CMD") && stderr.contains("--layout NAME"), "{stderr}");
    let scenarios = served.dir.path().join("scenarios");
    let out = served.isoharness(&["matrix", "--os-cloud", "mockstack", "--scenarios"]).arg(&scenarios).output().await;
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("give --layout NAME"), "{}", show(&out));
    assert_eq!(served.leftovers(), Vec::<String>::new(), "nothing was created");

    // The embedded mockstack: its layout is chosen, there is nothing to recognise.
    let mut embedded = served.isoharness(&["build", "--layout", "auto", "--scenario", "scenarios/ubuntu-24.04.toml"]);
    let out = embedded.env_remove("OS_CLIENT_CONFIG_FILE").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("the embedded mockstack has nothing to recognise"), "{}", show(&out));
    let mut embedded = served.isoharness(&["matrix", "--layout", "auto"]);
    let out = embedded.env_remove("OS_CLIENT_CONFIG_FILE").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("all three without one"), "{}", show(&out));
    served.mock.shutdown().await.unwrap();
}

/// A libvirt domain no Nova layout gives an ISO boot: one virtio disk, no CD-ROM.
const NOT_NOVA: &str = "<domain type='kvm'>
  <name>web-1</name>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web-1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecognised_domain_stops_the_run_with_the_findings_and_leaves_nothing_behind() {
    let served = Served::start(Layout::Patched).await;
    let xml = served.dir.path().join("web-1.xml");
    std::fs::write(&xml, NOT_NOVA).unwrap();
    let scenario = served.scenario();
    let out = served
        .isoharness(&["build", "--os-cloud", "mockstack", "--no-boot", "--domain-xml-file"])
        .arg(&xml)
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad input: {}", show(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("outcome: none: bad input: the layout of ih-"), "{}", show(&out));
    assert!(stdout.contains("domain XML is not recognised"), "{}", show(&out));
    assert!(stdout.contains("warning[DX039]"), "check-xml's finding: {stdout}");
    assert!(stdout.contains("detected no known layout"), "{stdout}");
    assert!(!stdout.contains("snapshot "), "the build stopped before its install: {stdout}");
    assert_eq!(served.leftovers(), Vec::<String>::new());

    let scenarios = served.dir.path().join("scenarios");
    let out = served
        .isoharness(&["matrix", "--os-cloud", "mockstack", "--domain-xml-file"])
        .arg(&xml)
        .arg("--scenarios")
        .arg(&scenarios)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: served-linux: the layout of ih-"), "{stderr}");
    assert!(stderr.contains("warning[DX039]"), "{stderr}");
    assert_eq!(text(&out.stdout), "", "no report");
    assert_eq!(served.leftovers(), Vec::<String>::new());
    served.mock.shutdown().await.unwrap();
}
