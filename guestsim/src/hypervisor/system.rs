//! What an installed system looks like on its disk: a real MBR or GPT partition table plus a machine-readable record.
//!
//! The simulated installer writes, onto the target disk:
//! - BIOS installs: an MBR with one active partition starting at LBA 2048 (type 0x83 for Linux,
//!   0x07 for Windows), a few bytes of boot code and the 0x55AA boot signature;
//! - UEFI installs: a protective MBR, a GPT header and partition array at LBA 1..33 (with
//!   their CRC32s) and the backup copies at the end of the disk, with an EFI system partition
//!   at LBA 2048 and the root partition after it;
//! - at byte offset 1 MiB (the first partition's start) the record: the line
//!   [`RECORD_MAGIC`] followed by the [`InstalledSystem`] as TOML, NUL-terminated.
//!
//! [`inspect`] reads any disk image (qcow2 or raw) back and says what it holds, which is also
//! what an image validator needs: an installed system, an ISO 9660 volume, a blank disk, or
//! something else.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::qcow2::{self, Qcow2Error};
use crate::guest::{Firmware, GuestAgent, GuestFacts, OsFamily};
use crate::sniff;

/// Where the record starts: the first partition, 1 MiB into the disk.
pub const RECORD_OFFSET: u64 = 1 << 20;
/// The record's first line.
pub const RECORD_MAGIC: &str = "ISOHARNESS-INSTALLED-SYSTEM 1\n";
/// The most bytes a record may take.
pub const RECORD_MAX: usize = 64 << 10;
/// The smallest disk an installed system fits on (the record, the partitions and the backup GPT).
pub const MIN_INSTALL_DISK: u64 = 4 << 20;
const SECTOR: u64 = 512;

/// The record of an installed OS, written by the simulated installer and read at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledSystem {
    /// The facts of the OS that was installed (from its installation medium).
    pub facts: GuestFacts,
    /// Partitioning the installer chose from the machine's firmware (BIOS: MBR, UEFI: GPT).
    pub firmware: Firmware,
    /// The virtio storage driver in the installed system (`virtio_blk`, `viostor`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtio_storage_driver: Option<String>,
    /// Where the installer got that driver (a path on an attached medium), for Windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtio_storage_driver_source: Option<String>,
    /// NIC drivers the installed system has.
    pub network_drivers: Vec<String>,
    /// The cloud agent the unattended install put in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<GuestAgent>,
    /// The device name the installer saw its target as (`vda`, `hda`...).
    pub installed_on: String,
}

/// Why a disk's record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Image(#[from] Qcow2Error),
    #[error("installed-system record at offset {RECORD_OFFSET:#x} is not valid: {0}")]
    BadRecord(String),
    #[error("disk of {0} bytes is too small for an installed system (needs {MIN_INSTALL_DISK})")]
    DiskTooSmall(u64),
    #[error("cannot serialize the installed-system record")]
    Serialize(#[source] toml::ser::Error),
}

/// The byte ranges an install writes onto a disk of `disk_size` bytes: `(offset, bytes)`.
pub fn install_extents(system: &InstalledSystem, disk_size: u64) -> Result<Vec<(u64, Vec<u8>)>, SystemError> {
    if disk_size < MIN_INSTALL_DISK {
        return Err(SystemError::DiskTooSmall(disk_size));
    }
    let mut record = RECORD_MAGIC.as_bytes().to_vec();
    record.extend(toml::to_string(system).map_err(SystemError::Serialize)?.into_bytes());
    record.push(0);
    if record.len() > RECORD_MAX {
        return Err(SystemError::BadRecord(format!("record of {} bytes exceeds {RECORD_MAX}", record.len())));
    }
    let sectors = disk_size / SECTOR;
    let windows = system.facts.family == OsFamily::Windows;
    let mut extents = Vec::new();
    match system.firmware {
        Firmware::Bios => {
            let mut mbr = boot_code();
            let kind = if windows { 0x07 } else { 0x83 };
            mbr_entry(&mut mbr, 0, 0x80, kind, 2048, sectors - 2048);
            extents.push((0, mbr));
        }
        Firmware::Uefi => {
            let mut mbr = vec![0u8; 512];
            mbr_entry(&mut mbr, 0, 0x00, 0xee, 1, sectors - 1);
            mbr[510] = 0x55;
            mbr[511] = 0xaa;
            let esp_end = 2048 + 204_800.min((sectors - 2048 - 34) / 2) - 1;
            let root_type = if windows { MS_BASIC_DATA } else { LINUX_FILESYSTEM };
            let mut entries = vec![0u8; 128 * 128];
            gpt_entry(&mut entries[0..128], EFI_SYSTEM, 1, 2048, esp_end, "EFI System Partition");
            gpt_entry(&mut entries[128..256], root_type, 2, esp_end + 1, sectors - 34, "root");
            let entries_crc = crc32(&entries);
            let primary = gpt_header(1, sectors - 1, 2, sectors, entries_crc);
            let backup = gpt_header(sectors - 1, 1, sectors - 33, sectors, entries_crc);
            let mut head = mbr;
            head.extend(primary);
            head.extend(&entries);
            extents.push((0, head));
            extents.push(((sectors - 33) * SECTOR, entries));
            extents.push(((sectors - 1) * SECTOR, backup));
        }
    }
    extents.push((RECORD_OFFSET, record));
    Ok(extents)
}

/// A recognisable boot code stub: prints nothing, halts. Real boot loaders live here.
fn boot_code() -> Vec<u8> {
    let mut mbr = vec![0u8; 512];
    let stub = b"\xfa\xf4\xeb\xfdisoharness simulated boot loader";
    mbr[..stub.len()].copy_from_slice(stub);
    mbr[440..444].copy_from_slice(&0x1505_0a7eu32.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

fn mbr_entry(mbr: &mut [u8], slot: usize, status: u8, kind: u8, first_lba: u64, sectors: u64) {
    let at = 446 + slot * 16;
    mbr[at] = status;
    // CHS fields set to the "beyond 8 GB" marker, as partitioners do for LBA-addressed disks.
    mbr[at + 1..at + 4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    mbr[at + 4] = kind;
    mbr[at + 5..at + 8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    mbr[at + 8..at + 12].copy_from_slice(&(first_lba.min(u32::MAX as u64) as u32).to_le_bytes());
    mbr[at + 12..at + 16].copy_from_slice(&(sectors.min(u32::MAX as u64) as u32).to_le_bytes());
}

// Partition type GUIDs, in their on-disk (mixed-endian) byte order.
const EFI_SYSTEM: [u8; 16] = guid(0xC12A7328, 0xF81F, 0x11D2, [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
const LINUX_FILESYSTEM: [u8; 16] = guid(0x0FC63DAF, 0x8483, 0x4772, [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);
const MS_BASIC_DATA: [u8; 16] = guid(0xEBD0A0A2, 0xB9E5, 0x4433, [0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7]);

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

fn gpt_entry(entry: &mut [u8], kind: [u8; 16], n: u8, first: u64, last: u64, name: &str) {
    entry[0..16].copy_from_slice(&kind);
    // A unique partition GUID derived from its number: deterministic images, distinct partitions.
    let unique = guid(0x15050a7e, 0, u16::from(n), [0x80, 0, 0, 0, 0, 0, 0, n]);
    entry[16..32].copy_from_slice(&unique);
    entry[32..40].copy_from_slice(&first.to_le_bytes());
    entry[40..48].copy_from_slice(&last.to_le_bytes());
    for (i, unit) in name.encode_utf16().take(36).enumerate() {
        entry[56 + i * 2..58 + i * 2].copy_from_slice(&unit.to_le_bytes());
    }
}

fn gpt_header(my_lba: u64, alternate_lba: u64, entries_lba: u64, sectors: u64, entries_crc: u32) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[0..8].copy_from_slice(&sniff::GPT_SIGNATURE);
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
    h[40..48].copy_from_slice(&34u64.to_le_bytes());
    h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
    h[56..72].copy_from_slice(&guid(0x15050a7e, 0x1505, 0x0a7e, [0x80, 0, 0, 0, 0, 0, 0, 0]));
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// CRC-32 (IEEE 802.3), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// What a disk image holds, as firmware and an image validator would tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskContent {
    /// No boot signature and nothing recognisable in the first sectors.
    Blank,
    /// An installed system (partition table, boot signature and record).
    Installed(Box<InstalledSystem>),
    /// An ISO 9660 volume (`CD001` at offset 32769); `boot_signature` if it is a hybrid with an MBR.
    Iso9660 { boot_signature: bool },
    /// Something else; `boot_signature` says whether BIOS firmware would try to boot it.
    Other { boot_signature: bool, gpt: bool },
}

/// Reads the first sectors of a disk image (qcow2 or raw) and says what it holds.
pub fn inspect(path: &Path) -> Result<DiskContent, SystemError> {
    let head = qcow2::read_image_range(path, 0, 34 * 512)?;
    let descriptor = qcow2::read_image_range(path, sniff::ISO9660_DESCRIPTOR_OFFSET, sniff::ISO9660_DESCRIPTOR_LEN)?;
    let record = qcow2::read_image_range(path, RECORD_OFFSET, RECORD_MAX)?;
    classify(&head, &descriptor, &record)
}

/// [`inspect`] on bytes already read: the first 34 sectors, the ISO 9660 volume descriptor
/// (from [`sniff::ISO9660_DESCRIPTOR_OFFSET`]), and the bytes at [`RECORD_OFFSET`].
pub fn classify(head: &[u8], descriptor: &[u8], record: &[u8]) -> Result<DiskContent, SystemError> {
    let boot_signature = sniff::has_boot_signature(head);
    let gpt = sniff::has_gpt_header(head);
    if record.starts_with(RECORD_MAGIC.as_bytes()) && (boot_signature || gpt) {
        let body = &record[RECORD_MAGIC.len()..];
        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        let text = std::str::from_utf8(&body[..end]).map_err(|e| SystemError::BadRecord(e.to_string()))?;
        let system: InstalledSystem = toml::from_str(text).map_err(|e| SystemError::BadRecord(e.to_string()))?;
        return Ok(DiskContent::Installed(Box::new(system)));
    }
    if sniff::is_iso9660(descriptor) {
        return Ok(DiskContent::Iso9660 { boot_signature });
    }
    if !boot_signature && !gpt && head.iter().all(|&b| b == 0) {
        return Ok(DiskContent::Blank);
    }
    Ok(DiskContent::Other { boot_signature, gpt })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Arch, DriverSource};

    pub(crate) fn facts(family: OsFamily) -> GuestFacts {
        GuestFacts {
            name: "Test OS".into(),
            family,
            release: "1".into(),
            distro: "test".into(),
            arch: Arch::X86_64,
            virtio_storage: DriverSource::BuiltIn,
            virtio_win_folder: None,
            floppy_folder: None,
            firmware: Firmware::Bios,
            needs_tpm: false,
            needs_secure_boot: false,
            min_ram_mb: 512,
            min_disk_gb: 1,
            install_seconds: 60,
            boot_seconds: 10,
            agent: Some(GuestAgent::CloudInit),
            unattended: true,
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn installed_disks_read_back_with_valid_partition_tables() {
        let dir = tempfile::tempdir().unwrap();
        for (firmware, family) in [(Firmware::Bios, OsFamily::Linux), (Firmware::Uefi, OsFamily::Windows)] {
            let system = InstalledSystem {
                facts: facts(family),
                firmware,
                virtio_storage_driver: Some("virtio_blk".into()),
                virtio_storage_driver_source: None,
                network_drivers: vec!["virtio_net".into()],
                agent: Some(GuestAgent::CloudInit),
                installed_on: "vda".into(),
            };
            let size = 64 << 20;
            let extents = install_extents(&system, size).unwrap();
            let refs: Vec<(u64, &[u8])> = extents.iter().map(|(o, b)| (*o, b.as_slice())).collect();
            let path = dir.path().join(format!("{firmware:?}.qcow2"));
            qcow2::write_extents(&path, size, &refs).unwrap();
            assert_eq!(inspect(&path).unwrap(), DiskContent::Installed(Box::new(system)));
            // The partition table is what partitioning tools expect (checked by hand: no sfdisk here).
            let raw = dir.path().join(format!("{firmware:?}.raw"));
            qcow2::to_raw(&path, &raw).unwrap();
            let disk = std::fs::read(&raw).unwrap();
            assert_eq!(&disk[510..512], &[0x55, 0xaa]);
            let sectors = size / 512;
            match firmware {
                Firmware::Bios => {
                    assert_eq!(disk[446], 0x80);
                    assert_eq!(u32::from_le_bytes(disk[454..458].try_into().unwrap()), 2048);
                }
                Firmware::Uefi => {
                    assert_eq!(disk[446 + 4], 0xee);
                    for (at, my_lba, entries_lba) in
                        [(512usize, 1u64, 2u64), ((size - 512) as usize, sectors - 1, sectors - 33)]
                    {
                        let mut header = disk[at..at + 92].to_vec();
                        assert_eq!(&header[..8], b"EFI PART");
                        let stored = u32::from_le_bytes(header[16..20].try_into().unwrap());
                        header[16..20].fill(0);
                        assert_eq!(crc32(&header), stored);
                        assert_eq!(u64::from_le_bytes(header[24..32].try_into().unwrap()), my_lba);
                        assert_eq!(u64::from_le_bytes(header[72..80].try_into().unwrap()), entries_lba);
                        let entries_at = (entries_lba * 512) as usize;
                        let entries_crc = u32::from_le_bytes(header[88..92].try_into().unwrap());
                        assert_eq!(crc32(&disk[entries_at..entries_at + 128 * 128]), entries_crc);
                        assert_eq!(&disk[entries_at..entries_at + 16], &EFI_SYSTEM);
                        assert_eq!(
                            u64::from_le_bytes(disk[entries_at + 32..entries_at + 40].try_into().unwrap()),
                            2048
                        );
                    }
                }
            }
        }
        assert!(matches!(install_extents(&installed(), 1 << 20), Err(SystemError::DiskTooSmall(_))));
    }

    fn installed() -> InstalledSystem {
        InstalledSystem {
            facts: facts(OsFamily::Linux),
            firmware: Firmware::Bios,
            virtio_storage_driver: None,
            virtio_storage_driver_source: None,
            network_drivers: vec![],
            agent: None,
            installed_on: "hda".into(),
        }
    }

    #[test]
    fn other_contents_are_told_apart() {
        let zero = vec![0u8; 34 * 512];
        assert_eq!(classify(&zero, &[0; 5], &[]).unwrap(), DiskContent::Blank);
        assert_eq!(classify(&zero, b"\x01CD001", &[]).unwrap(), DiskContent::Iso9660 { boot_signature: false });
        let mut mbr = zero.clone();
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(classify(&mbr, b"\x01CD001", &[]).unwrap(), DiskContent::Iso9660 { boot_signature: true });
        assert_eq!(classify(&mbr, &[0; 5], &[]).unwrap(), DiskContent::Other { boot_signature: true, gpt: false });
        let mut broken = RECORD_MAGIC.as_bytes().to_vec();
        broken.extend(b"name = 3\0");
        let err = classify(&mbr, &[0; 5], &broken).unwrap_err();
        assert!(err.to_string().starts_with("installed-system record at offset 0x100000 is not valid"), "{err}");
    }
}
