//! The scenario runner: one trial per (scenario file, layout), so `cargo test` and
//! `cargo nextest` filters select cells like `windows-server-2012::patched`.
//!
//! By default every trial runs on its own embedded mockstack. With `ISOHARNESS_CLOUD` (or
//! `OS_CLOUD`) naming a cloud, the trials of the layout that cloud implements
//! (`ISOHARNESS_LAYOUT`, default `patched`) run against it and the others are ignored, as are
//! scenarios that name no installer for a real cloud.

use std::path::{Path, PathBuf};
use std::time::Duration;

use guestsim::Layout;
use harness::cloud::ConfigRequest;
use harness::driver::DomainXmlSource;
use harness::matrix::run::run_cell;
use harness::scenario::Scenario;
use harness::target::{Embedded, connect_real};
use harness::workflow::ledger::Ledger;
use libtest_mimic::{Arguments, Failed, Trial};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let scenarios = match Scenario::load_dir(&scenarios_dir()) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return std::process::ExitCode::FAILURE;
        }
    };
    assert!(!scenarios.is_empty(), "no scenario files in {}", scenarios_dir().display());
    let cloud = std::env::var("ISOHARNESS_CLOUD").or_else(|_| std::env::var("OS_CLOUD")).ok();
    let cloud_layout: Layout = std::env::var("ISOHARNESS_LAYOUT")
        .ok()
        .map(|l| l.parse().unwrap_or_else(|e| panic!("ISOHARNESS_LAYOUT: {e}")))
        .unwrap_or(Layout::Patched);
    let mut trials = Vec::new();
    for scenario in scenarios {
        for layout in Layout::ALL {
            let name = format!("{}::{layout}", scenario.name);
            let trial = match &cloud {
                None => {
                    let scenario = scenario.clone();
                    Trial::test(name, move || run_embedded(&scenario, layout))
                }
                Some(_) if layout != cloud_layout => Trial::test(name, || Ok(())).with_ignored_flag(true),
                Some(_) if scenario.media.iso.is_none() && scenario.media.image.is_none() => {
                    Trial::test(name, || Ok(())).with_ignored_flag(true)
                }
                Some(cloud) => {
                    let (scenario, cloud) = (scenario.clone(), cloud.clone());
                    Trial::test(name, move || run_real(&scenario, layout, &cloud))
                }
            };
            trials.push(trial.with_kind(if scenario.about.reconstruction { "table1" } else { "current" }));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// Runs one cell on a fresh embedded mockstack, checks it against the rules, and snapshots it.
fn run_embedded(scenario: &Scenario, layout: Layout) -> Result<(), Failed> {
    let cell = runtime().block_on(async {
        let embedded = Embedded::start(layout, &scenario.media.virtio_win_image).await.map_err(|e| format!("{e:#}"))?;
        let driver = embedded.driver().await.map_err(|e| format!("{e:#}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ledger = Ledger::open(&dir.path().join("ledger.jsonl")).map_err(|e| e.to_string())?;
        // A generous wall-clock bound: on the virtual clock a whole cell takes milliseconds.
        let cell = tokio::time::timeout(
            Duration::from_secs(120),
            run_cell(
                &driver,
                &ledger,
                scenario,
                layout,
                dir.path(),
                true,
                &format!("{}-{layout}", harness::workflow::RunId::new()),
            ),
        )
        .await
        .map_err(|_| format!("{}::{layout} did not finish within 120 s", scenario.name))?;
        let leftovers = leftovers(&embedded);
        embedded.mock.shutdown().await.map_err(|e| e.to_string())?;
        if !leftovers.is_empty() {
            return Err(format!("the run left resources behind: {}", leftovers.join(", ")));
        }
        Ok::<_, String>(cell)
    })?;
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/scenarios"));
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]");
    settings.add_filter(r"ih-[0-9a-f]{8}", "ih-[run]");
    settings.add_filter(r"instance-[0-9a-f]{8}", "instance-[n]");
    settings.add_filter(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?Z?", "[time]");
    let summary = format!(
        "scenario: {}\nlayout: {layout}\nexpected: {} ({})\nobserved: {}\nreason: {}\nevidence:\n{}\nxml findings:\n{}\n",
        cell.scenario,
        cell.expected.kind,
        cell.expected.reason,
        cell.observed.map(|o| o.to_string()).unwrap_or_else(|| "none".into()),
        cell.reason,
        cell.evidence.iter().map(|l| format!("  {l}\n")).collect::<String>(),
        cell.xml_findings.iter().map(|l| format!("  {l}\n")).collect::<String>(),
    );
    let name = format!("{}__{layout}", scenario.name);
    settings.bind(|| {
        insta::assert_snapshot!(format!("{name}.summary"), summary);
        if let Some(xml) = &cell.observed_by.domain_xml {
            insta::assert_snapshot!(format!("{name}.domain"), xml);
        }
    });
    if let Some(problem) = cell.problem() {
        return Err(problem.into());
    }
    Ok(())
}

/// Servers, images other than the shared driver media, and flavors the run created.
fn leftovers(embedded: &Embedded) -> Vec<String> {
    embedded.mock.state().leftovers("ih-")
}

/// The ledger of the real-cloud trials: under the build directory, not the user's state directory.
fn test_ledger() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scenarios-ledger.jsonl")
}

fn run_real(scenario: &Scenario, layout: Layout, cloud: &str) -> Result<(), Failed> {
    let deadline =
        Duration::from_secs(scenario.completion.install_timeout_s + scenario.completion.boot_timeout_s + 1800);
    let cell = runtime().block_on(async {
        let request = ConfigRequest { cloud: Some(cloud.to_string()), region_name: None };
        let driver = connect_real(&request, DomainXmlSource::None).await.map_err(|e| format!("{e:#}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        // The tests' own ledger, never the user's; it outlives the test so that `isoharness cleanup --ledger` can
        // finish what a killed test run left.
        let ledger = Ledger::open(&test_ledger()).map_err(|e| e.to_string())?;
        let run_id = harness::workflow::RunId::new().to_string();
        let cell = run_cell(&driver, &ledger, scenario, layout, dir.path(), false, &run_id);
        match tokio::time::timeout(deadline, cell).await {
            Ok(cell) => Ok(cell),
            Err(_) => {
                // The cell's own cleanup never ran: settle what its ledger entries name.
                let cleaned = harness::workflow::cleanup_live(&driver, &ledger, Some(&run_id), false).await;
                Err(format!("did not finish within {}s (cleanup: {cleaned:?})", deadline.as_secs()))
            }
        }
    })?;
    cell.problem().map_or(Ok(()), |p| Err(p.into()))
}
