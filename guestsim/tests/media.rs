//! Integration tests of the media module: ISO 9660 and FAT images cross-checked with xorriso, isoinfo and mtools.

#[path = "media/support.rs"]
mod support;

#[path = "media/iso.rs"]
mod iso;

#[path = "media/floppy.rs"]
mod floppy;

#[path = "media/generated.rs"]
mod generated;

#[path = "media/real_boot.rs"]
mod real_boot;

#[path = "media/real_boot_uefi.rs"]
mod real_boot_uefi;
