//! Keeping the services a package install brings private: a `policy-rc.d` that forbids starting them while
//! apt runs, and the boot-time links (systemd units, SysV `S` links) the maintainer scripts create, found by
//! comparing the links before and after the install so that exactly those are disabled again.
//!
//! Debian's maintainer scripts ask `/usr/sbin/policy-rc.d` (through `invoke-rc.d`/`deb-systemd-invoke`)
//! before they start a service; exit status 101 means "forbidden". They enable units regardless
//! (`deb-systemd-helper enable`), hence the second half. (`deb-systemd-helper` itself cannot undo that: it
//! refuses to run outside a maintainer script; `systemctl disable` works whether systemd runs or not.)

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The first lines of the `policy-rc.d` this module writes; a file that starts so is ours (perhaps left
/// behind by an interrupted run).
const MARKER: &str =
    "#!/bin/sh\n# Written by `cargo xtask` (isoharness) while it installs packages; removed afterwards.\n";

/// Exit status 101: "action forbidden by policy" (invoke-rc.d's interface).
const OURS: &str = "exit 101\n";

/// Runs a command as root: directly when we are root, through `sudo` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Root,
    Sudo,
}

impl Privilege {
    pub fn current() -> Privilege {
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if uid.is_ok_and(|uid| uid == "0") { Privilege::Root } else { Privilege::Sudo }
    }

    pub fn command(self, program: &str) -> Command {
        match self {
            Privilege::Root => Command::new(program),
            Privilege::Sudo => {
                let mut command = Command::new("sudo");
                command.arg(program);
                command
            }
        }
    }

    fn run(self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = self.command(program);
        command.args(args);
        let output = command.output().with_context(|| format!("cannot run {}", crate::describe(&command)))?;
        if !output.status.success() {
            anyhow::bail!(
                "{} failed with {}: {}",
                crate::describe(&command),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The `policy-rc.d` found on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundPolicy {
    None,
    /// Ours, left by a run that was interrupted before it could remove it.
    Ours,
    /// The machine's own, and it forbids starting services (containers often have one).
    Forbids,
    /// The machine's own, and it lets services start.
    Allows,
}

/// What to do with the machine's `policy-rc.d` for the duration of an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStep {
    /// Write ours, remove it afterwards.
    Write,
    /// Leave the machine's alone: it already forbids.
    Keep,
    /// Move the machine's aside, write ours, put the machine's back afterwards.
    SetAsideAndWrite,
}

pub fn policy_step(found: FoundPolicy) -> PolicyStep {
    match found {
        FoundPolicy::None | FoundPolicy::Ours => PolicyStep::Write,
        FoundPolicy::Forbids => PolicyStep::Keep,
        FoundPolicy::Allows => PolicyStep::SetAsideAndWrite,
    }
}

/// Forbids starting services under `root` until [`ServicesHeld::release`] (or drop) restores what was there.
pub struct ServicesHeld {
    path: PathBuf,
    set_aside: PathBuf,
    step: PolicyStep,
    privilege: Privilege,
    released: bool,
}

fn policy_path(root: &Path) -> PathBuf {
    root.join("usr/sbin/policy-rc.d")
}

fn set_aside_path(root: &Path) -> PathBuf {
    root.join("usr/sbin/policy-rc.d.isoharness-set-aside")
}

/// Classifies the `policy-rc.d` under `root` (running the machine's own, as `invoke-rc.d` would).
fn find_policy(root: &Path) -> FoundPolicy {
    let path = policy_path(root);
    let Ok(text) = fs::read(&path) else { return FoundPolicy::None };
    if text.starts_with(MARKER.as_bytes()) {
        return FoundPolicy::Ours;
    }
    // A file just written can be "busy" for a moment when another thread forks meanwhile (ETXTBSY): retry.
    for _ in 0..20 {
        match Command::new(&path).args(["isoharness-probe", "start"]).status() {
            Ok(status) if status.code() == Some(101) => return FoundPolicy::Forbids,
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            _ => return FoundPolicy::Allows,
        }
    }
    FoundPolicy::Allows
}

/// Puts back what an interrupted run left: the machine's `policy-rc.d` if ours replaced it, or nothing.
fn recover(root: &Path, privilege: Privilege) -> anyhow::Result<()> {
    let (path, set_aside) = (policy_path(root), set_aside_path(root));
    if find_policy(root) != FoundPolicy::Ours {
        return Ok(());
    }
    if set_aside.exists() {
        privilege.run("mv", &["-f", &set_aside.to_string_lossy(), &path.to_string_lossy()])
    } else {
        privilege.run("rm", &["-f", &path.to_string_lossy()])
    }
}

/// Makes `policy-rc.d` under `root` forbid starting services; `scratch` is a directory of ours for the new file.
pub fn hold(root: &Path, scratch: &Path, privilege: Privilege) -> anyhow::Result<ServicesHeld> {
    recover(root, privilege)?;
    let step = policy_step(find_policy(root));
    let held = ServicesHeld {
        path: policy_path(root),
        set_aside: set_aside_path(root),
        step,
        privilege,
        released: step == PolicyStep::Keep,
    };
    if step == PolicyStep::SetAsideAndWrite {
        privilege.run("mv", &[&held.path.to_string_lossy(), &held.set_aside.to_string_lossy()])?;
    }
    if step != PolicyStep::Keep {
        let draft = scratch.join("policy-rc.d");
        fs::create_dir_all(scratch)?;
        fs::write(&draft, format!("{MARKER}{OURS}")).with_context(|| format!("cannot write {}", draft.display()))?;
        privilege.run("install", &["-m", "0755", &draft.to_string_lossy(), &held.path.to_string_lossy()])?;
    }
    Ok(held)
}

impl ServicesHeld {
    /// Removes our `policy-rc.d` and puts the machine's back, if there was one.
    pub fn release(mut self) -> anyhow::Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> anyhow::Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let (path, set_aside) = (self.path.to_string_lossy(), self.set_aside.to_string_lossy());
        match self.step {
            PolicyStep::Keep => Ok(()),
            PolicyStep::Write => self.privilege.run("rm", &["-f", &path]),
            PolicyStep::SetAsideAndWrite => self.privilege.run("mv", &["-f", &set_aside, &path]),
        }
    }
}

impl Drop for ServicesHeld {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("xtask: WARNING: cannot restore {}: {e:#}", self.path.display());
        }
    }
}

/// The links that make something start at boot: every symlink under `etc/systemd/system` (units wanted by a
/// target, aliases) and the `S` links of `etc/rc?.d`.
pub fn boot_links(root: &Path) -> BTreeSet<PathBuf> {
    let mut links = BTreeSet::new();
    collect_symlinks(&root.join("etc/systemd/system"), &mut links);
    let Ok(etc) = fs::read_dir(root.join("etc")) else { return links };
    for entry in etc.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("rc") && name.ends_with(".d") && name.len() == 5 {
            let Ok(runlevel) = fs::read_dir(entry.path()) else { continue };
            links.extend(
                runlevel
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with('S'))
                    .map(|e| e.path()),
            );
        }
    }
    links
}

fn collect_symlinks(dir: &Path, links: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            links.insert(entry.path());
        } else if kind.is_dir() {
            collect_symlinks(&entry.path(), links);
        }
    }
}

/// What the links an install added enable: systemd units and SysV scripts, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Enabled {
    pub units: BTreeSet<String>,
    pub sysv: BTreeSet<String>,
}

impl Enabled {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.sysv.is_empty()
    }

    /// Everything, for one line of output.
    pub fn names(&self) -> Vec<String> {
        self.units.iter().cloned().chain(self.sysv.iter().map(|s| format!("{s} (SysV)"))).collect()
    }
}

/// The units and scripts that the links in `after` but not in `before` enable. A link in a `.wants`/`.requires`
/// directory names the unit it enables; an alias (`mysql.service → mariadb.service`) names its target; a SysV
/// link `S01mariadb` names the script `mariadb`.
pub fn newly_enabled(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Enabled {
    let mut enabled = Enabled::default();
    for link in after.difference(before) {
        let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = link.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        let parent = parent.unwrap_or_default();
        if parent.starts_with("rc") && parent.ends_with(".d") {
            enabled.sysv.insert(name.trim_start_matches('S').trim_start_matches(|c: char| c.is_ascii_digit()).into());
        } else if parent.ends_with(".wants") || parent.ends_with(".requires") {
            enabled.units.insert(name);
        } else {
            let target = fs::read_link(link).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
            enabled.units.insert(target.unwrap_or(name));
        }
    }
    enabled
}

/// Disables what an install enabled: `systemctl disable --now` where systemd runs, `systemctl --root=/ disable`
/// (links only) where it does not (a container, a chroot), `update-rc.d NAME disable` for SysV scripts; links
/// that still remain (no systemctl, a helper failing) are removed by hand. Returns what was disabled.
pub fn disable_new(
    root: &Path,
    before: &BTreeSet<PathBuf>,
    privilege: Privilege,
    log: &mut dyn FnMut(&mut Command) -> anyhow::Result<()>,
) -> anyhow::Result<Enabled> {
    let enabled = newly_enabled(before, &boot_links(root));
    let systemd_runs = root.join("run/systemd/system").is_dir();
    let offline_root = format!("--root={}", root.display());
    let mut failures = Vec::new();
    for unit in &enabled.units {
        let mut systemctl = privilege.command("systemctl");
        if systemd_runs {
            systemctl.args(["disable", "--now", unit]);
        } else {
            systemctl.args([offline_root.as_str(), "disable", unit]);
        }
        failures.extend(log(&mut systemctl).err());
    }
    for script in &enabled.sysv {
        failures.extend(log(privilege.command("update-rc.d").args([script.as_str(), "disable"])).err());
    }
    for failure in failures {
        let first_line = failure.to_string().lines().next().unwrap_or_default().to_string();
        eprintln!("xtask: note: {first_line}; its links are removed by hand");
    }
    let left: Vec<PathBuf> = boot_links(root).difference(before).cloned().collect();
    for link in &left {
        privilege.run("rm", &["-f", &link.to_string_lossy()])?;
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-services-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("usr/sbin")).unwrap();
        dir
    }

    fn write_script(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The privilege the tests run with: the temporary directory is ours, so no sudo is needed.
    const NO_SUDO: Privilege = Privilege::Root;

    #[test]
    fn the_policy_step_follows_what_the_machine_has() {
        assert_eq!(policy_step(FoundPolicy::None), PolicyStep::Write);
        assert_eq!(policy_step(FoundPolicy::Ours), PolicyStep::Write);
        assert_eq!(policy_step(FoundPolicy::Forbids), PolicyStep::Keep);
        assert_eq!(policy_step(FoundPolicy::Allows), PolicyStep::SetAsideAndWrite);
    }

    #[test]
    fn without_a_policy_ours_forbids_during_the_install_and_goes_afterwards() {
        let root = scratch("none");
        let held = hold(&root, &root.join("scratch"), NO_SUDO).unwrap();
        assert_eq!(find_policy(&root), FoundPolicy::Ours);
        let status = Command::new(policy_path(&root)).args(["mariadb", "start"]).status().unwrap();
        assert_eq!(status.code(), Some(101));
        held.release().unwrap();
        assert!(!policy_path(&root).exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_policy_that_forbids_is_left_alone_and_one_that_allows_comes_back() {
        let root = scratch("machine");
        let docker = "#!/bin/sh\nexit 101\n";
        write_script(&policy_path(&root), docker);
        assert_eq!(find_policy(&root), FoundPolicy::Forbids);
        hold(&root, &root.join("scratch"), NO_SUDO).unwrap().release().unwrap();
        assert_eq!(fs::read_to_string(policy_path(&root)).unwrap(), docker);

        let allows = "#!/bin/sh\nexit 0\n";
        write_script(&policy_path(&root), allows);
        assert_eq!(find_policy(&root), FoundPolicy::Allows);
        {
            let _held = hold(&root, &root.join("scratch"), NO_SUDO).unwrap();
            assert_eq!(find_policy(&root), FoundPolicy::Ours);
            assert_eq!(fs::read_to_string(set_aside_path(&root)).unwrap(), allows);
        }
        assert_eq!(fs::read_to_string(policy_path(&root)).unwrap(), allows, "dropping the guard restores it");
        assert!(!set_aside_path(&root).exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_policy_left_by_an_interrupted_run_is_undone_first() {
        let root = scratch("interrupted");
        let allows = "#!/bin/sh\nexit 0\n";
        write_script(&set_aside_path(&root), allows);
        write_script(&policy_path(&root), &format!("{MARKER}{OURS}"));
        recover(&root, NO_SUDO).unwrap();
        assert_eq!(fs::read_to_string(policy_path(&root)).unwrap(), allows);
        assert!(!set_aside_path(&root).exists());

        write_script(&policy_path(&root), &format!("{MARKER}{OURS}"));
        let held = hold(&root, &root.join("scratch"), NO_SUDO).unwrap();
        held.release().unwrap();
        assert!(!policy_path(&root).exists(), "ours without a set-aside file was ours alone");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn the_links_an_install_adds_name_what_it_enabled_and_are_removed() {
        let root = scratch("links");
        let (units, wants, rc2) = (
            root.join("lib/systemd/system"),
            root.join("etc/systemd/system/multi-user.target.wants"),
            root.join("etc/rc2.d"),
        );
        for dir in [&units, &wants, &rc2] {
            fs::create_dir_all(dir).unwrap();
        }
        symlink(units.join("postgresql.service"), wants.join("postgresql.service")).unwrap();
        symlink("../init.d/dbus", rc2.join("S01dbus")).unwrap();
        fs::write(rc2.join("README"), "").unwrap();
        let before = boot_links(&root);
        assert_eq!(before.len(), 2);

        symlink(units.join("mariadb.service"), wants.join("mariadb.service")).unwrap();
        symlink(units.join("mariadb.service"), root.join("etc/systemd/system/mysql.service")).unwrap();
        let sockets = root.join("etc/systemd/system/sockets.target.wants");
        fs::create_dir_all(&sockets).unwrap();
        symlink(units.join("epmd.socket"), sockets.join("epmd.socket")).unwrap();
        symlink("../init.d/rabbitmq-server", rc2.join("S01rabbitmq-server")).unwrap();
        let enabled = newly_enabled(&before, &boot_links(&root));
        assert_eq!(enabled.units.iter().map(String::as_str).collect::<Vec<_>>(), ["epmd.socket", "mariadb.service"]);
        assert_eq!(enabled.sysv.iter().map(String::as_str).collect::<Vec<_>>(), ["rabbitmq-server"]);
        assert_eq!(enabled.names().last().unwrap(), "rabbitmq-server (SysV)");

        // With helpers that do nothing, the links are removed by hand; the machine's own stay.
        let disabled = disable_new(&root, &before, NO_SUDO, &mut |_| anyhow::bail!("no helper here")).unwrap();
        assert_eq!(disabled, enabled);
        assert_eq!(boot_links(&root), before);
        let _ = fs::remove_dir_all(&root);
    }
}
