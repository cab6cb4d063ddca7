//! Domain XML tests: the real Nova 34 dumpxml reproduced, snapshots per layout, well-formedness and libvirt's schema.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::*;
use crate::hypervisor::blockinfo::{FlavorDisks, ImageMeta, MappingRequest, disk_mapping};
use crate::layout::Layout;

/// `virsh dumpxml` of a real Nova 34 instance booted from an ISO (flavor 1 GB root + 1 GB ephemeral, no NIC, no VNC).
const REFERENCE: &str = include_str!("nova34-iso-boot-dumpxml.xml");

fn spec(vcpus: u32, memory_mb: u64, flavor: FlavorDisks, properties: &[(&str, &str)]) -> DomainSpec {
    DomainSpec {
        instance_id: 1,
        uuid: "68a8f3c6-04f3-4a3a-9183-b66d49f2ccb4".into(),
        display_name: "isoinst".into(),
        creation_time: "2026-11-24 18:28:45".into(),
        flavor: DomainFlavor {
            id: "7701866f-2c6f-4ed2-9c59-c7c6e5610e36".into(),
            name: "iso.eph".into(),
            memory_mb,
            vcpus,
            root_gb: flavor.root_gb,
            ephemeral_gb: flavor.ephemeral_gb,
            swap_mb: flavor.swap_mb,
        },
        image: DomainImage {
            id: "28f86646-db18-4e36-9763-4b6e6143463b".into(),
            disk_format: "iso".into(),
            container_format: "bare".into(),
            min_disk: 1,
            min_ram: 0,
        },
        image_properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        user_id: "d03a3ce855d94eec8f2b7b76946ead2b".into(),
        user_name: "admin".into(),
        project_id: "e7c3db7829944b349b5c2475f08cabb2".into(),
        project_name: "admin".into(),
        instances_path: DEFAULT_INSTANCES_PATH.into(),
        interfaces: Vec::new(),
        vnc: false,
    }
}

fn mapping(layout: Layout, flavor: FlavorDisks, properties: &[(&str, &str)], virt: VirtType) -> DiskMapping {
    let image = ImageMeta::new("iso", properties.iter().copied());
    disk_mapping(&MappingRequest {
        layout,
        virt_type: virt,
        image: &image,
        flavor,
        config_drive: false,
        virtio_iso_found: true,
        driver_floppy_found: true,
    })
    .unwrap()
}

/// Element paths with sorted attributes and trimmed text: what two documents must share to say the same thing.
fn canonical(xml: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, path: &[String], out: &mut Vec<String>| {
        if !text.trim().is_empty() {
            out.push(format!("{} = {}", path.join("/"), text.trim()));
        }
        text.clear();
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                flush(&mut text, &path, &mut out);
                path.push(e.name().as_ref().to_string());
                out.push(format!("{} [{}]", path.join("/"), sorted_attributes(&e)));
            }
            Ok(Event::Empty(e)) => {
                flush(&mut text, &path, &mut out);
                let prefix = if path.is_empty() { String::new() } else { format!("{}/", path.join("/")) };
                out.push(format!("{prefix}{} [{}]", e.name().as_ref(), sorted_attributes(&e)));
            }
            Ok(Event::End(_)) => {
                flush(&mut text, &path, &mut out);
                path.pop();
            }
            Ok(Event::Text(t)) => text.push_str(&t.xml10_content()),
            Ok(Event::GeneralRef(r)) => match r.resolve_char_ref().unwrap() {
                Some(c) => text.push(c),
                None => text.push_str(quick_xml::escape::resolve_predefined_entity(&r.xml10_content()).unwrap()),
            },
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("xml error at {}: {e}", reader.error_position()),
        }
    }
    out
}

fn sorted_attributes(e: &quick_xml::events::BytesStart<'_>) -> String {
    let mut attrs: Vec<String> = e
        .attributes()
        .map(|a| {
            let a = a.unwrap();
            format!("{}={}", a.key.as_ref(), a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap())
        })
        .collect();
    attrs.sort();
    attrs.join(" ")
}

#[test]
fn stock_iso_boot_reproduces_the_real_nova_34_dumpxml() {
    let flavor = FlavorDisks { root_gb: 1, ephemeral_gb: 1, swap_mb: 0 };
    let xml = render_domain(&spec(1, 512, flavor, &[]), &mapping(Layout::Stock, flavor, &[], VirtType::Qemu)).unwrap();
    let ours = canonical(&xml);
    let real = canonical(REFERENCE);
    let diff: Vec<String> = similar_lines(&real, &ours);
    assert!(diff.is_empty(), "differences from the real dumpxml:\n{}", diff.join("\n"));
}

fn similar_lines(expected: &[String], actual: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if e != a {
            out.push(format!("#{i}: real {e:?}\n     ours {a:?}"));
        }
    }
    if expected.len() != actual.len() {
        out.push(format!("real has {} items, ours {}", expected.len(), actual.len()));
    }
    out
}

fn with_nic_and_vnc(mut s: DomainSpec, model: &str) -> DomainSpec {
    s.vnc = true;
    s.interfaces = vec![NetworkInterface {
        port_id: "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into(),
        mac: "fa:16:3e:12:34:56".into(),
        model: model.into(),
    }];
    s
}

/// The cases snapshotted and schema-checked: (name, domain spec, mapping).
fn cases() -> Vec<(&'static str, DomainSpec, DiskMapping)> {
    let small = FlavorDisks { root_gb: 10, ephemeral_gb: 0, swap_mb: 0 };
    let with_eph = FlavorDisks { root_gb: 10, ephemeral_gb: 5, swap_mb: 512 };
    let win = [("os_type", "windows"), ("hw_vif_model", "e1000")];
    let win11 = [
        ("os_type", "windows"),
        ("hw_machine_type", "q35"),
        ("hw_firmware_type", "uefi"),
        ("os_secure_boot", "required"),
        ("hw_tpm_version", "2.0"),
        ("hw_tpm_model", "tpm-crb"),
    ];
    let aarch64 = [("hw_architecture", "aarch64")];
    vec![
        (
            "stock-linux",
            with_nic_and_vnc(spec(2, 2048, with_eph, &[]), "virtio"),
            mapping(Layout::Stock, with_eph, &[], VirtType::Kvm),
        ),
        (
            "patched-windows-2012",
            with_nic_and_vnc(spec(2, 4096, small, &win), "e1000"),
            mapping(Layout::Patched, small, &win, VirtType::Kvm),
        ),
        (
            "patched-floppy-windows-2003",
            with_nic_and_vnc(spec(1, 1024, small, &win), "rtl8139"),
            mapping(Layout::PatchedFloppy, small, &win, VirtType::Kvm),
        ),
        (
            "patched-windows-11-q35-uefi-tpm",
            with_nic_and_vnc(spec(2, 4096, FlavorDisks { root_gb: 64, ..small }, &win11), "e1000"),
            mapping(Layout::Patched, FlavorDisks { root_gb: 64, ..small }, &win11, VirtType::Kvm),
        ),
        (
            "stock-aarch64",
            spec(1, 1024, with_eph, &aarch64),
            mapping(Layout::Stock, with_eph, &aarch64, VirtType::Qemu),
        ),
    ]
}

#[test]
fn domains_match_their_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/hypervisor"));
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]");
    settings.add_filter(r"[0-9a-f]{32}", "[id]");
    settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "[time]");
    settings.bind(|| {
        for (name, spec, mapping) in cases() {
            insta::assert_snapshot!(format!("domain-{name}"), render_domain(&spec, &mapping).unwrap());
        }
    });
}

#[test]
fn libvirt_schema_accepts_every_rendered_domain() {
    let dir = tempfile::tempdir().unwrap();
    let validator = std::process::Command::new("virt-xml-validate").arg("--help").output();
    assert!(
        validator.is_ok(),
        "virt-xml-validate (Debian package libvirt-clients) is needed: `cargo xtask setup` installs it"
    );
    for (name, spec, mapping) in cases() {
        let path = dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, render_domain(&spec, &mapping).unwrap()).unwrap();
        let out = std::process::Command::new("virt-xml-validate").arg(&path).arg("domain").output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn listing_1_disks_come_out_as_the_article_shows() {
    let flavor = FlavorDisks { root_gb: 10, ephemeral_gb: 0, swap_mb: 0 };
    let spec = with_nic_and_vnc(spec(1, 2048, flavor, &[]), "virtio");
    let xml = render_domain(&spec, &mapping(Layout::Patched, flavor, &[], VirtType::Kvm)).unwrap();
    let lines = canonical(&xml);
    let disks: Vec<&String> = lines.iter().filter(|l| l.starts_with("domain/devices/disk")).collect();
    let dir = "/var/lib/nova/instances/68a8f3c6-04f3-4a3a-9183-b66d49f2ccb4";
    let expected = [
        "domain/devices/disk [device=disk type=file]".to_string(),
        "domain/devices/disk/driver [cache=none name=qemu type=qcow2]".to_string(),
        format!("domain/devices/disk/source [file={dir}/disk.newos]"),
        "domain/devices/disk/target [bus=virtio dev=vda]".to_string(),
        "domain/devices/disk/address [bus=0x00 domain=0x0000 function=0x0 slot=0x04 type=pci]".to_string(),
        "domain/devices/disk [device=cdrom type=file]".to_string(),
        "domain/devices/disk/driver [cache=none name=qemu type=qcow2]".to_string(),
        format!("domain/devices/disk/source [file={dir}/disk]"),
        "domain/devices/disk/target [bus=ide dev=hda]".to_string(),
        "domain/devices/disk/readonly []".to_string(),
        "domain/devices/disk/address [bus=0 controller=0 target=0 type=drive unit=0]".to_string(),
        "domain/devices/disk [device=cdrom type=file]".to_string(),
        "domain/devices/disk/driver [cache=none name=qemu type=qcow2]".to_string(),
        format!("domain/devices/disk/source [file={dir}/disk.virtio]"),
        "domain/devices/disk/target [bus=ide dev=hdb]".to_string(),
        "domain/devices/disk/readonly []".to_string(),
        "domain/devices/disk/address [bus=0 controller=0 target=0 type=drive unit=1]".to_string(),
    ];
    assert_eq!(disks, expected.iter().collect::<Vec<_>>());
    assert!(lines.contains(&"domain/os/boot [dev=hd]".to_string()));
    assert!(lines.contains(&"domain/os/boot [dev=cdrom]".to_string()));
}

#[test]
fn text_and_attributes_are_escaped() {
    let flavor = FlavorDisks { root_gb: 1, ephemeral_gb: 0, swap_mb: 0 };
    let mut s = spec(1, 512, flavor, &[("os_distro", "a'b\"c")]);
    s.display_name = "<script>&amp; \"x\"".into();
    s.flavor.name = "m1 <'&'>".into();
    let xml = render_domain(&s, &mapping(Layout::Stock, flavor, &[], VirtType::Qemu)).unwrap();
    let lines = canonical(&xml);
    assert!(lines.contains(&"domain/metadata/nova:instance/nova:name = <script>&amp; \"x\"".to_string()), "{xml}");
    assert!(lines.iter().any(|l| l.contains("name=m1 <'&'>")), "{xml}");
    assert!(
        lines.contains(&"domain/metadata/nova:instance/nova:image/nova:properties/nova:property = a'b\"c".to_string())
    );
}
