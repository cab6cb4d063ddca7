//! The libvirt driver behaviours mockstack can simulate for an instance booted from an ISO.

use serde::{Deserialize, Serialize};

/// Which disk assembly the simulated compute host uses (docs/guest-matrix.md#layouts).
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
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case", parse_err_ty = String, parse_err_fn = unknown_layout)]
pub enum Layout {
    /// Upstream Nova: the ISO is the root CD-ROM; snapshots copy the ISO.
    Stock,
    /// The article's change: a blank virtio root disk first, the OS ISO and the VirtIO ISO as CD-ROMs.
    Patched,
    /// `Patched` plus a driver floppy for text-mode Windows setup.
    PatchedFloppy,
}

/// The Glance image name a patched compute host looks for when no other is configured (the
/// `[libvirt]` option of a patched Nova, `--virtio-win-image` of mockstack).
pub const DEFAULT_VIRTIO_WIN_IMAGE: &str = "virtio-win";
/// The Glance image name the `patched-floppy` layout looks for when no other is configured.
pub const DEFAULT_DRIVER_FLOPPY_IMAGE: &str = "virtio-win-floppy";

/// The two driver media of the article a compute host may attach to an ISO boot: the VirtIO-win
/// ISO (a second CD-ROM) and the driver floppy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriverMedia {
    pub virtio_iso: bool,
    pub driver_floppy: bool,
}

impl DriverMedia {
    pub const ALL: DriverMedia = DriverMedia { virtio_iso: true, driver_floppy: true };
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::Stock, Layout::Patched, Layout::PatchedFloppy];

    /// The driver media a host of this layout attaches to an ISO boot: the VirtIO ISO unless
    /// stock, the driver floppy on `patched-floppy` only.
    pub fn driver_media(self) -> DriverMedia {
        DriverMedia { virtio_iso: self != Layout::Stock, driver_floppy: self == Layout::PatchedFloppy }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn unknown_layout(s: &str) -> String {
    format!("unknown layout {s:?}: expected stock, patched or patched-floppy")
}
