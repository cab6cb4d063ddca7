//! The commands of `isoharness`, one module each; what they share lives here: the options naming a cloud, the
//! output format, the ledger a run writes, the cleanup after Ctrl-C, and the classification of errors into an
//! [`ExitStatus`]. A command module never imports another command's module.

pub mod build;
pub mod check_xml;
pub mod cleanup;
pub mod matrix;
pub mod media;
pub mod mock;
pub mod report;
pub mod validate_image;

use std::path::{Path, PathBuf};

use anyhow::Context;
use guestsim::Layout;
use harness::cloud::{CloudError, ConfigRequest};
use harness::driver::DomainXmlSource;
use harness::exit::ExitStatus;
use harness::workflow::cleanup_live;
use harness::workflow::ledger::{Ledger, Live};
use harness::workflow::{Driver, LayoutPlan, LayoutSource, LayoutUsed, StoppedBy};

/// The help of `--os-cloud` for the commands that run on an embedded mockstack when no cloud is named.
pub const EMBEDDED_CLOUD_HELP: &str = "The cloud's entry in clouds.yaml. Without it, and without OS_AUTH_URL, the \
     command runs on an embedded mockstack started in this process";

/// The options naming the real cloud a command talks to (clouds.yaml, secure.yaml and the `OS_*` variables, as
/// every OpenStack tool reads them).
#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// The cloud's entry in clouds.yaml; without it, OS_AUTH_URL and the other OS_* variables must describe the
    /// cloud
    #[arg(long, env = "OS_CLOUD", value_name = "NAME")]
    pub os_cloud: Option<String>,
    /// The region whose endpoints to use (default: the cloud's region_name, else the first the catalog lists)
    #[arg(long, env = "OS_REGION_NAME", value_name = "REGION")]
    pub os_region_name: Option<String>,
}

impl CloudArgs {
    /// Whether the arguments (or the environment) name a real cloud.
    pub fn names_real_cloud(&self) -> bool {
        self.os_cloud.is_some() || std::env::var_os("OS_AUTH_URL").is_some()
    }

    pub fn config_request(&self) -> ConfigRequest {
        ConfigRequest { cloud: self.os_cloud.clone(), region_name: self.os_region_name.clone() }
    }
}

/// Where `build` and `matrix` get the libvirt domain XML of an install server on a real cloud (an embedded
/// mockstack serves it itself).
#[derive(Debug, Clone, clap::Args)]
pub struct DomainXmlArgs {
    /// On a real cloud, fetch each install server's domain XML with this shell command; `{host}` and `{instance}`
    /// are replaced (e.g. `ssh {host} sudo virsh dumpxml {instance}`)
    #[arg(long, value_name = "CMD", conflicts_with = "domain_xml_file")]
    pub domain_xml_command: Option<String>,
    /// On a real cloud, check this saved `virsh dumpxml` output as the install server's domain XML
    #[arg(long, value_name = "FILE")]
    pub domain_xml_file: Option<PathBuf>,
}

impl DomainXmlArgs {
    pub fn source(&self) -> DomainXmlSource {
        match (&self.domain_xml_command, &self.domain_xml_file) {
            (Some(cmd), _) => DomainXmlSource::Command(cmd.clone()),
            (None, Some(file)) => DomainXmlSource::File(file.clone()),
            (None, None) => DomainXmlSource::None,
        }
    }
}

impl DomainXmlArgs {
    /// Whether a domain XML source is given.
    pub fn given(&self) -> bool {
        self.domain_xml_command.is_some() || self.domain_xml_file.is_some()
    }
}

/// `--layout` of `build` and `matrix`: the layout the compute hosts implement, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutChoice {
    /// A real cloud: recognise the layout from the first install server's domain XML (as check-xml --layout auto)
    Auto,
    /// Upstream Nova: the ISO is the root CD-ROM (what a snapshot then copies)
    Stock,
    /// The article's layout: a blank virtio root disk first, the OS and VirtIO ISOs as CD-ROMs
    Patched,
    /// Patched, plus a read-only driver floppy
    PatchedFloppy,
}

impl LayoutChoice {
    /// The built-in layout it names; `None` for `auto`.
    pub fn layout(self) -> Option<Layout> {
        match self {
            LayoutChoice::Auto => None,
            LayoutChoice::Stock => Some(Layout::Stock),
            LayoutChoice::Patched => Some(Layout::Patched),
            LayoutChoice::PatchedFloppy => Some(Layout::PatchedFloppy),
        }
    }
}

/// The usage error of `--layout auto` on the embedded mockstack, whose layout is chosen, not recognised.
pub const AUTO_ON_EMBEDDED: &str = "--layout auto recognises a real cloud's layout from an install server's domain \
     XML; the embedded mockstack has nothing to recognise";

/// What `--layout` means on a real cloud: `auto` (the default when a domain XML source is given) recognises the
/// layout from the first install server's domain XML and needs that source; a name is taken as given; neither leaves
/// it unknown.
pub fn real_layout(given: Option<LayoutChoice>, domain_xml_source: bool) -> Result<LayoutPlan, String> {
    match given.map(|choice| (choice, choice.layout())) {
        Some((_, Some(layout))) => Ok(LayoutPlan::Known(LayoutUsed { layout, source: LayoutSource::Given })),
        Some((_, None)) | None if domain_xml_source => Ok(LayoutPlan::Recognise),
        Some((_, None)) => Err("--layout auto recognises the layout from the first install server's domain XML, and \
                                no domain XML source is given: give --domain-xml-command CMD or --domain-xml-file \
                                FILE, or --layout NAME (stock, patched or patched-floppy)"
            .into()),
        None => Ok(LayoutPlan::Unknown),
    }
}

/// How a command prints its report (on stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for people
    Human,
    /// Machine-readable JSON
    Json,
}

/// An error that knows the exit status it calls for. Errors without one are classified by [`status_of`].
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct CommandError {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl CommandError {
    /// Bad input: the command could not run as asked.
    pub fn usage(message: impl std::fmt::Display) -> anyhow::Error {
        CommandError { status: ExitStatus::Usage, error: anyhow::anyhow!("{message}") }.into()
    }
}

/// The exit status an error calls for: its own ([`CommandError`]), the cloud client's classification (a cloud
/// that failed is [`ExitStatus::Cloud`], a configuration that does not name one is [`ExitStatus::Usage`]), or
/// [`ExitStatus::Usage`].
pub fn status_of(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<CommandError>() {
            return e.status;
        }
        if let Some(e) = cause.downcast_ref::<CloudError>() {
            return StoppedBy::of(e).into();
        }
    }
    ExitStatus::Usage
}

/// Ends a command: its status, or its error printed on stderr and classified.
pub fn finish(result: anyhow::Result<ExitStatus>) -> ExitStatus {
    match result {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error:#}");
            status_of(&error)
        }
    }
}

/// The user's ledger (`--ledger FILE`, or `$XDG_STATE_HOME/isoharness/ledger.jsonl`), for runs on a real cloud.
pub fn open_ledger(path: &Option<PathBuf>) -> anyhow::Result<Ledger> {
    let path = path.clone().unwrap_or_else(Ledger::default_path);
    Ok(Ledger::open(&path)?)
}

/// The ledger of a run: the user's on a real cloud, whose resources can outlive this process; on an embedded
/// mockstack, which vanishes with the process, a scratch ledger in `scratch`, so that the user's ledger never
/// lists resources of a cloud a later `isoharness cleanup` could not reach.
pub fn run_ledger(real_cloud: bool, path: &Option<PathBuf>, scratch: &Path) -> anyhow::Result<Ledger> {
    if real_cloud { open_ledger(path) } else { Ok(Ledger::open_scratch(&scratch.join("ledger.jsonl"))?) }
}

/// The resources of the runs `runs` accepts on `cloud` that the ledger still lists: what a cleanup left behind.
pub fn left_behind(ledger: &Ledger, cloud: &str, runs: impl Fn(&str) -> bool) -> anyhow::Result<Vec<Live>> {
    Ok(Ledger::live(ledger.path())?.into_iter().filter(|l| l.cloud == cloud && runs(&l.run)).collect())
}

/// [`ExitStatus::Cleanup`] with the leftovers named on stderr, or `status` when nothing was left behind.
pub fn unless_left_behind(left: &[Live], ledger: &Ledger, status: ExitStatus) -> ExitStatus {
    if left.is_empty() {
        return status;
    }
    eprintln!("error: cleanup left {} resource(s) behind (listed in {}):", left.len(), ledger.path().display());
    for live in left {
        let id = live.id.as_deref().unwrap_or("id unknown");
        eprintln!("  {:?} {} ({id}) of run {}", live.kind, live.name, live.run);
    }
    eprintln!("run `isoharness cleanup` on that cloud to retry");
    ExitStatus::Cleanup
}

/// After Ctrl-C: deletes what the interrupted runs created. [`ExitStatus::Interrupted`] when nothing is left
/// behind, [`ExitStatus::Cleanup`] when the cleanup failed or left something.
pub async fn cleanup_after_interrupt<D: Driver>(driver: &D, ledger: &Ledger, runs: &[String]) -> ExitStatus {
    eprintln!("interrupted: cleaning up run {}", runs.join(", "));
    let mut failed = false;
    for run in runs {
        match cleanup_live(driver, ledger, Some(run), false).await {
            Ok(lines) => lines.iter().for_each(|line| eprintln!("  {line}")),
            Err(e) => {
                eprintln!("error: cannot clean up run {run}: {:#}", anyhow::Error::from(e));
                failed = true;
            }
        }
    }
    match left_behind(ledger, &driver.describe(), |run| runs.iter().any(|r| r == run)) {
        Ok(left) if !failed => unless_left_behind(&left, ledger, ExitStatus::Interrupted),
        Ok(_) => ExitStatus::Cleanup,
        Err(e) => {
            eprintln!("error: cannot read back the ledger: {e:#}");
            ExitStatus::Cleanup
        }
    }
}

/// A duration for people: hundredths under ten seconds, whole seconds above.
/// Prints a matrix report in `format` on stdout, or writes it to `output` and prints its summary line on stderr.
pub fn emit_matrix_report(
    report: &harness::matrix::MatrixReport,
    format: harness::matrix::MatrixFormat,
    output: &Option<PathBuf>,
) -> anyhow::Result<()> {
    let text = report.render(format);
    match output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{}", report.summary());
        }
        None => print!("{text}"),
    }
    Ok(())
}

pub fn seconds(s: f64) -> String {
    if s < 10.0 { format!("{s:.2}s") } else { format!("{s:.0}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_real_cloud_auto_is_the_default_with_a_domain_xml_source_and_needs_one() {
        let given = |layout| LayoutPlan::Known(LayoutUsed { layout, source: LayoutSource::Given });
        assert_eq!(real_layout(None, true), Ok(LayoutPlan::Recognise));
        assert_eq!(real_layout(Some(LayoutChoice::Auto), true), Ok(LayoutPlan::Recognise));
        assert_eq!(real_layout(Some(LayoutChoice::Stock), true), Ok(given(Layout::Stock)));
        assert_eq!(real_layout(Some(LayoutChoice::PatchedFloppy), false), Ok(given(Layout::PatchedFloppy)));
        assert_eq!(real_layout(None, false), Ok(LayoutPlan::Unknown));
        let error = real_layout(Some(LayoutChoice::Auto), false).unwrap_err();
        assert!(error.contains("no domain XML source") && error.contains("--layout NAME"), "{error}");
    }

    #[test]
    fn errors_are_classified_by_type_not_by_text() {
        let refused = CloudError::Timeout {
            method: "POST".into(),
            url: "http://127.0.0.1:1/v3/auth/tokens".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        let error = anyhow::Error::from(refused).context("cannot connect");
        assert_eq!(status_of(&error), ExitStatus::Cloud);
        let config = CloudError::Config(harness::cloud::ConfigError::NothingConfigured { searched: Vec::new() });
        assert_eq!(status_of(&anyhow::Error::from(config)), ExitStatus::Usage);
        assert_eq!(status_of(&CommandError::usage("bad")), ExitStatus::Usage);
        let cleanup = anyhow::Error::from(CommandError { status: ExitStatus::Cleanup, error: anyhow::anyhow!("x") });
        assert_eq!(status_of(&cleanup.context("outer")), ExitStatus::Cleanup);
        assert_eq!(status_of(&anyhow::anyhow!("anything else")), ExitStatus::Usage);
    }
}
