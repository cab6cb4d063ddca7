//! Data-driven tests of the disk-mapping rules, and proptest invariants over every layout and image.

use proptest::prelude::*;

use super::*;

/// One case: a layout, the image, the flavor (root/ephemeral GB, swap MB) and what is attached,
/// against either the mapping (`file:device:bus:dev[:boot]` per disk) or Nova's fault message.
struct Case {
    layout: &'static str,
    disk_format: &'static str,
    props: &'static [(&'static str, &'static str)],
    flavor: (u64, u64, u64),
    config_drive: bool,
    virtio: bool,
    floppy: bool,
    expect: &'static str,
}

const fn case(layout: &'static str, disk_format: &'static str, expect: &'static str) -> Case {
    Case {
        layout,
        disk_format,
        props: &[],
        flavor: (10, 0, 0),
        config_drive: false,
        virtio: true,
        floppy: true,
        expect,
    }
}

fn render(m: &DiskMapping) -> String {
    m.disks
        .iter()
        .map(|d| {
            let mut s = format!("{}:{}:{}:{}", d.file_name, d.device.as_str(), d.bus, d.dev);
            if let Some(b) = d.boot_index {
                s.push_str(&format!(":{b}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(c: &Case) {
    let image = ImageMeta::new(c.disk_format, c.props.iter().copied());
    let req = MappingRequest {
        layout: c.layout.parse().unwrap(),
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: c.flavor.0, ephemeral_gb: c.flavor.1, swap_mb: c.flavor.2 },
        config_drive: c.config_drive,
        virtio_iso_found: c.virtio,
        driver_floppy_found: c.floppy,
    };
    let got = match disk_mapping(&req) {
        Ok(m) => render(&m),
        Err(e) => format!("error: {}", e.nova_fault()),
    };
    assert_eq!(got, c.expect, "layout {} image {} props {:?} flavor {:?}", c.layout, c.disk_format, c.props, c.flavor);
}

#[test]
fn stock_iso_boot_matches_nova() {
    let cases = [
        // The reference dumpxml: 1 GB root + 1 GB ephemeral, ISO as hda, ephemeral as vda.
        Case { flavor: (1, 1, 0), ..case("stock", "iso", "disk:cdrom:ide:hda:1 disk.eph0:disk:virtio:vda") },
        case("stock", "iso", "disk:cdrom:ide:hda:1"),
        Case {
            flavor: (1, 2, 512),
            config_drive: true,
            ..case(
                "stock",
                "iso",
                "disk:cdrom:ide:hda:1 disk.config:cdrom:ide:hdb disk.eph0:disk:virtio:vda disk.swap:disk:virtio:vdb",
            )
        },
        Case {
            props: &[("hw_machine_type", "q35")],
            flavor: (1, 1, 0),
            ..case("stock", "iso", "disk:cdrom:sata:sda:1 disk.eph0:disk:virtio:vda")
        },
        Case {
            props: &[("hw_machine_type", "pc-q35-6.2"), ("hw_disk_bus", "sata")],
            flavor: (1, 1, 0),
            ..case("stock", "iso", "disk:cdrom:sata:sda:1 disk.eph0:disk:sata:sdb")
        },
        Case {
            props: &[("hw_disk_bus", "ide")],
            flavor: (1, 1, 128),
            config_drive: true,
            ..case(
                "stock",
                "iso",
                "disk:cdrom:ide:hda:1 disk.eph0:disk:ide:hdb disk.swap:disk:ide:hdc disk.config:cdrom:ide:hdd",
            )
        },
        Case {
            props: &[("hw_architecture", "aarch64")],
            flavor: (1, 1, 0),
            ..case("stock", "iso", "disk:cdrom:scsi:sda:1 disk.eph0:disk:virtio:vda")
        },
        Case { props: &[("hw_cdrom_bus", "scsi")], ..case("stock", "iso", "disk:cdrom:scsi:sda:1") },
        Case { props: &[("hw_cdrom_bus", "usb")], ..case("stock", "iso", "disk:cdrom:usb:sda:1") },
    ];
    cases.iter().for_each(check);
}

#[test]
fn patched_layouts_follow_the_article() {
    let cases = [
        // Listing 1 of the article.
        case("patched", "iso", "disk.newos:disk:virtio:vda:1 disk:cdrom:ide:hda:2 disk.virtio:cdrom:ide:hdb"),
        Case { virtio: false, ..case("patched", "iso", "disk.newos:disk:virtio:vda:1 disk:cdrom:ide:hda:2") },
        Case {
            flavor: (20, 5, 1024),
            config_drive: true,
            ..case(
                "patched",
                "iso",
                "disk.newos:disk:virtio:vda:1 disk.eph0:disk:virtio:vdb disk.swap:disk:virtio:vdc disk:cdrom:ide:hda:2 disk.virtio:cdrom:ide:hdb disk.config:cdrom:ide:hdc",
            )
        },
        Case {
            props: &[("hw_machine_type", "q35"), ("hw_firmware_type", "uefi")],
            ..case("patched", "iso", "disk.newos:disk:virtio:vda:1 disk:cdrom:sata:sda:2 disk.virtio:cdrom:sata:sdb")
        },
        Case {
            props: &[("hw_disk_bus", "ide")],
            ..case("patched", "iso", "disk.newos:disk:ide:hda:1 disk:cdrom:ide:hdb:2 disk.virtio:cdrom:ide:hdc")
        },
        case(
            "patched-floppy",
            "iso",
            "disk.newos:disk:virtio:vda:1 disk:cdrom:ide:hda:2 disk.virtio:cdrom:ide:hdb disk.floppy:floppy:fdc:fda",
        ),
        Case {
            floppy: false,
            ..case(
                "patched-floppy",
                "iso",
                "disk.newos:disk:virtio:vda:1 disk:cdrom:ide:hda:2 disk.virtio:cdrom:ide:hdb",
            )
        },
        // The floppy is only for patched-floppy.
        case("patched", "iso", "disk.newos:disk:virtio:vda:1 disk:cdrom:ide:hda:2 disk.virtio:cdrom:ide:hdb"),
    ];
    cases.iter().for_each(check);
}

#[test]
fn disk_images_boot_the_same_under_every_layout() {
    for layout in ["stock", "patched", "patched-floppy"] {
        check(&Case {
            flavor: (10, 1, 0),
            ..case(layout, "qcow2", "disk:disk:virtio:vda:1 disk.eph0:disk:virtio:vdb")
        });
        check(&Case { props: &[("hw_disk_bus", "ide")], ..case(layout, "qcow2", "disk:disk:ide:hda:1") });
        check(&Case {
            props: &[("hw_disk_bus", "sata"), ("hw_machine_type", "q35")],
            config_drive: true,
            ..case(layout, "raw", "disk:disk:sata:sda:1 disk.config:cdrom:sata:sdb")
        });
    }
}

#[test]
fn invalid_combinations_fail_with_nova_and_libvirt_messages() {
    const IDE_Q35: &str =
        "error: unsupported configuration: IDE controllers are unsupported for this QEMU binary or machine type";
    let cases = [
        Case { props: &[("hw_machine_type", "q35"), ("hw_cdrom_bus", "ide")], ..case("stock", "iso", IDE_Q35) },
        Case { props: &[("hw_machine_type", "q35"), ("hw_disk_bus", "ide")], ..case("patched", "iso", IDE_Q35) },
        Case {
            props: &[("hw_disk_bus", "xen")],
            ..case("stock", "qcow2", "error: Requested hardware 'xen' is not supported by the 'kvm' virt driver")
        },
        Case {
            props: &[("hw_cdrom_bus", "nvme")],
            ..case("stock", "iso", "error: Requested hardware 'nvme' is not supported by the 'kvm' virt driver")
        },
        Case {
            props: &[("hw_machine_type", "isapc")],
            ..case("stock", "iso", "error: Machine type isapc is not supported.")
        },
        Case {
            props: &[("hw_machine_type", "pc-q35-9.9")],
            ..case("stock", "iso", "error: Machine type pc-q35-9.9 is not supported.")
        },
        Case {
            props: &[("hw_architecture", "sparc")],
            ..case("stock", "iso", "error: Architecture name 'sparc' is not recognised")
        },
        Case {
            flavor: (0, 1, 0),
            ..case(
                "patched",
                "iso",
                "error: The created instance's disk would be too small. The patched ISO layout needs a flavor with root_gb > 0 for disk.newos.",
            )
        },
        Case {
            props: &[("os_secure_boot", "required"), ("hw_firmware_type", "uefi")],
            ..case("stock", "iso", "error: Secure Boot is not supported by host")
        },
        Case {
            props: &[("os_secure_boot", "required"), ("hw_machine_type", "q35")],
            ..case("stock", "iso", "error: Secure Boot is not supported by host")
        },
        Case {
            props: &[("hw_tpm_version", "2.1")],
            ..case("stock", "iso", "error: Invalid TPM version '2.1'. Allowed values: 1.2, 2.0.")
        },
        Case {
            props: &[("hw_tpm_version", "1.2"), ("hw_tpm_model", "tpm-crb")],
            ..case("stock", "iso", "error: TPM model CRB is only valid with TPM version 2.0.")
        },
        Case {
            props: &[("hw_firmware_type", "coreboot")],
            ..case(
                "stock",
                "iso",
                "error: Invalid image property hw_firmware_type: 'coreboot'. Allowed values: bios, uefi.",
            )
        },
        // Five IDE devices do not fit on the two IDE channels.
        Case {
            props: &[("hw_disk_bus", "ide")],
            flavor: (10, 1, 64),
            config_drive: true,
            ..case(
                "patched",
                "iso",
                "error: The maximum allowed number of disk devices (4) to attach to a single instance has been exceeded.",
            )
        },
    ];
    cases.iter().for_each(check);
}

#[test]
fn machine_facts_follow_image_properties() {
    let image = ImageMeta::new(
        "iso",
        [
            ("hw_machine_type", "q35"),
            ("hw_firmware_type", "uefi"),
            ("os_secure_boot", "required"),
            ("hw_tpm_version", "2.0"),
            ("hw_tpm_model", "tpm-crb"),
        ],
    );
    let m = disk_mapping(&MappingRequest {
        layout: Layout::Patched,
        virt_type: VirtType::Kvm,
        image: &image,
        flavor: FlavorDisks { root_gb: 64, ephemeral_gb: 0, swap_mb: 0 },
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: false,
    })
    .unwrap();
    assert_eq!(m.machine_type, "pc-q35-7.2");
    assert_eq!(m.firmware, Firmware::Uefi);
    assert!(m.secure_boot);
    assert_eq!(m.tpm, Some(Tpm { version: TpmVersion::V2_0, model: TpmModel::TpmCrb }));
    assert_eq!(m.boot_devices(), vec![DeviceType::Disk, DeviceType::Cdrom]);
    assert_eq!(m.first_disk().unwrap().file_name, "disk.newos");
    assert_eq!(m.disk("disk.newos").unwrap().created_size_bytes(), Some(64 << 30));

    let plain = ImageMeta::new("iso", []);
    let m = disk_mapping(&MappingRequest { image: &plain, layout: Layout::Stock, ..request_template(&plain) }).unwrap();
    assert_eq!(m.machine_type, "pc-i440fx-7.2");
    assert_eq!(m.firmware, Firmware::Bios);
    assert!(!m.secure_boot);
    assert_eq!(m.boot_devices(), vec![DeviceType::Cdrom]);
    // optional secure boot on a BIOS i440fx machine stays off instead of failing.
    let optional = ImageMeta::new("iso", [("os_secure_boot", "optional")]);
    assert!(!disk_mapping(&request_template(&optional)).unwrap().secure_boot);
}

fn request_template(image: &ImageMeta) -> MappingRequest<'_> {
    MappingRequest {
        layout: Layout::Stock,
        virt_type: VirtType::Qemu,
        image,
        flavor: FlavorDisks { root_gb: 1, ephemeral_gb: 0, swap_mb: 0 },
        config_drive: false,
        virtio_iso_found: false,
        driver_floppy_found: false,
    }
}

#[test]
fn device_names_follow_nova() {
    for (index, name) in [(0, "vda"), (25, "vdz"), (26, "vdaa"), (27, "vdab"), (701, "vdzz"), (702, "vdaaa")] {
        assert_eq!(device_name("vd", index), name);
        assert_eq!(device_index(name), Some(index));
    }
    assert_eq!(device_index("vd"), None);
    assert_eq!(device_index("vdA"), None);
}

fn any_request() -> impl Strategy<Value = (Layout, ImageMeta, FlavorDisks, bool, bool, bool)> {
    let layout = prop::sample::select(Layout::ALL.to_vec());
    let format = prop::sample::select(vec!["iso", "qcow2", "raw"]);
    let bus = prop::option::of(prop::sample::select(vec!["virtio", "ide", "sata", "scsi", "usb"]));
    let machine = prop::option::of(prop::sample::select(vec!["pc", "q35", "pc-q35-7.2", "pc-i440fx-5.2"]));
    let arch = prop::option::of(prop::sample::select(vec!["x86_64", "aarch64"]));
    let firmware = prop::option::of(prop::sample::select(vec!["bios", "uefi"]));
    (
        layout,
        format,
        (bus.clone(), bus, machine, arch, firmware),
        (0u64..3, 0u64..3, prop::sample::select(vec![0u64, 512])),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(layout, format, (disk, cdrom, machine, arch, firmware), (root, eph, swap), cd, virtio, floppy)| {
                let mut props = Vec::new();
                props.extend(disk.map(|v| ("hw_disk_bus", v)));
                props.extend(cdrom.map(|v| ("hw_cdrom_bus", v)));
                props.extend(machine.map(|v| ("hw_machine_type", v)));
                props.extend(arch.map(|v| ("hw_architecture", v)));
                props.extend(firmware.map(|v| ("hw_firmware_type", v)));
                let image = ImageMeta::new(format, props);
                (layout, image, FlavorDisks { root_gb: root, ephemeral_gb: eph, swap_mb: swap }, cd, virtio, floppy)
            },
        )
}

proptest! {
    #[test]
    fn mappings_are_consistent((layout, image, flavor, config_drive, virtio, floppy) in any_request()) {
        let req = MappingRequest {
            layout, virt_type: VirtType::Kvm, image: &image, flavor, config_drive,
            virtio_iso_found: virtio, driver_floppy_found: floppy,
        };
        let Ok(m) = disk_mapping(&req) else { return Ok(()) };
        // Unique device names and file names.
        let mut devs: Vec<&str> = m.disks.iter().map(|d| d.dev.as_str()).collect();
        devs.sort();
        devs.dedup();
        prop_assert_eq!(devs.len(), m.disks.len());
        let mut files: Vec<&str> = m.disks.iter().map(|d| d.file_name.as_str()).collect();
        files.sort();
        files.dedup();
        prop_assert_eq!(files.len(), m.disks.len());
        // Names match their bus, and fit it.
        for d in &m.disks {
            prop_assert!(d.dev.starts_with(d.bus.dev_prefix()), "{} on {}", d.dev, d.bus);
            let index = device_index(&d.dev).unwrap();
            if let Some(max) = d.bus.max_devices() { prop_assert!(index < max); }
            prop_assert_eq!(d.readonly, d.device != DeviceType::Disk);
        }
        // Exactly one root with boot index 1, and boot indexes contiguous from 1.
        let mut boot: Vec<u32> = m.disks.iter().filter_map(|d| d.boot_index).collect();
        boot.sort();
        prop_assert_eq!(boot, (1..=m.disks.iter().filter(|d| d.boot_index.is_some()).count() as u32).collect::<Vec<_>>());
        // No IDE on PCIe machines.
        if m.is_pcie() { prop_assert!(m.disks.iter().all(|d| d.bus != DiskBus::Ide)); }
        // Patched ISO boots put the blank root first, so the snapshot captures it.
        let first = m.first_disk().unwrap();
        if image.is_iso() && layout != Layout::Stock {
            prop_assert_eq!(first.file_name.as_str(), "disk.newos");
        } else {
            prop_assert_eq!(first.file_name.as_str(), "disk");
        }
    }
}
