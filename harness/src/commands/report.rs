//! `isoharness report`: work on saved matrix reports; `report merge` makes one matrix of several
//! `isoharness matrix --format json` reports (e.g. a stock and a patched real cloud's runs, side by side).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use harness::exit::ExitStatus;
use harness::matrix::MatrixFormat;
use harness::matrix::report::{merge, parse_report};

use super::CommandError;

/// The exit statuses `report` ends with: 0 every judged cell as expected, 1 some not, 2 bad input (or no cell
/// judged at all).
pub const STATUSES: &[ExitStatus] = &[ExitStatus::Ok, ExitStatus::Findings, ExitStatus::Usage];

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub action: ReportAction,
}

#[derive(Debug, Subcommand)]
pub enum ReportAction {
    /// One matrix from several `isoharness matrix --format json` reports: one column per layout; the same (scenario,
    /// layout) cell in two reports is an error
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The matrix JSON reports to merge
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,
    /// The merged report's format
    #[arg(long, value_enum, default_value_t = MatrixFormat::Table)]
    pub format: MatrixFormat,
    /// Write the merged report to FILE instead of stdout (the summary line still goes to stderr)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitStatus> {
    match args.action {
        ReportAction::Merge(args) => run_merge(args),
    }
}

fn run_merge(args: MergeArgs) -> anyhow::Result<ExitStatus> {
    let mut inputs = Vec::new();
    for path in args.reports {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CommandError::usage(format!("cannot read {}: {e}", path.display())))?;
        let report = parse_report(&path, &text).map_err(CommandError::usage)?;
        inputs.push((path, report));
    }
    let report = merge(inputs).map_err(CommandError::usage)?;
    super::emit_matrix_report(&report, args.format, &args.output)?;
    if report.judged() == 0 {
        eprintln!("error: no cell of the merged matrix was judged: every one was not runnable on its hypervisor");
        return Ok(ExitStatus::Usage);
    }
    Ok(if report.passed() { ExitStatus::Ok } else { ExitStatus::Findings })
}
