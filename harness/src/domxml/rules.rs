//! The rule catalogue (stable ids) and the checks: libvirt consistency, boot sequence, firmware, and the expected layout.

use std::collections::HashMap;

use serde::Serialize;

use super::expect::{Expectation, ExpectedKind, LayoutSpec, Role, classify};
use super::model::{Address, Chipset, Disk, DiskDevice, DiskSource, LibvirtDomain};
use super::report::{Finding, Report, Severity};
use super::xml::Position;

/// One rule: a stable id and name, its usual severity, and what it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

macro_rules! rules {
    ($($konst:ident = $id:literal $name:literal $sev:ident $summary:literal;)*) => {
        $(pub const $konst: Rule = Rule { id: $id, name: $name, severity: Severity::$sev, summary: $summary };)*
        /// Every rule, in id order.
        pub const RULES: &[Rule] = &[$($konst),*];
    };
}

rules! {
    TARGET_BUS_MISMATCH = "DX001" "target-bus-mismatch" Error "a target name's prefix matches its bus (vd virtio, hd ide, sd sata/scsi/usb, fd fdc)";
    DUPLICATE_TARGET = "DX002" "duplicate-target" Error "no two disks share a target name";
    DUPLICATE_PCI_ADDRESS = "DX003" "duplicate-pci-address" Error "no two devices share a PCI address, and none takes the host bridge's 00:00.0";
    DUPLICATE_DRIVE_ADDRESS = "DX004" "duplicate-drive-address" Error "no two disks on one bus share a drive controller/bus/target/unit";
    IDE_UNSUPPORTED_MACHINE = "DX005" "ide-unsupported-machine" Error "IDE only on machine types that have it (i440fx, not q35 or non-x86 machines)";
    IDE_ADDRESS_OUT_OF_RANGE = "DX006" "ide-address-out-of-range" Error "IDE has one controller with 2 buses of 2 units: hda to hdd";
    ADDRESS_TYPE_MISMATCH = "DX007" "address-type-mismatch" Error "virtio disks have PCI addresses; ide/sata/scsi/fdc disks have drive addresses";
    TARGET_ADDRESS_MISMATCH = "DX008" "target-address-mismatch" Warning "a drive address agrees with the unit libvirt derives from the target name";
    MISSING_TARGET_OR_SOURCE = "DX009" "missing-target-or-source" Error "every disk has a target, and every hard disk a source";
    REMOVABLE_NOT_READONLY = "DX010" "removable-not-readonly" Error "CD-ROMs (and driver floppies) are read-only";
    FORMAT_MISMATCH = "DX011" "format-mismatch" Error "the driver type agrees with the source's format where the file name shows it";
    FORMAT_NOT_STATED = "DX012" "format-not-stated" Warning "file and block disks state their format (driver type)";
    CACHE_MODE = "DX013" "cache-mode" Error "the cache mode is one libvirt knows, and not `unsafe`";
    SOURCE_NAME_UNEXPECTED = "DX014" "source-name-unexpected" Warning "files in a Nova instance directory have Nova's names (disk, disk.newos, disk.virtio, disk.eph0, disk.local...) and share one directory";
    NO_BOOT_DEVICE = "DX020" "no-boot-device" Error "the boot sequence reaches at least one device";
    BOOT_ORDER_CONFLICT = "DX021" "boot-order-conflict" Error "per-device boot order and <os><boot> are not mixed, and no order is used twice";
    NOT_BOOTABLE = "DX022" "not-bootable" Error "every device the layout boots from is in the boot sequence";
    BOOT_ORDER_DIFFERS = "DX023" "boot-order-differs" Warning "the boot sequence follows the layout's order";
    ROOT_NOT_FIRST = "DX030" "root-not-first" Error "the layout's first device (what a snapshot captures) is the domain's first disk";
    SNAPSHOT_CAPTURES_ISO = "DX031" "snapshot-captures-iso" Error "the first disk is not a CD-ROM, or the layout knowingly makes it one (stock: reported as information)";
    EXPECTED_DEVICE_MISSING = "DX032" "expected-device-missing" Error "every device the layout needs is present";
    DEVICE_MISMATCH = "DX033" "device-mismatch" Error "each device has the kind, bus, source name and read-only flag the layout gives it";
    SEVERAL_ROOTS = "DX034" "several-roots" Error "exactly one device plays the layout's root";
    UNEXPECTED_DEVICE = "DX035" "unexpected-device" Warning "no disks beyond the layout's and Nova's usual extras (ephemeral, swap, config drive)";
    MISSING_VIRTIO_CDROM = "DX036" "missing-virtio-cdrom" Error "the patched layouts carry the VirtIO driver ISO as a read-only CD-ROM";
    VIRTIO_ROOT_WITHOUT_DRIVERS = "DX037" "virtio-root-without-drivers" Warning "an installer facing a virtio root has a driver medium (Windows has no virtio driver in the box)";
    MISSING_DRIVER_FLOPPY = "DX038" "missing-driver-floppy" Error "patched-floppy carries a read-only driver floppy on fdc (fda)";
    LAYOUT_UNRECOGNISED = "DX039" "layout-unrecognised" Warning "`auto` recognises the domain as stock, patched or patched-floppy";
    SECURE_BOOT_NEEDS_Q35 = "DX040" "secure-boot-needs-q35" Error "Secure Boot only on q35 machine types";
    SECURE_BOOT_NEEDS_SMM = "DX041" "secure-boot-needs-smm" Error "a secure loader has <features><smm/> on";
    SECURE_BOOT_NEEDS_PFLASH = "DX042" "secure-boot-needs-pflash" Error "a secure loader is a pflash, not a rom";
    UEFI_REQUIRED = "DX043" "uefi-required" Error "a layout needing UEFI gets a UEFI loader or firmware='efi'";
    SECURE_BOOT_REQUIRED = "DX044" "secure-boot-required" Error "a layout needing Secure Boot gets loader secure='yes'";
    TPM_REQUIRED = "DX045" "tpm-required" Error "a layout needing a TPM gets one of that version";
}

/// Looks a rule up by id (`DX001`) or name (`target-bus-mismatch`).
pub fn rule(id_or_name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id_or_name || r.name == id_or_name)
}

/// Checks a domain against an expectation and returns every finding, sorted by position.
pub fn check(domain: &LibvirtDomain, expect: &Expectation) -> Report {
    let detected = classify(domain);
    let spec = expect.resolve(detected);
    let mut findings = Vec::new();
    check_disks(domain, &mut findings);
    check_addresses(domain, &mut findings);
    let boot = boot_sequence(domain, &mut findings);
    check_firmware(domain, &mut findings);
    match &spec {
        Some(spec) => check_layout(domain, spec, boot.as_deref(), &mut findings),
        None => findings.push(Finding::new(
            &LAYOUT_UNRECOGNISED,
            domain.pos,
            "the domain is neither stock (ISO CD-ROM first) nor patched (a blank root disk first, then CD-ROMs)",
            "pass --layout with the layout you meant, or describe it in a --layout-file",
        )),
    }
    findings.sort_by(|a, b| (a.line, a.column, a.rule).cmp(&(b.line, b.column, b.rule)));
    Report {
        layout_detected: detected,
        expectation: expect.name().to_string(),
        checked_as: spec.map(|s| s.name),
        findings,
    }
}

fn target_pos(disk: &Disk) -> Position {
    disk.target.as_ref().map_or(disk.pos, |t| t.pos)
}

/// The prefixes libvirt accepts for a bus.
fn prefixes_for_bus(bus: &str) -> Option<&'static [&'static str]> {
    Some(match bus {
        "virtio" => &["vd"],
        "ide" => &["hd"],
        "sata" | "scsi" | "usb" => &["sd"],
        "fdc" => &["fd"],
        "xen" => &["xvd"],
        _ => return None,
    })
}

/// libvirt's disk-name index: `a`=0 ... `z`=25, `aa`=26.
fn target_index(dev: &str, prefix: &str) -> Option<u32> {
    let suffix = dev.strip_prefix(prefix)?;
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_lowercase()) || suffix.len() > 4 {
        return None;
    }
    let mut index: u32 = 0;
    for (i, b) in suffix.bytes().enumerate() {
        index = (index + u32::from(i > 0)) * 26 + u32::from(b - b'a');
    }
    Some(index)
}

fn check_disks(domain: &LibvirtDomain, findings: &mut Vec<Finding>) {
    let chipset = domain.chipset();
    let mut seen_targets: HashMap<&str, Position> = HashMap::new();
    let mut instance_dir: Option<(&str, Position)> = None;
    for disk in &domain.disks {
        let Some(target) = disk.target.as_ref().filter(|t| !t.dev.is_empty()) else {
            findings.push(Finding::new(
                &MISSING_TARGET_OR_SOURCE,
                disk.pos,
                format!("{} has no <target dev=...>: libvirt rejects it", disk.device),
                "add <target dev='vda' bus='virtio'/> (or the name and bus the layout gives this device)",
            ));
            continue;
        };
        if disk.source.is_none() && matches!(disk.device, DiskDevice::Disk | DiskDevice::Lun) {
            findings.push(Finding::new(
                &MISSING_TARGET_OR_SOURCE,
                disk.pos,
                format!("disk {} has no source: there is nothing for the guest to install onto", target.dev),
                "give it <source file='/var/lib/nova/instances/<uuid>/disk.newos'/> (or the volume that backs it)",
            ));
        }
        if let Some(first) = seen_targets.get(target.dev.as_str()) {
            findings.push(Finding::new(
                &DUPLICATE_TARGET,
                target.pos,
                format!("target {} is already used by the disk at {first}: libvirt refuses the domain", target.dev),
                "give each disk its own target name (vda, vdb...; hda, hdb...)",
            ));
        } else {
            seen_targets.insert(&target.dev, target.pos);
        }
        check_target_bus(disk, findings);
        check_ide(disk, chipset, findings);
        check_address_kind(disk, findings);
        check_readonly(disk, findings);
        check_format(disk, findings);
        check_cache(disk, findings);
        check_source_name(disk, &mut instance_dir, findings);
    }
}

fn check_target_bus(disk: &Disk, findings: &mut Vec<Finding>) {
    let Some(target) = &disk.target else { return };
    let Some(bus) = target.bus.as_deref() else {
        findings.push(Finding::new(
            &TARGET_BUS_MISMATCH,
            target.pos,
            format!("target {} has no bus and its name implies none", target.dev),
            "name it vd*, hd*, sd* or fd*, and state bus='virtio|ide|sata|scsi|fdc'",
        ));
        return;
    };
    let Some(prefixes) = prefixes_for_bus(bus) else {
        findings.push(Finding::new(
            &TARGET_BUS_MISMATCH,
            target.pos,
            format!("target {} is on bus {bus:?}, which no ISO-install layout uses", target.dev),
            "use bus virtio (vd*), ide (hd*), sata or scsi (sd*), or fdc (fd*)",
        ));
        return;
    };
    if !prefixes.iter().any(|p| target_index(&target.dev, p).is_some()) {
        let wanted = prefixes.iter().map(|p| format!("{p}*")).collect::<Vec<_>>().join(" or ");
        let implied =
            super::model::bus_for_prefix(&target.dev).map(|b| format!(" (its name implies {b})")).unwrap_or_default();
        findings.push(Finding::new(
            &TARGET_BUS_MISMATCH,
            target.pos,
            format!("target {} is on bus {bus}{implied}; {bus} devices are named {wanted}", target.dev),
            format!("rename the target to {} or change the bus to match the name", example_name(prefixes[0])),
        ));
    }
}

fn example_name(prefix: &str) -> String {
    format!("{prefix}a")
}

fn check_ide(disk: &Disk, chipset: Chipset, findings: &mut Vec<Finding>) {
    if disk.bus() != Some("ide") {
        return;
    }
    if !chipset.has_ide() {
        let machine = match chipset {
            Chipset::Q35 => "q35 has no IDE controller",
            _ => "this machine type has no IDE controller",
        };
        findings.push(Finding::new(
            &IDE_UNSUPPORTED_MACHINE,
            target_pos(disk),
            format!("{} is on ide, but {machine}: libvirt refuses the domain", disk.label()),
            "put CD-ROMs on sata (sda, sdb) as Nova does with hw_machine_type=q35, or use an i440fx machine type",
        ));
    }
    if let Some(index) = disk.target_dev().and_then(|d| target_index(d, "hd"))
        && index > 3
    {
        findings.push(Finding::new(
            &IDE_ADDRESS_OUT_OF_RANGE,
            target_pos(disk),
            format!("{} is beyond hdd: IDE has only 2 buses of 2 units", disk.label()),
            "use hda to hdd, or move further devices to virtio or sata",
        ));
    }
    if let Some(address) = &disk.address
        && let Address::Drive { controller, bus, target, unit } = address.value
        && (controller > 0 || bus > 1 || unit > 1 || target > 0)
    {
        findings.push(Finding::new(
            &IDE_ADDRESS_OUT_OF_RANGE,
            address.pos,
            format!(
                "{} has IDE address {}: only controller 0, bus 0-1, target 0, unit 0-1 exist",
                disk.label(),
                address.value
            ),
            "use controller='0' bus='0|1' target='0' unit='0|1' (hda=0/0, hdb=0/1, hdc=1/0, hdd=1/1)",
        ));
    }
}

fn check_address_kind(disk: &Disk, findings: &mut Vec<Finding>) {
    let (Some(address), Some(bus)) = (&disk.address, disk.bus()) else { return };
    let wrong = match (&address.value, bus) {
        (Address::Drive { .. }, "virtio") => Some("a virtio disk is a PCI device and needs type='pci'"),
        (Address::Pci { .. }, "ide" | "sata" | "scsi" | "fdc" | "usb") => {
            Some("a disk on a controller bus needs type='drive' (the controller itself has the PCI address)")
        }
        _ => None,
    };
    if let Some(why) = wrong {
        findings.push(Finding::new(
            &ADDRESS_TYPE_MISMATCH,
            address.pos,
            format!("{} on {bus} has address {}: {why}", disk.label(), address.value),
            "give the address the type of the bus, or drop <address> and let libvirt assign one",
        ));
        return;
    }
    let Address::Drive { controller, bus: drive_bus, target, unit } = address.value else { return };
    let Some(dev) = disk.target_dev() else { return };
    let expected = match bus {
        "ide" => target_index(dev, "hd").map(|i| (i / 4, (i % 4) / 2, 0, i % 2)),
        "sata" => target_index(dev, "sd").map(|i| (i / 6, 0, 0, i % 6)),
        "fdc" => target_index(dev, "fd").map(|i| (0, 0, 0, i)),
        _ => None,
    };
    if let Some(want) = expected
        && want != (controller, drive_bus, target, unit)
    {
        findings.push(Finding::new(
            &TARGET_ADDRESS_MISMATCH,
            address.pos,
            format!(
                "{dev} is at controller {controller} bus {drive_bus} unit {unit}, where libvirt would put {dev} at controller {} bus {} unit {}: the guest sees a different device name",
                want.0, want.1, want.3
            ),
            format!("set controller='{}' bus='{}' target='0' unit='{}', or rename the target", want.0, want.1, want.3),
        ));
    }
}

fn check_readonly(disk: &Disk, findings: &mut Vec<Finding>) {
    if disk.readonly {
        return;
    }
    let severity = match disk.device {
        DiskDevice::Cdrom => Severity::Error,
        DiskDevice::Floppy => Severity::Warning,
        _ => return,
    };
    findings.push(
        Finding::new(
            &REMOVABLE_NOT_READONLY,
            disk.pos,
            format!("{} is not read-only: the medium is shared by every instance booted from that image", disk.label()),
            "add <readonly/> to the disk",
        )
        .with_severity(severity),
    );
}

/// The format a file name shows, if it shows one.
fn format_from_name(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    Some(match ext.as_str() {
        "iso" | "raw" | "vfd" => "raw",
        "qcow2" => "qcow2",
        "vmdk" => "vmdk",
        "vhd" | "vpc" => "vpc",
        _ => return None,
    })
}

fn check_format(disk: &Disk, findings: &mut Vec<Finding>) {
    let Some(source) = &disk.source else { return };
    if !matches!(source.value, DiskSource::File { .. } | DiskSource::Block { .. }) {
        return;
    }
    match disk.format() {
        None => findings.push(Finding::new(
            &FORMAT_NOT_STATED,
            disk.driver.as_ref().map_or(disk.pos, |d| d.pos),
            format!(
                "{} states no format: libvirt treats it as raw, and a qcow2 overlay read raw shows the guest garbage",
                disk.label()
            ),
            "add <driver name='qemu' type='qcow2'/> (or type='raw' for raw files)",
        )),
        Some(format) => {
            if let Some(shown) = source.value.file_name().and_then(format_from_name)
                && shown != format
            {
                findings.push(Finding::new(
                    &FORMAT_MISMATCH,
                    disk.driver.as_ref().map_or(disk.pos, |d| d.pos),
                    format!("{} is opened as {format}, but its file name says {shown}", disk.label()),
                    format!("set <driver type='{shown}'/>, or point the source at a {format} file"),
                ));
            }
        }
    }
}

const CACHE_MODES: &[&str] = &["default", "none", "writethrough", "writeback", "directsync", "unsafe"];

fn check_cache(disk: &Disk, findings: &mut Vec<Finding>) {
    let Some(driver) = &disk.driver else { return };
    let Some(cache) = driver.cache.as_deref() else { return };
    if !CACHE_MODES.contains(&cache) {
        findings.push(Finding::new(
            &CACHE_MODE,
            driver.pos,
            format!("{} has cache mode {cache:?}, which libvirt does not know", disk.label()),
            "use cache='none' (Nova's default on local storage) or writethrough/writeback/directsync",
        ));
    } else if cache == "unsafe" && !disk.readonly {
        findings.push(
            Finding::new(
                &CACHE_MODE,
                driver.pos,
                format!(
                    "{} uses cache='unsafe': a host crash during the install loses the installed system",
                    disk.label()
                ),
                "use cache='none' or 'writeback' for a disk the installer writes",
            )
            .with_severity(Severity::Warning),
        );
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Nova's names for files in an instance directory (and `disk.floppy`, this project's driver floppy).
fn is_nova_disk_name(name: &str) -> bool {
    matches!(
        name,
        "disk"
            | "disk.newos"
            | "disk.virtio"
            | "disk.floppy"
            | "disk.local"
            | "disk.swap"
            | "disk.config"
            | "disk.rescue"
    ) || name.strip_prefix("disk.eph").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn check_source_name<'d>(disk: &'d Disk, instance_dir: &mut Option<(&'d str, Position)>, findings: &mut Vec<Finding>) {
    let Some(source) = &disk.source else { return };
    let DiskSource::File { path } = &source.value else { return };
    let Some((dir, name)) = path.rsplit_once('/') else { return };
    let dir_name = dir.rsplit('/').next().unwrap_or(dir);
    let in_instance_dir = is_uuid(dir_name) || dir.rsplit('/').nth(1) == Some("instances");
    if !in_instance_dir {
        return;
    }
    if !is_nova_disk_name(name) {
        findings.push(Finding::new(
            &SOURCE_NAME_UNEXPECTED,
            source.pos,
            format!("{name:?} in instance directory {dir} is not a name Nova gives a disk file"),
            "name it disk (the ISO), disk.newos (blank root), disk.virtio (driver ISO), disk.floppy, disk.eph0/disk.local, disk.swap or disk.config",
        ));
    }
    match instance_dir {
        Some((first, first_pos)) if *first != dir => findings.push(Finding::new(
            &SOURCE_NAME_UNEXPECTED,
            source.pos,
            format!("{name} is in {dir}, but the disk at {first_pos} is in {first}: one instance's disks share one directory"),
            "point every disk of the instance at files in its own instance directory",
        )),
        Some(_) => {}
        None => *instance_dir = Some((dir, source.pos)),
    }
}

/// A drive address on one kind of controller: (bus kind, controller, bus, target, unit).
type DriveKey<'a> = (&'a str, u32, u32, u32, u32);

fn check_addresses(domain: &LibvirtDomain, findings: &mut Vec<Finding>) {
    let mut pci: HashMap<(u32, u32, u32, u32), (&str, Position)> = HashMap::new();
    for used in &domain.pci_addresses {
        if used.bus == 0 && used.slot == 0 {
            findings.push(Finding::new(
                &DUPLICATE_PCI_ADDRESS,
                used.pos,
                format!("{} is at PCI {:02x}:00.{}, the host bridge's slot", used.owner, used.bus, used.function),
                "use a free slot from 0x02 up (0x01 is the i440fx PIIX, 0x1f the q35 LPC)",
            ));
            continue;
        }
        let key = (used.domain, used.bus, used.slot, used.function);
        match pci.get(&key) {
            Some((owner, pos)) => findings.push(Finding::new(
                &DUPLICATE_PCI_ADDRESS,
                used.pos,
                format!(
                    "{} is at PCI {:04x}:{:02x}:{:02x}.{:x}, already taken by {owner} at {pos}: libvirt refuses the domain",
                    used.owner, used.domain, used.bus, used.slot, used.function
                ),
                "give each device its own PCI slot (Listing 1 puts vda at slot 0x04)",
            )),
            None => {
                pci.insert(key, (used.owner.as_str(), used.pos));
            }
        }
    }
    let mut drives: HashMap<DriveKey<'_>, (String, Position)> = HashMap::new();
    for disk in &domain.disks {
        let (Some(address), Some(bus)) = (&disk.address, disk.bus()) else { continue };
        let Address::Drive { controller, bus: drive_bus, target, unit } = address.value else { continue };
        let key = (bus, controller, drive_bus, target, unit);
        match drives.get(&key) {
            Some((label, pos)) => findings.push(Finding::new(
                &DUPLICATE_DRIVE_ADDRESS,
                address.pos,
                format!("{} is at {bus} {}, already taken by {label} at {pos}", disk.label(), address.value),
                "give each disk its own unit (Listing 1: hda unit 0, hdb unit 1)",
            )),
            None => {
                drives.insert(key, (disk.label(), address.pos));
            }
        }
    }
    let chipset = domain.chipset();
    for controller in &domain.controllers {
        if controller.kind == "ide" && !chipset.has_ide() {
            findings.push(Finding::new(
                &IDE_UNSUPPORTED_MACHINE,
                controller.pos,
                format!(
                    "an IDE controller on machine {}: it has none, libvirt refuses the domain",
                    domain.machine().unwrap_or("?")
                ),
                "drop the IDE controller and put CD-ROMs on sata",
            ));
        }
    }
}

/// The disks the firmware tries, in order (indices into `domain.disks`); `None` when the document does not say.
fn boot_sequence(domain: &LibvirtDomain, findings: &mut Vec<Finding>) -> Option<Vec<usize>> {
    let mut ordered: Vec<(u32, usize)> =
        domain.disks.iter().enumerate().filter_map(|(i, d)| d.boot_order.as_ref().map(|b| (b.value, i))).collect();
    ordered.sort();
    let os_boot = domain.os.as_ref().map(|os| os.boot_devs.as_slice()).unwrap_or_default();
    if !ordered.is_empty() {
        if let Some(first_os_boot) = os_boot.first() {
            findings.push(Finding::new(
                &BOOT_ORDER_CONFLICT,
                first_os_boot.pos,
                "the domain has both <os><boot dev=...> and per-device <boot order=...>: libvirt refuses the mix",
                "keep one: per-device <boot order='N'/> on the disks, or <boot dev='hd'/><boot dev='cdrom'/> in <os>",
            ));
        }
        for pair in ordered.windows(2) {
            if pair[0].0 == pair[1].0
                && let Some(boot) = &domain.disks[pair[1].1].boot_order
            {
                findings.push(Finding::new(
                    &BOOT_ORDER_CONFLICT,
                    boot.pos,
                    format!("boot order {} is used by more than one device: libvirt refuses the domain", pair[0].0),
                    "give each bootable device its own order",
                ));
            }
        }
        return Some(ordered.into_iter().map(|(_, i)| i).collect());
    }
    let os = domain.os.as_ref()?;
    let devs: Vec<&str> =
        if os_boot.is_empty() { vec!["hd"] } else { os_boot.iter().map(|b| b.dev.as_str()).collect() };
    let mut sequence: Vec<usize> = Vec::new();
    for dev in devs {
        // libvirt gives a bootindex to the first device of each kind named in <os><boot>.
        if let Some(i) = domain.disks.iter().position(|d| d.device.boot_dev() == Some(dev))
            && !sequence.contains(&i)
        {
            sequence.push(i);
        }
    }
    if sequence.is_empty() {
        let named = if os_boot.is_empty() {
            "hd (libvirt's default)".to_string()
        } else {
            os_boot.iter().map(|b| b.dev.as_str()).collect::<Vec<_>>().join(", ")
        };
        findings.push(Finding::new(
            &NO_BOOT_DEVICE,
            os_boot.first().map_or(os.pos, |b| b.pos),
            format!("the boot sequence ({named}) names no device the domain has: the guest finds nothing to boot"),
            "boot from a device the domain has: <boot dev='cdrom'/> for the installer, <boot dev='hd'/> for the root",
        ));
    }
    Some(sequence)
}

fn check_firmware(domain: &LibvirtDomain, findings: &mut Vec<Finding>) {
    let Some(os) = &domain.os else { return };
    let Some(loader) = &os.loader else {
        if os.secure_boot() && domain.chipset() != Chipset::Q35 {
            findings.push(secure_boot_needs_q35(domain, os.pos));
        }
        return;
    };
    if loader.secure != Some(true) {
        return;
    }
    if domain.chipset() != Chipset::Q35 {
        findings.push(secure_boot_needs_q35(domain, loader.pos));
    }
    if !domain.has_feature("smm") {
        findings.push(Finding::new(
            &SECURE_BOOT_NEEDS_SMM,
            loader.pos,
            "the loader is secure='yes' but <features> has no <smm/>: libvirt refuses the domain",
            "add <smm state='on'/> to <features>",
        ));
    }
    if loader.loader_type.as_deref() == Some("rom") {
        findings.push(Finding::new(
            &SECURE_BOOT_NEEDS_PFLASH,
            loader.pos,
            "the loader is secure='yes' but type='rom': Secure Boot keeps its variables in pflash",
            "use <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.secboot.fd</loader>",
        ));
    }
}

fn secure_boot_needs_q35(domain: &LibvirtDomain, pos: Position) -> Finding {
    Finding::new(
        &SECURE_BOOT_NEEDS_Q35,
        pos,
        format!("Secure Boot on machine {}: it is supported on q35 only", domain.machine().unwrap_or("(not stated)")),
        "set <type machine='q35'> (Nova: hw_machine_type=q35), which also moves CD-ROMs to sata",
    )
}

/// Recognised extras Nova may add to any layout: never "unexpected".
fn is_nova_extra(disk: &Disk) -> bool {
    disk.source_file_name().is_some_and(|name| {
        matches!(name, "disk.local" | "disk.swap" | "disk.config")
            || name.strip_prefix("disk.eph").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn check_layout(domain: &LibvirtDomain, spec: &LayoutSpec, boot: Option<&[usize]>, findings: &mut Vec<Finding>) {
    let chipset = domain.chipset();
    let disks = &domain.disks;
    let mut used = vec![false; disks.len()];
    let mut matched: Vec<Option<usize>> = vec![None; spec.devices.len()];
    // First by source file name, then the remaining expected devices take the first unused disk of their kind.
    for (slot, expected) in matched.iter_mut().zip(&spec.devices) {
        if let Some(i) = (0..disks.len())
            .find(|&i| !used[i] && disks[i].source_file_name().is_some_and(|n| expected.source.iter().any(|s| s == n)))
        {
            used[i] = true;
            *slot = Some(i);
        }
    }
    let named_by_spec =
        |d: &Disk| d.source_file_name().is_some_and(|n| spec.devices.iter().any(|e| e.source.iter().any(|s| s == n)));
    for (slot, expected) in matched.iter_mut().zip(&spec.devices) {
        if slot.is_some() {
            continue;
        }
        if let Some(i) = (0..disks.len()).find(|&i| {
            !used[i]
                && expected.kind.matches(&disks[i].device)
                && !named_by_spec(&disks[i])
                && !is_nova_extra(&disks[i])
        }) {
            used[i] = true;
            *slot = Some(i);
        }
    }

    check_first_disk(domain, spec, &matched, findings);

    for (expected, slot) in spec.devices.iter().zip(&matched) {
        let Some(i) = *slot else {
            if !expected.optional {
                findings.push(missing_device(domain, spec, expected.role, expected));
            }
            continue;
        };
        let disk = &disks[i];
        if !expected.kind.matches(&disk.device) {
            findings.push(Finding::new(
                &DEVICE_MISMATCH,
                disk.pos,
                format!(
                    "{} is a {}, but the layout's {} is a {}",
                    disk.label(),
                    disk.device,
                    expected.role.as_str(),
                    expected.kind.as_str()
                ),
                format!("make it <disk device='{}'>", expected.kind.as_str()),
            ));
        }
        let accepted = expected.bus.accepts(chipset);
        if let Some(bus) = disk.bus()
            && !accepted.contains(&bus)
        {
            findings.push(Finding::new(
                &DEVICE_MISMATCH,
                target_pos(disk),
                format!(
                    "{} is on {bus}, but the layout puts its {} on {}",
                    disk.label(),
                    expected.role.as_str(),
                    accepted.join(" or ")
                ),
                format!("put it on bus='{}'", accepted[0]),
            ));
        }
        if let Some(name) = disk.source_file_name()
            && !expected.source.is_empty()
            && !expected.source.iter().any(|s| s == name)
        {
            findings.push(
                Finding::new(
                    &DEVICE_MISMATCH,
                    disk.source.as_ref().map_or(disk.pos, |s| s.pos),
                    format!(
                        "the {} file is named {name}, where the layout names it {}",
                        expected.role.as_str(),
                        expected.source.join(" or ")
                    ),
                    format!("name the file {}", expected.source[0]),
                )
                .with_severity(Severity::Warning),
            );
        }
        let removable = matches!(disk.device, DiskDevice::Cdrom | DiskDevice::Floppy);
        match expected.readonly {
            Some(false) if disk.readonly => findings.push(Finding::new(
                &DEVICE_MISMATCH,
                disk.pos,
                format!(
                    "{} is read-only, but the installer must write the layout's {} to it",
                    disk.label(),
                    expected.role.as_str()
                ),
                "remove <readonly/>",
            )),
            Some(true) if !disk.readonly && !removable => findings.push(Finding::new(
                &DEVICE_MISMATCH,
                disk.pos,
                format!("{} is writable, but the layout's {} is read-only", disk.label(), expected.role.as_str()),
                "add <readonly/>",
            )),
            _ => {}
        }
        if let (Some(want), Some(sequence)) = (expected.boot, boot) {
            match sequence.iter().position(|&b| b == i) {
                None => findings.push(Finding::new(
                    &NOT_BOOTABLE,
                    disk.pos,
                    format!("{} is not in the boot sequence: {}", disk.label(), boot_consequence(expected.role)),
                    boot_help(domain, expected.kind, want),
                )),
                Some(p) if p + 1 != want as usize => findings.push(Finding::new(
                    &BOOT_ORDER_DIFFERS,
                    disk.boot_order.as_ref().map_or(disk.pos, |b| b.pos),
                    format!("{} boots in position {}, the layout boots it in position {want}", disk.label(), p + 1),
                    boot_help(domain, expected.kind, want),
                )),
                Some(_) => {}
            }
        }
    }

    check_extra_disks(domain, spec, &matched, &used, findings);
    check_drivers_medium(domain, spec, &matched, findings);
    check_firmware_needs(domain, spec, findings);
}

fn boot_consequence(role: Role) -> &'static str {
    match role {
        Role::Installer => "the installer never starts",
        Role::Root => "the installed system cannot boot (and Windows setup stops at its first reboot)",
        _ => "the layout boots from it",
    }
}

fn boot_help(domain: &LibvirtDomain, kind: ExpectedKind, position: u32) -> String {
    let per_device = domain.disks.iter().any(|d| d.boot_order.is_some());
    if per_device || domain.os.is_none() {
        format!("give it <boot order='{position}'/>")
    } else {
        let dev = match kind {
            ExpectedKind::Disk => "hd",
            ExpectedKind::Cdrom => "cdrom",
            ExpectedKind::Floppy => "fd",
        };
        format!("list <boot dev='{dev}'/> as entry {position} of <os>")
    }
}

fn check_first_disk(domain: &LibvirtDomain, spec: &LayoutSpec, matched: &[Option<usize>], findings: &mut Vec<Finding>) {
    let Some(first) = domain.disks.first() else { return };
    let Some(expected_first) = spec.devices.first() else { return };
    if first.device == DiskDevice::Cdrom {
        let expected = expected_first.kind == ExpectedKind::Cdrom;
        let finding = Finding::new(
            &SNAPSHOT_CAPTURES_ISO,
            first.pos,
            format!(
                "the first disk is {}, a CD-ROM: a snapshot copies the first disk, so the snapshot will capture the ISO, not the installed system",
                first.label()
            ),
            if expected {
                "expected for stock Nova: install onto a bootable volume and make the image from it, or use the patched layout".to_string()
            } else {
                "make the blank root disk (disk.newos, virtio vda) the first <disk> of <devices>".to_string()
            },
        );
        findings.push(if expected { finding.with_severity(Severity::Info) } else { finding });
        return;
    }
    if let Some(Some(root)) = matched.first()
        && *root != 0
    {
        let root_disk = &domain.disks[*root];
        findings.push(Finding::new(
            &ROOT_NOT_FIRST,
            first.pos,
            format!(
                "the first disk is {}, not the layout's {} {}: a snapshot captures the first disk",
                first.label(),
                expected_first.role.as_str(),
                root_disk.label()
            ),
            format!("move {} to the top of <devices>", root_disk.label()),
        ));
    }
}

fn missing_device(
    domain: &LibvirtDomain,
    spec: &LayoutSpec,
    role: Role,
    expected: &super::expect::ExpectedDevice,
) -> Finding {
    let bus = expected.bus.accepts(domain.chipset())[0];
    match role {
        Role::Drivers if expected.kind == ExpectedKind::Cdrom => Finding::new(
            &MISSING_VIRTIO_CDROM,
            domain.pos,
            format!(
                "the {} layout needs the VirtIO driver ISO as a read-only CD-ROM, and there is none: Windows setup sees no disk",
                spec.name
            ),
            format!(
                "add <disk type='file' device='cdrom'> with source disk.virtio, target hdb (or sdb) on {bus}, and <readonly/>"
            ),
        ),
        Role::DriverFloppy => Finding::new(
            &MISSING_DRIVER_FLOPPY,
            domain.pos,
            format!(
                "the {} layout needs a driver floppy and there is none: text-mode setup (F6) finds no storage driver",
                spec.name
            ),
            "add <disk type='file' device='floppy'> with target fda on fdc and <readonly/>",
        ),
        _ => Finding::new(
            &EXPECTED_DEVICE_MISSING,
            domain.pos,
            format!("the {} layout needs its {}, and the domain has none", spec.name, expected.describe()),
            format!(
                "add a {} on {bus}{}",
                expected.kind.as_str(),
                expected.source.first().map(|s| format!(" with source {s}")).unwrap_or_default()
            ),
        ),
    }
}

fn check_extra_disks(
    domain: &LibvirtDomain,
    spec: &LayoutSpec,
    matched: &[Option<usize>],
    used: &[bool],
    findings: &mut Vec<Finding>,
) {
    let root = spec.devices.iter().zip(matched).find(|(e, _)| e.role == Role::Root);
    for (i, disk) in domain.disks.iter().enumerate() {
        if used[i] || is_nova_extra(disk) {
            continue;
        }
        let plays_root = root.is_some_and(|(expected, slot)| {
            slot.is_some()
                && expected.kind.matches(&disk.device)
                && disk.source_file_name().is_some_and(|n| expected.source.iter().any(|s| s == n))
        });
        if plays_root {
            findings.push(Finding::new(
                &SEVERAL_ROOTS,
                disk.pos,
                format!(
                    "{} is a second root: the install may land on either, the snapshot captures only the first",
                    disk.label()
                ),
                "keep one root disk",
            ));
        } else {
            findings.push(Finding::new(
                &UNEXPECTED_DEVICE,
                disk.pos,
                format!("{} is not part of the {} layout", disk.label(), spec.name),
                "remove it, or describe the layout you meant as a scenario layout",
            ));
        }
    }
}

fn check_drivers_medium(
    domain: &LibvirtDomain,
    spec: &LayoutSpec,
    matched: &[Option<usize>],
    findings: &mut Vec<Finding>,
) {
    if spec.devices.iter().any(|e| matches!(e.role, Role::Drivers | Role::DriverFloppy)) {
        return;
    }
    let Some((_, Some(root))) = spec.devices.iter().zip(matched).find(|(e, _)| e.role == Role::Root) else { return };
    let root_disk = &domain.disks[*root];
    if root_disk.device != DiskDevice::Disk || root_disk.bus() != Some("virtio") {
        return;
    }
    let removable = domain.disks.iter().filter(|d| matches!(d.device, DiskDevice::Cdrom | DiskDevice::Floppy)).count();
    if removable == 1 {
        findings.push(Finding::new(
            &VIRTIO_ROOT_WITHOUT_DRIVERS,
            root_disk.pos,
            format!(
                "{} is virtio and the only other medium is the installer: a Windows installer sees no disk",
                root_disk.label()
            ),
            "add the VirtIO driver ISO as a read-only CD-ROM (disk.virtio) for guests without virtio built in",
        ));
    }
}

fn check_firmware_needs(domain: &LibvirtDomain, spec: &LayoutSpec, findings: &mut Vec<Finding>) {
    let needs = &spec.firmware;
    let os = domain.os.as_ref();
    let pos = os.map_or(domain.pos, |o| o.pos);
    if needs.uefi && !os.is_some_and(|o| o.is_uefi()) {
        findings.push(Finding::new(
            &UEFI_REQUIRED,
            pos,
            format!("the {} layout needs UEFI, and the domain boots BIOS", spec.name),
            "add <loader readonly='yes' type='pflash'>...OVMF_CODE...</loader> (Nova: hw_firmware_type=uefi)",
        ));
    }
    let secure = os.is_some_and(|o| o.secure_boot());
    if needs.secure_boot && !secure && matches!(domain.chipset(), Chipset::I440fx | Chipset::Other) {
        findings.push(secure_boot_needs_q35(domain, pos));
    }
    if needs.secure_boot && !secure {
        findings.push(Finding::new(
            &SECURE_BOOT_REQUIRED,
            os.and_then(|o| o.loader.as_ref()).map_or(pos, |l| l.pos),
            format!("the {} layout needs Secure Boot, and the loader is not secure='yes'", spec.name),
            "use loader secure='yes' with <smm state='on'/> on q35 (Nova: os_secure_boot=required)",
        ));
    }
    if let Some(version) = &needs.tpm {
        let found = domain.tpms.iter().find(|t| t.version.as_deref().unwrap_or("2.0") == version);
        if found.is_none() {
            let have = domain.tpms.first();
            findings.push(Finding::new(
                &TPM_REQUIRED,
                have.map_or(pos, |t| t.pos),
                match have {
                    Some(t) => format!("the {} layout needs TPM {version}, the domain has TPM {}", spec.name, t.version.as_deref().unwrap_or("2.0")),
                    None => format!("the {} layout needs TPM {version}, and the domain has no TPM", spec.name),
                },
                format!("add <tpm model='tpm-crb'><backend type='emulator' version='{version}'/></tpm> (Nova: hw_tpm_version={version})"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_and_names_are_unique_and_well_formed() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        for r in RULES {
            assert!(r.id.starts_with("DX") && r.id.len() == 5, "{}", r.id);
            assert!(r.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()), "{}", r.name);
            assert_eq!(rule(r.name), Some(r));
        }
    }

    #[test]
    fn target_index_follows_libvirt() {
        assert_eq!(target_index("hda", "hd"), Some(0));
        assert_eq!(target_index("hdd", "hd"), Some(3));
        assert_eq!(target_index("sdaa", "sd"), Some(26));
        assert_eq!(target_index("vd1", "vd"), None);
        assert_eq!(target_index("hda", "vd"), None);
    }
}
