//! Installation media: an ISO 9660 writer and reader, FAT driver floppies, and the OS and VirtIO-win media mockstack generates.
//!
//! Everything a simulated guest learns about itself comes from the media attached to it:
//! [`open_medium`] opens any image file as a [`Medium`], [`guest_facts`] reads the
//! `/.isoharness/guest.toml` descriptor an OS installer ISO carries, and [`find_driver`] is the
//! rule an installer follows to find a virtio storage driver on a medium.

pub mod floppy;
pub mod iso9660;
pub mod os_iso;
pub mod qemu;
pub mod tiny_installer;
pub mod virtio_win;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use floppy::{FloppyBuilder, FloppyImage, FloppySize};
pub use iso9660::{BootEntry, BootInfo, BootPlatform, FileContent, IsoBuilder, IsoImage};
pub use os_iso::{OsIsoOptions, os_installer_iso, os_installer_iso_to_file, os_volume_id};
pub use virtio_win::{
    DriverFloppySpec, FloppyArch, InfTarget, VirtioWinSpec, WINDOWS_RELEASES, WindowsRelease, driver_floppy,
    driver_floppy_to_file, inf_target, virtio_win_iso, virtio_win_iso_to_file,
};

use crate::guest::{DriverSource, GuestFacts, Medium};
use crate::sniff;

/// Where an OS installer ISO keeps the machine-readable facts about the guest it installs.
pub const GUEST_FACTS_PATH: &str = "/.isoharness/guest.toml";

/// Errors of the media module.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Reading or writing a file on the host failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing an image to its output failed.
    #[error("writing image failed: {0}")]
    Write(#[source] std::io::Error),
    /// Reading from an opened image failed.
    #[error("reading image at byte {offset} failed: {source}")]
    Read {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a well-formed ISO 9660 volume.
    #[error("malformed iso 9660 image at byte {offset}: {reason}")]
    MalformedIso { offset: u64, reason: String },
    /// The bytes are not a well-formed FAT volume.
    #[error("malformed fat image: {reason}")]
    MalformedFat { reason: String },
    /// The file is neither an ISO 9660 volume nor a FAT volume.
    #[error("{path}: not an iso 9660 or fat image ({reason})")]
    UnknownFormat { path: PathBuf, reason: String },
    /// A path given to an image builder cannot be stored on that medium.
    #[error("invalid path {path:?} for the image: {reason}")]
    InvalidPath { path: String, reason: String },
    /// A builder was given two entries whose paths differ only in case (or a file where a folder is).
    #[error("path {path:?} is already on the image")]
    DuplicatePath { path: String },
    /// The content does not fit on the medium.
    #[error("content does not fit on the medium: {reason}")]
    TooLarge { reason: String },
    /// `/.isoharness/guest.toml` is not valid guest facts.
    #[error("{GUEST_FACTS_PATH} on medium {volume_id:?}, line {line}, column {column}: {message}")]
    GuestFacts { volume_id: String, line: usize, column: usize, message: String },
}

/// Opens an image file as a medium, deciding by its content: ISO 9660 (`CD001` at byte 32769) or FAT.
pub fn open_medium(path: &Path) -> Result<Box<dyn Medium + Send + Sync>, MediaError> {
    let io_error = |source| MediaError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    if len >= iso9660::SECTOR_SIZE * 17 {
        let mut descriptor = [0u8; sniff::ISO9660_DESCRIPTOR_LEN];
        file.seek(SeekFrom::Start(sniff::ISO9660_DESCRIPTOR_OFFSET)).map_err(io_error)?;
        file.read_exact(&mut descriptor).map_err(io_error)?;
        if sniff::is_iso9660(&descriptor) {
            return Ok(Box::new(IsoImage::open(path)?));
        }
    }
    let mut boot_sector = [0u8; 512];
    if len >= 512 {
        file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        file.read_exact(&mut boot_sector).map_err(io_error)?;
        if sniff::is_fat_boot_sector(&boot_sector) {
            return Ok(Box::new(FloppyImage::open(path)?));
        }
    }
    Err(MediaError::UnknownFormat {
        path: path.to_path_buf(),
        reason: format!("{len} bytes, no CD001 signature at byte 32769 and no FAT boot sector"),
    })
}

/// Reads the guest facts an OS installer ISO carries; `None` when the medium has none.
pub fn guest_facts(medium: &dyn Medium) -> Result<Option<GuestFacts>, MediaError> {
    let Some(bytes) = medium.read(GUEST_FACTS_PATH) else {
        return Ok(None);
    };
    let located = |line, column, message| MediaError::GuestFacts {
        volume_id: medium.volume_id().to_owned(),
        line,
        column,
        message,
    };
    let text = std::str::from_utf8(&bytes).map_err(|error| {
        let (line, column) = line_column(&bytes, error.valid_up_to());
        located(line, column, "not utf-8".to_owned())
    })?;
    toml::from_str(text).map(Some).map_err(|error| {
        let (line, column) = error.span().map(|span| line_column(text.as_bytes(), span.start)).unwrap_or((1, 1));
        located(line, column, error.message().to_owned())
    })
}

fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Where an installer of the guest's OS and architecture finds `driver` (e.g. "viostor") on a medium.
///
/// A CD-ROM (Vista/2008 and later "Load driver") is searched at `<driver>/<virtio_win_folder>/<arch>/<driver>.inf`;
/// a floppy (text-mode setup, F6) must carry `txtsetup.oem` and `<i386|amd64>/<floppy_folder>/<driver>.inf`.
/// Returns the `.inf` path as the medium spells it, or `None` when the guest would find nothing.
pub fn find_driver(medium: &dyn Medium, driver: &str, facts: &GuestFacts) -> Option<String> {
    let files = medium.files();
    let find = |wanted: &str| files.iter().find(|file| file.eq_ignore_ascii_case(wanted)).cloned();
    let cdrom = || find(&crate::script::cdrom_driver_path(facts, driver)?);
    let floppy = || {
        find("/txtsetup.oem")?;
        find(&crate::script::floppy_driver_path(facts, driver)?)
    };
    match facts.virtio_storage {
        DriverSource::Cdrom => cdrom().or_else(floppy),
        DriverSource::Floppy => floppy(),
        DriverSource::BuiltIn | DriverSource::Unavailable => None,
    }
}

/// Normalises a medium path for case-insensitive lookup: leading `/`, no trailing `/`, lower case.
pub(crate) fn lookup_key(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut key = String::with_capacity(trimmed.len() + 1);
    key.push('/');
    key.push_str(&trimmed.to_lowercase());
    key
}
