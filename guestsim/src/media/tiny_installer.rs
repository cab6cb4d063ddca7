//! The tiny installer: the real x86 boot program every generated installer ISO carries as its BIOS El Torito image.
//!
//! Under mockstack the simulated guest reads the ISO's `/.isoharness/guest.toml` and never runs
//! this code. On a real hypervisor (the local real cloud's libvirt mode, or `qemu-system-x86_64
//! -cdrom`) the firmware runs it: it prints `Starting installer` on COM1, writes an installed
//! system (an MBR with boot code, one Linux partition spanning the disk and the boot signature)
//! onto the first hard disk the BIOS knows or, failing that, onto the first virtio-blk device,
//! which it drives itself (libvirt's `-boot strict=on` hides disks outside the boot order from
//! the BIOS, as Nova's ephemeral disk is), and powers the machine off through ACPI; with no hard
//! disk it prints `No disks found` and waits, as real installers do. Booted from the disk, the
//! installed MBR prints a login prompt and idles. It does not model missing drivers: every disk
//! it can reach is a target, as for an OS with virtio built in.
//!
//! The source is `tiny_installer/boot.asm`; `boot.bin` is its nasm output, committed so that
//! building media needs nothing beyond the Rust toolchain.

use crate::guest::{Arch, DriverSource, Firmware, GuestFacts};

/// The boot image: 2048 bytes (four 512-byte sectors, one CD sector), loaded at 0000:7C00.
pub const BOOT_IMAGE: &[u8; 2048] = include_bytes!("tiny_installer/boot.bin");

/// How many 512-byte sectors the El Torito entry must load: the installer keeps the MBR it
/// writes in its second sector.
pub const LOAD_SECTORS: u16 = 4;

/// What the installer prints when it starts: a second occurrence on a booted image means the
/// installer started again.
pub const STARTED: &str = "Starting installer";
/// What it prints when the install is written, before it powers off.
pub const FINISHED: &str = "Installation complete: powering off";
/// What it prints when there is no hard disk to install to.
pub const NO_DISK: &str = "No disks found";
/// What the installed system prints once booted.
pub const BOOTED: &str = "isoharness-guest login:";

/// The MBR the installer writes, as it sits in the boot image (its partition still 2048 sectors long).
pub fn installed_mbr() -> &'static [u8] {
    &BOOT_IMAGE[1024..1536]
}

/// Why the tiny installer cannot stand for `guest` on a real hypervisor, or `None` when it can. It boots from a
/// BIOS El Torito entry on an x86 PC and installs, unattended, onto any disk it reaches, as an OS with virtio built
/// in would; a guest that loads its storage driver from other media, has no virtio driver, boots through UEFI,
/// runs on another architecture or waits for a person behaves otherwise, and only mockstack's simulated host
/// models that. A cell of such a guest run on real QEMU would say nothing about the guest, so it is not run.
pub fn cannot_stand_for(guest: &GuestFacts) -> Option<String> {
    let mut differences = Vec::new();
    match guest.virtio_storage {
        DriverSource::BuiltIn => {}
        DriverSource::Cdrom => differences.push("loads viostor from a CD-ROM"),
        DriverSource::Floppy => differences.push("loads viostor from a floppy"),
        DriverSource::Unavailable => differences.push("has no virtio driver"),
    }
    if guest.firmware != Firmware::Bios {
        differences.push("boots through UEFI");
    }
    if !matches!(guest.arch, Arch::X86_64 | Arch::I686) {
        differences.push("is not an x86 guest");
    }
    if !guest.unattended {
        differences.push("waits for a person at the console");
    }
    (!differences.is_empty()).then(|| {
        format!(
            "the tiny installer installs like an unattended BIOS guest with virtio built in, and this guest {}",
            differences.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn the_boot_program_and_the_mbr_carry_their_messages_and_the_mbr_its_boot_signature() {
        let mbr = installed_mbr();
        assert_eq!(&mbr[510..512], &[0x55, 0xaa]);
        for message in [STARTED, FINISHED, NO_DISK] {
            assert!(contains(&BOOT_IMAGE[..1024], message), "{message}");
        }
        assert!(contains(mbr, BOOTED));
    }

    #[test]
    fn the_installed_mbr_has_one_active_linux_partition_from_sector_2048() {
        let entry = &installed_mbr()[446..462];
        assert_eq!(entry[0], 0x80, "active");
        assert_eq!(entry[4], 0x83, "Linux");
        assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 2048);
        assert!(installed_mbr()[462..510].iter().all(|b| *b == 0), "one partition only");
    }

    #[test]
    fn it_stands_for_exactly_the_unattended_bios_x86_guests_with_virtio_built_in() {
        for (facts, _) in crate::hypervisor::testing::os_table() {
            let stands_in = facts.virtio_storage == DriverSource::BuiltIn
                && facts.firmware == Firmware::Bios
                && matches!(facts.arch, Arch::X86_64 | Arch::I686)
                && facts.unattended;
            assert_eq!(cannot_stand_for(&facts).is_none(), stands_in, "{}", facts.name);
            let mut uefi = facts.clone();
            uefi.firmware = Firmware::Uefi;
            assert!(cannot_stand_for(&uefi).is_some_and(|why| why.contains("UEFI")), "{}", facts.name);
            let mut attended = facts.clone();
            attended.unattended = false;
            assert!(cannot_stand_for(&attended).is_some_and(|why| why.contains("person")), "{}", facts.name);
        }
        let windows = crate::hypervisor::testing::os_table()
            .into_iter()
            .map(|(facts, _)| facts)
            .find(|f| f.virtio_storage == DriverSource::Cdrom)
            .expect("a CD-ROM driver guest in the table");
        let why = cannot_stand_for(&windows).expect("not a stand-in");
        assert!(why.contains("loads viostor from a CD-ROM"), "{why}");
    }
}
