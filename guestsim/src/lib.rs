//! guestsim: the guest world isoharness reasons about, apart from any cloud API.
//!
//! [`guest`] is the vocabulary of guest facts (OS family, firmware, where a virtio storage
//! driver comes from); [`layout`] names the disk assemblies a compute host can use; [`media`]
//! writes and reads installation media (ISO 9660, FAT floppies, the generated installer and
//! driver media, the tiny installer that boots them on a real PC); [`hypervisor`] is the
//! simulated libvirt compute host (disk mapping, domain XML, qcow2 files, the guest's rules);
//! [`sniff`] tells image formats from their first bytes, for all of them and for mockstack's Glance.
//! [`script`] is what an installer says on the console, spoken by the simulated guest and the tiny installer alike.
//! [`outcome`] is what installing a guest on a layout comes to, whoever derives or observes it.
//! Nothing here speaks HTTP: mockstack serves it, the harness derives expectations from it.

pub mod guest;
pub mod hypervisor;
pub mod installer_messages;
pub mod layout;
pub mod media;
pub mod outcome;
pub mod script;
pub mod sniff;

pub use layout::{DEFAULT_DRIVER_FLOPPY_IMAGE, DEFAULT_VIRTIO_WIN_IMAGE, DriverMedia, Layout};
pub use outcome::{Outcome, OutcomeKind};
