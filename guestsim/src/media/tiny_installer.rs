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
//!
//! UEFI guests boot its counterpart, `tiny_installer/efi/installer.c` (gnu-efi), from the ISO's EFI El Torito entry:
//! a FAT image holding `\EFI\BOOT\BOOTX64.EFI`. It reads the same configuration and prints the same lines, finds
//! its disks through the firmware's drivers (SATA on q35, IDE, virtio-blk), checks Secure Boot and the TPM through
//! the firmware, and installs a GPT disk whose EFI system partition is a copy of its own boot image, so that the
//! installed disk boots the same program, which then prints the login prompt. `efi/build.sh` builds it
//! reproducibly; `bootx64.efi` is that build signed with Debian's published OVMF test key ("snakeoil"), which
//! Debian's `OVMF_VARS_4M.snakeoil.fd` enrols, so that Secure Boot cells run for real.

use jiff::civil::DateTime;

use super::MediaError;
use super::floppy::{FloppyBuilder, FloppySize};
use crate::guest::{Arch, Firmware, GuestFacts};

/// The boot image: 8192 bytes, loaded at 0000:7C00.
pub const BOOT_IMAGE: &[u8; 8192] = include_bytes!("tiny_installer/boot.bin");

/// How many 512-byte sectors the El Torito entry must load: the whole boot image.
pub const LOAD_SECTORS: u16 = (BOOT_IMAGE.len() / 512) as u16;

/// The UEFI installer (x86_64), signed for Secure Boot with Debian's OVMF test key.
pub const EFI_PROGRAM: &[u8] = include_bytes!("tiny_installer/efi/bootx64.efi");

/// The EFI system partition image the ISO's EFI El Torito entry points at: FAT12, `\EFI\BOOT\BOOTX64.EFI` in it.
/// The installer copies it onto the disk it installs, whose firmware then boots the same program.
pub fn efi_system_image(created: DateTime) -> Result<Vec<u8>, MediaError> {
    let mut esp = FloppyBuilder::new(FloppySize::Floppy1440K, "EFIBOOT", created)?;
    esp.add_file("EFI/BOOT/BOOTX64.EFI", EFI_PROGRAM.to_vec())?;
    let mut image = Vec::with_capacity(FloppySize::Floppy1440K.bytes() as usize);
    esp.write(&mut image)?;
    Ok(image)
}

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
/// BIOS El Torito entry on an x86 PC, or from a UEFI one on an x86_64 PC; any other guest boots otherwise, and only
/// mockstack's simulated host models it. A cell of such a guest run on real QEMU would say nothing about the guest,
/// so it is not run.
pub fn cannot_stand_for(guest: &GuestFacts) -> Option<String> {
    let why = match (guest.arch, guest.firmware) {
        (Arch::X86_64, _) | (Arch::I686, Firmware::Bios) => return None,
        (Arch::I686, Firmware::Uefi) => "boots a 32-bit UEFI, for which the tiny installer has no build",
        (Arch::Aarch64, _) => "is not an x86 guest",
    };
    Some(format!("the tiny installer boots x86 BIOS and x86_64 UEFI PCs, and this guest {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::Medium;

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
    fn the_efi_system_image_is_a_fat_volume_holding_the_signed_installer() {
        let image = efi_system_image(DateTime::constant(2024, 4, 23, 12, 0, 0, 0)).expect("builds");
        let volume = super::super::floppy::FloppyImage::from_bytes(image).expect("a FAT volume");
        assert_eq!(volume.read("EFI/BOOT/BOOTX64.EFI").as_deref(), Some(EFI_PROGRAM));
        assert_eq!(&EFI_PROGRAM[..2], b"MZ", "a PE image");
        assert!(contains(EFI_PROGRAM, "_isoharness/installer.cfg"), "reads the BIOS installer's configuration");
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
    fn it_stands_for_x86_bios_and_x86_64_uefi_guests() {
        for (facts, _) in crate::hypervisor::testing::os_table() {
            let stands_in =
                facts.arch == Arch::X86_64 || (facts.arch == Arch::I686 && facts.firmware == Firmware::Bios);
            assert_eq!(cannot_stand_for(&facts).is_none(), stands_in, "{}", facts.name);
            let mut uefi = facts.clone();
            uefi.firmware = Firmware::Uefi;
            uefi.arch = Arch::I686;
            assert!(cannot_stand_for(&uefi).is_some_and(|why| why.contains("32-bit UEFI")), "{}", facts.name);
            let mut arm = facts.clone();
            arm.arch = Arch::Aarch64;
            assert!(cannot_stand_for(&arm).is_some_and(|why| why.contains("x86")), "{}", facts.name);
        }
    }
}
