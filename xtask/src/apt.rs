//! Debian packages the tests and the local real cloud need, installed as a good guest: only the missing ones,
//! only by a plan that `apt-get -s` shows removes and downgrades nothing (taking related packages from the
//! suite the machine's own came from when the release's versions would replace them), with every service
//! the packages bring kept from starting and left disabled, and apt's output in a log file.

mod plan;
mod services;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};

use plan::{Harm, InstallPlan, Origin, Simulation};
use services::Privilege;

/// A Debian package something here needs.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub name: &'static str,
    /// A binary the package installs; when it is on `PATH` the package counts as present, whoever
    /// installed it. Empty: only dpkg's word counts.
    pub probe: &'static str,
    pub why: &'static str,
}

/// Where apt's output and this module's scratch files go: `target/xtask/`.
fn scratch_dir() -> PathBuf {
    crate::workspace_root().join("target").join("xtask")
}

pub fn log_path() -> PathBuf {
    scratch_dir().join("apt.log")
}

/// Set once `apt-get update` ran in this process: one refresh of the package lists is enough.
static LISTS_UPDATED: AtomicBool = AtomicBool::new(false);

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"install ok installed")
}

fn present(package: &Package) -> bool {
    crate::on_path(package.probe) || installed(package.name)
}

/// Installs the packages of `packages` that are missing, for `purpose` (one line of output, e.g. "the tests").
pub fn ensure(purpose: &str, packages: &[Package]) -> anyhow::Result<()> {
    let missing: Vec<&Package> = packages.iter().filter(|p| !present(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let names: Vec<String> = missing.iter().map(|p| p.name.to_string()).collect();
    crate::say(format!(
        "installing for {purpose}: {} (apt-get; its output goes to {})",
        names.join(" "),
        log_path().display()
    ));
    let mut apt = Apt::new()?;
    let added = match apt.install_missing(&names) {
        Ok(added) => added,
        Err(e) => {
            return Err(e.context(format!(
                "cannot install {} ({}); apt's output is in {}",
                names.join(" "),
                missing.iter().map(|p| p.why).collect::<Vec<_>>().join("; "),
                log_path().display()
            )));
        }
    };
    let absent: Vec<&str> = names.iter().map(String::as_str).filter(|name| !installed(name)).collect();
    if !absent.is_empty() {
        bail!("apt-get finished but {} is still not installed; see {}", absent.join(", "), log_path().display());
    }
    crate::say(format!(
        "installed for {purpose}: {added} packages new to the machine (dependencies included), in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// apt-get and apt-cache, run with the same sources, their output appended to the log.
struct Apt {
    privilege: Privilege,
    /// A private copy of the machine's `sources.list.d` plus one line, when the machine's sources lack the
    /// suite installed packages came from; `/etc/apt` itself is never changed.
    source_parts: Option<PathBuf>,
    /// Dependencies named on the command line only to take them from a suite: marked automatically installed
    /// after the install, as apt would have marked them.
    dependencies_from_suite: Vec<String>,
}

/// How many dependencies an install may take from a suite by name before it is refused as going too far.
const MAX_DEPENDENCIES_FROM_SUITE: usize = 32;

impl Apt {
    fn new() -> anyhow::Result<Apt> {
        fs::create_dir_all(scratch_dir()).with_context(|| format!("cannot create {}", scratch_dir().display()))?;
        Ok(Apt { privilege: Privilege::current(), source_parts: None, dependencies_from_suite: Vec::new() })
    }

    fn options(&self) -> Vec<String> {
        match &self.source_parts {
            Some(dir) => vec!["-o".into(), format!("Dir::Etc::sourceparts={}", dir.display())],
            None => Vec::new(),
        }
    }

    fn apt_get(&self, privileged: bool) -> Command {
        let mut command = if privileged { self.privilege.command("apt-get") } else { Command::new("apt-get") };
        command.env("DEBIAN_FRONTEND", "noninteractive").args(self.options());
        command
    }

    fn update(&self) -> anyhow::Result<()> {
        log_run(self.apt_get(true).args(["update", "-q"]))?;
        LISTS_UPDATED.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// What `apt-get install` of `targets` would do, without root (`apt-get -s`).
    fn simulate(&self, targets: &[String]) -> anyhow::Result<Simulation> {
        let mut command = self.apt_get(false);
        command.args(["-s", "install", "--no-install-recommends"]).args(targets);
        let output = command.output().with_context(|| format!("cannot run {}", crate::describe(&command)))?;
        append_to_log(&command, &output.stdout, &output.stderr)?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Ok(Simulation::read(output.status.success(), &text))
    }

    /// Where the installed version of `package` came from (`apt-cache policy`, `/etc/os-release`).
    fn origin(&self, package: &str) -> Option<Origin> {
        let policy = Command::new("apt-cache").args(self.options()).args(["policy", package]).output().ok()?;
        let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
        plan::installed_origin(&String::from_utf8_lossy(&policy.stdout), &os_release)
    }

    /// Uses the machine's sources plus `line`, through a private source-parts directory.
    fn add_source(&mut self, line: &str) -> anyhow::Result<()> {
        let dir = scratch_dir().join("apt-sources.d");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".list") || name.ends_with(".sources") {
                    fs::copy(entry.path(), dir.join(&name))?;
                }
            }
        }
        fs::write(dir.join("isoharness-added.list"), format!("{line}\n"))?;
        self.source_parts = Some(dir);
        Ok(())
    }

    /// Installs `names`; returns how many packages are new on the machine.
    fn install_missing(&mut self, names: &[String]) -> anyhow::Result<usize> {
        if !LISTS_UPDATED.load(Ordering::Relaxed) {
            self.update()?;
        }
        let (targets, plan) = self.plan_without_harm(names)?;
        let upgrades = plan.upgrades();
        if !upgrades.is_empty() {
            crate::say(format!("  which also upgrades, as the new packages need: {}", upgrades.join(", ")));
        }
        let root = Path::new("/");
        let links_before = services::boot_links(root);
        let held = services::hold(root, &scratch_dir(), self.privilege)?;
        let mut install = self.apt_get(true);
        // --no-remove: should the plan have been misread, apt stops rather than remove anything.
        install.args(["install", "-y", "-q", "--no-install-recommends", "--no-remove"]).args(&targets);
        let mut installed = log_run(&mut install);
        if installed.is_ok() && !self.dependencies_from_suite.is_empty() {
            let mut mark = self.privilege.command("apt-mark");
            mark.arg("auto").args(&self.dependencies_from_suite);
            installed = log_run(&mut mark);
        }
        let released = held.release();
        let disabled = services::disable_new(root, &links_before, self.privilege, &mut log_run);
        installed?;
        released?;
        let disabled = disabled?;
        if !disabled.is_empty() {
            crate::say(format!(
                "  left disabled, never started: {} (the local real cloud runs its own on 127.0.0.1)",
                disabled.names().join(", ")
            ));
        }
        Ok(plan.new_packages())
    }

    /// The install targets for `names` and their plan, such that nothing installed is removed or downgraded.
    ///
    /// When the release's versions would replace installed packages (qemu-utils 10.0 from backports is removed by
    /// qemu-system-x86 7.2 from the release), the packages that cause it are taken from the suite the installed
    /// ones came from (`qemu-system-x86/bookworm-backports`), adding that suite to a private copy of the sources
    /// when the machine's lack it. Otherwise the install is refused, naming what it would take away.
    fn plan_without_harm(&mut self, names: &[String]) -> anyhow::Result<(Vec<String>, InstallPlan)> {
        let (in_the_way, what): (Vec<String>, String) = match self.simulate(names)? {
            Simulation::InstallPlan(plan) if plan.harm().is_empty() => return Ok((names.to_vec(), plan)),
            Simulation::InstallPlan(plan) => (
                plan.harm().iter().map(|h| h.package().to_string()).collect(),
                format!("apt-get's plan {}", plan.harm().iter().map(Harm::to_string).collect::<Vec<_>>().join(", ")),
            ),
            Simulation::Unresolvable { named, message } => (
                named.into_iter().filter(|name| installed(name)).collect(),
                format!("apt-get finds no plan:\n{message}\n"),
            ),
        };
        let refuse = |why: &str| {
            anyhow::anyhow!(
                "refusing to install {}: {what}; {why}. Install them yourself in a way that keeps the \
                 installed packages, then run this again",
                names.join(" "),
            )
        };
        let origins: BTreeSet<Option<Origin>> = in_the_way.iter().map(|package| self.origin(package)).collect();
        let origin = match origins.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(origin)] => origin.clone(),
            _ => return Err(refuse("the one suite the installed versions came from cannot be told")),
        };
        if let Some(line) = &origin.missing_source {
            self.add_source(line)?;
            self.update()?;
        }
        let mut targets = Vec::new();
        for name in names {
            let alone = self.simulate(std::slice::from_ref(name))?.harmless();
            targets.push(if alone.is_some() { name.clone() } else { format!("{name}/{}", origin.suite) });
        }
        // `name/suite` picks that package's version only: the dependencies that version needs newer than the
        // release has are named by apt's answer and taken from the suite too, a round per layer of them.
        let mut dependencies = Vec::new();
        let plan = loop {
            let simulation = self.simulate(&targets)?;
            let unmet: Vec<String> = simulation
                .unmet_dependencies()
                .into_iter()
                .filter(|dependency| !targets.iter().any(|t| t.split('/').next() == Some(dependency.as_str())))
                .collect();
            if let Some(plan) = simulation.harmless() {
                break plan;
            }
            if unmet.is_empty() || dependencies.len() > MAX_DEPENDENCIES_FROM_SUITE {
                return Err(refuse(&format!("taking them from {} does not help either", origin.suite)));
            }
            targets.extend(unmet.iter().map(|dependency| format!("{dependency}/{}", origin.suite)));
            dependencies.extend(unmet);
        };
        self.dependencies_from_suite = dependencies;
        let from_suite: Vec<&str> = targets.iter().filter_map(|t| t.split_once('/')).map(|(name, _)| name).collect();
        crate::say(format!(
            "  taking {} from {}{}, the suite of the installed {}: from the release, {}",
            from_suite.join(" "),
            origin.suite,
            if origin.missing_source.is_some() {
                " (its source added for this install only; /etc/apt unchanged)"
            } else {
                ""
            },
            in_the_way.join(", "),
            what.lines().next().unwrap_or_default().trim_end_matches(':'),
        ));
        Ok((targets, plan))
    }
}

fn append_to_log(command: &Command, stdout: &[u8], stderr: &[u8]) -> anyhow::Result<()> {
    let mut log = open_log()?;
    writeln!(log, "==> {}", crate::describe(command))?;
    log.write_all(stdout)?;
    log.write_all(stderr)?;
    Ok(())
}

fn open_log() -> anyhow::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path())
        .with_context(|| format!("cannot open {}", log_path().display()))
}

/// Runs `command` with its output appended to the log; on failure, the error quotes the log's last lines.
fn log_run(command: &mut Command) -> anyhow::Result<()> {
    let mut log = open_log()?;
    writeln!(log, "==> {}", crate::describe(command))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run {}", crate::describe(command)))?;
    if !status.success() {
        let text = fs::read_to_string(log_path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!(
            "{} failed with {status}; the end of {}:\n{}",
            crate::describe(command),
            log_path().display(),
            tail.join("\n")
        );
    }
    Ok(())
}
