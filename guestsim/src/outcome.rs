//! What a scenario cell comes to (rule S1 of [`crate::hypervisor::installer`]): the kind the matrix compares, and the
//! reason a person reads.

use serde::{Deserialize, Serialize};

/// What installing a guest on a layout produced: derived by the installer rules, observed by a build, pinned by a
/// scenario file.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case", parse_err_ty = String, parse_err_fn = unknown_outcome)]
pub enum OutcomeKind {
    /// The snapshot is an installed OS; a server booted from it comes up as that OS.
    ImageOk,
    /// The snapshot holds the ISO; booting it does not reach the installed OS.
    IsoCopy,
    /// The installer found no disk it could install onto.
    NoTargetDisk,
    /// The cloud refused the request, or the installer refused the machine.
    Rejected,
    /// The installer waits for a person (attended install); nothing to snapshot yet.
    NeedsConsole,
    /// The installer said it failed while installing.
    InstallFailed,
    /// The install did not finish in time: its deadline passed, or its console fell silent, with no verdict.
    TimedOut,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 7] = [
        OutcomeKind::ImageOk,
        OutcomeKind::IsoCopy,
        OutcomeKind::NoTargetDisk,
        OutcomeKind::Rejected,
        OutcomeKind::NeedsConsole,
        OutcomeKind::InstallFailed,
        OutcomeKind::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn unknown_outcome(s: &str) -> String {
    format!("unknown outcome `{s}`, expected one of {}", OutcomeKind::ALL.map(OutcomeKind::as_str).join(", "))
}

/// An outcome with the reason a person reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub reason: String,
}

impl Outcome {
    pub fn new(kind: OutcomeKind, reason: impl Into<String>) -> Outcome {
        Outcome { kind, reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::OutcomeKind;

    #[test]
    fn outcome_names_round_trip_and_a_wrong_one_lists_the_right_ones() {
        for kind in OutcomeKind::ALL {
            assert_eq!(kind.as_str().parse::<OutcomeKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(OutcomeKind::NeedsConsole.as_str(), "needs-console");
        assert_eq!(
            "fine".parse::<OutcomeKind>(),
            Err("unknown outcome `fine`, expected one of image-ok, iso-copy, no-target-disk, rejected, needs-console, install-failed, timed-out"
                .to_string())
        );
    }
}
