//! What an `apt-get -s install` would do, read from its output, and the Debian facts it is judged by:
//! the order of Debian versions and the suite an installed version came from (`apt-cache policy`).

use std::cmp::Ordering;
use std::fmt;

/// One package the simulated install touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageStep {
    /// A package that was not installed.
    Install { package: String, version: String },
    /// An installed package replaced by another version, newer or older.
    Replace { package: String, from: String, to: String },
    /// An installed package removed (or purged).
    Remove { package: String, version: String },
}

/// What a simulated install does, from the `Inst`/`Remv`/`Purg` lines of `apt-get -s`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallPlan {
    pub steps: Vec<PackageStep>,
}

/// A step that takes something from the machine: the reason to refuse or adapt a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Harm {
    Removes { package: String, version: String },
    Downgrades { package: String, from: String, to: String },
}

impl Harm {
    pub fn package(&self) -> &str {
        match self {
            Harm::Removes { package, .. } | Harm::Downgrades { package, .. } => package,
        }
    }
}

impl fmt::Display for Harm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Harm::Removes { package, version } => write!(f, "removes {package} {version}"),
            Harm::Downgrades { package, from, to } => write!(f, "downgrades {package} from {from} to {to}"),
        }
    }
}

impl InstallPlan {
    /// Reads the simulation's output; lines other than `Inst`, `Remv` and `Purg` (headers, `Conf`) are ignored.
    pub fn parse(simulation: &str) -> InstallPlan {
        let steps = simulation.lines().filter_map(parse_step).collect();
        InstallPlan { steps }
    }

    /// The removals and downgrades of installed packages.
    pub fn harm(&self) -> Vec<Harm> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                PackageStep::Remove { package, version } => {
                    Some(Harm::Removes { package: package.clone(), version: version.clone() })
                }
                PackageStep::Replace { package, from, to } if compare_versions(to, from) == Ordering::Less => {
                    Some(Harm::Downgrades { package: package.clone(), from: from.clone(), to: to.clone() })
                }
                _ => None,
            })
            .collect()
    }

    /// Installed packages the plan moves to a newer version (dependencies that need it): `package from → to`.
    pub fn upgrades(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                PackageStep::Replace { package, from, to } if compare_versions(to, from) == Ordering::Greater => {
                    Some(format!("{package} {from} → {to}"))
                }
                _ => None,
            })
            .collect()
    }

    /// How many packages the plan adds to the machine.
    pub fn new_packages(&self) -> usize {
        self.steps.iter().filter(|step| matches!(step, PackageStep::Install { .. })).count()
    }
}

/// What `apt-get -s install` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Simulation {
    InstallPlan(InstallPlan),
    /// apt found no plan at all. With a suite among the sources that holds the installed version, apt reports
    /// the conflict (`qemu-utils : Breaks: qemu-system-common (< 1:8.0+dfsg-5~) but 1:7.2... is to be
    /// installed`) instead of planning a removal.
    Unresolvable {
        /// The packages the "unmet dependencies" lines are about (`qemu-utils` above).
        named: Vec<String>,
        /// apt's account, from "The following packages have unmet dependencies" on.
        message: String,
    },
}

impl Simulation {
    /// Reads what `apt-get -s install` printed (stdout and stderr) and whether it succeeded.
    pub fn read(succeeded: bool, output: &str) -> Simulation {
        if succeeded {
            return Simulation::InstallPlan(InstallPlan::parse(output));
        }
        let account = output.find("The following packages have unmet").map_or(output, |start| &output[start..]);
        let named = account
            .lines()
            .filter(|line| line.starts_with(' ') && !line.starts_with("  "))
            .filter_map(|line| line.trim_start().split_once(" : ").map(|(name, _)| name.to_string()))
            .collect();
        Simulation::Unresolvable { named, message: account.trim().to_string() }
    }

    /// The packages an unresolvable install could not satisfy dependencies on: the names after `Depends:` and
    /// `PreDepends:` in apt's account (`qemu-system-data` in `Depends: qemu-system-data (> 1:10.0.2+ds~) but
    /// 1:7.2... is to be installed`). Taking them from the same suite as the package that needs them resolves it.
    pub fn unmet_dependencies(&self) -> Vec<String> {
        let Simulation::Unresolvable { message, .. } = self else { return Vec::new() };
        let mut names: Vec<String> = message
            .lines()
            .filter_map(|line| line.split_once("Depends: ").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split([' ', '(']).next())
            .filter(|name| !name.is_empty())
            .map(|name| name.split(':').next().unwrap_or(name).to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The plan, when apt found one that removes and downgrades nothing.
    pub fn harmless(self) -> Option<InstallPlan> {
        match self {
            Simulation::InstallPlan(plan) if plan.harm().is_empty() => Some(plan),
            _ => None,
        }
    }
}

/// `Inst NAME [OLD] (NEW ORIGIN [ARCH]) ...`, `Remv NAME [VERSION]` or `Purg NAME [VERSION]`.
fn parse_step(line: &str) -> Option<PackageStep> {
    let (kind, rest) = line.split_once(' ')?;
    let (package, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let package = package.to_string();
    let bracketed = bracketed_prefix;
    match kind {
        "Remv" | "Purg" => {
            let version = bracketed(rest).map(|(v, _)| v).unwrap_or_default();
            Some(PackageStep::Remove { package, version })
        }
        "Inst" => {
            let (from, rest) = match bracketed(rest) {
                Some((from, rest)) => (Some(from), rest.trim_start()),
                None => (None, rest),
            };
            let version = rest.strip_prefix('(')?.split_whitespace().next()?.to_string();
            Some(match from {
                Some(from) => PackageStep::Replace { package, from, to: version },
                None => PackageStep::Install { package, version },
            })
        }
        _ => None,
    }
}

/// `[VALUE] REST` → (VALUE, REST).
fn bracketed_prefix(text: &str) -> Option<(String, &str)> {
    let (value, rest) = text.strip_prefix('[')?.split_once(']')?;
    Some((value.to_string(), rest))
}

/// Debian's version order (`dpkg --compare-versions`): epoch, then upstream version, then revision, each
/// compared as alternating runs of non-digits (letters before other characters, `~` before everything,
/// even the end) and numbers.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (epoch_a, upstream_a, revision_a) = split_version(a);
    let (epoch_b, upstream_b, revision_b) = split_version(b);
    epoch_a
        .cmp(&epoch_b)
        .then_with(|| compare_part(upstream_a, upstream_b))
        .then_with(|| compare_part(revision_a, revision_b))
}

fn split_version(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => (epoch.parse().unwrap_or(0), rest),
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let weight = |c: Option<&u8>| -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(b'~') => -1,
            Some(c) => i32::from(*c) + 256,
        }
    };
    while !a.is_empty() || !b.is_empty() {
        while a.first().is_some_and(|c| !c.is_ascii_digit()) || b.first().is_some_and(|c| !c.is_ascii_digit()) {
            let order = weight(a.first()).cmp(&weight(b.first()));
            if order != Ordering::Equal {
                return order;
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (run_a, run_b) = (&a[..digits(a)], &b[..digits(b)]);
        let trim = |run: &[u8]| -> usize { run.iter().take_while(|c| **c == b'0').count() };
        let (number_a, number_b) = (&run_a[trim(run_a)..], &run_b[trim(run_b)..]);
        let order = number_a.len().cmp(&number_b.len()).then_with(|| number_a.cmp(number_b));
        if order != Ordering::Equal {
            return order;
        }
        a = &a[run_a.len()..];
        b = &b[run_b.len()..];
    }
    Ordering::Equal
}

/// Where apt finds an installed version again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// The suite to install related packages from (`-t`, `package/suite`), e.g. `bookworm-backports`.
    pub suite: String,
    /// The `deb` line the machine's sources lack for that suite, if they lack it.
    pub missing_source: Option<String>,
}

/// One source line of `apt-cache policy`'s version table: `500 http://deb.debian.org/debian bookworm/main amd64 Packages`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PolicySource {
    uri: String,
    suite: String,
    component: String,
}

/// The installed version of the package `policy` (the output of `apt-cache policy PACKAGE`) describes, and
/// every version in its table with the archives that offer it (`/var/lib/dpkg/status` left out).
fn parse_policy(policy: &str) -> (Option<String>, Vec<(String, Vec<PolicySource>)>) {
    let mut installed = None;
    let mut table: Vec<(String, Vec<PolicySource>)> = Vec::new();
    for line in policy.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(version) = trimmed.strip_prefix("Installed:") {
            let version = version.trim();
            installed = (version != "(none)").then(|| version.to_string());
        } else if let Some(version_line) = trimmed.strip_prefix("*** ") {
            table.push((version_line.split_whitespace().next().unwrap_or_default().to_string(), Vec::new()));
        } else if indent == 5 {
            table.push((trimmed.split_whitespace().next().unwrap_or_default().to_string(), Vec::new()));
        } else if indent >= 8 {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if let (Some((_, sources)), [_priority, uri, dist, ..]) = (table.last_mut(), fields.as_slice()) {
                let (suite, component) = dist.split_once('/').unwrap_or((dist, ""));
                sources.push(PolicySource {
                    uri: uri.to_string(),
                    suite: suite.to_string(),
                    component: component.into(),
                });
            }
        }
    }
    (installed, table)
}

/// The value of `key` in `/etc/os-release` text, quotes removed.
fn os_release_value<'a>(os_release: &'a str, key: &str) -> Option<&'a str> {
    os_release.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim_matches('"'))
}

/// The suite the installed version of a package came from, given `apt-cache policy PACKAGE` and `/etc/os-release`.
///
/// When one of the machine's sources still offers that version, its suite. Otherwise the version itself tells:
/// Debian's backports append `~bpoNN` (NN the Debian release it was built for); on that release the suite is
/// `CODENAME-backports`, on the archive that serves `CODENAME`, and its source line is returned to be added.
pub fn installed_origin(policy: &str, os_release: &str) -> Option<Origin> {
    let (installed, table) = parse_policy(policy);
    let installed = installed?;
    if let Some(source) = table.iter().find(|(v, _)| *v == installed).and_then(|(_, sources)| sources.first()) {
        return Some(Origin { suite: source.suite.clone(), missing_source: None });
    }
    let built_for = installed.split_once("~bpo")?.1;
    let built_for: String = built_for.chars().take_while(char::is_ascii_digit).collect();
    let release = os_release_value(os_release, "VERSION_ID")?;
    let codename = os_release_value(os_release, "VERSION_CODENAME")?;
    if built_for.is_empty() || built_for != release.split('.').next().unwrap_or(release) {
        return None;
    }
    let suite = format!("{codename}-backports");
    let archive = table.iter().flat_map(|(_, sources)| sources).find(|s| s.suite == codename)?;
    let component = if archive.component.is_empty() { "main" } else { &archive.component };
    Some(Origin { missing_source: Some(format!("deb {} {suite} {component}", archive.uri)), suite })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-get -s install --no-install-recommends qemu-system-x86` on Debian 12 with qemu-utils 10.0 from
    /// bookworm-backports installed and backports not among the sources (trimmed: the header and `Conf` lines).
    const QEMU_FROM_BOOKWORM: &str = "\
The following packages will be REMOVED:
  qemu-utils
0 upgraded, 11 newly installed, 1 to remove and 141 not upgraded.
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst ipxe-qemu (1.0.0+git-20190125.36a4c85-5.1 Debian:12.15/oldstable [all])
Inst libgstreamer-plugins-base1.0-0 (1.22.0-3+deb12u7 Debian-Security:12/oldstable-security [amd64])
Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Conf ipxe-qemu (1.0.0+git-20190125.36a4c85-5.1 Debian:12.15/oldstable [all])
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
";

    /// The same with `qemu-system-x86/bookworm-backports` and backports among the sources.
    const QEMU_FROM_BACKPORTS: &str = "\
0 upgraded, 5 newly installed, 0 to remove and 169 not upgraded.
Inst ipxe-qemu (1.0.0+git-20190125.36a4c85-5.1 Debian:12.15/oldstable [all])
Inst qemu-system-common (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:oldstable-backports [amd64])
Inst qemu-system-x86 (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:oldstable-backports [amd64])
";

    /// `apt-get -s install mariadb-server` where a security update of perl is needed on the way.
    const MARIADB_WITH_UPGRADES: &str = "\
Inst libperl5.36 [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64]) [perl:amd64 ]
Inst perl [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64]) []
Inst libconfig-inifiles-perl (3.000003-2+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [all])
Inst mariadb-server (1:10.11.19-0+deb12u1 Debian-Security:12/oldstable-security [amd64])
";

    /// The same with bookworm-backports among the sources (only at priority 100): apt plans nothing.
    const QEMU_UNRESOLVABLE: &str = "\
Reading package lists...
Some packages could not be installed. This may mean that you have
requested an impossible situation or if you are using the unstable
distribution that some required packages have not yet been created
or been moved out of Incoming.
The following information may help to resolve the situation:

The following packages have unmet dependencies:
 qemu-utils : Breaks: qemu-system-common (< 1:8.0+dfsg-5~) but 1:7.2+dfsg-7+deb12u18+b3 is to be installed
              Breaks: qemu-system-x86 (< 1:8.0) but 1:7.2+dfsg-7+deb12u18+b3 is to be installed
E: Error, pkgProblemResolver::Resolve generated breaks, this may be caused by held packages.
";

    /// `qemu-system-x86/bookworm-backports` alone: its own dependencies still come from the release.
    const QEMU_BACKPORT_WITHOUT_ITS_DEPENDENCIES: &str = "\
Reading package lists...
Some packages could not be installed. This may mean that you have
requested an impossible situation or if you are using the unstable
distribution that some required packages have not yet been created
or been moved out of Incoming.
The following information may help to resolve the situation:

The following packages have unmet dependencies:
 qemu-system-x86 : Depends: qemu-system-common (= 1:10.0.2+ds-2+deb13u1~bpo12+1) but it is not going to be installed
                   Depends: qemu-system-data (> 1:10.0.2+ds~) but 1:7.2+dfsg-7+deb12u18 is to be installed
                   Depends: seabios (> 1.16.3-1~) but 1.16.2-1 is to be installed
E: Unable to correct problems, you have held broken packages.
";

    const POLICY_WITHOUT_BACKPORTS: &str = "\
qemu-utils:
  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
 *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 /var/lib/dpkg/status
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
     1:7.2+dfsg-7+deb12u15 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
";

    const POLICY_WITH_BACKPORTS: &str = "\
qemu-utils:
  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
 *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages
        100 /var/lib/dpkg/status
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";

    const BOOKWORM: &str =
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

    #[test]
    fn installing_qemu_from_the_release_would_remove_the_newer_qemu_utils() {
        let plan = InstallPlan::parse(QEMU_FROM_BOOKWORM);
        assert_eq!(plan.new_packages(), 4);
        assert_eq!(
            plan.harm(),
            [Harm::Removes { package: "qemu-utils".into(), version: "1:10.0.2+ds-2+deb13u1~bpo12+1".into() }]
        );
        assert_eq!(plan.harm()[0].to_string(), "removes qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1");
    }

    #[test]
    fn installing_qemu_from_backports_only_adds_packages() {
        let plan = InstallPlan::parse(QEMU_FROM_BACKPORTS);
        assert!(plan.harm().is_empty());
        assert!(plan.upgrades().is_empty());
        assert_eq!(
            plan.steps[2],
            PackageStep::Install { package: "qemu-system-x86".into(), version: "1:10.0.2+ds-2+deb13u1~bpo12+1".into() }
        );
    }

    #[test]
    fn an_unresolvable_install_names_the_installed_package_in_the_way() {
        let simulation = Simulation::read(false, QEMU_UNRESOLVABLE);
        let Simulation::Unresolvable { named, message } = &simulation else { panic!("{simulation:?}") };
        assert_eq!(named, &["qemu-utils"]);
        assert!(message.starts_with("The following packages have unmet dependencies:"), "{message}");
        assert_eq!(simulation.harmless(), None);
        assert_eq!(Simulation::read(true, QEMU_FROM_BOOKWORM).harmless(), None);
        assert_eq!(
            Simulation::read(true, QEMU_FROM_BACKPORTS).harmless(),
            Some(InstallPlan::parse(QEMU_FROM_BACKPORTS))
        );
    }

    #[test]
    fn a_backport_whose_dependencies_come_from_the_release_names_them() {
        let simulation = Simulation::read(false, QEMU_BACKPORT_WITHOUT_ITS_DEPENDENCIES);
        assert_eq!(simulation.unmet_dependencies(), ["qemu-system-common", "qemu-system-data", "seabios"]);
        assert!(Simulation::read(false, QEMU_UNRESOLVABLE).unmet_dependencies().is_empty(), "Breaks are not needs");
        assert!(Simulation::read(true, QEMU_FROM_BACKPORTS).unmet_dependencies().is_empty());
    }

    #[test]
    fn upgrades_are_told_apart_from_downgrades() {
        let plan = InstallPlan::parse(MARIADB_WITH_UPGRADES);
        assert!(plan.harm().is_empty());
        assert_eq!(
            plan.upgrades(),
            ["libperl5.36 5.36.0-7+deb12u2 → 5.36.0-7+deb12u4", "perl 5.36.0-7+deb12u2 → 5.36.0-7+deb12u4"]
        );
        assert_eq!(plan.new_packages(), 2);

        let downgrade =
            InstallPlan::parse("Inst qemu-utils [1:10.0.2+ds-2~bpo12+1] (1:7.2+dfsg-7 Debian:12/stable [amd64])\n");
        assert_eq!(
            downgrade.harm(),
            [Harm::Downgrades {
                package: "qemu-utils".into(),
                from: "1:10.0.2+ds-2~bpo12+1".into(),
                to: "1:7.2+dfsg-7".into()
            }]
        );
        assert_eq!(InstallPlan::parse("Purg foo [1.0]\n").harm()[0].package(), "foo");
    }

    #[test]
    fn versions_follow_dpkgs_order() {
        use Ordering::*;
        let cases = [
            ("1:10.0.2+ds-2+deb13u1~bpo12+1", "1:7.2+dfsg-7+deb12u18+b3", Greater),
            ("1:7.2", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0a", "1.0+", Less),
            ("1.0", "1.0-0", Equal),
            ("1.010", "1.9", Greater),
            ("1.01", "1.1", Equal),
            ("5.36.0-7+deb12u4", "5.36.0-7+deb12u2", Greater),
            ("2.30-1", "2.30-1", Equal),
            ("1.2-3-4", "1.2-3-10", Less),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn a_backport_whose_suite_is_not_configured_is_found_by_its_version() {
        assert_eq!(
            installed_origin(POLICY_WITHOUT_BACKPORTS, BOOKWORM),
            Some(Origin {
                suite: "bookworm-backports".into(),
                missing_source: Some("deb http://deb.debian.org/debian bookworm-backports main".into()),
            })
        );
        let trixie = "VERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n";
        assert_eq!(installed_origin(POLICY_WITHOUT_BACKPORTS, trixie), None, "a backport for another release");
    }

    #[test]
    fn a_configured_suite_is_taken_from_the_version_table() {
        assert_eq!(
            installed_origin(POLICY_WITH_BACKPORTS, BOOKWORM),
            Some(Origin { suite: "bookworm-backports".into(), missing_source: None })
        );
        let local_build = POLICY_WITHOUT_BACKPORTS.replace("~bpo12+1", "+local1");
        assert_eq!(installed_origin(&local_build, BOOKWORM), None, "nothing says where a local build came from");
        assert_eq!(installed_origin("foo:\n  Installed: (none)\n", BOOKWORM), None);
    }
}
