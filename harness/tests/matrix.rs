//! The embedded matrix end to end: every cell of a few scenarios on every layout, through the clouds split
//! between threads, and `isoharness matrix` reporting it.

use std::path::Path;
use std::process::Command;

use guestsim::{Layout, OutcomeKind};
use harness::matrix::run::{expected, run_embedded};
use harness::scenario::Scenario;

fn scenarios(names: &[&str]) -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    names
        .iter()
        .map(|n| Scenario::load(&dir.join(format!("{n}.toml"))).expect("a scenario of the repository"))
        .collect()
}

#[tokio::test]
async fn every_cell_runs_once_and_meets_the_rules() {
    // Two driver-ISO builds and two floppy architectures: several clouds to split between the threads.
    let chosen = scenarios(&["ubuntu-24.04", "windows-server-2012", "windows-server-2008", "windows-xp"]);
    for jobs in [1, 8] {
        let report = run_embedded(&chosen, &Layout::ALL, jobs).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut seen: Vec<(String, Layout)> = report.cells.iter().map(|c| (c.scenario.clone(), c.layout)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), chosen.len() * Layout::ALL.len(), "jobs {jobs}: every cell exactly once");
        assert_eq!(report.cells.len(), seen.len(), "jobs {jobs}: no cell twice");
        for cell in &report.cells {
            let scenario = chosen.iter().find(|s| s.name == cell.scenario).unwrap();
            let derived = expected(scenario, cell.layout);
            assert_eq!(
                cell.observed,
                Some(derived.kind),
                "{} on {}: {}; ran: {}",
                cell.scenario,
                cell.layout,
                derived.reason,
                cell.reason
            );
        }
        assert!(report.passed(), "jobs {jobs}");
    }
}

#[tokio::test]
async fn an_attended_install_is_observed_and_expected_as_needs_console() {
    let mut attended = scenarios(&["ubuntu-24.04"]).remove(0);
    attended.guest.unattended = false;
    let report = run_embedded(&[attended], &[Layout::Patched], 1).await.unwrap_or_else(|e| panic!("{e:#}"));
    let cell = &report.cells[0];
    assert_eq!(cell.expected.kind, OutcomeKind::NeedsConsole, "{}", cell.expected.reason);
    assert_eq!(cell.observed, Some(OutcomeKind::NeedsConsole), "{}", cell.reason);
    assert!(cell.passed(), "{:?}", cell.problem());
}

#[test]
fn the_command_reports_the_cells_as_json() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = isoharness_in(&root, &["matrix", "--filter", "windows-server-2012", "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3, "{report}");
    assert!(cells.iter().all(|c| c["scenario"] == "windows-server-2012"));
}

fn all_scenarios() -> Vec<Scenario> {
    Scenario::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")).expect("the repository's scenarios")
}

/// The rule, restated from the guest facts and the image: an x86 BIOS guest on an i440fx machine, or an x86_64 UEFI
/// guest.
fn tiny_installer_stands_for(s: &Scenario) -> bool {
    use guestsim::guest::{Arch, Firmware};
    let q35 = [&s.image.iso_properties, &s.image.properties]
        .iter()
        .any(|p| p.get("hw_machine_type").is_some_and(|m| m.contains("q35")));
    match s.guest.firmware {
        Firmware::Bios => matches!(s.guest.arch, Arch::X86_64 | Arch::I686) && !q35,
        Firmware::Uefi => s.guest.arch == Arch::X86_64,
    }
}

#[test]
fn generated_media_leave_runnable_exactly_the_guests_the_tiny_installer_stands_for() {
    use guestsim::guest::OsFamily;
    use harness::matrix::run::not_runnable_with_generated_media;
    let scenarios = all_scenarios();
    let runnable: Vec<&Scenario> =
        scenarios.iter().filter(|s| not_runnable_with_generated_media(s, &[]).is_none()).collect();
    for s in &scenarios {
        assert_eq!(not_runnable_with_generated_media(s, &[]).is_none(), tiny_installer_stands_for(s), "{}", s.name);
    }
    assert_eq!(runnable.len(), scenarios.len(), "every shipped guest is x86: BIOS on i440fx, or x86_64 UEFI");
    assert!(runnable.iter().any(|s| s.guest.family == OsFamily::Windows), "{:?}", runnable.iter().map(|s| &s.name));
    let mut arm = scenarios[0].clone();
    arm.guest.arch = guestsim::guest::Arch::Aarch64;
    assert!(not_runnable_with_generated_media(&arm, &[]).is_some_and(|why| why.contains("not an x86 guest")));
    let mut q35_bios = scenarios.iter().find(|s| s.guest.firmware == guestsim::guest::Firmware::Bios).unwrap().clone();
    q35_bios.image.properties.insert("hw_machine_type".into(), "q35".into());
    assert!(not_runnable_with_generated_media(&q35_bios, &[]).is_some_and(|why| why.contains("q35")));
    // What the cloud cannot give rules out exactly the guests that need it.
    use harness::matrix::run::CloudLack;
    for s in &scenarios {
        let tpm = not_runnable_with_generated_media(s, &[CloudLack::Tpm]);
        assert_eq!(tpm.is_some(), s.guest.needs_tpm, "{}", s.name);
        assert!(tpm.is_none_or(|why| why.contains("a TPM")), "{}", s.name);
        let uefi = not_runnable_with_generated_media(s, &[CloudLack::Uefi]);
        assert_eq!(uefi.is_some(), s.guest.firmware == guestsim::guest::Firmware::Uefi, "{}", s.name);
    }
}

#[tokio::test]
async fn a_real_cloud_matrix_with_generated_media_runs_only_the_runnable_cells() {
    use harness::matrix::MatrixMedia;
    use harness::matrix::run::{CloudLack, RealMedia, not_runnable_with_generated_media, run_real};
    use harness::target::Embedded;
    use harness::workflow::ledger::Ledger;
    use harness::workflow::{LayoutPlan, LayoutSource, LayoutUsed};
    // An embedded mockstack stands in for the real cloud: the real-cloud path, with its media generated.
    let scenarios = all_scenarios();
    let embedded = Embedded::start_for(Layout::Patched, &scenarios[0]).await.unwrap_or_else(|e| panic!("{e:#}"));
    let driver = embedded.driver().await.unwrap_or_else(|e| panic!("{e:#}"));
    let scratch = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_scratch(&scratch.path().join("ledger.jsonl")).unwrap();
    let plan = LayoutPlan::Known(LayoutUsed { layout: Layout::Patched, source: LayoutSource::Given });
    let run_ids = std::sync::Mutex::new(Vec::new());
    // A cloud that cannot give a TPM: the guests that need one are not run either.
    let lacks = vec![CloudLack::Tpm];
    let media = RealMedia { media: MatrixMedia::Generated, cloud_lacks: lacks.clone() };
    // One cell at a time: every cell's waits advance the embedded cloud's one manual clock, and concurrent cells would
    // each see the others' waits as their own (a real cloud's clock is real time).
    let report =
        run_real(&driver, &ledger, &scenarios, &plan, 1, &run_ids, &media).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.cells.len(), scenarios.len());
    let runnable: Vec<&Scenario> =
        scenarios.iter().filter(|s| tiny_installer_stands_for(s) && !s.guest.needs_tpm).collect();
    // One run per cell, and one per set of driver media offered to the cells that attach it.
    let driver_media_sets: std::collections::BTreeSet<String> =
        runnable.iter().map(|s| format!("{:?}", s.media.virtio_win)).collect();
    assert_eq!(
        run_ids.lock().unwrap().len(),
        runnable.len() + driver_media_sets.len(),
        "nothing created for a cell not run"
    );
    for cell in &report.cells {
        let scenario = scenarios.iter().find(|s| s.name == cell.scenario).unwrap();
        assert_eq!(cell.not_runnable, not_runnable_with_generated_media(scenario, &lacks), "{}", cell.scenario);
        if cell.judged() {
            assert!(cell.passed(), "{}: {:?}", cell.scenario, cell.problem());
        } else {
            assert_eq!(cell.observed, None, "{}", cell.scenario);
        }
    }
    assert!(report.passed());
    assert_eq!(report.not_runnable(), scenarios.len() - runnable.len());
    assert_eq!(embedded.mock.state().leftovers("ih-"), Vec::<String>::new());
    embedded.mock.shutdown().await.unwrap();
}

/// `isoharness ARGS` run in `dir`, with no cloud named by the environment.
fn isoharness_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_isoharness"))
        .current_dir(dir)
        .args(args)
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL")
        .output()
        .unwrap()
}

/// `isoharness ARGS --scenarios <the repository's scenarios>` run in `dir`.
fn isoharness(args: &[&str], dir: &Path) -> std::process::Output {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = scenarios.to_str().expect("a UTF-8 path");
    isoharness_in(dir, &[args, &["--scenarios", scenarios]].concat())
}

#[test]
fn generated_media_on_the_embedded_mockstack_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = isoharness(&["matrix", "--media", "generated", "--filter", "ubuntu-24.04"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--media generated chooses a real cloud's media"), "{stderr}");
}

#[test]
fn what_a_cloud_lacks_means_something_only_with_generated_media() {
    let dir = tempfile::tempdir().unwrap();
    let output = isoharness(&["matrix", "--cloud-lacks", "tpm", "--filter", "windows-11"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cloud-lacks says which generated-media cells"), "{stderr}");
    let output = isoharness(&["matrix", "--cloud-lacks", "warp-drive"], dir.path());
    assert_eq!(output.status.code(), Some(2), "an unknown feature is a usage error");
}

#[test]
fn report_merge_of_two_single_layout_runs_is_the_two_layout_run() {
    let dir = tempfile::tempdir().unwrap();
    let filter = ["--filter", "windows-server-20*", "--format", "json"];
    for layout in ["stock", "patched"] {
        let out = format!("{layout}.json");
        let output =
            isoharness(&[&["matrix", "--layout", layout, "--output", &out][..], &filter[..]].concat(), dir.path());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let both =
        isoharness(&[&["matrix", "--layout", "stock", "--layout", "patched"][..], &filter[..]].concat(), dir.path());
    assert!(both.status.success(), "{}", String::from_utf8_lossy(&both.stderr));
    let merge = |format: &str| {
        isoharness_in(dir.path(), &["report", "merge", "patched.json", "stock.json", "--format", format])
    };
    let table = merge("table");
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("┆ stock ") && table.contains("┆ patched "), "{table}");
    assert_eq!(table.matches("guest OS").count(), 1, "one table: {table}");
    let merged: serde_json::Value = serde_json::from_slice(&merge("json").stdout).unwrap();
    let both: serde_json::Value = serde_json::from_slice(&both.stdout).unwrap();
    let key = |cells: &serde_json::Value| -> Vec<(String, String, String, String)> {
        cells
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].to_string();
                (s("scenario"), s("layout"), c["expected"]["kind"].to_string(), s("observed"))
            })
            .collect()
    };
    assert!(!both["cells"].as_array().unwrap().is_empty());
    assert_eq!(key(&merged["cells"]), key(&both["cells"]));
    assert_eq!(merged["layouts"], both["layouts"]);
    assert_eq!(merged["cloud"], "embedded mockstack");

    // The same cell twice, and a file that is no matrix report: exit 2, naming the files.
    let twice = isoharness_in(dir.path(), &["report", "merge", "stock.json", "stock.json"]);
    assert_eq!(twice.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert!(stderr.contains("is in both stock.json and stock.json"), "{stderr}");
    std::fs::write(dir.path().join("bad.json"), "{\"cloud\": []}").unwrap();
    let bad = isoharness_in(dir.path(), &["report", "merge", "stock.json", "bad.json"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("bad.json:1:10: not a matrix JSON report (`isoharness matrix --format json`): invalid type: sequence, expected a string\n"), "{stderr}");
}
