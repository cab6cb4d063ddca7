//! `isoharness cleanup`: delete what earlier runs on a real cloud left behind, as the ledger of created resources
//! lists it (a run killed with SIGKILL, a machine that crashed).

use std::path::PathBuf;

use clap::Args;
use harness::driver::DomainXmlSource;
use harness::exit::ExitStatus;
use harness::target::connect_real;
use harness::workflow::{Driver, cleanup_live};

use super::{CloudArgs, CommandError};

/// The exit statuses `cleanup` ends with.
pub const STATUSES: &[ExitStatus] = &[ExitStatus::Ok, ExitStatus::Usage, ExitStatus::Cloud, ExitStatus::Cleanup];

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Show what would be deleted, and delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Only this run's resources (the `ih-…` prefix of their names)
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// The ledger to read (default: $XDG_STATE_HOME/isoharness/ledger.jsonl)
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

pub async fn run(args: CleanupArgs) -> anyhow::Result<ExitStatus> {
    if !args.cloud.names_real_cloud() {
        return Err(CommandError::usage(
            "cleanup needs the cloud to clean up: give --os-cloud NAME (or set OS_CLOUD, or OS_AUTH_URL and the \
             other OS_* variables); an embedded mockstack leaves nothing behind when it stops",
        ));
    }
    let ledger = super::open_ledger(&args.ledger)?;
    let driver = connect_real(&args.cloud.config_request(), DomainXmlSource::None).await?;
    let lines = cleanup_live(&driver, &ledger, args.run.as_deref(), args.dry_run).await?;
    if lines.is_empty() {
        println!("nothing to clean up on {}", driver.describe());
    }
    for line in lines {
        println!("{line}");
    }
    if args.dry_run {
        return Ok(ExitStatus::Ok);
    }
    let left = super::left_behind(&ledger, &driver.describe(), |run| args.run.as_deref().is_none_or(|r| r == run))?;
    Ok(super::unless_left_behind(&left, &ledger, ExitStatus::Ok))
}
