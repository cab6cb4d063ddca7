//! The outcome of one (scenario, layout) cell: what the snapshot turned out to be.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What one run of the workflow produced (docs/guest-matrix.md#outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The snapshot is an installed OS; a server booted from it comes up as that OS.
    ImageOk,
    /// The snapshot holds the ISO; booting it does not reach the installed OS.
    IsoCopy,
    /// The installer found no disk it could install onto.
    NoTargetDisk,
    /// The cloud refused the request.
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::ImageOk, Outcome::IsoCopy, Outcome::NoTargetDisk, Outcome::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::ImageOk => "image-ok",
            Outcome::IsoCopy => "iso-copy",
            Outcome::NoTargetDisk => "no-target-disk",
            Outcome::Rejected => "rejected",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| {
            format!("unknown outcome `{s}`, expected one of {}", Outcome::ALL.map(|o| o.as_str()).join(", "))
        })
    }
}
