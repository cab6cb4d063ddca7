//! OS installer ISOs generated from guest facts: small, bootable, laid out like the real OS family's media, with `/.isoharness/guest.toml`.
//!
//! The layout follows the installer family, decided from the facts: Windows text-mode setup
//! (drivers from a floppy) gets an `I386/` tree with `WINNT.SIF`; later Windows gets `bootmgr`,
//! `sources/*.wim`, `efi/` and `autounattend.xml`; Linux gets `isolinux/` and `EFI/BOOT/` plus
//! the distribution family's kernel folder and answer file (kickstart, preseed, autoinstall,
//! AutoYaST). Volume ids come from a rule per family and distribution, not from a table of releases.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use jiff::civil::DateTime;
use md5::{Digest, Md5};

use super::iso9660::{BootEntry, BootPlatform, IsoBuilder};
use super::{GUEST_FACTS_PATH, MediaError};
use crate::guest::{Arch, DriverSource, Firmware, GuestAgent, GuestFacts, OsFamily};
use crate::script::{INSTALLER_CONFIG_PATH, InstallerScript};

/// How to generate an installer ISO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsIsoOptions {
    /// Every timestamp on the volume (the ISO is byte-identical for equal facts and options).
    pub created: DateTime,
    /// Overrides the volume id derived by [`os_volume_id`].
    pub volume_id: Option<String>,
    /// The drive letter Windows setup gives the VirtIO-win CD-ROM (the second CD-ROM is `E:` on a one-disk guest).
    pub virtio_drive: char,
}

impl Default for OsIsoOptions {
    fn default() -> Self {
        OsIsoOptions { created: DateTime::constant(2024, 4, 23, 12, 0, 0, 0), volume_id: None, virtio_drive: 'E' }
    }
}

/// The volume id a real installer ISO of this OS carries, e.g. `Ubuntu-Server 24.04 LTS amd64`.
pub fn os_volume_id(facts: &GuestFacts) -> String {
    let release = facts.release.trim();
    let (major, minor) = major_minor(release);
    let id = match facts.family {
        OsFamily::Windows => {
            let edition = if is_windows_server(facts) { "SSS" } else { "CCSA" };
            let arch = match facts.arch {
                Arch::X86_64 => "X64",
                Arch::I686 => "X86",
                Arch::Aarch64 => "A64",
            };
            format!("{edition}_{arch}FRE_EN-US_DV5")
        }
        OsFamily::Linux => match facts.distro.to_ascii_lowercase().as_str() {
            "ubuntu" => {
                let lts = if major % 2 == 0 && minor == 4 { " LTS" } else { "" };
                format!("Ubuntu-Server {release}{lts} {}", deb_arch(facts.arch))
            }
            "debian" => format!("Debian {release} {} n", deb_arch(facts.arch)),
            "rhel" if major >= 8 => format!("RHEL-{major}-{minor}-0-BaseOS-{}", rpm_arch(facts.arch)),
            "rhel" => format!("RHEL-{release} Server.{}", rpm_arch(facts.arch)),
            "centos" if major >= 8 => format!("CentOS-Stream-{major}-BaseOS-{}", rpm_arch(facts.arch)),
            "centos" => format!("CentOS_{release}_Final"),
            "fedora" if major >= 21 => format!("Fedora-S-dvd-{}-{release}", rpm_arch(facts.arch)),
            "fedora" => format!("Fedora {release} {} DVD", rpm_arch(facts.arch)),
            "sles" => format!("SLES-{}-DVD-{}", release.replace([' ', '.'], "-"), rpm_arch(facts.arch)),
            other => format!("{}-{release}-{}", capitalized(other), rpm_arch(facts.arch)),
        },
    };
    id.chars().filter(|c| (' '..='~').contains(c)).take(32).collect()
}

fn major_minor(release: &str) -> (u32, u32) {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty());
    let major = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let minor = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (major, minor)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn is_windows_server(facts: &GuestFacts) -> bool {
    facts.name.to_ascii_lowercase().contains("server")
}

fn deb_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::I686 => "i386",
        Arch::Aarch64 => "arm64",
    }
}

fn rpm_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::I686 => "i386",
        Arch::Aarch64 => "aarch64",
    }
}

fn efi_loader(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "BOOTX64.EFI",
        Arch::I686 => "BOOTIA32.EFI",
        Arch::Aarch64 => "BOOTAA64.EFI",
    }
}

/// The files of an installer ISO, plus its El Torito entries.
struct IsoContents {
    files: Vec<(String, Vec<u8>)>,
    boot: Vec<BootEntry>,
}

impl IsoContents {
    fn add(&mut self, path: &str, content: impl Into<Vec<u8>>) {
        self.files.push((path.to_owned(), content.into()));
    }

    fn stand_in(&mut self, path: &str, what: &str, facts: &GuestFacts) {
        let text =
            format!("isoharness stand-in for {what} of {} {} ({})\n", facts.name, facts.release, rpm_arch(facts.arch));
        self.add(path, text);
    }

    fn boot_image(
        &mut self,
        platform: BootPlatform,
        path: &str,
        load_sectors: Option<u16>,
        facts: &GuestFacts,
        opts: &OsIsoOptions,
    ) -> Result<(), MediaError> {
        let image = match platform {
            // Real programs, so that the ISO installs something when a real BIOS or UEFI boots it.
            BootPlatform::Bios => super::tiny_installer::BOOT_IMAGE.to_vec(),
            BootPlatform::Efi if facts.arch == Arch::X86_64 => super::tiny_installer::efi_system_image(opts.created)?,
            // A boot image fills whole 512-byte sectors, as firmware loads it by sector count.
            BootPlatform::Efi => {
                let mut image =
                    format!("isoharness {platform:?} boot image for {} {}\n", facts.name, facts.release).into_bytes();
                image.resize(2048, 0);
                image
            }
        };
        let load_sectors = match platform {
            BootPlatform::Bios => Some(load_sectors.unwrap_or(0).max(super::tiny_installer::LOAD_SECTORS)),
            BootPlatform::Efi => load_sectors,
        };
        self.add(path, image);
        self.boot.push(BootEntry { platform, image: path.to_owned(), load_sectors });
        Ok(())
    }
}

/// Writes a bootable installer ISO for the guest the facts describe.
pub fn os_installer_iso(facts: &GuestFacts, opts: &OsIsoOptions, out: &mut impl Write) -> Result<(), MediaError> {
    let volume_id = opts.volume_id.clone().unwrap_or_else(|| os_volume_id(facts));
    let mut layout = IsoContents { files: Vec::new(), boot: Vec::new() };
    match facts.family {
        OsFamily::Windows if facts.virtio_storage == DriverSource::Floppy => {
            windows_text_mode(facts, opts, &mut layout)?
        }
        OsFamily::Windows => windows(facts, opts, &mut layout)?,
        OsFamily::Linux => linux(facts, opts, &mut layout)?,
    }
    let toml = toml::to_string(facts).map_err(|e| MediaError::Write(std::io::Error::other(e)))?;
    layout.add(GUEST_FACTS_PATH, toml);
    // Both tiny installers, the BIOS one and the UEFI one, read the same configuration.
    if super::tiny_installer::cannot_stand_for(facts).is_none() {
        let script = InstallerScript::for_guest(facts);
        let config = script.config(facts).ok_or_else(|| MediaError::TooLarge {
            reason: format!("the installer's script for {:?} does not fit in {INSTALLER_CONFIG_PATH}", facts.name),
        })?;
        layout.add(INSTALLER_CONFIG_PATH, config);
    }
    let system_id = if facts.family == OsFamily::Windows { "WIN32" } else { "LINUX" };
    let mut iso = IsoBuilder::new(&volume_id, opts.created)?.system_id(system_id);
    for entry in layout.boot {
        iso = iso.boot(entry);
    }
    for (path, content) in layout.files {
        iso.add_file(&path, content)?;
    }
    iso.write(out)?;
    Ok(())
}

/// [`os_installer_iso`] into a file.
pub fn os_installer_iso_to_file(facts: &GuestFacts, opts: &OsIsoOptions, path: &Path) -> Result<(), MediaError> {
    super::virtio_win::write_file(path, |out| os_installer_iso(facts, opts, out))
}

/// Windows XP / Server 2003 text-mode setup: an `I386` (and `AMD64`) tree, answers in `I386/WINNT.SIF`.
fn windows_text_mode(facts: &GuestFacts, opts: &OsIsoOptions, layout: &mut IsoContents) -> Result<(), MediaError> {
    let arch_dir = if facts.arch == Arch::X86_64 { Some("AMD64") } else { None };
    layout.boot_image(BootPlatform::Bios, "I386/BOOTFIX.BIN", Some(4), facts, opts)?;
    for file in ["I386/SETUPLDR.BIN", "I386/NTDETECT.COM", "I386/TXTSETUP.SIF", "I386/WINNT32.EXE", "SETUP.EXE"] {
        layout.stand_in(file, file, facts);
    }
    if let Some(dir) = arch_dir {
        layout.stand_in(&format!("{dir}/SETUPLDR.BIN"), "the x64 setup loader", facts);
        layout.stand_in(&format!("{dir}/TXTSETUP.SIF"), "the x64 setup information", facts);
    }
    layout.add("WIN51", "");
    layout.add("WIN51IS", "");
    layout.add("AUTORUN.INF", "[autorun]\r\nopen=SETUP.EXE\r\nicon=SETUP.EXE,0\r\n");
    if facts.unattended {
        let mut sif = String::new();
        let _ = write!(
            sif,
            "; WINNT.SIF: unattended text-mode setup of {name}\r\n\
             [Data]\r\n\
             AutoPartition=1\r\n\
             MsDosInitiated=\"0\"\r\n\
             UnattendedInstall=\"Yes\"\r\n\
             \r\n\
             [Unattended]\r\n\
             UnattendMode=FullUnattended\r\n\
             OemSkipEula=Yes\r\n\
             OemPreinstall=Yes\r\n\
             DriverSigningPolicy=Ignore\r\n\
             TargetPath=\\WINDOWS\r\n\
             \r\n\
             ; The VirtIO storage driver comes from the floppy (F6): txtsetup.oem on drive A:.\r\n\
             [MassStorageDrivers]\r\n\
             \"Red Hat VirtIO SCSI controller\" = \"OEM\"\r\n\
             \r\n\
             [OEMBootFiles]\r\n\
             txtsetup.oem\r\n\
             viostor.sys\r\n\
             viostor.inf\r\n\
             viostor.cat\r\n\
             \r\n\
             [GuiRunOnce]\r\n\
             Command0=\"shutdown -s -t 0\"\r\n",
            name = facts.name,
        );
        layout.add("I386/WINNT.SIF", sif);
    }
    Ok(())
}

/// Windows Vista / Server 2008 and later: `bootmgr`, `boot/`, `efi/`, `sources/*.wim`, `autounattend.xml`.
fn windows(facts: &GuestFacts, opts: &OsIsoOptions, layout: &mut IsoContents) -> Result<(), MediaError> {
    if facts.arch != Arch::Aarch64 {
        layout.boot_image(BootPlatform::Bios, "boot/etfsboot.com", Some(8), facts, opts)?;
    }
    if facts.arch != Arch::I686 {
        layout.boot_image(BootPlatform::Efi, "efi/microsoft/boot/efisys.bin", None, facts, opts)?;
        layout.stand_in(
            &format!("efi/boot/{}", efi_loader(facts.arch).to_ascii_lowercase()),
            "the UEFI boot loader",
            facts,
        );
        layout.stand_in("efi/microsoft/boot/bcd", "the UEFI boot configuration", facts);
        layout.stand_in("bootmgr.efi", "the UEFI boot manager", facts);
    }
    layout.stand_in("bootmgr", "the boot manager", facts);
    layout.stand_in("boot/bcd", "the boot configuration", facts);
    layout.stand_in("boot/boot.sdi", "the ramdisk image", facts);
    layout.stand_in("sources/boot.wim", "Windows PE", facts);
    layout.stand_in("sources/install.wim", "the install image", facts);
    layout.stand_in("sources/setup.exe", "setup", facts);
    layout.stand_in("setup.exe", "setup", facts);
    layout.add("autorun.inf", "[AutoRun.Amd64]\r\nopen=setup.exe\r\nicon=setup.exe,0\r\n");
    if facts.unattended {
        layout.add("autounattend.xml", autounattend(facts, opts));
    }
    Ok(())
}

fn autounattend(facts: &GuestFacts, opts: &OsIsoOptions) -> String {
    let arch = match facts.arch {
        Arch::X86_64 => "amd64",
        Arch::I686 => "x86",
        Arch::Aarch64 => "arm64",
    };
    let component = |name: &str| {
        format!(
            "<component name=\"{name}\" processorArchitecture=\"{arch}\" publicKeyToken=\"31bf3856ad364e35\" \
             language=\"neutral\" versionScope=\"nonSxS\">"
        )
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ =
        writeln!(xml, "<!-- Unattended setup of {} {} written by isoharness mockstack -->", facts.name, facts.release);
    xml.push_str("<unattend xmlns=\"urn:schemas-microsoft-com:unattend\">\n  <settings pass=\"windowsPE\">\n");
    if let Some(folder) = &facts.virtio_win_folder {
        let _ = writeln!(xml, "    {}", component("Microsoft-Windows-PnpCustomizationsWinPE"));
        xml.push_str("      <DriverPaths>\n");
        for (key, driver) in ["viostor", "NetKVM"].iter().enumerate() {
            let _ = writeln!(
                xml,
                "        <PathAndCredentials wcm:action=\"add\" wcm:keyValue=\"{}\" \
                 xmlns:wcm=\"http://schemas.microsoft.com/WMIConfig/2002/State\">\n          \
                 <Path>{}:\\{driver}\\{folder}\\{}</Path>\n        </PathAndCredentials>",
                key + 1,
                opts.virtio_drive,
                facts.arch.virtio_win_folder()
            );
        }
        xml.push_str("      </DriverPaths>\n    </component>\n");
    }
    let _ = writeln!(xml, "    {}", component("Microsoft-Windows-Setup"));
    xml.push_str("      <DiskConfiguration>\n        <Disk wcm:action=\"add\" xmlns:wcm=\"http://schemas.microsoft.com/WMIConfig/2002/State\">\n");
    xml.push_str("          <DiskID>0</DiskID>\n          <WillWipeDisk>true</WillWipeDisk>\n");
    let (partition_style, install_partition) = match facts.firmware {
        Firmware::Uefi => ("GPT: EFI 100 MB, MSR 16 MB, Windows", 3),
        Firmware::Bios => ("MBR: Windows", 1),
    };
    let _ = writeln!(xml, "          <!-- {partition_style} -->");
    xml.push_str("        </Disk>\n      </DiskConfiguration>\n      <ImageInstall>\n        <OSImage>\n");
    let _ = writeln!(
        xml,
        "          <InstallTo><DiskID>0</DiskID><PartitionID>{install_partition}</PartitionID></InstallTo>"
    );
    xml.push_str(
        "        </OSImage>\n      </ImageInstall>\n      <UserData><AcceptEula>true</AcceptEula></UserData>\n",
    );
    xml.push_str("    </component>\n  </settings>\n  <settings pass=\"oobeSystem\">\n");
    let _ = writeln!(xml, "    {}", component("Microsoft-Windows-Shell-Setup"));
    xml.push_str("      <FirstLogonCommands>\n");
    let mut commands = Vec::new();
    if facts.agent == Some(GuestAgent::CloudbaseInit) {
        commands.push("msiexec /i E:\\CloudbaseInitSetup.msi /qn /l*v C:\\cloudbase-init.log".to_owned());
    }
    commands.push("shutdown /s /t 0".to_owned());
    for (order, command) in commands.iter().enumerate() {
        let _ = writeln!(
            xml,
            "        <SynchronousCommand wcm:action=\"add\" xmlns:wcm=\"http://schemas.microsoft.com/WMIConfig/2002/State\">\
             <Order>{}</Order><CommandLine>{command}</CommandLine></SynchronousCommand>",
            order + 1
        );
    }
    xml.push_str("      </FirstLogonCommands>\n    </component>\n  </settings>\n</unattend>\n");
    xml
}

/// Linux: BIOS `isolinux/` and UEFI `EFI/BOOT/` boot entries, then the distribution family's tree.
fn linux(facts: &GuestFacts, opts: &OsIsoOptions, layout: &mut IsoContents) -> Result<(), MediaError> {
    let distro = facts.distro.to_ascii_lowercase();
    let family = match distro.as_str() {
        "ubuntu" | "debian" => "debian",
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" => "redhat",
        "sles" | "opensuse" | "suse" => "suse",
        _ => "generic",
    };
    let (kernel, initrd) = match family {
        "debian" if distro == "ubuntu" => ("casper/vmlinuz".to_owned(), "casper/initrd".to_owned()),
        "debian" => {
            let dir = match facts.arch {
                Arch::X86_64 => "install.amd",
                Arch::I686 => "install.386",
                Arch::Aarch64 => "install.a64",
            };
            (format!("{dir}/vmlinuz"), format!("{dir}/initrd.gz"))
        }
        "redhat" => ("images/pxeboot/vmlinuz".to_owned(), "images/pxeboot/initrd.img".to_owned()),
        "suse" => {
            let dir = format!("boot/{}/loader", rpm_arch(facts.arch));
            (format!("{dir}/linux"), format!("{dir}/initrd"))
        }
        _ => ("boot/vmlinuz".to_owned(), "boot/initrd.img".to_owned()),
    };
    let (major, _) = major_minor(&facts.release);
    let answer_file = facts.unattended.then(|| match family {
        "debian" if distro == "ubuntu" && major >= 20 => ("autoinstall.yaml", autoinstall(facts)),
        "debian" => ("preseed/isoharness.seed", preseed(facts)),
        "redhat" => ("ks.cfg", kickstart(facts)),
        "suse" => ("autoinst.xml", autoyast(facts)),
        _ => {
            ("isoharness/answers.cfg", format!("# unattended install of {} {}\npoweroff\n", facts.name, facts.release))
        }
    });
    let kernel_args = match (family, &answer_file) {
        ("redhat", Some(_)) if major >= 7 => "inst.ks=cdrom:/ks.cfg".to_owned(),
        ("redhat", Some(_)) => "ks=cdrom:/ks.cfg".to_owned(),
        ("debian", Some(("autoinstall.yaml", _))) => "autoinstall".to_owned(),
        ("debian", Some((path, _))) => format!("auto=true file=/cdrom/{path}"),
        ("suse", Some(_)) => "autoyast=device://sr0/autoinst.xml".to_owned(),
        _ => String::new(),
    };
    if facts.arch != Arch::Aarch64 {
        layout.boot_image(BootPlatform::Bios, "isolinux/isolinux.bin", Some(4), facts, opts)?;
        layout.add(
            "isolinux/isolinux.cfg",
            format!(
                "default install\nlabel install\n  menu label Install {name} {release}\n  kernel /{kernel}\n  append initrd=/{initrd} {kernel_args}\n",
                name = facts.name,
                release = facts.release
            ),
        );
    }
    if facts.arch != Arch::I686 {
        let efi_image = if family == "redhat" { "images/efiboot.img" } else { "boot/grub/efi.img" };
        layout.boot_image(BootPlatform::Efi, efi_image, None, facts, opts)?;
        layout.stand_in(&format!("EFI/BOOT/{}", efi_loader(facts.arch)), "the UEFI shim", facts);
        layout.add(
            "EFI/BOOT/grub.cfg",
            format!(
                "menuentry 'Install {name} {release}' {{\n  linux /{kernel} {kernel_args}\n  initrd /{initrd}\n}}\n",
                name = facts.name,
                release = facts.release
            ),
        );
    }
    layout.stand_in(&kernel, "the installer kernel", facts);
    layout.stand_in(&initrd, "the installer initramfs", facts);
    match family {
        "debian" if distro == "ubuntu" => layout.stand_in("casper/filesystem.squashfs", "the live system", facts),
        "redhat" => {
            layout.stand_in("images/install.img", "the installer runtime", facts);
            layout.add(".discinfo", format!("0\n{} {}\n{}\n", facts.name, facts.release, rpm_arch(facts.arch)));
            layout.add(
                ".treeinfo",
                format!(
                    "[general]\nfamily = {}\nversion = {}\narch = {}\n",
                    facts.name,
                    facts.release,
                    rpm_arch(facts.arch)
                ),
            );
        }
        "suse" => layout.add("content", format!("PRODUCT {}\nVERSION {}\n", facts.name, facts.release)),
        _ => {}
    }
    if family == "debian" {
        layout.add(".disk/info", format!("{} {} - Release {}\n", facts.name, facts.release, deb_arch(facts.arch)));
    }
    if let Some((path, content)) = answer_file {
        layout.add(path, content);
    }
    if family == "debian" {
        // Debian-family media list every file's MD5 in md5sum.txt.
        let mut sums = String::new();
        let mut files: Vec<&(String, Vec<u8>)> = layout.files.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, content) in files {
            let _ = writeln!(sums, "{}  ./{path}", hex::encode(Md5::digest(content)));
        }
        layout.add("md5sum.txt", sums);
    }
    Ok(())
}

fn cloud_init_package(facts: &GuestFacts) -> &'static str {
    if facts.agent == Some(GuestAgent::CloudInit) { "cloud-init" } else { "" }
}

fn kickstart(facts: &GuestFacts) -> String {
    format!(
        "# Kickstart for {name} {release} ({arch}), written by isoharness mockstack\n\
         text\nlang en_US.UTF-8\nkeyboard us\ntimezone UTC --utc\nnetwork --bootproto=dhcp\nrootpw --lock\n\
         zerombr\nclearpart --all --initlabel\nautopart\nbootloader\n\n\
         %packages\n@core\n{agent}\n%end\n\npoweroff\n",
        name = facts.name,
        release = facts.release,
        arch = rpm_arch(facts.arch),
        agent = cloud_init_package(facts),
    )
}

fn preseed(facts: &GuestFacts) -> String {
    format!(
        "# Preseed for {name} {release} ({arch}), written by isoharness mockstack\n\
         d-i debian-installer/locale string en_US.UTF-8\n\
         d-i netcfg/choose_interface select auto\n\
         d-i partman-auto/method string regular\n\
         d-i partman/confirm boolean true\n\
         d-i passwd/root-login boolean false\n\
         d-i pkgsel/include string openssh-server {agent}\n\
         d-i grub-installer/only_debian boolean true\n\
         d-i finish-install/reboot_in_progress note\n\
         d-i debian-installer/exit/poweroff boolean true\n",
        name = facts.name,
        release = facts.release,
        arch = deb_arch(facts.arch),
        agent = cloud_init_package(facts),
    )
}

fn autoinstall(facts: &GuestFacts) -> String {
    let packages = if facts.agent == Some(GuestAgent::CloudInit) { "\n  packages: [cloud-init]" } else { "" };
    format!(
        "# Autoinstall for {name} {release} ({arch}), written by isoharness mockstack\n\
         autoinstall:\n  version: 1\n  locale: en_US.UTF-8\n  storage:\n    layout:\n      name: direct\n  \
         ssh:\n    install-server: true{packages}\n  shutdown: poweroff\n",
        name = facts.name,
        release = facts.release,
        arch = deb_arch(facts.arch),
    )
}

fn autoyast(facts: &GuestFacts) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<!-- AutoYaST profile for {name} {release}, written by isoharness mockstack -->\n\
         <profile xmlns=\"http://www.suse.com/1.0/yast2ns\" xmlns:config=\"http://www.suse.com/1.0/configns\">\n  \
         <general><mode><confirm config:type=\"boolean\">false</confirm><final_halt config:type=\"boolean\">true</final_halt></mode></general>\n  \
         <partitioning config:type=\"list\"><drive><use>all</use></drive></partitioning>\n  \
         <software><packages config:type=\"list\"><package>{agent}</package></packages></software>\n\
         </profile>\n",
        name = facts.name,
        release = facts.release,
        agent = cloud_init_package(facts),
    )
}
