//! Scenario parsing: every shipped file loads, and bad files get errors naming file, line and key.

use std::path::Path;

use super::*;

const VALID: &str = r#"
[scenario]
description = "a test guest"

[guest]
name = "Test Linux 1"
family = "linux"
release = "1"
distro = "ubuntu"
arch = "x86_64"
virtio_storage = "built-in"
firmware = "bios"
min_ram_mb = 512
min_disk_gb = 4
install_seconds = 600
boot_seconds = 20
agent = "cloud-init"

[flavor]
ram_mb = 1024
disk_gb = 8
ephemeral_gb = 8

[expect]
patched = "image-ok"
"#;

/// Parses `text` as `test.toml`; on error returns the rendered message.
fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse(Path::new("test.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn valid_file_parses_with_defaults() {
    let s = parse(VALID).unwrap();
    assert_eq!(s.name, "test");
    assert_eq!(s.flavor.vcpus, 1);
    assert_eq!(s.expect.get(&Layout::Patched), Some(&OutcomeKind::ImageOk));
    assert_eq!(s.media.virtio_win_image, "virtio-win");
    assert_eq!(s.image.visibility, "private");
    assert!(s.guest.unattended);
}

/// Each bad input, and the `file:line:column: key: message` prefix its error must start with.
#[test]
fn bad_files_name_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("family = \"linux\"", "family = \"beos\"", "test.toml:7:10: `guest.family`: unknown variant `beos`"),
        ("ram_mb = 1024", "ram_mb = \"lots\"", "test.toml:20:10: `flavor.ram_mb`: invalid type: string \"lots\""),
        (
            "ephemeral_gb = 8",
            "ephemeral_gb = 8\nepehmeral = 2",
            "test.toml:23:1: `flavor.epehmeral`: unknown field `epehmeral`",
        ),
        ("patched = \"image-ok\"", "patched = \"fine\"", "test.toml:25:11: `expect.patched`: unknown variant `fine`"),
        (
            "patched = \"image-ok\"",
            "sideways = \"image-ok\"",
            "test.toml:25:1: `expect.sideways`: unknown layout `sideways`",
        ),
        (
            "disk_gb = 8",
            "disk_gb = 2",
            "test.toml:21:1: `flavor.disk_gb`: 2 GB is less than the guest's min_disk_gb of 4",
        ),
        ("ram_mb = 1024", "ram_mb = 256", "test.toml:20:1: `flavor.ram_mb`: 256 MB is less than"),
        ("[flavor]", "[flavor\n", "test.toml:19:8: "),
        ("min_ram_mb = 512\n", "", "test.toml:5:1: `guest`: missing field `min_ram_mb`"),
    ];
    for (from, to, expected) in cases {
        assert!(VALID.contains(from), "fixture lacks {from:?}");
        let text = VALID.replacen(from, to, 1);
        let err = parse(&text).expect_err(&format!("{to:?} must be rejected"));
        assert!(err.starts_with(expected), "for {to:?}:\n  got      {err}\n  expected {expected}...");
    }
}

#[test]
fn windows_cdrom_guest_needs_its_driver_folder() {
    let text = VALID
        .replace("family = \"linux\"", "family = \"windows\"")
        .replace("virtio_storage = \"built-in\"", "virtio_storage = \"cdrom\"");
    let err = parse(&text).unwrap_err();
    assert!(err.starts_with("test.toml:11:1: `guest.virtio_storage`: a Windows guest"), "{err}");
}

#[test]
fn bad_console_regex_is_located() {
    let text = format!("{VALID}\n[completion]\nsuccess_console = \"(unclosed\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains(":28:1: `completion.success_console`: not a valid regex"), "{err}");
}

#[test]
fn shipped_scenarios_all_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = Scenario::load_dir(&dir)
        .unwrap_or_else(|errors| panic!("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")));
    assert!(scenarios.len() >= 17, "only {} scenarios", scenarios.len());
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\ncé\nx", 0), (1, 1));
    assert_eq!(line_column("ab\ncé\nx", 3), (2, 1));
    assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
    assert_eq!(line_column("ab", 99), (1, 3));
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_the_first_byte_that_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary.toml");
    std::fs::write(&path, b"[scenario]\ndescription = \"ok\\xff\"\n\xfe\xff").unwrap();
    let error = Scenario::load(&path).unwrap_err().to_string();
    assert_eq!(error, format!("{}:3:1: not UTF-8 text: a scenario file is TOML, which is UTF-8", path.display()));
}
