//! The `isoharness` command line as a user meets it: exit statuses (a cloud that refuses, a bad scenario, findings),
//! each command's help, reports on stdout and errors on stderr, the matrix outside the repository, and the rule that
//! a run on an embedded cloud writes nothing into the user's ledger.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `isoharness` with no cloud in its environment and `home` as its home and state directory, so that nothing it
/// does can reach the user's clouds.yaml or ledger.
fn isoharness(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_isoharness"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            command.env_remove(key);
        }
    }
    command.env("HOME", home).env("XDG_STATE_HOME", home.join("state")).env("XDG_CONFIG_HOME", home.join("config"));
    command.current_dir(root());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A clouds.yaml whose only cloud, `dead`, is a port nothing listens on.
fn dead_cloud(dir: &Path) -> PathBuf {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let clouds = dir.join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  dead:\n    auth:\n      auth_url: http://127.0.0.1:{port}/identity/v3\n      username: admin\n      \
             password: secret\n      project_name: admin\n      user_domain_id: default\n      project_domain_id: default\n"
        ),
    )
    .unwrap();
    clouds
}

#[test]
fn a_cloud_that_refuses_the_connection_exits_with_the_cloud_code() {
    let home = tempfile::tempdir().unwrap();
    let clouds = dead_cloud(home.path());
    let ledger = home.path().join("ledger.jsonl");
    let ledger = ledger.to_str().unwrap();
    for args in [
        vec!["validate-image", "--os-cloud", "dead", "some-image", "--ledger", ledger],
        vec!["cleanup", "--os-cloud", "dead", "--ledger", ledger],
    ] {
        let out = isoharness(home.path()).args(&args).env("OS_CLIENT_CONFIG_FILE", &clouds).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", show(&out));
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}: {}", show(&out));
        assert_eq!(text(&out.stdout), "", "{args:?}: errors go to stderr");
    }
    // A cloud the configuration does not define is bad input, not a cloud failure.
    let out = isoharness(home.path())
        .args(["cleanup", "--os-cloud", "nowhere", "--ledger", ledger])
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("\"nowhere\" is not defined"), "{}", show(&out));
}

#[test]
fn a_bad_scenario_file_is_bad_input() {
    let home = tempfile::tempdir().unwrap();
    let scenario = home.path().join("broken.toml");
    std::fs::write(&scenario, "[guest]\nfamily = \"plan9\"\n").unwrap();
    let out = isoharness(home.path()).arg("build").arg("--scenario").arg(&scenario).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("broken.toml:"), "the error names the file: {}", show(&out));
    assert_eq!(text(&out.stdout), "");
    let out = isoharness(home.path()).args(["matrix", "--scenarios"]).arg(home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("broken.toml:"), "{}", show(&out));
}

#[test]
fn a_bad_faults_file_is_bad_input_located_at_its_line() {
    let home = tempfile::tempdir().unwrap();
    let faults = home.path().join("broken.toml");
    std::fs::write(&faults, "seed = 1\n\n[[rules]]\naction = { throttle = { status = 500, retry_after = 1 } }\n")
        .unwrap();
    let out =
        isoharness(home.path()).args(["mock", "--listen", "127.0.0.1:0", "--faults"]).arg(&faults).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("broken.toml:4:"), "the error names the file and line: {}", show(&out));
    assert!(text(&out.stderr).contains("429 or 503"), "{}", show(&out));
}

#[test]
fn a_cloud_command_without_a_cloud_is_bad_input() {
    let home = tempfile::tempdir().unwrap();
    for args in [vec!["validate-image", "some-image"], vec!["cleanup"]] {
        let out = isoharness(home.path()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(text(&out.stderr).contains("give --os-cloud NAME"), "{args:?}: {}", show(&out));
    }
}

/// A stock layout's build gives an ISO copy (findings: 1), reports each step once on stdout when nothing is a
/// terminal, tells the virtual clock from wall time, shows no console URL of the vanished cloud, and leaves the
/// user's ledger (and a `--ledger` file) untouched.
#[test]
fn an_embedded_build_reports_once_and_writes_no_ledger() {
    let home = tempfile::tempdir().unwrap();
    let ledger = home.path().join("given-ledger.jsonl");
    let out = isoharness(home.path())
        .args(["build", "--scenario", "scenarios/ubuntu-24.04.toml", "--layout", "stock", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "iso-copy is a finding: {}", show(&out));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stderr, "", "no live lines when stderr is not a terminal");
    for step in ["upload-iso", "driver-media", "flavor", "boot", "install", "snapshot", "validate"] {
        let lines = stdout.lines().filter(|l| l.starts_with(&format!("{step} "))).count();
        assert_eq!(lines, 1, "{step} once: {stdout}");
    }
    assert!(stdout.contains("s virtual  "), "step times are virtual: {stdout}");
    assert!(stdout.contains("of wall time;"), "{stdout}");
    assert!(stdout.contains("outcome: iso-copy"), "{stdout}");
    assert!(!stdout.contains("console:"), "the embedded cloud's console is gone: {stdout}");
    assert!(!home.path().join("state/isoharness/ledger.jsonl").exists(), "the user's ledger is not written");
    assert!(!ledger.exists(), "an embedded run writes no ledger a later cleanup could never act on");
}

#[test]
fn a_stock_build_of_windows_says_why_its_driver_media_were_skipped() {
    let home = tempfile::tempdir().unwrap();
    let out = isoharness(home.path())
        .args(["build", "--scenario", "scenarios/windows-server-2012.toml", "--layout", "stock", "--no-boot"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    let step = stdout.lines().find(|l| l.starts_with("driver-media ")).unwrap_or_default();
    assert!(step.contains("skipped"), "{step}");
    assert!(step.contains("attaches no VirtIO-win ISO, and this guest needs viostor from a CD-ROM"), "{step}");
    assert!(!step.contains("not needed"), "{step}");
    assert!(stdout.contains("outcome: no-target-disk"), "{stdout}");
}

#[test]
fn the_matrix_outside_the_repository_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let out = isoharness(home.path()).arg("matrix").current_dir(home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = text(&out.stderr);
    let looked = std::path::absolute(home.path().join("scenarios")).unwrap();
    assert!(stderr.contains(&looked.display().to_string()), "names the directory it looked for: {stderr}");
    assert!(stderr.contains("--scenarios DIR"), "says how to point elsewhere: {stderr}");
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn each_command_shows_its_own_options_and_exit_statuses() {
    let home = tempfile::tempdir().unwrap();
    let help = |command: &str| {
        let out = isoharness(home.path()).args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command}: {}", show(&out));
        text(&out.stdout)
    };
    for command in ["cleanup", "validate-image"] {
        let text = help(command);
        assert!(!text.contains("--domain-xml"), "{command} does not fetch domain XML: {text}");
        assert!(!text.contains("embedded mockstack"), "{command} needs a real cloud: {text}");
        assert!(text.contains("--ledger <FILE>"), "{text}");
        assert!(text.contains("  3  the cloud failed"), "{command} documents the cloud status: {text}");
    }
    let build = help("build");
    for expected in
        ["--domain-xml-command <CMD>", "runs on an embedded mockstack", "patched-floppy", "130  interrupted"]
    {
        assert!(build.contains(expected), "{expected}: {build}");
    }
    let validate = help("validate-image");
    for values in ["linux", "windows", "public", "community", "shared", "private"] {
        assert!(validate.contains(values), "{values}: {validate}");
    }
    let check_xml = help("check-xml");
    assert!(!check_xml.contains("  3  "), "check-xml never talks to a cloud: {check_xml}");
}

#[test]
fn the_readme_documents_every_exit_status() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("## Exit status").nth(1).expect("an `Exit status` section in the README");
    for code in ["0", "1", "2", "3", "4", "130"] {
        assert!(section.contains(&format!("| {code} |")), "the README's exit status table lists {code}");
    }
}
