//! `isoharness matrix`: every scenario against every layout, reported as a table, JSON, JUnit,
//! markdown or html.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use guestsim::Layout;

use crate::cli::exit;
use crate::matrix::{MatrixFormat, run};
use crate::scenario::Scenario;
use crate::target::CloudArgs;

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Layouts to run (repeatable); all three by default on mockstack.
    #[arg(long = "layout")]
    pub layouts: Vec<Layout>,
    /// The folder of scenario files.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Only scenarios whose name contains this text (a glob with `*` also works).
    #[arg(long)]
    pub filter: Option<String>,
    /// Cells run at once.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    #[arg(long, value_enum, default_value = "table")]
    pub format: MatrixFormat,
    /// Write the report here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub async fn run(args: MatrixArgs) -> anyhow::Result<u8> {
    let scenarios = Scenario::load_dir(&args.scenarios)
        .map_err(|errors| anyhow::anyhow!("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))?;
    let scenarios = filter(scenarios, args.filter.as_deref())?;
    let report = if crate::target::wants_real_cloud(&args.cloud) {
        let [layout] = args.layouts[..] else {
            anyhow::bail!("on a real cloud, give exactly one --layout: the one its compute hosts implement");
        };
        let driver = crate::target::connect_real(&args.cloud).await?;
        let ledger = crate::workflow::ledger::Ledger::open(&crate::workflow::ledger::Ledger::default_path())?;
        let jobs = args.jobs.min(4);
        let run_ids = std::sync::Mutex::new(Vec::new());
        let report = tokio::select! {
            r = run::run_real(&driver, &ledger, &scenarios, layout, jobs, &run_ids) => r?,
            _ = tokio::signal::ctrl_c() => {
                let runs = run_ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for run in runs {
                    for line in crate::workflow::cleanup_live(&driver, &ledger, Some(&run), false).await? {
                        eprintln!("cleanup: {line}");
                    }
                }
                return Ok(exit::INTERRUPTED);
            }
        };
        let _ = driver.cloud().revoke_token().await;
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
    Ok(if report.passed() { exit::OK } else { exit::FINDINGS })
}

fn filter(scenarios: Vec<Scenario>, pattern: Option<&str>) -> anyhow::Result<Vec<Scenario>> {
    let Some(pattern) = pattern else { return Ok(scenarios) };
    let glob =
        globset::Glob::new(if pattern.contains('*') { pattern.to_string() } else { format!("*{pattern}*") }.as_str())
            .with_context(|| format!("bad --filter `{pattern}`"))?
            .compile_matcher();
    let kept: Vec<Scenario> = scenarios.into_iter().filter(|s| glob.is_match(&s.name)).collect();
    if kept.is_empty() {
        anyhow::bail!("--filter `{pattern}` matches no scenario");
    }
    Ok(kept)
}
