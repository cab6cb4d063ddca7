//! ISO 9660 writer and reader: cross-checks with xorriso and isoinfo, round trips, robustness.

use std::collections::BTreeMap;

use guestsim::guest::Medium;
use guestsim::media::{BootPlatform, FileContent, IsoBuilder, IsoImage, MediaError, open_medium};
use proptest::prelude::*;

use crate::support::*;

const SAMPLE_FILES: [&str; 9] = [
    "/Readme.TXT",
    "/a/b/c/d/e/f/g/h/i/j/deep file name with spaces.txt",
    "/empty",
    "/images/efiboot.img",
    "/isolinux/isolinux.bin",
    "/multi/extent.bin",
    "/same-prefix-name-number-1.longextension",
    "/same-prefix-name-number-2.longextension",
    "/unicode/Grüße ünd € 名前.txt",
];

fn sample_on_disk() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sample.iso");
    std::fs::write(&path, sample_iso()).expect("write iso");
    (dir, path)
}

#[test]
fn our_reader_lists_the_sample_tree() {
    let image = IsoImage::from_bytes(sample_iso()).expect("parses");
    let mut expected: Vec<String> = SAMPLE_FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(image.file_paths(), expected.as_slice());
    assert!(image.is_joliet());
    assert_eq!(image.volume_id(), "SAMPLE_VOLUME");
    assert!(image.exists("/EMPTY-FOLDER"), "folders exist, case-insensitively");
    assert_eq!(image.read("/readme.txt").as_deref(), Some(&b"hello"[..]));
    assert_eq!(image.read("MULTI/Extent.BIN").map(|c| c.len()), Some(10_000));
    assert_eq!(image.read("/no/such/file"), None);
}

#[test]
fn xorriso_and_isoinfo_list_the_same_files_and_volume_id() {
    let (_dir, path) = sample_on_disk();
    assert_eq!(xorriso_files(&path), SAMPLE_FILES.map(String::from).to_vec());
    let isoinfo = isoinfo_joliet_entries(&path);
    // isoinfo converts Joliet names to Latin-1 and prints `_` for the rest, so only ASCII names compare.
    for file in SAMPLE_FILES.into_iter().filter(|file| file.is_ascii()) {
        assert!(isoinfo.contains(&file.to_string()), "isoinfo -J -f lacks {file}: {isoinfo:?}");
    }
    let description = run("isoinfo", &["-d", "-i", path_str(&path)]);
    assert!(description.contains("Volume id: SAMPLE_VOLUME"), "{description}");
    assert!(description.contains("Joliet with UCS level 3 found"), "{description}");
    assert!(description.contains("Logical block size is: 2048"), "{description}");
    let image = IsoImage::open(&path).expect("parses");
    let sectors = std::fs::metadata(&path).expect("stat").len() / 2048;
    assert!(description.contains(&format!("Volume size is: {sectors}")), "{description}");
    assert_eq!(image.file_paths().len(), SAMPLE_FILES.len());
}

#[test]
fn real_tools_extract_the_same_bytes_as_our_reader() {
    let (dir, path) = sample_on_disk();
    let image = IsoImage::open(&path).expect("parses");
    for file in SAMPLE_FILES {
        let ours = image.read(file).expect("file is readable");
        if file.is_ascii() {
            let isoinfo = run_bytes("isoinfo", &["-J", "-x", file, "-i", path_str(&path)]);
            assert_eq!(isoinfo, ours, "isoinfo -J -x {file}");
        }
        let extracted = dir.path().join("extracted");
        let _ = std::fs::remove_file(&extracted);
        run("xorriso", &["-osirrox", "on", "-indev", path_str(&path), "-extract", file, path_str(&extracted)]);
        assert_eq!(std::fs::read(&extracted).expect("extracted"), ours, "xorriso -extract {file}");
    }
}

#[test]
fn boot_catalog_agrees_with_xorriso() {
    let (_dir, path) = sample_on_disk();
    let image = IsoImage::open(&path).expect("parses");
    let boot = image.boot_entries();
    assert_eq!(boot.len(), 2);
    assert_eq!(boot[0].platform(), Some(BootPlatform::Bios));
    assert_eq!((boot[0].bootable, boot[0].media_type, boot[0].load_sectors), (true, 0, 4));
    assert_eq!(boot[0].image.as_deref(), Some("/isolinux/isolinux.bin"));
    assert_eq!(boot[1].platform(), Some(BootPlatform::Efi));
    assert_eq!(boot[1].load_sectors, 10, "5000 bytes are ten 512-byte sectors");
    assert_eq!(boot[1].image.as_deref(), Some("/images/efiboot.img"));
    let report = run("xorriso", &["-indev", path_str(&path), "-report_el_torito", "plain"]);
    let lines: Vec<&str> = report.lines().collect();
    let find = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        find("El Torito boot img :"),
        vec![
            format!("El Torito boot img : 1 BIOS y none 0x0000 0x00 4 {}", boot[0].load_lba),
            format!("El Torito boot img : 2 UEFI y none 0x0000 0x00 10 {}", boot[1].load_lba),
        ]
    );
    assert_eq!(
        find("El Torito img path :"),
        vec!["El Torito img path : 1 /isolinux/isolinux.bin", "El Torito img path : 2 /images/efiboot.img"]
    );
    let description = run("isoinfo", &["-d", "-i", path_str(&path)]);
    assert!(description.contains("El Torito VD version 1 found"), "{description}");
    assert!(description.contains("Boot media 0 (No Emulation Boot)"), "{description}");
}

#[test]
fn xorriso_checks_every_block_of_the_volume() {
    let (_dir, path) = sample_on_disk();
    let report = run("xorriso", &["-indev", path_str(&path), "-check_media", "--"]);
    let sectors = std::fs::metadata(&path).expect("stat").len() / 2048;
    assert!(report.contains(&format!("Media region :          0 , {sectors:>10} , + good")), "{report}");
}

#[test]
fn primary_names_are_iso9660_level_2_and_unique() {
    let (_dir, path) = sample_on_disk();
    let out = run("isoinfo", &["-f", "-i", path_str(&path)]);
    let mut names: Vec<&str> = out.lines().collect();
    names.dedup();
    for name in &names {
        let last = name.rsplit('/').next().unwrap_or_default();
        assert!(last.len() <= 32, "{name}");
        assert!(last.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_.;~".contains(c)), "{name}");
    }
    // Both long names truncate to the same 30 characters; the second one gets a `~1` tail.
    assert!(names.contains(&"/SAME_PREFIX_NAME_NUMB.LONGEXTE;1"), "{names:?}");
    assert!(names.contains(&"/SAME_PREFIX_NAME_NU~1.LONGEXTE;1"), "{names:?}");
    let without_joliet = {
        let mut bytes = Vec::new();
        sample_builder().joliet(false).write(&mut bytes).expect("writes");
        IsoImage::from_bytes(bytes).expect("parses")
    };
    assert!(!without_joliet.is_joliet());
    assert!(without_joliet.exists("/readme.txt"));
    assert!(without_joliet.exists("/EMPTY"), "a name without extension is read back without its dot");
}

#[test]
fn reads_what_xorriso_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = dir.path().join("tree");
    let files: BTreeMap<&str, Vec<u8>> = [
        ("sources/boot.wim", vec![1u8; 3000]),
        ("autounattend.xml", b"<unattend/>".to_vec()),
        ("Mixed Case/Long File Name For Joliet.txt", b"joliet".to_vec()),
        ("x/y/z/deep.txt", b"deep".to_vec()),
        ("empty.dat", Vec::new()),
    ]
    .into_iter()
    .collect();
    for (name, content) in &files {
        let target = tree.join(name);
        std::fs::create_dir_all(target.parent().expect("has parent")).expect("mkdir");
        std::fs::write(target, content).expect("write");
    }
    for (joliet, iso_name) in [(true, "joliet.iso"), (false, "plain.iso")] {
        let iso = dir.path().join(iso_name);
        let mut args = vec!["-as", "mkisofs", "-V", "XORRISO_VOLUME", "-o", path_str(&iso)];
        if joliet {
            args.push("-J");
        }
        args.push(path_str(&tree));
        let _ = run("xorriso", &args);
        let image = IsoImage::open(&iso).expect("our reader parses xorriso output");
        assert_eq!(image.volume_id(), "XORRISO_VOLUME");
        assert_eq!(image.is_joliet(), joliet);
        if joliet {
            for (name, content) in &files {
                assert_eq!(image.read(name).as_ref(), Some(content), "{iso_name}: {name}");
            }
        } else {
            // Without Joliet (and without Rock Ridge, which our reader ignores) names are xorriso's ISO 9660 ones.
            let listing = run("isoinfo", &["-f", "-i", path_str(&iso)]);
            let mut primary: Vec<String> = listing
                .lines()
                .filter(|line| line.contains(';'))
                .map(|line| line.rsplit_once(';').map_or(line, |(name, _)| name).trim_end_matches('.').to_owned())
                .collect();
            primary.sort();
            assert_eq!(image.file_paths(), primary.as_slice());
            assert_eq!(image.read("/AUTOUNAT.XML"), Some(b"<unattend/>".to_vec()), "{primary:?}");
        }
        if joliet {
            let mut expected: Vec<String> = files.keys().map(|name| format!("/{name}")).collect();
            expected.sort();
            assert_eq!(image.file_paths(), expected.as_slice());
        }
    }
}

#[test]
fn output_is_deterministic() {
    assert_eq!(sample_iso(), sample_iso());
}

#[test]
fn streamed_content_from_host_files_and_readers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&host, &payload).expect("write");
    let mut builder = IsoBuilder::new("STREAMED", fixed_time()).expect("valid");
    builder.add_file("host.bin", FileContent::HostFile(host.clone())).expect("added");
    builder
        .add_file("reader.bin", FileContent::Reader { len: 5000, reader: Box::new(std::io::repeat(9)) })
        .expect("added");
    builder.add_file("zeros.bin", FileContent::Zeros(70_000)).expect("added");
    let mut out = Vec::new();
    let written = builder.write(&mut out).expect("writes");
    assert_eq!(written, out.len() as u64);
    let image = IsoImage::from_bytes(out).expect("parses");
    assert_eq!(image.read("/host.bin"), Some(payload));
    assert_eq!(image.read("/reader.bin"), Some(vec![9; 5000]));
    assert_eq!(image.read("/zeros.bin"), Some(vec![0; 70_000]));

    let mut short = IsoBuilder::new("SHORT", fixed_time()).expect("valid");
    short.add_file("short.bin", FileContent::Reader { len: 10, reader: Box::new(&b"abc"[..]) }).expect("added");
    let error = short.write(&mut Vec::new()).expect_err("a short reader is an error");
    assert!(error.to_string().contains("ended after 3 of 10 bytes"), "{error}");
}

#[test]
fn builder_rejects_what_the_format_cannot_hold() {
    let check = |path: &str, expected: &str| {
        let mut builder = IsoBuilder::new("V", fixed_time()).expect("valid");
        builder.add_file("a/file.txt", "x").expect("valid");
        let error = builder.add_file(path, "y").expect_err(path).to_string();
        assert!(error.contains(expected), "{path}: {error}");
    };
    check("A/FILE.TXT", "already on the image");
    check("a/file.txt/inner", "already on the image");
    check("a/../b", "`.` and `..` are not names");
    check(&"n".repeat(65), "at most 64 characters");
    check("what?.txt", "joliet forbids");
    check("emoji-😀", "basic multilingual plane");
    check("/", "a file needs a name");
    assert!(matches!(IsoBuilder::new(&"V".repeat(33), fixed_time()), Err(MediaError::InvalidPath { .. })));
    let mut builder = IsoBuilder::new("V", fixed_time()).expect("valid").boot(guestsim::media::BootEntry {
        platform: BootPlatform::Bios,
        image: "missing.bin".into(),
        load_sectors: None,
    });
    builder.add_file("present.bin", "x").expect("valid");
    let error = builder.write(&mut Vec::new()).expect_err("boot image missing").to_string();
    assert!(error.contains("boot image is not a file"), "{error}");
}

#[test]
fn open_medium_sniffs_iso_and_rejects_other_bytes() {
    let (dir, path) = sample_on_disk();
    let medium = open_medium(&path).expect("opens");
    assert_eq!(medium.volume_id(), "SAMPLE_VOLUME");
    assert_eq!(medium.files().len(), SAMPLE_FILES.len());
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0x5A; 40_000]).expect("write");
    let error = open_medium(&junk).err().expect("junk is no medium").to_string();
    assert!(error.contains("not an iso 9660 or fat image"), "{error}");
    let missing = open_medium(&dir.path().join("missing.iso")).err().expect("missing").to_string();
    assert!(missing.contains("missing.iso"), "{missing}");
}

#[test]
fn malformed_images_name_the_offset() {
    let check = |mutate: &dyn Fn(&mut Vec<u8>), expected: &str| {
        let mut bytes = sample_iso();
        mutate(&mut bytes);
        let error = IsoImage::from_bytes(bytes).expect_err(expected).to_string();
        assert!(error.contains(expected), "expected {expected:?} in {error:?}");
    };
    check(&|bytes| bytes.truncate(1000), "at byte 1000: image is 1000 bytes, shorter than 17 sectors");
    check(&|bytes| bytes[32769] = b'X', "at byte 32769: volume descriptor without the CD001 identifier");
    check(&|bytes| bytes[32768 + 129] = 0x10, "at byte 32896: logical block size");
    check(&|bytes| bytes[16 * 2048 + 2048 + 0x47] = 0xFF, "boot catalog sector");
    check(&|bytes| bytes.truncate(bytes.len() - 2048), "lies outside the");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..40_000)) {
        let _ = IsoImage::from_bytes(bytes);
    }

    #[test]
    fn corrupted_volumes_parse_or_fail_cleanly(
        mutations in proptest::collection::vec((16 * 2048usize..40 * 2048, any::<u8>()), 1..24),
    ) {
        let mut bytes = sample_iso();
        for (offset, value) in mutations {
            if offset < bytes.len() {
                bytes[offset] = value;
            }
        }
        if let Ok(image) = IsoImage::from_bytes(bytes) {
            for file in image.files() {
                let _ = image.read_file(&file);
            }
            let _ = image.boot_entries();
        }
    }

    #[test]
    fn written_trees_read_back(
        tree in proptest::collection::btree_map(
            proptest::collection::vec("[a-zA-Z0-9 _.-]{1,10}|[äöüßéñ€名]{1,4}", 1..5),
            proptest::collection::vec(any::<u8>(), 0..6000),
            1..20,
        ),
        extent_sectors in 1u32..4,
        joliet_names in any::<bool>(),
    ) {
        let mut builder = IsoBuilder::new("ROUNDTRIP", fixed_time()).expect("valid").max_extent_sectors(extent_sectors);
        let mut expected = BTreeMap::new();
        for (components, content) in &tree {
            if components.iter().any(|c| c == "." || c == ".." || c.trim_matches('.').is_empty()) {
                continue;
            }
            let path = components.join("/");
            if builder.add_file(&path, content.clone()).is_ok() {
                expected.insert(format!("/{path}"), content.clone());
            }
        }
        let mut bytes = Vec::new();
        let builder = builder.joliet(joliet_names);
        builder.write(&mut bytes).expect("writes");
        let image = IsoImage::from_bytes(bytes).expect("reads back");
        if joliet_names {
            // A folder keeps the spelling it was first added with, so paths compare case-insensitively.
            let mut listed: Vec<String> = expected.keys().map(|path| path.to_lowercase()).collect();
            let mut files: Vec<String> = image.files().iter().map(|path| path.to_lowercase()).collect();
            listed.sort();
            files.sort();
            prop_assert_eq!(files, listed);
            for (path, content) in &expected {
                prop_assert_eq!(image.read(path), Some(content.clone()));
            }
        } else {
            prop_assert_eq!(image.files().len(), expected.len());
            let mut contents: Vec<Vec<u8>> = image.files().iter().filter_map(|f| image.read(f)).collect();
            let mut wanted: Vec<Vec<u8>> = expected.values().cloned().collect();
            contents.sort();
            wanted.sort();
            prop_assert_eq!(contents, wanted);
        }
    }
}
