//! The tiny installer: the real x86 boot program every generated installer ISO carries as its BIOS El Torito image.
//!
//! Under mockstack the simulated guest reads the ISO's `/.isoharness/guest.toml` and never runs this code. On a
//! real hypervisor (the local real cloud's libvirt mode, or `qemu-system-x86_64`) the firmware runs it, and it
//! behaves as its guest's installer would: it reads the compact form of the guest's facts and the guest's
//! [`InstallerScript`](crate::script::InstallerScript) from its own ISO (`/.isoharness/installer.cfg`, written beside
//! `guest.toml`), drives the machine's controllers itself (libvirt's `-boot strict=on` hides every device outside
//! the boot order from the BIOS): the PIIX IDE controller (ATA disks, ATAPI CD-ROMs), the floppy controller and
//! legacy virtio-blk devices. A guest with virtio built in installs onto the first writable virtio disk; a `cdrom`
//! guest uses a virtio disk only once it has found `viostor` for its version on a CD-ROM or the floppy, a `floppy`
//! guest only on a FAT floppy beside `txtsetup.oem`; a guest without a virtio driver never touches a virtio disk and
//! installs onto an IDE disk if there is one. It prints the lines the simulated guest prints, refuses a machine
//! without the firmware or TPM the guest needs, waits for a person when the guest has no answer file, and with no
//! usable disk says so and waits. The installed MBR, booted, prints a login prompt and idles.
//!
//! The source is `tiny_installer/boot.asm`; `boot.bin` is its nasm output, committed so that building media needs
//! nothing beyond the Rust toolchain.

use crate::guest::{Arch, Firmware, GuestFacts};

/// The boot image: 8192 bytes, loaded at 0000:7C00.
pub const BOOT_IMAGE: &[u8; 8192] = include_bytes!("tiny_installer/boot.bin");

/// How many 512-byte sectors the El Torito entry must load: the whole boot image.
pub const LOAD_SECTORS: u16 = (BOOT_IMAGE.len() / 512) as u16;

/// Where the MBR the installer writes sits in the boot image.
const MBR_OFFSET: usize = 512;

/// The first line the installer prints: a second occurrence on a booted image means the installer started again.
pub const STARTED: &str = "isoharness tiny installer";
/// What the installed system prints once booted.
pub const BOOTED: &str = "isoharness-guest login:";

/// The MBR the installer writes, as it sits in the boot image (its partition still 2048 sectors long).
pub fn installed_mbr() -> &'static [u8] {
    &BOOT_IMAGE[MBR_OFFSET..MBR_OFFSET + 512]
}

/// Why the tiny installer cannot stand for `guest` on a real hypervisor, or `None` when it can. It boots from a
/// BIOS El Torito entry on an x86 PC; a guest that boots through UEFI or runs on another architecture boots
/// otherwise, and only mockstack's simulated host models it. A cell of such a guest run on real QEMU would say
/// nothing about the guest, so it is not run.
pub fn cannot_stand_for(guest: &GuestFacts) -> Option<String> {
    let mut differences = Vec::new();
    if guest.firmware != Firmware::Bios {
        differences.push("boots through UEFI");
    }
    if !matches!(guest.arch, Arch::X86_64 | Arch::I686) {
        differences.push("is not an x86 guest");
    }
    (!differences.is_empty()).then(|| {
        format!(
            "the tiny installer boots only from a BIOS El Torito entry on an x86 PC, and this guest {}",
            differences.join(" and ")
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
        assert!(contains(&BOOT_IMAGE[..], STARTED));
        assert!(contains(&BOOT_IMAGE[..], "_isoharness/installer.cfg"), "reads its configuration");
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
    fn it_stands_for_exactly_the_bios_x86_guests() {
        for (facts, _) in crate::hypervisor::testing::os_table() {
            let stands_in = facts.firmware == Firmware::Bios && matches!(facts.arch, Arch::X86_64 | Arch::I686);
            assert_eq!(cannot_stand_for(&facts).is_none(), stands_in, "{}", facts.name);
            let mut uefi = facts.clone();
            uefi.firmware = Firmware::Uefi;
            assert!(cannot_stand_for(&uefi).is_some_and(|why| why.contains("UEFI")), "{}", facts.name);
            let mut arm = facts.clone();
            arm.arch = Arch::Aarch64;
            assert!(cannot_stand_for(&arm).is_some_and(|why| why.contains("x86")), "{}", facts.name);
        }
    }
}
