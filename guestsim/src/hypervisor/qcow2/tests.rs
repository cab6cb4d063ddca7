//! qcow2 tests, cross-checked with the installed `qemu-img` (info, check, compare, convert), plus fuzzing of the reader.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;

use super::*;

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (Debian package qemu-utils) is needed: `cargo xtask setup` installs it")
}

fn qemu_ok(args: &[&str]) -> String {
    let out = qemu_img(args);
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn info(path: &Path) -> serde_json::Value {
    serde_json::from_str(&qemu_ok(&["info", "--output=json", path.to_str().unwrap()])).unwrap()
}

fn check(path: &Path) {
    qemu_ok(&["check", path.to_str().unwrap()]);
}

/// Deterministic content with data, zero holes and a short tail: 3 clusters of data, 2 of zeros, data, then 1000 bytes.
fn sample_raw() -> Vec<u8> {
    let cluster = CLUSTER_SIZE as usize;
    let mut raw = vec![0u8; cluster * 6 + 1000];
    for (i, b) in raw.iter_mut().enumerate() {
        let in_hole = (3 * cluster..5 * cluster).contains(&i);
        if !in_hole && i % 7 != 0 {
            *b = (i * 31 % 251) as u8;
        }
    }
    raw
}

#[test]
fn blank_images_are_what_qemu_img_expects() {
    let dir = tempfile::tempdir().unwrap();
    for size in [0u64, 512, 1 << 20, 10 << 30, 64 << 30, (1 << 40) + 4096] {
        let path = dir.path().join(format!("blank-{size}.qcow2"));
        let stats = create_blank(&path, size).unwrap();
        assert_eq!(stats.data_clusters, 0);
        let info = info(&path);
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["virtual-size"], size);
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
        check(&path);
        let mut reader = open(&path).unwrap();
        assert_eq!(reader.virtual_size(), size);
        assert!(reader.allocated_ranges().unwrap().is_empty());
        if size >= 4096 {
            let mut buf = vec![1u8; 4096];
            reader.read_at(size - 4096, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0));
        }
    }
}

/// The metadata's zero runs are holes, not written zeros: a blank image of any size stores a few KiB, not its four
/// 64 KiB metadata clusters (and the file still has qemu's length and passes `qemu-img check` above).
#[test]
fn blank_images_leave_their_zero_metadata_as_holes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.qcow2");
    let stats = create_blank(&path, 20 << 30).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), stats.file_size);
    assert_eq!(stats.file_size, 4 * CLUSTER_SIZE, "header, L1, refcount block and table");
    assert!(meta.blocks() * 512 < CLUSTER_SIZE, "{} bytes allocated", meta.blocks() * 512);
}

#[test]
fn raw_content_round_trips_through_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("source.raw");
    let raw = sample_raw();
    std::fs::write(&raw_path, &raw).unwrap();
    let qcow = dir.path().join("ours.qcow2");
    let stats = convert_raw_file(&raw_path, &qcow).unwrap();
    // Clusters 3 and 4 are all zero and must not be stored; the size is rounded up to whole sectors.
    assert_eq!(stats.data_clusters, 5);
    let size = (raw.len() as u64).div_ceil(512) * 512;
    assert_eq!(stats.virtual_size, size);
    check(&qcow);
    qemu_ok(&["compare", "-f", "raw", "-F", "qcow2", raw_path.to_str().unwrap(), qcow.to_str().unwrap()]);
    assert_eq!(info(&qcow)["virtual-size"], size);

    // Our reader agrees, at odd offsets across cluster boundaries too.
    let mut reader = open(&qcow).unwrap();
    let mut all = vec![0u8; raw.len()];
    reader.read_at(0, &mut all).unwrap();
    assert_eq!(all, raw);
    let mut piece = vec![0u8; 70_000];
    reader.read_at(65_000, &mut piece).unwrap();
    assert_eq!(piece, raw[65_000..135_000]);
    assert_eq!(
        reader.allocated_ranges().unwrap(),
        vec![(0, 3 * CLUSTER_SIZE), (5 * CLUSTER_SIZE, size - 5 * CLUSTER_SIZE)]
    );
    assert!(matches!(reader.read_at(size - 10, &mut [0u8; 11]), Err(Qcow2Error::OutOfRange { .. })));

    // Copies and raw exports keep the content.
    let copied = dir.path().join("copy.qcow2");
    copy(&qcow, &copied).unwrap();
    check(&copied);
    qemu_ok(&["compare", "-f", "raw", "-F", "qcow2", raw_path.to_str().unwrap(), copied.to_str().unwrap()]);
    let back = dir.path().join("back.raw");
    to_raw(&copied, &back).unwrap();
    let mut padded = raw.clone();
    padded.resize(size as usize, 0);
    assert_eq!(std::fs::read(&back).unwrap(), padded);
    assert_eq!(probe(&qcow).unwrap(), ImageFormat::Qcow2 { virtual_size: size });
    assert_eq!(probe(&raw_path).unwrap(), ImageFormat::Raw { size: raw.len() as u64 });
    assert_eq!(read_image_range(&qcow, 100, 50).unwrap(), raw[100..150]);
    assert_eq!(read_image_range(&raw_path, 100, 50).unwrap(), raw[100..150]);
}

#[test]
fn extents_land_where_they_are_put() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extents.qcow2");
    let size = 8 << 30;
    let mbr = [0x55u8, 0xaa];
    let record = b"installed".repeat(10_000);
    let tail = [7u8; 512];
    write_extents(&path, size, &[(1 << 20, &record), (510, &mbr), (size - 512, &tail)]).unwrap();
    check(&path);
    let raw = dir.path().join("extents.raw");
    to_raw(&path, &raw).unwrap();
    qemu_ok(&["compare", "-f", "raw", "-F", "qcow2", raw.to_str().unwrap(), path.to_str().unwrap()]);
    let mut reader = open(&path).unwrap();
    let mut buf = vec![0u8; record.len()];
    reader.read_at(1 << 20, &mut buf).unwrap();
    assert_eq!(buf, record);
    let mut sector = [0u8; 512];
    reader.read_at(0, &mut sector).unwrap();
    assert_eq!(&sector[510..], &mbr);
    reader.read_at(size - 512, &mut sector).unwrap();
    assert_eq!(sector, tail);
    assert!(matches!(write_extents(&path, 1024, &[(1000, &tail)]), Err(Qcow2Error::OutOfRange { .. })));
}

#[test]
fn images_written_by_qemu_img_are_read_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("source.raw");
    let raw = sample_raw();
    std::fs::write(&raw_path, &raw).unwrap();
    let variants: [&[&str]; 3] = [&[], &["-o", "cluster_size=4096"], &["-o", "compat=0.10,cluster_size=2M"]];
    for (i, options) in variants.iter().enumerate() {
        let out = dir.path().join(format!("qemu-{i}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(options);
        args.extend([raw_path.to_str().unwrap(), out.to_str().unwrap()]);
        qemu_ok(&args);
        let mut reader = open(&out).unwrap();
        assert_eq!(reader.virtual_size(), (raw.len() as u64).div_ceil(512) * 512);
        let mut all = vec![0u8; raw.len()];
        reader.read_at(0, &mut all).unwrap();
        assert!(all == raw, "variant {options:?} reads differently");
    }
}

#[test]
fn unsupported_images_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let raw_path = d("source.raw");
    std::fs::write(&raw_path, sample_raw()).unwrap();

    let base = d("base.qcow2");
    qemu_ok(&["create", "-f", "qcow2", &base, "1M"]);
    let overlay = d("overlay.qcow2");
    qemu_ok(&["create", "-f", "qcow2", "-b", &base, "-F", "qcow2", &overlay]);
    let err = open(Path::new(&overlay)).err().unwrap();
    assert!(matches!(&err, Qcow2Error::BackingFile(name) if name == &base), "{err}");

    let compressed = d("compressed.qcow2");
    qemu_ok(&["convert", "-c", "-f", "raw", "-O", "qcow2", &raw_path, &compressed]);
    let mut reader = open(Path::new(&compressed)).unwrap();
    let err = reader.read_at(0, &mut [0u8; 16]).err().unwrap();
    assert_eq!(err.to_string(), "compressed cluster at guest offset 0x0 is not supported");

    let encrypted = d("encrypted.qcow2");
    let luks = [
        "create",
        "-f",
        "qcow2",
        "--object",
        "secret,id=sec0,data=not-a-real-secret",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        &encrypted,
        "1M",
    ];
    // qemu-img times its PBKDF iterations by CPU time and gives up ("Unable to get accurate CPU
    // usage") when a loaded machine hands it too little of it: that is worth another try.
    for _ in 0..4 {
        let out = qemu_img(&luks);
        if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("accurate CPU usage") {
            break;
        }
    }
    qemu_ok(&["info", &encrypted]);
    let err = open(Path::new(&encrypted)).err().unwrap();
    assert_eq!(err.to_string(), "encrypted qcow2 images are not supported (crypt_method 2)");

    let err = open(Path::new(&raw_path)).err().unwrap();
    assert!(matches!(err, Qcow2Error::NotQcow2));
    let err = open(Path::new(&d("missing.qcow2"))).err().unwrap();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
}

fn valid_small_image() -> Vec<u8> {
    let mut writer = Qcow2Writer::new(Cursor::new(Vec::new()), 3 * CLUSTER_SIZE + 100).unwrap();
    writer.write_cluster(0, &[1u8; 4096]).unwrap();
    writer.write_cluster(3, &[2u8; 100]).unwrap();
    writer.finish().unwrap().0.into_inner()
}

fn exercise(bytes: Vec<u8>) {
    if let Ok(mut reader) = Qcow2Reader::new(Cursor::new(bytes)) {
        let size = reader.virtual_size();
        let mut buf = vec![0u8; size.min(4 * CLUSTER_SIZE) as usize];
        let _ = reader.read_at(0, &mut buf);
        let _ = reader.allocated_ranges();
    }
}

#[test]
fn writer_refuses_out_of_order_and_oversized_input() {
    let mut writer = Qcow2Writer::new(Cursor::new(Vec::new()), 2 * CLUSTER_SIZE).unwrap();
    writer.write_cluster(1, &[1]).unwrap();
    assert!(matches!(writer.write_cluster(0, &[1]), Err(Qcow2Error::OutOfOrder { index: 0, last: 1 })));
    assert!(matches!(writer.write_cluster(2, &[1]), Err(Qcow2Error::OutOfRange { .. })));
    assert!(matches!(Qcow2Writer::new(Cursor::new(Vec::new()), u64::MAX), Err(Qcow2Error::TooLarge(_))));
    let image = valid_small_image();
    let mut reader = Qcow2Reader::new(Cursor::new(image)).unwrap();
    let mut buf = vec![0u8; 3 * CLUSTER_SIZE as usize + 100];
    reader.read_at(0, &mut buf).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 1));
    assert!(buf[4096..3 * CLUSTER_SIZE as usize].iter().all(|&b| b == 0));
    assert!(buf[3 * CLUSTER_SIZE as usize..].iter().all(|&b| b == 2));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(bytes);
    }

    #[test]
    fn arbitrary_headers_never_panic(mut header in prop::collection::vec(any::<u8>(), 104..=104), tail in 0usize..300_000) {
        header[..4].copy_from_slice(&QCOW2_MAGIC);
        header[4..8].copy_from_slice(&3u32.to_be_bytes());
        header.resize(104 + tail, 0);
        exercise(header);
    }

    #[test]
    fn corrupted_images_never_panic(flips in prop::collection::vec((0usize..(6 * 65536 + 200), any::<u8>()), 1..8)) {
        let mut image = valid_small_image();
        for (at, value) in flips {
            if let Some(b) = image.get_mut(at) { *b = value; }
        }
        // Header and table bytes are where corruption matters; flip them too.
        exercise(image.clone());
        let len = image.len();
        image[40 % len] ^= 0x80;
        exercise(image);
    }
}

#[test]
fn nonzero_prefix_stops_after_the_last_nonzero_byte() {
    for len in [0usize, 1, 63, 64, 65, 200, 65536] {
        for last in [None, Some(0), Some(len / 2), len.checked_sub(1)] {
            let mut bytes = vec![0u8; len];
            if let Some(at) = last.filter(|&a| a < len) {
                bytes[at] = 7;
            }
            let expected = last.filter(|&a| a < len).map_or(0, |a| a + 1);
            assert_eq!(nonzero_prefix(&bytes).len(), expected, "len {len}, last {last:?}");
        }
    }
}
