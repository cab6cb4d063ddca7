//! `isoharness matrix`: every scenario against every layout, on embedded mockstacks or one real cloud, reported as
//! a table, JSON, JUnit, markdown or html.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use guestsim::Layout;
use harness::exit::ExitStatus;
use harness::matrix::{MatrixFormat, run};
use harness::scenario::Scenario;
use harness::target::connect_real;
use harness::workflow::Driver;

use super::{CloudArgs, CommandError, DomainXmlArgs};

/// The exit statuses `matrix` ends with: every one, as a command that runs against a cloud and cleans up.
pub const STATUSES: &[ExitStatus] = &ExitStatus::ALL;

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub domain_xml: DomainXmlArgs,
    /// A layout to run (repeatable; default: all three on the embedded mockstack; on a real cloud give exactly one,
    /// the one its compute hosts implement)
    #[arg(long = "layout", value_enum, value_name = "LAYOUT")]
    pub layouts: Vec<Layout>,
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
    /// The ledger of the resources the cells on a real cloud create (default:
    /// $XDG_STATE_HOME/isoharness/ledger.jsonl); the embedded clouds keep none
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

pub async fn run(args: MatrixArgs) -> anyhow::Result<ExitStatus> {
    let scenarios = load_scenarios(&args.scenarios)?;
    let scenarios = filter(scenarios, args.filter.as_deref())?;
    let mut status = ExitStatus::Ok;
    let report = if args.cloud.names_real_cloud() {
        let [layout] = args.layouts[..] else {
            return Err(CommandError::usage(
                "on a real cloud, give exactly one --layout: the one its compute hosts implement",
            ));
        };
        let ledger = super::open_ledger(&args.ledger)?;
        let driver = connect_real(&args.cloud.config_request(), args.domain_xml.source()).await?;
        let jobs = args.jobs.min(4);
        let run_ids = std::sync::Mutex::new(Vec::new());
        let report = tokio::select! {
            r = run::run_real(&driver, &ledger, &scenarios, layout, jobs, &run_ids) => r?,
            _ = tokio::signal::ctrl_c() => {
                let runs = run_ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Ok(super::cleanup_after_interrupt(&driver, &ledger, &runs).await);
            }
        };
        let _ = driver.cloud().revoke_token().await;
        let runs = run_ids.into_inner().unwrap_or_else(|p| p.into_inner());
        let left = super::left_behind(&ledger, &driver.describe(), |run| runs.iter().any(|r| r == run))?;
        status = super::unless_left_behind(&left, &ledger, status);
        report
    } else {
        let layouts = if args.layouts.is_empty() { Layout::ALL.to_vec() } else { args.layouts.clone() };
        run::run_embedded(&scenarios, &layouts, args.jobs).await?
    };
    let text = report.render(args.format);
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{}", report.summary());
        }
        None => print!("{text}"),
    }
    let findings = if report.passed() { ExitStatus::Ok } else { ExitStatus::Findings };
    Ok(status.max(findings))
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
