//! The exit status of an `isoharness` command: one enum, each variant a documented code.
//!
//! The binary turns an [`ExitStatus`] into the process's exit code in one place
//! (`impl From<ExitStatus> for ExitCode`); the library carries it where a report states it (the `exit_code` of
//! `check-xml`'s JSON report).

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::workflow::StoppedBy;

/// How a command ended, from the most to the least successful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// Everything checked passed.
    Ok,
    /// The command ran, and what it checked failed (an image that is not what it should be, a matrix cell
    /// that differs from its expectation, a domain XML finding).
    Findings,
    /// The command could not run as asked: bad arguments, a bad scenario, layout or cloud configuration, an
    /// unreadable input or an unwritable output. Nothing was checked.
    Usage,
    /// The cloud failed, not the input: connection refused, a timeout, a 5xx after retries, an authentication
    /// or endpoint-discovery failure.
    Cloud,
    /// Cleanup left resources behind: the ledger still lists them (`isoharness cleanup` retries).
    Cleanup,
    /// Interrupted by Ctrl-C, after a cleanup that left nothing behind.
    Interrupted,
}

impl ExitStatus {
    pub const ALL: [ExitStatus; 6] = [
        ExitStatus::Ok,
        ExitStatus::Findings,
        ExitStatus::Usage,
        ExitStatus::Cloud,
        ExitStatus::Cleanup,
        ExitStatus::Interrupted,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Findings => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Cloud => 3,
            ExitStatus::Cleanup => 4,
            // 128 + SIGINT, what a shell reports for a process Ctrl-C stopped.
            ExitStatus::Interrupted => 130,
        }
    }

    /// One line for `--help` and the README.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Ok => "success: everything checked passed",
            ExitStatus::Findings => "the command ran and what it checked failed",
            ExitStatus::Usage => {
                "bad input: arguments, scenario, layout or cloud configuration, an unreadable input or unwritable \
                 output (nothing was checked)"
            }
            ExitStatus::Cloud => {
                "the cloud failed: connection refused, timeout, 5xx after retries, authentication or discovery"
            }
            ExitStatus::Cleanup => {
                "cleanup left resources behind (the ledger lists them; `isoharness cleanup` retries)"
            }
            ExitStatus::Interrupted => "interrupted by Ctrl-C, after cleaning up",
        }
    }

    /// The worse of two statuses: the one further down [`ExitStatus::ALL`].
    pub fn max(self, other: ExitStatus) -> ExitStatus {
        let rank = |s: ExitStatus| ExitStatus::ALL.iter().position(|x| *x == s).unwrap_or(0);
        if rank(other) > rank(self) { other } else { self }
    }

    /// The "Exit status" section of a command's `--help`: the codes it can end with.
    pub fn help(statuses: &[ExitStatus]) -> String {
        let mut text = String::from("Exit status:\n");
        for status in statuses {
            let _ = writeln!(text, "  {:>3}  {}", status.code(), status.meaning());
        }
        text
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// Reports state the code as a number, the process's exit code.
impl serde::Serialize for ExitStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl From<StoppedBy> for ExitStatus {
    /// A run that came to no conclusion ends with the status of whoever stopped it.
    fn from(by: StoppedBy) -> ExitStatus {
        match by {
            StoppedBy::Input => ExitStatus::Usage,
            StoppedBy::Cloud => ExitStatus::Cloud,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_max_picks_the_worse() {
        let mut codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), ExitStatus::ALL.len());
        assert_eq!(ExitStatus::Findings.max(ExitStatus::Usage), ExitStatus::Usage);
        assert_eq!(ExitStatus::Cleanup.max(ExitStatus::Ok), ExitStatus::Cleanup);
    }
}
