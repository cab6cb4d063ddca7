//! FAT12 floppies: cross-checks with mtools, reading images mtools made, robustness.

use guestsim::guest::Medium;
use guestsim::media::{FloppyBuilder, FloppyImage, FloppySize, open_medium};
use proptest::prelude::*;

use crate::support::*;

fn sample_floppy(size: FloppySize) -> Vec<u8> {
    let mut builder = FloppyBuilder::new(size, "Drivers", fixed_time()).expect("valid label");
    builder.add_file("txtsetup.oem", "[Disks]\r\n").expect("valid");
    builder.add_file("disk1", Vec::new()).expect("valid");
    builder.add_file("i386/WinXP/viostor.sys", vec![0x4D; 40_000]).expect("valid");
    builder.add_file("amd64/Win2003/Long Name Driver.inf", "long").expect("valid");
    builder.add_dir("empty").expect("valid");
    let mut bytes = Vec::new();
    builder.write(&mut bytes).expect("writes");
    bytes
}

#[test]
fn floppies_have_the_standard_sizes_and_geometry() {
    for (size, bytes, sectors_per_track) in
        [(FloppySize::Floppy1440K, 1_474_560, 18u16), (FloppySize::Floppy2880K, 2_949_120, 36)]
    {
        let image = sample_floppy(size);
        assert_eq!(image.len(), bytes, "{size:?}");
        assert_eq!(u16::from_le_bytes([image[24], image[25]]), sectors_per_track, "{size:?}");
        assert_eq!(image[21], 0xF0, "media descriptor of a 3.5\" floppy");
        assert_eq!(&image[54..62], b"FAT12   ", "{size:?}");
        assert_eq!(&image[510..512], &[0x55, 0xAA]);
    }
}

#[test]
fn mtools_list_label_and_extract_what_we_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drivers.vfd");
    std::fs::write(&path, sample_floppy(FloppySize::Floppy2880K)).expect("write");
    let listing = run("mdir", &["-i", path_str(&path), "::/"]);
    assert!(listing.contains("Volume in drive : is DRIVERS"), "{listing}");
    for name in ["txtsetup oem", "disk1", "i386", "amd64", "empty"] {
        assert!(listing.to_lowercase().contains(name), "mdir lacks {name}: {listing}");
    }
    let recursive = run("mdir", &["-/", "-b", "-i", path_str(&path), "::/"]);
    assert!(recursive.contains("::/amd64/Win2003/Long Name Driver.inf"), "{recursive}");
    let copied = dir.path().join("viostor.sys");
    run("mcopy", &["-i", path_str(&path), "::/i386/WinXP/viostor.sys", path_str(&copied)]);
    assert_eq!(std::fs::read(&copied).expect("copied"), vec![0x4D; 40_000]);
    let check = run("mdir", &["-i", path_str(&path), "::/i386/WinXP"]);
    assert!(check.contains("40 000") || check.contains("40000"), "{check}");
}

#[test]
fn our_reader_reads_our_floppies_case_insensitively() {
    let image = FloppyImage::from_bytes(sample_floppy(FloppySize::Floppy1440K)).expect("parses");
    assert_eq!(image.volume_id(), "DRIVERS");
    assert_eq!(
        image.files(),
        vec!["/amd64/Win2003/Long Name Driver.inf", "/disk1", "/i386/WinXP/viostor.sys", "/txtsetup.oem"]
    );
    assert_eq!(image.read("/TXTSETUP.OEM"), Some(b"[Disks]\r\n".to_vec()));
    assert_eq!(image.read("/disk1"), Some(Vec::new()));
    assert!(image.exists("/EMPTY"));
    assert!(!image.exists("/missing"));
}

#[test]
fn our_reader_reads_what_mtools_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mformat.img");
    run("mformat", &["-C", "-f", "1440", "-v", "MTOOLSDISK", "-i", path_str(&path), "::"]);
    let source = dir.path().join("Some Long Name.txt");
    std::fs::write(&source, "from mcopy").expect("write");
    run("mmd", &["-i", path_str(&path), "::/folder"]);
    run("mcopy", &["-i", path_str(&path), path_str(&source), "::/folder/"]);
    let medium = open_medium(&path).expect("opens a fat image");
    assert_eq!(medium.volume_id(), "MTOOLSDISK");
    assert_eq!(medium.files(), vec!["/folder/Some Long Name.txt"]);
    assert_eq!(medium.read("/FOLDER/some long name.TXT"), Some(b"from mcopy".to_vec()));
}

#[test]
fn floppy_output_is_deterministic() {
    assert_eq!(sample_floppy(FloppySize::Floppy2880K), sample_floppy(FloppySize::Floppy2880K));
}

#[test]
fn floppy_builder_rejects_bad_labels_names_and_overflow() {
    assert!(FloppyBuilder::new(FloppySize::Floppy1440K, "TWELVE_CHARS", fixed_time()).is_err());
    assert!(FloppyBuilder::new(FloppySize::Floppy1440K, "A/B", fixed_time()).is_err());
    let mut builder = FloppyBuilder::new(FloppySize::Floppy1440K, "OK", fixed_time()).expect("valid");
    assert!(builder.add_file("bad|name", "x").is_err());
    builder.add_file("dup.txt", "x").expect("valid");
    assert!(builder.add_file("DUP.TXT", "y").is_err());
    builder.add_file("huge.bin", vec![0u8; 2_000_000]).expect("added, checked when written");
    let error = builder.write(&mut Vec::new()).expect_err("does not fit").to_string();
    assert!(error.contains("does not fit"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_floppies_parse_or_fail_cleanly(
        mutations in proptest::collection::vec((0usize..16 * 1024, any::<u8>()), 1..24),
    ) {
        let mut bytes = sample_floppy(FloppySize::Floppy1440K);
        for (offset, value) in mutations {
            bytes[offset] = value;
        }
        if let Ok(image) = FloppyImage::from_bytes(bytes) {
            for file in image.files() {
                let _ = image.read(&file);
            }
        }
    }

    #[test]
    fn any_bytes_parse_as_fat_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = FloppyImage::from_bytes(bytes);
    }
}
