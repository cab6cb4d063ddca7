//! Writes the committed seed corpus, `fuzz/seeds/<target>/`: a few small, valid inputs per target, taken from the
//! repository's own fixtures or built here, so the fuzzer starts from inputs that get past the first checks.
//!
//! `cargo run -p parser-oracles --example write_seeds` (rerun after changing it; the output is committed).

use std::io::{Cursor, Seek, Write};
use std::path::{Path, PathBuf};

use guestsim::media::iso9660::{BootEntry, BootPlatform, IsoBuilder};
use jiff::civil::DateTime;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = root().join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    std::fs::write(dir.join(name), data).expect("write a seed");
}

fn copy(target: &str, from: &str) {
    let path = root().join(from);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    write(target, path.file_name().and_then(|n| n.to_str()).expect("a file name"), &data);
}

/// A qcow2 v3 image with 512-byte clusters (the smallest qcow2 allows, so the seed stays small): header, L1 table,
/// one L2 table and `data` as the guest's first cluster.
fn small_qcow2(virtual_size: u64, data: &[u8; 512]) -> Vec<u8> {
    let mut image = vec![0u8; 4 * 512];
    image[..4].copy_from_slice(b"QFI\xfb");
    image[4..8].copy_from_slice(&3u32.to_be_bytes());
    image[20..24].copy_from_slice(&9u32.to_be_bytes());
    image[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    let l2_entries = 512 / 8;
    let l1_size = virtual_size.div_ceil(512 * l2_entries) as u32;
    image[36..40].copy_from_slice(&l1_size.to_be_bytes());
    image[40..48].copy_from_slice(&512u64.to_be_bytes());
    image[100..104].copy_from_slice(&104u32.to_be_bytes());
    // L1 entry 0 at 512 points at the L2 table at 1024 (bit 63: copied, as qemu writes it).
    image[512..520].copy_from_slice(&(1024u64 | 1 << 63).to_be_bytes());
    image[1024..1032].copy_from_slice(&(1536u64 | 1 << 63).to_be_bytes());
    image[1536..2048].copy_from_slice(data);
    image
}

fn iso_image(joliet: bool) -> Vec<u8> {
    let created = DateTime::constant(2024, 4, 23, 12, 0, 0, 0);
    let mut builder = IsoBuilder::new("FUZZ_SEED", created).expect("a valid volume id").joliet(joliet);
    builder.add_file("/isolinux/isolinux.bin", vec![0xEB; 2048]).expect("add a file");
    builder.add_file("/readme.txt", "seed").expect("add a file");
    builder.add_file("/.isoharness/guest.toml", "name = \"seed\"\nfamily = \"linux\"\n").expect("add the guest facts");
    let builder = builder.boot(BootEntry {
        platform: BootPlatform::Bios,
        image: "isolinux/isolinux.bin".into(),
        load_sectors: None,
    });
    let mut out = Cursor::new(Vec::new());
    builder.write(&mut out).expect("write the iso");
    out.into_inner()
}

fn fat_image() -> Vec<u8> {
    let mut volume = Cursor::new(vec![0u8; 64 * 1024]);
    fatfs::format_volume(&mut volume, fatfs::FormatVolumeOptions::new().volume_label(*b"FUZZSEED   "))
        .expect("format a small fat volume");
    volume.rewind().expect("rewind");
    {
        let fs = fatfs::FileSystem::new(&mut volume, fatfs::FsOptions::new()).expect("mount it");
        let root = fs.root_dir();
        let drivers = root.create_dir("i386").expect("a directory");
        drivers.create_file("viostor.inf").expect("a file").write_all(b"[Version]\r\n").expect("write");
        root.create_file("txtsetup.oem").expect("a file").write_all(b"[Disks]\r\n").expect("write");
    }
    volume.into_inner()
}

fn main() {
    for fixture in ["listing1.xml", "patched-q35.xml", "stock-i440fx.xml", "malformed-unclosed.xml"] {
        copy("domain_xml", &format!("harness/tests/fixtures/domxml/{fixture}"));
    }
    for scenario in ["rhel-9.toml", "windows-server-2003-r2.toml", "windows-server-2022.toml"] {
        copy("scenario_toml", &format!("scenarios/{scenario}"));
    }

    let clouds = "clouds:\n  fuzz:\n    auth:\n      auth_url: https://keystone.example:5000/v3\n      username: demo\n      \
                  project_name: demo\n      user_domain_name: Default\n      project_domain_id: default\n    \
                  region_name: RegionOne\n    interface: public\n    verify: false\n    identity_api_version: 3\n";
    let secure = "clouds:\n  fuzz:\n    auth:\n      password: secret\n";
    write("cloud_config", "clouds-and-secure.yaml", &[b"\x00", clouds.as_bytes(), b"\xff", secure.as_bytes()].concat());
    let json = r#"{"clouds": {"fuzz": {"auth_type": "v3applicationcredential", "auth": {"auth_url": "http://127.0.0.1:5000/v3", "application_credential_id": "abc", "application_credential_secret": "s"}, "regions": ["RegionOne", {"name": "RegionTwo"}]}}}"#;
    write("cloud_config", "clouds.json", &[b"\x01", json.as_bytes()].concat());

    let mut mbr = [0u8; 512];
    mbr[446 + 4] = 0x83;
    mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
    write("image_inspect", "mbr.raw", &mbr);
    write("image_inspect", "mbr-in.qcow2", &small_qcow2(64 * 1024, &mbr));
    let mut gpt = vec![0u8; 1024];
    gpt[512..520].copy_from_slice(b"EFI PART");
    write("image_inspect", "gpt.raw", &gpt);
    write("image_inspect", "header.vmdk", b"KDMV\x01\0\0\0\x03\0\0\0");
    write("image_inspect", "header.vhdx", b"vhdxfile\0\0\0\0");
    write("image_inspect", "header.vdi", b"<<< Oracle VM VirtualBox Disk Image >>>\n");

    write("iso9660", "joliet-bios.iso", &iso_image(true));
    write("fat_floppy", "small.img", &fat_image());

    let mut sector = [0u8; 512];
    sector[..4].copy_from_slice(b"data");
    write("qcow2_reader", "one-cluster.qcow2", &small_qcow2(64 * 1024, &sector));
    write("qcow2_reader", "larger-than-one-l2.qcow2", &small_qcow2(96 * 1024, &sector));

    let queries = [
        ("filters", "limit=5&status=in:active,queued&visibility=all&member_status=all&os_hidden=true&tag=a&tag=b"),
        ("sort", "sort=name:asc,created_at:desc&marker=0c1b2f3e-0000-4000-8000-000000000000"),
        ("old-sort", "sort_key=name&sort_dir=desc&sort_key=size&created_at=gte:2024-01-01T00:00:00Z&size_min=1"),
        ("quoted", "name=in:\"a,b\",c&disk_format=iso&protected=false&limit=0"),
    ];
    for (name, query) in queries {
        write("glance_list_query", name, query.as_bytes());
    }

    let v21 = r#"[{"op": "replace", "path": "/name", "value": "x"}, {"op": "add", "path": "/hw_disk_bus", "value": "virtio"}, {"op": "remove", "path": "/os_type"}, {"op": "add", "path": "/locations/-", "value": {"url": "http://x", "metadata": {}}}]"#;
    write("glance_patch", "v2.1.json", v21.as_bytes());
    let v20 =
        r#"[{"replace": "/tags", "value": ["a", "b"]}, {"add": "/a~1b~0c", "value": "v"}, {"remove": "/min_ram"}]"#;
    write("glance_patch", "v2.0.json", v20.as_bytes());

    let bodies = [
        (
            "server-create",
            r#"{"server": {"name": "vm", "imageRef": "0c1b2f3e-0000-4000-8000-000000000000", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [{"boot_index": 0, "uuid": "0c1b2f3e-0000-4000-8000-000000000000", "source_type": "image", "destination_type": "volume", "volume_size": 10, "disk_bus": "virtio", "device_type": "disk"}, {"source_type": "blank", "destination_type": "local", "guest_format": "swap", "volume_size": 1}], "metadata": {"k": "v"}, "tags": ["t"], "os:scheduler_hints": {"group": "x"}}}"#,
        ),
        (
            "flavor-create",
            r#"{"flavor": {"name": "f", "id": "auto", "ram": "512", "vcpus": 1, "disk": 10, "OS-FLV-EXT-DATA:ephemeral": 0, "swap": "", "rxtx_factor": 1.0, "os-flavor-access:is_public": "true", "description": null}}"#,
        ),
        (
            "extra-specs",
            r#"{"extra_specs": {"hw:firmware_type": "uefi", "hw_rng:allowed": "True", "quota:disk_read_bytes_sec": 10240}}"#,
        ),
        ("actions", r#"{"reboot": {"type": "HARD"}}"#),
        ("create-image", r#"{"createImage": {"name": "snap", "metadata": {"a": "b"}}}"#),
        ("console", r#"{"os-getConsoleOutput": {"length": "-1"}}"#),
    ];
    for (name, body) in bodies {
        write("nova_request", &format!("{name}.json"), body.as_bytes());
    }
    write("nova_query", "microversion", b"2.90");
    write(
        "nova_query",
        "servers",
        b"limit=10&sort_key=display_name&sort_dir=asc&changes-since=2024-01-01T00%3A00%3A00Z&name=a%2Bb+c",
    );
}
