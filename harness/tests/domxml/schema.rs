//! Cross-check with libvirt's own schema: the whole domains meant to be valid pass `virt-xml-validate FILE domain`.

use std::process::Command;

use crate::support::{GenDomain, GenLayout, case_table, fixture_dir, render};

/// Runs `virt-xml-validate`; a missing tool fails the test (`cargo xtask setup` installs it).
fn validate(path: &std::path::Path) -> Result<(), String> {
    let out = Command::new("virt-xml-validate").arg(path).arg("domain").output().map_err(|e| {
        format!(
            "cannot run virt-xml-validate ({e}): install libvirt-clients and libxml2-utils with `cargo xtask setup`"
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} is not schema-valid:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn valid_fixtures_pass_libvirts_schema() {
    let table = case_table();
    assert!(!table.schema_valid.is_empty());
    let failures: Vec<String> =
        table.schema_valid.iter().filter_map(|name| validate(&fixture_dir().join(name)).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schema_check_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.xml");
    std::fs::write(&path, "<domain type='qemu'><name>x</name><devices><disk device='tape'/></devices></domain>")
        .unwrap();
    assert!(validate(&path).is_err());
}

#[test]
fn generated_whole_domains_pass_libvirts_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let layouts = [
        GenLayout::Stock { ephemeral: true },
        GenLayout::Stock { ephemeral: false },
        GenLayout::Patched,
        GenLayout::PatchedFloppy,
    ];
    for (i, layout) in layouts.into_iter().enumerate() {
        for q35 in [false, true] {
            for per_device_boot in [false, true] {
                let domain = GenDomain::new(layout, q35, true, per_device_boot, true, "disk.eph0");
                let path = dir.path().join(format!("gen-{i}-{q35}-{per_device_boot}.xml"));
                std::fs::write(&path, render(&domain)).unwrap();
                if let Err(e) = validate(&path) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
