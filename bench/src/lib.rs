//! `cargo xtask bench`: isoharness and mockstack measured in one run against the machine's own limits (hash rates,
//! an empty HTTP handler) and the real OpenStack services, printed as one table of figures and ratios.
//!
//! Every figure names what it was measured against in the same run; absolute numbers from a shared machine mean
//! little alone. Nothing here asserts a timing: the smoke test only checks that a cheap part runs.

pub mod api;
pub mod child;
pub mod hashing;
pub mod real;
pub mod report;
pub mod spans;
pub mod upload;
pub mod waiting;
pub mod workflow;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use report::{BenchReport, Part};

/// `bench [--quick] [--json FILE] [--only PART]...`
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Small sizes and short runs (256 MiB upload, 1 s load runs, one matrix pass).
    #[arg(long)]
    pub quick: bool,
    /// Also write every figure, with its unit and reference, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run only these parts (repeatable or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Size of the uploaded image in GiB (default 8, 0.25 with --quick).
    #[arg(long, value_name = "GIB")]
    pub upload_gib: Option<f64>,
    /// Seconds each API load run lasts (default 5, 1 with --quick).
    #[arg(long, value_name = "SECONDS")]
    pub api_seconds: Option<f64>,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// The scenario folder of the build, matrix and waiting parts.
    #[arg(long, default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Where the generated image and mockstack's image store go (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The clouds.yaml of the local real cloud (`cargo xtask realstack up`); its cloud `realstack` is measured too.
    #[arg(long, env = real::CLOUDS_VAR, value_name = "FILE")]
    pub real_clouds: Option<PathBuf>,
}

/// A run, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub quick: bool,
    pub parts: Vec<Part>,
    pub upload: upload::UploadPlan,
    pub api: api::ApiPlan,
    pub workflow: workflow::WorkflowPlan,
    pub waiting: waiting::WaitingPlan,
    pub real_clouds: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

impl BenchPlan {
    /// Resolves the arguments: sizes and durations from `--quick` unless given.
    pub fn resolve(args: &RunArgs) -> anyhow::Result<BenchPlan> {
        let quick = args.quick;
        let gib = args.upload_gib.unwrap_or(if quick { 0.25 } else { 8.0 });
        anyhow::ensure!(gib.is_finite() && gib > 0.0, "--upload-gib must be a positive number, not {gib}");
        let seconds = args.api_seconds.unwrap_or(if quick { 1.0 } else { 5.0 });
        anyhow::ensure!(seconds.is_finite() && seconds > 0.0, "--api-seconds must be positive, not {seconds}");
        anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
        let mut parts = if args.only.is_empty() { Part::ALL.to_vec() } else { args.only.clone() };
        parts.sort();
        parts.dedup();
        let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        Ok(BenchPlan {
            quick,
            parts,
            upload: upload::UploadPlan {
                size: (gib * (1u64 << 30) as f64) as u64,
                hash_bytes: if quick { 64 << 20 } else { 512 << 20 },
                hash_trials: 3,
                work_dir: work_dir.clone(),
                trials: 3,
            },
            api: api::ApiPlan {
                duration: Duration::from_secs_f64(seconds),
                warmup: Duration::from_secs_f64((seconds / 5.0).min(1.0)),
                connections: args.connections,
                work_dir: work_dir.clone(),
            },
            workflow: workflow::WorkflowPlan {
                scenarios: args.scenarios.clone(),
                build_runs: if quick { 3 } else { 15 },
                matrix_runs: if quick { 1 } else { 3 },
                work_dir,
            },
            waiting: waiting::WaitingPlan { scenarios: args.scenarios.clone() },
            real_clouds: args.real_clouds.clone(),
            json: args.json.clone(),
        })
    }
}

/// Runs the planned parts in order and returns the report (also written as JSON when asked).
pub async fn run(plan: &BenchPlan) -> anyhow::Result<BenchReport> {
    let real = real::RealCloud::from_file(plan.real_clouds.as_deref())?;
    eprintln!("bench: {}", real.describe());
    let mut report = BenchReport::new(plan.quick);
    for part in &plan.parts {
        let figures = match part {
            Part::Upload => upload::run(&plan.upload, &real).await,
            Part::Api => api::run(&plan.api, &real).await,
            Part::Build => workflow::run_build(&plan.workflow, &real).await,
            Part::Matrix => workflow::run_matrix(&plan.workflow).await,
            Part::Waiting => waiting::run(&plan.waiting).await,
        };
        let figures = figures.map_err(|e| e.context(format!("bench part `{}`", part.name())))?;
        report.figures.extend(figures);
    }
    if let Some(path) = &plan.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report)
}
