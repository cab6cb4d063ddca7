//! What real installers print when they give up, and how a console log is read for it.
//!
//! The catalogue holds the words of the installers the guest families use, each generation as its own source has
//! them (Anaconda's loader, its storage code and its new UI; debian-installer's disk-detect, partman and main menu;
//! Subiquity's guided-storage view and error report; YaST's storage proposal; Windows Setup's text mode, its
//! Vista-era and its current disk page; the Linux kernel). Both the harness, reading any cloud's console, and the
//! simulated guests, speaking for their installer, take the words from here, so that a message the harness knows
//! is one a real installer prints, whatever the scenario.
//!
//! Consoles wrap long lines (Anaconda's text UI at 80 columns, Subiquity's dialogs where its source breaks them),
//! so a message is found in the console with every run of whitespace taken as one space.

/// What an installer's message says about the install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Meaning {
    /// It found no disk it can install onto (no driver for the disk's controller, or no disk at all).
    NoDisk,
    /// It failed while installing.
    Failed,
    /// It refuses the machine (requirements not met, nothing to boot).
    Refused,
}

/// One message of one installer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownMessage {
    /// The installer (and its generation) that prints it.
    pub installer: &'static str,
    pub meaning: Meaning,
    /// The message's words: the start of what the installer prints, enough to tell it from anything else.
    pub text: &'static str,
}

const fn message(installer: &'static str, meaning: Meaning, text: &'static str) -> KnownMessage {
    KnownMessage { installer, meaning, text }
}

/// Every installer message the harness recognises.
pub const KNOWN_MESSAGES: &[KnownMessage] = &[
    // Windows Setup, text mode (Windows 2000, XP, Server 2003): drivers only from a floppy (F6).
    message(
        "Windows Setup (text mode)",
        Meaning::NoDisk,
        "Setup did not find any hard disk drives installed in your computer.",
    ),
    message("Windows Setup (text mode)", Meaning::Failed, "Setup cannot copy the file"),
    // Windows Setup of Vista, 7, Server 2008 and 2008 R2.
    message(
        "Windows Setup (NT 6.0/6.1)",
        Meaning::NoDisk,
        "No drives were found. Click Load Driver to provide a mass storage driver for installation.",
    ),
    // Windows Setup of Windows 8 and Server 2012 onwards.
    message(
        "Windows Setup",
        Meaning::NoDisk,
        "We couldn't find any drives. To get a storage driver, click Load driver.",
    ),
    // The stop code of a Windows that cannot reach its boot disk (no driver for its controller).
    message("Windows", Meaning::NoDisk, "INACCESSIBLE_BOOT_DEVICE"),
    message("Windows Setup", Meaning::Failed, "Windows could not complete the installation."),
    message("Windows Setup", Meaning::Failed, "Windows installation encountered an unexpected error."),
    message("Windows Setup", Meaning::Refused, "This PC can't run Windows"),
    message(
        "Windows Setup",
        Meaning::Refused,
        "This PC doesn't meet the minimum system requirements to install this version of Windows.",
    ),
    // Anaconda's C loader (Red Hat Enterprise Linux 3-5, Fedora Core).
    message(
        "anaconda (loader)",
        Meaning::NoDisk,
        "No hard drives have been found. You probably need to manually choose device drivers",
    ),
    // Anaconda's storage step (Red Hat Enterprise Linux 6, Fedora 9-17).
    message("anaconda (storage)", Meaning::NoDisk, "No usable disks have been found."),
    // Anaconda's new UI (Red Hat Enterprise Linux 7 onwards, Fedora 18 onwards).
    message(
        "anaconda",
        Meaning::NoDisk,
        "No disks detected. Please shut down the computer, connect at least one disk, and restart to complete installation.",
    ),
    message("anaconda", Meaning::Failed, "An unknown error has occurred, look at the /tmp/anaconda-tb"),
    message("anaconda (kickstart)", Meaning::Failed, "storage configuration failed:"),
    // debian-installer (Debian, Ubuntu before the live server installer): disk-detect, then partman.
    message("debian-installer (disk-detect)", Meaning::NoDisk, "No disk drive was detected."),
    message("debian-installer (partman)", Meaning::NoDisk, "No partitionable media were found."),
    message("debian-installer", Meaning::Failed, "An installation step failed."),
    // Subiquity (Ubuntu Server 20.04 onwards): no disk at all, or none big enough, start alike.
    message("subiquity", Meaning::NoDisk, "Block probing did not discover any disks"),
    message("subiquity", Meaning::Failed, "Sorry, there was a problem completing the installation."),
    // YaST (SUSE Linux Enterprise, openSUSE).
    message("YaST2", Meaning::NoDisk, "No hard disks were found for the installation."),
    message("Linux", Meaning::Failed, "Kernel panic - not syncing"),
    // SeaBIOS and OVMF when no device boots.
    message("firmware", Meaning::Refused, "No bootable device"),
    // The installer of a Linux distribution none of the above stands for (mockstack's simulated guests).
    message("installer", Meaning::NoDisk, "No disks found."),
    // What the simulated guests and the tiny installers add when a write to the disk fails, after their
    // installer's own failure message where it has one.
    message("isoharness installers", Meaning::Failed, "installation failed:"),
];

/// A known message found in a console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub message: &'static KnownMessage,
    /// The console line (0-based) the message starts on.
    pub line: usize,
}

/// The known message that comes first in `console`, wrapped or not.
pub fn find_known_message(console: &str) -> Option<Found> {
    let (flat, line_of) = flatten_whitespace(console);
    // The catalogue's texts are written flat already (a test checks it), so only the console is flattened.
    KNOWN_MESSAGES
        .iter()
        .filter_map(|message| flat.find(message.text).map(|at| (at, message)))
        .min_by_key(|(at, _)| *at)
        .map(|(at, message)| Found { message, line: line_of[at] })
}

/// `text` with every run of whitespace as one space, and the line each byte of the result comes from.
fn flatten_whitespace(text: &str) -> (String, Vec<usize>) {
    let mut flat = String::with_capacity(text.len());
    let mut line_of = Vec::with_capacity(text.len());
    let mut line = 0;
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space && !flat.is_empty() {
                flat.push(' ');
                line_of.push(line);
            }
            in_space = true;
            if c == '\n' {
                line += 1;
            }
            continue;
        }
        in_space = false;
        flat.push(c);
        line_of.extend(std::iter::repeat_n(line, c.len_utf8()));
    }
    (flat, line_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_written_with_single_spaces_as_the_console_is_read() {
        for message in KNOWN_MESSAGES {
            assert_eq!(flatten_whitespace(message.text).0, message.text, "{:?}", message.text);
        }
    }

    #[test]
    fn a_message_is_found_however_the_console_wraps_it() {
        let console = "Probing storage...\nInstallation Destination\n\nNo disks detected.  Please shut down the computer, \
                       connect at least one disk,\nand restart to complete installation.\n";
        let found = find_known_message(console).expect("anaconda's message");
        assert_eq!(found.message.installer, "anaconda");
        assert_eq!(found.message.meaning, Meaning::NoDisk);
        assert_eq!(found.line, 3);
    }

    #[test]
    fn the_first_message_in_the_console_is_the_one_found() {
        let console = "An installation step failed. You can try to run the failing item again\n...\nKernel panic - not \
                       syncing: Attempted to kill init!\n";
        let found = find_known_message(console).unwrap();
        assert_eq!((found.message.meaning, found.line), (Meaning::Failed, 0));
        assert_eq!(found.message.installer, "debian-installer");
    }

    #[test]
    fn a_console_without_a_known_message_has_none() {
        assert_eq!(find_known_message("Booting the kernel.\nInstalling packages (312/1204)\n"), None);
        assert_eq!(find_known_message(""), None);
        // Half a message is not the message.
        assert_eq!(find_known_message("No disks detected."), None);
    }

    #[test]
    fn every_simulated_installer_speaks_words_the_catalogue_knows() {
        use crate::script::InstallerKind;
        use strum::IntoEnumIterator;
        for kind in InstallerKind::iter() {
            let found =
                find_known_message(kind.no_disk_message()).unwrap_or_else(|| panic!("{kind:?}'s no-disk words"));
            assert_eq!(found.message.meaning, Meaning::NoDisk, "{kind:?}");
            if let Some(failure) = kind.failure_message() {
                let found = find_known_message(failure).unwrap_or_else(|| panic!("{kind:?}'s failure words"));
                assert_eq!(found.message.meaning, Meaning::Failed, "{kind:?}");
            }
        }
    }

    #[test]
    fn each_guest_gets_the_installer_generation_its_release_shipped_with() {
        use crate::guest::{DriverSource, OsFamily};
        use crate::script::InstallerKind;
        let kind = |family: OsFamily, distro: &str, release: &str, storage: DriverSource| {
            let mut facts = crate::hypervisor::testing::os_table().swap_remove(0).0;
            facts.virtio_storage = storage;
            facts.family = family;
            facts.distro = distro.into();
            facts.release = release.into();
            InstallerKind::of(&facts)
        };
        use DriverSource::{BuiltIn, Cdrom, Floppy};
        use OsFamily::{Linux, Windows};
        let cases = [
            (Windows, "windows", "XP", Floppy, InstallerKind::WindowsTextMode),
            (Windows, "windows", "2003 R2", Floppy, InstallerKind::WindowsTextMode),
            (Windows, "windows", "2000", Cdrom, InstallerKind::WindowsTextMode),
            (Windows, "windows", "Vista", Cdrom, InstallerKind::WindowsVistaSetup),
            (Windows, "windows", "7", Cdrom, InstallerKind::WindowsVistaSetup),
            (Windows, "windows", "2008 R2", Cdrom, InstallerKind::WindowsVistaSetup),
            (Windows, "windows", "2008r2", Cdrom, InstallerKind::WindowsVistaSetup),
            (Windows, "windows", "xp", Cdrom, InstallerKind::WindowsTextMode),
            (Windows, "windows", "8.1", Cdrom, InstallerKind::WindowsSetup),
            (Windows, "windows", "2012 R2", Cdrom, InstallerKind::WindowsSetup),
            (Windows, "windows", "11", Cdrom, InstallerKind::WindowsSetup),
            (Linux, "rhel", "4", BuiltIn, InstallerKind::AnacondaLoader),
            (Linux, "centos", "5.11", BuiltIn, InstallerKind::AnacondaLoader),
            (Linux, "rhel", "6.4", BuiltIn, InstallerKind::AnacondaStorage),
            (Linux, "fedora", "17", BuiltIn, InstallerKind::AnacondaStorage),
            (Linux, "fedora", "18", BuiltIn, InstallerKind::Anaconda),
            (Linux, "rocky", "9.4", BuiltIn, InstallerKind::Anaconda),
            (Linux, "debian", "12", BuiltIn, InstallerKind::DebianInstaller),
            (Linux, "ubuntu", "18.04", BuiltIn, InstallerKind::DebianInstaller),
            (Linux, "ubuntu", "24.04", BuiltIn, InstallerKind::Subiquity),
            (Linux, "opensuse", "15.6", BuiltIn, InstallerKind::Yast),
            (Linux, "alpine", "3.20", BuiltIn, InstallerKind::GenericLinux),
        ];
        for (family, distro, release, storage, expected) in cases {
            assert_eq!(kind(family, distro, release, storage), expected, "{distro} {release}");
        }
    }

    #[test]
    fn every_message_is_found_in_a_console_that_holds_it_at_any_wrap_width() {
        for message in KNOWN_MESSAGES {
            for width in [20, 40, 80] {
                let mut console = String::from("earlier output\n");
                let mut column = 0;
                for word in message.text.split(' ') {
                    if column + word.len() > width && column > 0 {
                        console.push('\n');
                        column = 0;
                    } else if column > 0 {
                        console.push(' ');
                        column += 1;
                    }
                    console.push_str(word);
                    column += word.len();
                }
                let found =
                    find_known_message(&console).unwrap_or_else(|| panic!("{:?} at width {width}", message.text));
                assert_eq!(found.line, 1, "{:?}", message.text);
                // Messages that start alike are of the same meaning, so the one found means the same.
                assert_eq!(found.message.meaning, message.meaning, "{:?}", message.text);
            }
        }
    }
}
