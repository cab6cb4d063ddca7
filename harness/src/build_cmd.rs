//! `isoharness build`, `isoharness validate-image` and `isoharness cleanup`: one workflow run,
//! one image check, and the removal of whatever earlier runs left behind.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use guestsim::guest::OsFamily;
use guestsim::{Layout, OutcomeKind};

use crate::cli::exit;
use crate::scenario::Scenario;
use crate::target::{CloudArgs, Embedded, connect_real, media_for, wants_real_cloud};
use crate::workflow::ledger::Ledger;
use crate::workflow::validate::{self, CheckStatus, ValidationReport};
use crate::workflow::{BuildOptions, BuildReport, Driver, cleanup_live, run_build};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// The scenario file (scenarios/*.toml).
    #[arg(long)]
    pub scenario: PathBuf,
    /// The layout of the embedded mockstack (ignored on a real cloud).
    #[arg(long, default_value = "patched")]
    pub layout: Layout,
    /// Keep the final image when the build succeeds (everything else is always deleted).
    #[arg(long)]
    pub keep: bool,
    /// Skip the boot test of the final image.
    #[arg(long)]
    pub no_boot: bool,
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
    /// The ledger of created resources (default: $XDG_STATE_HOME/isoharness/ledger.jsonl).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Image id or name.
    pub image: String,
    /// The OS family the image must hold.
    #[arg(long, value_parser = parse_family)]
    pub expect_os: Option<OsFamily>,
    /// Skip the boot test.
    #[arg(long)]
    pub no_boot: bool,
    /// How long the boot test waits for the console to show a booted OS.
    #[arg(long, value_name = "SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub boot_timeout: u64,
    /// Flavor for the boot test (default: the smallest that fits).
    #[arg(long)]
    pub flavor: Option<String>,
    /// Require this visibility.
    #[arg(long)]
    pub visibility: Option<String>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Show what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this run's resources (its `ih-…` prefix).
    #[arg(long)]
    pub run: Option<String>,
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

fn parse_family(s: &str) -> Result<OsFamily, String> {
    match s {
        "linux" => Ok(OsFamily::Linux),
        "windows" => Ok(OsFamily::Windows),
        _ => Err(format!("unknown OS family `{s}`: linux or windows")),
    }
}

/// A fresh run id: `ih-` and 8 hex digits.
pub fn new_run_id() -> String {
    format!("ih-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn open_ledger(path: &Option<PathBuf>) -> anyhow::Result<Ledger> {
    let path = path.clone().unwrap_or_else(Ledger::default_path);
    Ok(Ledger::open(&path)?)
}

pub async fn build(args: BuildArgs) -> anyhow::Result<u8> {
    let scenario = Scenario::load(&args.scenario)?;
    let ledger = open_ledger(&args.ledger)?;
    let scratch = tempfile::Builder::new().prefix("isoharness-").tempdir().context("no scratch directory")?;
    let run_id = new_run_id();
    let mut options = BuildOptions::new(&run_id, scratch.path());
    options.keep = args.keep;
    options.boot_test = !args.no_boot;
    let real = wants_real_cloud(&args.cloud);
    let mut media = if real { Some(media_for(&scenario, false, scratch.path())?) } else { None };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    options.on_step = Some(match args.format {
        // One JSON event per finished step on stdout, then the report.
        OutputFormat::Json => std::sync::Arc::new(|step: &crate::workflow::StepReport| {
            println!("{}", serde_json::json!({ "event": "step", "step": step }));
        }),
        OutputFormat::Human => std::sync::Arc::new(|step: &crate::workflow::StepReport| {
            eprintln!("  {:<13} {:<7} {}", step.step, format!("{:?}", step.status).to_lowercase(), step.detail);
        }),
    });
    let embedded;
    let driver = if real {
        connect_real(&args.cloud).await?.with_progress(terminal)
    } else {
        options.poll_min = std::time::Duration::from_secs(5);
        options.poll_max = std::time::Duration::from_secs(60);
        let generated;
        (embedded, generated) = Embedded::start_with_media(&scenario, args.layout, scratch.path()).await?;
        media = Some(generated);
        embedded.driver().await?
    };
    let media = media.unwrap_or_default();
    eprintln!("isoharness build {} on {} (run {run_id})", scenario.name, driver.describe());
    let report = tokio::select! {
        report = run_build(&driver, &ledger, &scenario, &media, &options) => report,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: cleaning up run {run_id}");
            for line in cleanup_live(&driver, &ledger, Some(&run_id), false).await? {
                eprintln!("  {line}");
            }
            return Ok(exit::INTERRUPTED);
        }
    };
    let _ = driver.cloud().revoke_token().await;
    print_build(&report, args.format);
    Ok(if report.outcome == Some(OutcomeKind::ImageOk) { exit::OK } else { exit::FINDINGS })
}

fn print_build(report: &BuildReport, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::json!({ "event": "report", "report": report })),
        OutputFormat::Human => {
            for step in &report.steps {
                println!(
                    "{:<13} {:<7} {:>8.0}s  {}",
                    step.step,
                    format!("{:?}", step.status).to_lowercase(),
                    step.seconds,
                    step.detail
                );
            }
            if let Some(url) = &report.console_url {
                println!("console: {url}");
            }
            match report.outcome {
                Some(o) => println!(
                    "outcome: {o}{}",
                    if report.reason.is_empty() { String::new() } else { format!(" ({})", report.reason) }
                ),
                None => println!("outcome: none: {}", report.reason),
            }
            for line in &report.evidence {
                println!("  | {line}");
            }
            if let Some(id) = &report.image_id {
                println!("kept image {id}");
            }
            for line in &report.cleanup {
                println!("cleanup: {line}");
            }
        }
    }
}

pub async fn validate_image(args: ValidateArgs) -> anyhow::Result<u8> {
    if !wants_real_cloud(&args.cloud) {
        anyhow::bail!(
            "validate-image needs a cloud that holds the image: give --os-cloud (for a mockstack served by \
             `isoharness mock --clouds-yaml FILE`, the cloud `mockstack`)"
        );
    }
    let ledger = open_ledger(&args.ledger)?;
    let driver = connect_real(&args.cloud).await?;
    let scratch = tempfile::Builder::new().prefix("isoharness-").tempdir()?;
    let run_id = new_run_id();
    let request = validate::ValidationRequest {
        expect_os: args.expect_os,
        agent: None,
        visibility: args.visibility.clone(),
        require_image_type_image: true,
        boot_test: !args.no_boot,
        boot_timeout: std::time::Duration::from_secs(args.boot_timeout),
        flavor: args.flavor.clone(),
        scratch_dir: scratch.path().to_path_buf(),
        name_prefix: format!("{run_id}-validate"),
    };
    let report = tokio::select! {
        r = validate::validate_image(&driver, &ledger, &run_id, &args.image, &request) => r,
        _ = tokio::signal::ctrl_c() => {
            cleanup_live(&driver, &ledger, Some(&run_id), false).await?;
            return Ok(exit::INTERRUPTED);
        }
    };
    let _ = driver.cloud().revoke_token().await;
    print_validation(&report, args.format);
    if report.checks.iter().any(|c| c.id == "image") {
        return Ok(exit::USAGE);
    }
    Ok(if report.passed() { exit::OK } else { exit::FINDINGS })
}

pub fn print_validation(report: &ValidationReport, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(report).expect("reports serialize")),
        OutputFormat::Human => {
            println!("image {} ({})", report.image_name, report.image_id);
            for c in &report.checks {
                let status = match c.status {
                    CheckStatus::Pass => "pass",
                    CheckStatus::Fail if c.required => "FAIL",
                    CheckStatus::Fail => "warn",
                    CheckStatus::Skip => "skip",
                };
                println!("  {status:<4} {:<12} {}", c.id, c.detail);
                for line in &c.evidence {
                    println!("       | {line}");
                }
            }
            println!("{}", if report.passed() { "the image passed" } else { "the image FAILED" });
        }
    }
}

pub async fn cleanup(args: CleanupArgs) -> anyhow::Result<u8> {
    if !wants_real_cloud(&args.cloud) {
        anyhow::bail!("cleanup needs --os-cloud (an embedded mockstack leaves nothing behind when it stops)");
    }
    let ledger = open_ledger(&args.ledger)?;
    let driver = connect_real(&args.cloud).await?;
    let lines = cleanup_live(&driver, &ledger, args.run.as_deref(), args.dry_run).await?;
    if lines.is_empty() {
        println!("nothing to clean up on {}", driver.describe());
    }
    let failed = lines.iter().filter(|l| l.starts_with("could not")).count();
    for line in lines {
        println!("{line}");
    }
    Ok(if failed == 0 { exit::OK } else { exit::FINDINGS })
}
