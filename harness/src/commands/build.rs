//! `isoharness build`: one run of the ISO-to-image workflow for a scenario, on an embedded mockstack or a real
//! cloud, reported once: live step lines on stderr when it is a terminal, the report on stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use guestsim::Layout;
use guestsim::OutcomeKind;
use harness::exit::ExitStatus;
use harness::scenario::Scenario;
use harness::target::{Embedded, connect_real, media_for};
use harness::workflow::{
    BuildOptions, BuildReport, Driver, LayoutPlan, LayoutSource, LayoutUsed, RunId, StepReport, StoppedBy, run_build,
};

use super::{CloudArgs, CommandError, DomainXmlArgs, Format, LayoutChoice};

/// The exit statuses `build` ends with: every one, as a command that runs against a cloud and cleans up.
pub const STATUSES: &[ExitStatus] = &ExitStatus::ALL;

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub domain_xml: DomainXmlArgs,
    /// The scenario file (e.g. scenarios/ubuntu-24.04.toml)
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// The layout of the compute host. On the embedded mockstack, the one it implements (default: patched; not auto).
    /// On a real cloud, the one its hosts implement, or auto (the default with --domain-xml-command or
    /// --domain-xml-file): recognised from the install server's domain XML; an unrecognised one stops the build
    /// (exit 2)
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub layout: Option<LayoutChoice>,
    /// Keep the final image when the build succeeds (everything else the run created is always deleted)
    #[arg(long)]
    pub keep: bool,
    /// Skip the boot test of the final image
    #[arg(long)]
    pub no_boot: bool,
    /// The report on stdout: human (and, when stderr is a terminal, each step there as it finishes) or json (one
    /// JSON line per finished step, then one with the whole report)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// The ledger of the resources a run on a real cloud creates (default: $XDG_STATE_HOME/isoharness/ledger.jsonl);
    /// a run on the embedded mockstack, whose resources vanish with it, keeps no ledger
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

/// Which clock the step times are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloudClock {
    /// A real cloud: wall time.
    Real,
    /// The embedded mockstack's virtual clock, which the build's waits advance.
    Virtual,
}

impl CloudClock {
    fn label(self, seconds: f64) -> String {
        match self {
            CloudClock::Real => format!("{seconds:.0}s"),
            CloudClock::Virtual => format!("{seconds:.0}s virtual"),
        }
    }
}

pub async fn run(args: BuildArgs) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    let scenario = Scenario::load(&args.scenario)?;
    let scratch = tempfile::Builder::new().prefix("isoharness-").tempdir().context("no scratch directory")?;
    let run_id = RunId::new();
    let real = args.cloud.names_real_cloud();
    let ledger = super::run_ledger(real, &args.ledger, scratch.path())?;
    let clock = if real { CloudClock::Real } else { CloudClock::Virtual };
    let mut options = BuildOptions::new(run_id.clone(), scratch.path());
    options.keep = args.keep;
    options.boot_test = !args.no_boot;
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let live = args.format == Format::Human && stderr_is_terminal;
    options.on_step = match args.format {
        Format::Json => Some(Arc::new(|step: &StepReport| {
            println!("{}", serde_json::json!({ "event": "step", "step": step }));
        })),
        Format::Human if live => Some(Arc::new(move |step: &StepReport| eprintln!("  {}", step_line(step, clock)))),
        Format::Human => None,
    };
    let embedded;
    let (driver, media, place) = if real {
        options.layout = super::real_layout(args.layout, args.domain_xml.given()).map_err(CommandError::usage)?;
        let media = media_for(&scenario, false, scratch.path())?;
        let driver = connect_real(&args.cloud.config_request(), args.domain_xml.source())
            .await?
            .with_progress(stderr_is_terminal);
        let place = driver.describe();
        (driver, media, place)
    } else {
        let layout = embedded_layout(args.layout).map_err(CommandError::usage)?;
        options.layout = LayoutPlan::Known(LayoutUsed { layout, source: LayoutSource::Embedded });
        options.poll_min = Duration::from_secs(5);
        options.poll_max = Duration::from_secs(60);
        let media;
        (embedded, media) = Embedded::start_with_media(&scenario, layout, scratch.path()).await?;
        (embedded.driver().await?, media, format!("an embedded mockstack ({layout} layout)"))
    };
    if live {
        eprintln!("isoharness build {} on {place}, run {run_id}", scenario.name);
    }
    let clock_started = driver.elapsed();
    let report = tokio::select! {
        report = run_build(&driver, &ledger, &scenario, &media, &options) => report,
        _ = tokio::signal::ctrl_c() => {
            return Ok(super::cleanup_after_interrupt(&driver, &ledger, &[run_id.to_string()]).await);
        }
    };
    let cloud_seconds = driver.elapsed().saturating_sub(clock_started).as_secs_f64();
    let _ = driver.cloud().revoke_token().await;
    let mut report = report;
    if !real {
        // The embedded cloud, and its console, are gone by the time anyone reads the report.
        report.console_url = None;
    }
    match args.format {
        Format::Json => println!("{}", serde_json::json!({ "event": "report", "report": report })),
        Format::Human => {
            // Live lines already showed each step, unless the report goes somewhere else than the terminal.
            let steps = !(live && std::io::stdout().is_terminal());
            let times = Times { wall: started.elapsed().as_secs_f64(), cloud: cloud_seconds };
            print!("{}", render_human(&report, &place, clock, steps, times));
        }
    }
    let status = status_of_report(&report);
    if !real {
        return Ok(status);
    }
    let left = super::left_behind(&ledger, &report.cloud, |run| run == run_id.as_str())?;
    Ok(super::unless_left_behind(&left, &ledger, status))
}

/// The layout the embedded mockstack implements: the one `--layout` names, patched by default; `auto` has nothing
/// to recognise there.
fn embedded_layout(given: Option<LayoutChoice>) -> Result<Layout, String> {
    match given {
        None => Ok(Layout::Patched),
        Some(choice) => choice.layout().ok_or_else(|| {
            format!(
                "{}: the build's --layout picks the layout the embedded mockstack implements (stock, patched or \
                 patched-floppy; default patched)",
                super::AUTO_ON_EMBEDDED
            )
        }),
    }
}

/// A build's exit status: success only for `image-ok`; another outcome is a finding; a run without an outcome
/// ends with the status of whoever stopped it.
fn status_of_report(report: &BuildReport) -> ExitStatus {
    match (report.outcome, report.stopped_by) {
        (Some(OutcomeKind::ImageOk), _) => ExitStatus::Ok,
        (Some(_), _) => ExitStatus::Findings,
        (None, Some(by)) => by.into(),
        // A run without an outcome always says who stopped it; should that change, it is still no success.
        (None, None) => ExitStatus::Findings,
    }
}

/// One step: name, status, time on the cloud's clock, what happened.
fn step_line(step: &StepReport, clock: CloudClock) -> String {
    let status = format!("{:?}", step.status).to_lowercase();
    format!("{:<13} {:<8} {:>13}  {}", step.step, status, clock.label(step.seconds), step.detail)
}

/// How long a build took: here (wall time, the whole command) and on the cloud's clock (the run itself).
#[derive(Debug, Clone, Copy)]
struct Times {
    wall: f64,
    cloud: f64,
}

/// The human report: the steps (unless shown live), the outcome and its evidence, cleanup, and the time taken.
fn render_human(report: &BuildReport, place: &str, clock: CloudClock, steps: bool, times: Times) -> String {
    let mut out = String::new();
    if steps {
        out.push_str(&format!("build {} on {place}, run {}\n", report.scenario, report.run_id));
        for step in &report.steps {
            out.push_str(&step_line(step, clock));
            out.push('\n');
        }
    }
    if let Some(used) = &report.layout {
        out.push_str(&format!("layout: {used}\n"));
    }
    if let Some(url) = &report.console_url {
        out.push_str(&format!("console: {url}\n"));
    }
    match report.outcome {
        Some(o) if report.reason.is_empty() => out.push_str(&format!("outcome: {o}\n")),
        Some(o) => out.push_str(&format!("outcome: {o} ({})\n", report.reason)),
        None => {
            let by = match report.stopped_by {
                Some(StoppedBy::Cloud) => "the cloud failed: ",
                Some(StoppedBy::Input) => "bad input: ",
                None => "",
            };
            out.push_str(&format!("outcome: none: {by}{}\n", report.reason));
        }
    }
    for line in &report.evidence {
        out.push_str(&format!("  | {line}\n"));
    }
    if let Some(id) = &report.image_id {
        out.push_str(&format!("kept image {id}\n"));
    }
    for line in &report.cleanup {
        out.push_str(&format!("cleanup: {line}\n"));
    }
    let wall = super::seconds(times.wall);
    out.push_str(&match clock {
        CloudClock::Real => format!("took {wall}\n"),
        CloudClock::Virtual => format!(
            "took {wall} of wall time; {} passed on the embedded mockstack's virtual clock\n",
            super::seconds(times.cloud)
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::workflow::StepStatus;

    #[test]
    fn virtual_time_is_told_apart_from_wall_time() {
        let step =
            StepReport { step: "install", status: StepStatus::Ok, detail: "powered off".into(), seconds: 1523.0 };
        assert!(
            step_line(&step, CloudClock::Virtual).contains("1523s virtual"),
            "{}",
            step_line(&step, CloudClock::Virtual)
        );
        assert!(!step_line(&step, CloudClock::Real).contains("virtual"));
    }

    #[test]
    fn the_embedded_mockstack_takes_a_layout_name_and_refuses_auto() {
        assert_eq!(embedded_layout(None), Ok(Layout::Patched));
        assert_eq!(embedded_layout(Some(LayoutChoice::Stock)), Ok(Layout::Stock));
        let error = embedded_layout(Some(LayoutChoice::Auto)).unwrap_err();
        assert!(error.starts_with("--layout auto recognises a real cloud's layout"), "{error}");
        assert!(error.contains("picks the layout the embedded mockstack implements"), "{error}");
    }

    #[test]
    fn the_report_says_which_layout_was_used_and_where_it_came_from() {
        let recognised = LayoutUsed {
            layout: Layout::Patched,
            source: LayoutSource::Recognised { server: "ih-1-ubuntu-install".into() },
        };
        let report = BuildReport { layout: Some(recognised), ..BuildReport::default() };
        let times = Times { wall: 1.0, cloud: 1.0 };
        let text = render_human(&report, "a cloud", CloudClock::Real, false, times);
        assert!(text.contains("layout: patched (recognised from ih-1-ubuntu-install's domain XML)\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["layout"],
            serde_json::json!({"layout": "patched", "source": "recognised", "server": "ih-1-ubuntu-install"})
        );
    }

    #[test]
    fn a_run_without_an_outcome_exits_with_the_status_of_whoever_stopped_it() {
        let report = |outcome, stopped_by| BuildReport { outcome, stopped_by, ..BuildReport::default() };
        assert_eq!(status_of_report(&report(Some(OutcomeKind::ImageOk), None)), ExitStatus::Ok);
        assert_eq!(status_of_report(&report(Some(OutcomeKind::IsoCopy), None)), ExitStatus::Findings);
        assert_eq!(status_of_report(&report(None, Some(StoppedBy::Cloud))), ExitStatus::Cloud);
        assert_eq!(status_of_report(&report(None, Some(StoppedBy::Input))), ExitStatus::Usage);
        let text = render_human(
            &report(None, Some(StoppedBy::Cloud)),
            "a cloud",
            CloudClock::Real,
            false,
            Times { wall: 1.0, cloud: 1.0 },
        );
        assert!(text.contains("outcome: none: the cloud failed"), "{text}");
    }
}
