//! The engine's decisions, as pure functions of what the cloud last said: no IO, no clock.

use std::time::Duration;

use guestsim::OutcomeKind;
use guestsim::installer_messages::{Meaning, find_known_message};
use regex::Regex;

use super::{ImageInfo, ServerInfo};

/// What to do after looking at a server during the install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallVerdict {
    /// Keep waiting.
    Wait,
    /// The install finished (the guest powered off, or the console said so).
    Finished { how: String },
    /// The install failed, with what that makes of the cell; `evidence` holds the console lines or fault that show it.
    Failed { outcome: OutcomeKind, reason: String, evidence: Vec<String> },
}

/// Rules for judging an install in progress (from the scenario's `[completion]`).
#[derive(Debug, Clone)]
pub struct InstallRules {
    pub deadline: Duration,
    /// Zero turns the inactivity check off.
    pub inactivity: Duration,
    pub success_console: Option<Regex>,
    pub failure_console: Option<Regex>,
}

/// Console lines of an installer that waits for a person (no answer file): the simulated installers' words, and
/// Anaconda's text-mode prompt.
const INSTALLER_WAITS_FOR_A_PERSON: &[&str] =
    &["waiting for input on the console", "Please make a selection from the above ['c' to continue"];

/// Judges the install from the server and its console log, `waited` after boot, `quiet` since
/// the console last changed. Server state comes first: ERROR fails at once, with Nova's fault.
pub fn install_verdict(
    server: &ServerInfo,
    console: &str,
    waited: Duration,
    quiet: Duration,
    rules: &InstallRules,
) -> InstallVerdict {
    if server.status == "ERROR" {
        return InstallVerdict::Failed {
            outcome: OutcomeKind::Rejected,
            reason: format!("server went to ERROR: {}", server.fault.as_deref().unwrap_or("no fault given")),
            evidence: Vec::new(),
        };
    }
    // Any real installer's message counts, whatever installer the scenario names (guestsim's catalogue).
    if let Some(found) = find_known_message(console) {
        let (outcome, what) = match found.message.meaning {
            Meaning::NoDisk => (OutcomeKind::NoTargetDisk, "found no disk to install onto"),
            Meaning::Failed => (OutcomeKind::InstallFailed, "failed"),
            Meaning::Refused => (OutcomeKind::Rejected, "refused the machine"),
        };
        return InstallVerdict::Failed {
            outcome,
            reason: format!("the installer {what} ({} says \"{}\")", found.message.installer, found.message.text),
            evidence: lines_ending_at(console, found.line),
        };
    }
    if let Some(line) = console.lines().find(|l| INSTALLER_WAITS_FOR_A_PERSON.iter().any(|m| l.contains(m))) {
        return InstallVerdict::Failed {
            outcome: OutcomeKind::NeedsConsole,
            reason: "the installer waits for a person at the console (no answer file)".into(),
            evidence: tail_around(console, line),
        };
    }
    if let Some(re) = &rules.failure_console
        && let Some(m) = re.find(console)
    {
        return InstallVerdict::Failed {
            outcome: OutcomeKind::InstallFailed,
            reason: format!("console matched the failure pattern `{}`", re.as_str()),
            evidence: tail_around(console, line_of(console, m.start())),
        };
    }
    // SHUTOFF with no task in flight: the installer powered the machine off (Oz and imagefactory
    // use the same signal).
    if server.status == "SHUTOFF" && server.task_state.is_none() {
        return InstallVerdict::Finished { how: "the guest powered off".into() };
    }
    if let Some(re) = &rules.success_console
        && re.is_match(console)
    {
        return InstallVerdict::Finished { how: format!("console matched `{}`", re.as_str()) };
    }
    if waited >= rules.deadline {
        return InstallVerdict::Failed {
            outcome: OutcomeKind::TimedOut,
            reason: format!("the install did not finish in time: its deadline of {}s passed", rules.deadline.as_secs()),
            evidence: last_lines(console, 5),
        };
    }
    if !rules.inactivity.is_zero() && quiet >= rules.inactivity {
        return InstallVerdict::Failed {
            outcome: OutcomeKind::TimedOut,
            reason: format!("the install did not finish in time: no console output for {}s", quiet.as_secs()),
            evidence: last_lines(console, 5),
        };
    }
    InstallVerdict::Wait
}

/// What to do after looking at an image being made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageVerdict {
    Wait,
    Active,
    Failed(String),
}

pub fn image_verdict(image: Option<&ImageInfo>) -> ImageVerdict {
    match image {
        None => ImageVerdict::Failed("the image disappeared".into()),
        Some(i) => match i.status.as_str() {
            "active" => ImageVerdict::Active,
            "killed" | "deleted" | "pending_delete" | "deactivated" => {
                ImageVerdict::Failed(format!("the image went to status {}", i.status))
            }
            _ => ImageVerdict::Wait,
        },
    }
}

/// What to do after looking at a server that should become ACTIVE (or reach a state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerVerdict {
    Wait,
    Reached,
    Failed(String),
}

/// Waits for `status` with no task in flight; ERROR fails with Nova's fault.
pub fn server_verdict(server: &ServerInfo, status: &str) -> ServerVerdict {
    if server.status == "ERROR" {
        return ServerVerdict::Failed(format!(
            "server went to ERROR: {}",
            server.fault.as_deref().unwrap_or("no fault given")
        ));
    }
    if server.status == status && server.task_state.is_none() { ServerVerdict::Reached } else { ServerVerdict::Wait }
}

/// Adaptive polling: quick while things change, slower while nothing does, never past the deadline.
///
/// Packer polls every 2 s whatever happens; a 30-minute install then costs ~900 calls. This
/// starts at `min`, grows by half on every unchanged observation up to `max`, and snaps back to
/// `min` when the observed state changes.
#[derive(Debug, Clone)]
pub struct Poller {
    min: Duration,
    max: Duration,
    current: Duration,
    last: Option<String>,
}

impl Poller {
    pub fn new(min: Duration, max: Duration) -> Poller {
        Poller { min, max, current: min, last: None }
    }

    /// The interval to wait after observing `state` (a summary such as "BUILD/spawning").
    pub fn next(&mut self, state: &str) -> Duration {
        if self.last.as_deref() != Some(state) {
            self.last = Some(state.to_string());
            self.current = self.min;
        } else {
            self.current = (self.current.mul_f64(1.5)).min(self.max);
        }
        self.current
    }
}

fn line_of(text: &str, offset: usize) -> &str {
    let start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    &text[start..end]
}

/// The line and the two before it, as evidence.
fn tail_around(console: &str, line: &str) -> Vec<String> {
    let at = console.lines().position(|l| l == line).unwrap_or(usize::MAX);
    lines_ending_at(console, at)
}

/// The console line numbered `at` (0-based; the last line if there is none) and the two before it.
fn lines_ending_at(console: &str, at: usize) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    let at = at.min(lines.len().saturating_sub(1));
    lines[at.saturating_sub(2)..(at + 1).min(lines.len())].iter().map(|l| l.to_string()).collect()
}

fn last_lines(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status: &str, task: Option<&str>) -> ServerInfo {
        ServerInfo {
            id: "s".into(),
            name: "n".into(),
            status: status.into(),
            task_state: task.map(String::from),
            fault: (status == "ERROR").then(|| "No valid host was found.".to_string()),
            ..ServerInfo::default()
        }
    }

    fn rules() -> InstallRules {
        InstallRules {
            deadline: Duration::from_secs(3600),
            inactivity: Duration::from_secs(600),
            success_console: Some(Regex::new(r"Cloud-init v\. \S+ finished at").unwrap()),
            failure_console: Some(Regex::new("Kernel panic").unwrap()),
        }
    }

    /// (status, task_state, console, waited s, quiet s, expected verdict kind, outcome and text).
    type InstallCase<'a> = (&'a str, Option<&'a str>, &'a str, u64, u64, &'a str);

    #[test]
    fn the_evidence_ends_at_the_line_the_message_starts_on_even_when_an_earlier_line_reads_the_same() {
        let console = "No disks detected.\nq\nNo disks detected.\nPlease shut down the computer, connect at least one \
                       disk, and restart to complete installation.\n";
        let server = ServerInfo { status: "ACTIVE".into(), ..ServerInfo::default() };
        let verdict = install_verdict(&server, console, Duration::from_secs(60), Duration::ZERO, &rules());
        let InstallVerdict::Failed { evidence, .. } = verdict else { panic!("{verdict:?}") };
        assert_eq!(evidence, ["No disks detected.", "q", "No disks detected."]);
    }

    #[test]
    fn install_verdicts() {
        let cases: &[InstallCase] = &[
            ("ACTIVE", None, "Booting from DVD/CD...\n", 10, 0, "wait"),
            ("SHUTOFF", None, "Installing\nPower down.\n", 900, 0, "finished: the guest powered off"),
            ("SHUTOFF", Some("powering-off"), "", 900, 0, "wait"),
            ("ACTIVE", Some("powering-off"), "", 900, 0, "wait"),
            ("ERROR", None, "", 1, 0, "failed rejected: server went to ERROR: No valid host was found."),
            (
                "ACTIVE",
                None,
                "a\nb\nSetup did not find any hard disk drives installed in your\ncomputer.\n",
                60,
                0,
                "failed no-target-disk: the installer found no disk to install onto (Windows Setup (text mode) says",
            ),
            (
                "ACTIVE",
                None,
                "Probing storage...\nNo disks detected.  Please shut down the computer, connect at least one disk,\nand restart to complete installation.\n",
                60,
                0,
                "failed no-target-disk: the installer found no disk to install onto (anaconda says",
            ),
            (
                "ACTIVE",
                None,
                "Sorry, there was a problem completing the installation.\n",
                60,
                0,
                "failed install-failed: the installer failed (subiquity says",
            ),
            (
                "ACTIVE",
                None,
                "This PC can't run Windows 11\n",
                60,
                0,
                "failed rejected: the installer refused the machine",
            ),
            (
                "ACTIVE",
                None,
                "Starting anaconda\nanaconda: no answer file on the installation medium; waiting for input on the console\n",
                60,
                0,
                "failed needs-console: the installer waits for a person",
            ),
            (
                "ACTIVE",
                None,
                "x\nKernel panic: a wording no installer catalogue holds\n",
                60,
                0,
                "failed install-failed: console matched the failure pattern `Kernel panic`",
            ),
            ("ACTIVE", None, "Cloud-init v. 24.4 finished at Tue\n", 60, 0, "finished: console matched"),
            (
                "ACTIVE",
                None,
                "still going\n",
                3600,
                0,
                "failed timed-out: the install did not finish in time: its deadline of 3600s passed",
            ),
            (
                "ACTIVE",
                None,
                "still going\n",
                1200,
                600,
                "failed timed-out: the install did not finish in time: no console output for 600s",
            ),
            ("ACTIVE", None, "still going\n", 1200, 599, "wait"),
        ];
        for (status, task, console, waited, quiet, expected) in cases {
            let verdict = install_verdict(
                &server(status, *task),
                console,
                Duration::from_secs(*waited),
                Duration::from_secs(*quiet),
                &rules(),
            );
            let text = match &verdict {
                InstallVerdict::Wait => "wait".to_string(),
                InstallVerdict::Finished { how } => format!("finished: {how}"),
                InstallVerdict::Failed { outcome, reason, .. } => format!("failed {outcome}: {reason}"),
            };
            assert!(text.starts_with(expected), "{status}/{task:?}/{console:?}: got {text}, expected {expected}");
        }
    }

    #[test]
    fn failure_evidence_is_the_console_lines_that_show_it() {
        let v = install_verdict(
            &server("ACTIVE", None),
            "one\ntwo\nthree\nSetup did not find any hard disk drives installed in your computer.\nfour\n",
            Duration::ZERO,
            Duration::ZERO,
            &rules(),
        );
        let InstallVerdict::Failed { evidence, .. } = v else { panic!("{v:?}") };
        assert_eq!(evidence, ["two", "three", "Setup did not find any hard disk drives installed in your computer."]);
    }

    #[test]
    fn image_verdicts() {
        let image = |status: &str| ImageInfo { status: status.into(), ..ImageInfo::default() };
        assert_eq!(image_verdict(Some(&image("queued"))), ImageVerdict::Wait);
        assert_eq!(image_verdict(Some(&image("saving"))), ImageVerdict::Wait);
        assert_eq!(image_verdict(Some(&image("active"))), ImageVerdict::Active);
        assert_eq!(
            image_verdict(Some(&image("killed"))),
            ImageVerdict::Failed("the image went to status killed".into())
        );
        assert_eq!(image_verdict(None), ImageVerdict::Failed("the image disappeared".into()));
    }

    #[test]
    fn server_verdicts_need_the_task_to_be_done() {
        assert_eq!(server_verdict(&server("ACTIVE", None), "ACTIVE"), ServerVerdict::Reached);
        assert_eq!(server_verdict(&server("ACTIVE", Some("powering-off")), "SHUTOFF"), ServerVerdict::Wait);
        assert_eq!(server_verdict(&server("BUILD", Some("spawning")), "ACTIVE"), ServerVerdict::Wait);
        assert!(
            matches!(server_verdict(&server("ERROR", None), "ACTIVE"), ServerVerdict::Failed(m) if m.contains("No valid host"))
        );
    }

    #[test]
    fn poller_backs_off_while_nothing_changes_and_snaps_back() {
        let mut p = Poller::new(Duration::from_secs(1), Duration::from_secs(4));
        let got: Vec<u64> = ["a", "a", "a", "a", "a", "b", "b"].iter().map(|s| p.next(s).as_millis() as u64).collect();
        assert_eq!(got, [1000, 1500, 2250, 3375, 4000, 1000, 1500]);
    }
}
