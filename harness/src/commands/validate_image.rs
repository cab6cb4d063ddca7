//! `isoharness validate-image`: check that an image of a real cloud is what it claims to be (metadata, data,
//! content, a boot test), and report every check.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::PossibleValuesParser;
use guestsim::guest::OsFamily;
use harness::exit::ExitStatus;
use harness::target::connect_real;
use harness::workflow::validate::{self, CheckStatus, ValidationReport, Verdict};
use harness::workflow::{Driver, RunId};

use super::{CloudArgs, CommandError, Format};

/// The exit statuses `validate-image` ends with: every one, as a command that runs against a cloud and cleans up.
pub const STATUSES: &[ExitStatus] = &ExitStatus::ALL;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// The image's id or name
    pub image: String,
    /// The OS family the image must hold (checked against os_type and os_distro, and by the boot test)
    #[arg(long, value_enum, value_name = "FAMILY")]
    pub expect_os: Option<OsFamily>,
    /// Skip the boot test
    #[arg(long)]
    pub no_boot: bool,
    /// How long the boot test waits for the console to show a booted OS
    #[arg(long, value_name = "SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub boot_timeout: u64,
    /// The flavor of the boot test's server (default: the smallest that fits the image)
    #[arg(long, value_name = "NAME")]
    pub flavor: Option<String>,
    /// Require this visibility (a warning, not a failure, when it differs)
    #[arg(
        long,
        value_name = "VISIBILITY",
        value_parser = PossibleValuesParser::new(["public", "community", "shared", "private"])
    )]
    pub visibility: Option<String>,
    /// The report on stdout: human, or json (one object)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// The ledger of the boot test's server (default: $XDG_STATE_HOME/isoharness/ledger.jsonl)
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

pub async fn run(args: ValidateArgs) -> anyhow::Result<ExitStatus> {
    if !args.cloud.names_real_cloud() {
        return Err(CommandError::usage(
            "validate-image needs the cloud that holds the image: give --os-cloud NAME (or set OS_CLOUD, or \
             OS_AUTH_URL and the other OS_* variables); for a mockstack served by `isoharness mock --clouds-yaml \
             FILE`, the cloud is `mockstack`",
        ));
    }
    let ledger = super::open_ledger(&args.ledger)?;
    let driver = connect_real(&args.cloud.config_request(), Default::default()).await?;
    let scratch = tempfile::Builder::new().prefix("isoharness-").tempdir()?;
    let run_id = RunId::new();
    let request = validate::ValidationRequest {
        expect_os: args.expect_os,
        boot_console: None,
        agent: None,
        visibility: args.visibility.clone(),
        require_image_type_image: true,
        boot_test: !args.no_boot,
        boot_timeout: Duration::from_secs(args.boot_timeout),
        flavor: args.flavor.clone(),
        scratch_dir: scratch.path().to_path_buf(),
        name_prefix: format!("{run_id}-validate"),
    };
    let report = tokio::select! {
        r = validate::validate_image(&driver, &ledger, run_id.as_str(), &args.image, &request) => r,
        _ = tokio::signal::ctrl_c() => {
            return Ok(super::cleanup_after_interrupt(&driver, &ledger, &[run_id.to_string()]).await);
        }
    };
    let _ = driver.cloud().revoke_token().await;
    let status = match report.verdict() {
        // The image could not be looked at: there is no report to speak of, only the reason.
        Verdict::Error(by, reason) => {
            if args.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            eprintln!("error: {reason}");
            by.into()
        }
        _ => {
            print_validation(&report, args.format)?;
            if report.passed() { ExitStatus::Ok } else { ExitStatus::Findings }
        }
    };
    let left = super::left_behind(&ledger, &driver.describe(), |run| run == run_id.as_str())?;
    Ok(super::unless_left_behind(&left, &ledger, status))
}

fn print_validation(report: &ValidationReport, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Format::Human => {
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
    Ok(())
}
