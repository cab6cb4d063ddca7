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
    let output = Command::new(env!("CARGO_BIN_EXE_isoharness"))
        .current_dir(&root)
        .args(["matrix", "--filter", "windows-server-2012", "--format", "json"])
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3, "{report}");
    assert!(cells.iter().all(|c| c["scenario"] == "windows-server-2012"));
}
