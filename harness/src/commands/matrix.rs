//! `isoharness matrix`: every scenario against every layout, on embedded mockstacks or one real cloud, reported as
//! a table, JSON, JUnit, markdown or html.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use guestsim::Layout;
use harness::exit::ExitStatus;
use harness::matrix::{MatrixFormat, MatrixMedia, MatrixReport, run};
use harness::scenario::Scenario;
use harness::target::connect_real;
use harness::workflow::Driver;

use super::{CloudArgs, CommandError, DomainXmlArgs, LayoutChoice};
use harness::workflow::LayoutPlan;

/// The exit statuses `matrix` ends with: every one, as a command that runs against a cloud and cleans up.
pub const STATUSES: &[ExitStatus] = &ExitStatus::ALL;

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub domain_xml: DomainXmlArgs,
    /// A layout to run (repeatable; default: all three on the embedded mockstack, where auto means nothing). On a
    /// real cloud, one: the layout its compute hosts implement, or auto (the default with --domain-xml-command or
    /// --domain-xml-file), recognised from the first install server's domain XML before the other cells run; an
    /// unrecognised one stops the matrix (exit 2)
    #[arg(long = "layout", value_enum, value_name = "LAYOUT")]
    pub layouts: Vec<LayoutChoice>,
    /// The directory of scenario files (*.toml), relative to the working directory
    #[arg(long, value_name = "DIR", default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Only the scenarios whose name contains this text (or matches this glob, with `*`)
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// How many cells run at once (at most 4 on a real cloud)
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,
    /// The report's format
    #[arg(long, value_enum, default_value_t = MatrixFormat::Table)]
    pub format: MatrixFormat,
    /// Write the report to FILE instead of stdout (the summary line still goes to stderr)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// On a real cloud, the media the cells upload: each scenario's own installer ISO (`[media] iso`), or the media
    /// the embedded run generates, whose tiny installer stands for x86 BIOS guests on i440fx machines and x86_64
    /// UEFI guests: the other cells are not run and are reported as not runnable on this hypervisor, and each run
    /// cell is compared with its twin on an embedded mockstack. The embedded mockstack always uses generated media
    #[arg(long, value_enum, value_name = "MEDIA", default_value_t = MatrixMedia::Scenario)]
    pub media: MatrixMedia,
    /// With --media generated, what the real cloud cannot give a guest (repeatable): the cells of guests that need it
    /// are reported as not runnable instead of failing on the cloud's configuration
    #[arg(long = "cloud-lacks", value_enum, value_name = "FEATURE")]
    pub cloud_lacks: Vec<run::CloudLack>,
    /// The ledger of the resources the cells on a real cloud create (default:
    /// $XDG_STATE_HOME/isoharness/ledger.jsonl); the embedded clouds keep none
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

pub async fn run(args: MatrixArgs) -> anyhow::Result<ExitStatus> {
    if !args.cloud_lacks.is_empty() && args.media != MatrixMedia::Generated {
        return Err(CommandError::usage(
            "--cloud-lacks says which generated-media cells a real cloud cannot run: give it with --media generated",
        ));
    }
    let scenarios = load_scenarios(&args.scenarios)?;
    let scenarios = filter(scenarios, args.filter.as_deref())?;
    let mut status = ExitStatus::Ok;
    let report = if args.cloud.names_real_cloud() {
        let plan = real_plan(&args.layouts, args.domain_xml.given()).map_err(CommandError::usage)?;
        if args.media == MatrixMedia::Generated {
            nothing_runnable(&scenarios, &args.cloud_lacks).map_err(CommandError::usage)?;
        }
        let ledger = super::open_ledger(&args.ledger)?;
        let driver = connect_real(&args.cloud.config_request(), args.domain_xml.source()).await?;
        let jobs = args.jobs.min(4);
        let run_ids = std::sync::Mutex::new(Vec::new());
        let media = run::RealMedia { media: args.media, cloud_lacks: args.cloud_lacks.clone() };
        let result = tokio::select! {
            r = run::run_real(&driver, &ledger, &scenarios, &plan, jobs, &run_ids, &media) => r,
            _ = tokio::signal::ctrl_c() => {
                let runs = run_ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Ok(super::cleanup_after_interrupt(&driver, &ledger, &runs).await);
            }
        };
        let _ = driver.cloud().revoke_token().await;
        let runs = run_ids.into_inner().unwrap_or_else(|p| p.into_inner());
        let left = super::left_behind(&ledger, &driver.describe(), |run| runs.iter().any(|r| r == run))?;
        match result {
            Ok(mut report) => {
                status = super::unless_left_behind(&left, &ledger, status);
                if args.media == MatrixMedia::Generated {
                    compare_with_twin(&mut report, &scenarios, args.jobs).await?;
                }
                report
            }
            // The layout could not be learnt (`auto`): bad input, once what the first cells created is gone.
            Err(error) => {
                eprintln!("error: {error:#}");
                return Ok(super::unless_left_behind(&left, &ledger, ExitStatus::Usage));
            }
        }
    } else {
        if args.media == MatrixMedia::Generated {
            return Err(CommandError::usage(
                "--media generated chooses a real cloud's media: the embedded mockstack always uses generated media \
                 (and simulates every guest); name a cloud with --os-cloud NAME, or leave --media out",
            ));
        }
        let layouts = embedded_layouts(&args.layouts).map_err(CommandError::usage)?;
        run::run_embedded(&scenarios, &layouts, args.jobs).await?
    };
    super::emit_matrix_report(&report, args.format, &args.output)?;
    let findings = if report.passed() { ExitStatus::Ok } else { ExitStatus::Findings };
    Ok(status.max(findings))
}

/// With `--media generated` every judged cell is compared with the same cell on an embedded mockstack of the layout
/// the real cloud used: the same scenarios, the same generated media, mockstack's simulated guest instead of QEMU.
async fn compare_with_twin(report: &mut MatrixReport, scenarios: &[Scenario], jobs: usize) -> anyhow::Result<()> {
    let Some(used) = report.layout_used.clone() else { return Ok(()) };
    let judged: Vec<Scenario> =
        scenarios.iter().filter(|s| report.cells.iter().any(|c| c.scenario == s.name && c.judged())).cloned().collect();
    if judged.is_empty() {
        return Ok(());
    }
    let twin = run::run_embedded(&judged, &[used.layout], jobs).await?;
    harness::matrix::twin::attach(report, &twin, &judged);
    Ok(())
}

/// With `--media generated`, an error when the tiny installer stands for none of the scenarios' guests: a matrix of
/// cells that are all not runnable would judge nothing (exit 2 before the cloud is touched).
fn nothing_runnable(scenarios: &[Scenario], lacks: &[run::CloudLack]) -> Result<(), String> {
    let why: Vec<String> = scenarios
        .iter()
        .map(|s| run::not_runnable_with_generated_media(s, lacks).map(|why| format!("  {}: {why}", s.name)))
        .collect::<Option<Vec<String>>>()
        .unwrap_or_default();
    if why.is_empty() {
        return Ok(());
    }
    Err(format!(
        "nothing to run: with --media generated, no scenario's guest is one the tiny installer stands for (an \
         unattended BIOS x86 guest with virtio built in):\n{}",
        why.join("\n")
    ))
}

/// The layout of a matrix on a real cloud: one `--layout` (a name, or `auto`: recognised from the first install
/// server's domain XML, the default with a domain XML source).
fn real_plan(given: &[LayoutChoice], domain_xml_source: bool) -> Result<LayoutPlan, String> {
    let plan = match given {
        [] => super::real_layout(None, domain_xml_source)?,
        [one] => super::real_layout(Some(*one), domain_xml_source)?,
        _ => return Err("on a real cloud, give one --layout: the one its compute hosts implement, or auto".into()),
    };
    if plan == LayoutPlan::Unknown {
        return Err("on a real cloud, give --layout NAME (stock, patched or patched-floppy: the layout its compute \
                    hosts implement), or a domain XML source (--domain-xml-command CMD or --domain-xml-file FILE) to \
                    recognise it from the first install server (--layout auto)"
            .into());
    }
    Ok(plan)
}

/// The layouts of a matrix on the embedded mockstack: those `--layout` names, all three by default; `auto` has
/// nothing to recognise there.
fn embedded_layouts(given: &[LayoutChoice]) -> Result<Vec<Layout>, String> {
    if given.is_empty() {
        return Ok(Layout::ALL.to_vec());
    }
    given.iter().map(|choice| choice.layout()).collect::<Option<Vec<Layout>>>().ok_or_else(|| {
        format!(
            "{}: the embedded matrix runs the layouts --layout names (stock, patched, patched-floppy), all three \
             without one",
            super::AUTO_ON_EMBEDDED
        )
    })
}

/// The scenarios of `dir`, or an error that says where it looked and how to look elsewhere.
fn load_scenarios(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    if !dir.is_dir() {
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        return Err(CommandError::usage(format!(
            "no scenario directory at {}: the matrix reads the scenario files (*.toml) of --scenarios DIR, by \
             default `scenarios` relative to the working directory; run it from the repository's root, or give \
             --scenarios DIR",
            absolute.display()
        )));
    }
    Scenario::load_dir(dir)
        .map_err(|errors| CommandError::usage(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))
}

fn filter(scenarios: Vec<Scenario>, pattern: Option<&str>) -> anyhow::Result<Vec<Scenario>> {
    let Some(pattern) = pattern else { return Ok(scenarios) };
    let glob =
        globset::Glob::new(if pattern.contains('*') { pattern.to_string() } else { format!("*{pattern}*") }.as_str())
            .with_context(|| format!("bad --filter `{pattern}`"))?
            .compile_matcher();
    let kept: Vec<Scenario> = scenarios.into_iter().filter(|s| glob.is_match(&s.name)).collect();
    if kept.is_empty() {
        return Err(CommandError::usage(format!("--filter `{pattern}` matches no scenario")));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::workflow::{LayoutSource, LayoutUsed};

    #[test]
    fn a_real_cloud_matrix_takes_one_layout_or_recognises_it_from_a_domain_xml_source() {
        assert_eq!(real_plan(&[], true), Ok(LayoutPlan::Recognise));
        assert_eq!(real_plan(&[LayoutChoice::Auto], true), Ok(LayoutPlan::Recognise));
        let patched = LayoutPlan::Known(LayoutUsed { layout: Layout::Patched, source: LayoutSource::Given });
        assert_eq!(real_plan(&[LayoutChoice::Patched], false), Ok(patched));
        let none = real_plan(&[], false).unwrap_err();
        assert!(none.contains("give --layout NAME") && none.contains("--domain-xml-command"), "{none}");
        let auto = real_plan(&[LayoutChoice::Auto], false).unwrap_err();
        assert!(auto.contains("no domain XML source"), "{auto}");
        let two = real_plan(&[LayoutChoice::Stock, LayoutChoice::Patched], true).unwrap_err();
        assert!(two.contains("give one --layout"), "{two}");
    }

    #[test]
    fn generated_media_with_no_runnable_scenario_is_nothing_to_run() {
        let all = load_scenarios(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")).unwrap();
        assert_eq!(nothing_runnable(&all, &[]), Ok(()));
        let lacks = [run::CloudLack::Uefi];
        let unrunnable: Vec<Scenario> =
            all.into_iter().filter(|s| run::not_runnable_with_generated_media(s, &lacks).is_some()).collect();
        assert!(!unrunnable.is_empty(), "the UEFI guests");
        let error = nothing_runnable(&unrunnable, &lacks).unwrap_err();
        assert!(error.starts_with("nothing to run: with --media generated"), "{error}");
        assert_eq!(error.lines().count(), unrunnable.len() + 1, "one line per scenario: {error}");
    }

    #[test]
    fn the_embedded_matrix_runs_the_named_layouts_or_all_and_refuses_auto() {
        assert_eq!(embedded_layouts(&[]), Ok(Layout::ALL.to_vec()));
        assert_eq!(embedded_layouts(&[LayoutChoice::Stock]), Ok(vec![Layout::Stock]));
        let error = embedded_layouts(&[LayoutChoice::Patched, LayoutChoice::Auto]).unwrap_err();
        assert!(error.starts_with("--layout auto recognises a real cloud's layout"), "{error}");
    }
}
