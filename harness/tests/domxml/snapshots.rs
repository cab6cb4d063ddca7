//! insta snapshots of the human and JSON reports (under the root `snapshots/domxml/`), UUIDs redacted.

use guestsim::Layout;
use harness::domxml::{Expectation, InputsReport, check_inputs};

use crate::support::{fixture, layout};

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/domxml"));
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]");
    settings
}

fn outcome(files: &[&str], expect: &Expectation) -> InputsReport {
    let inputs = files.iter().map(|f| (f.to_string(), Ok(fixture(f).into_bytes()))).collect();
    check_inputs(inputs, expect, false)
}

/// (snapshot name, files, expectation): one human and one JSON snapshot each.
fn scenarios() -> Vec<(&'static str, Vec<&'static str>, Expectation)> {
    vec![
        ("stock-as-patched", vec!["stock-i440fx.xml"], Expectation::Builtin(Layout::Patched)),
        ("stock-as-stock", vec!["stock-i440fx.xml", "stock-q35.xml"], Expectation::Builtin(Layout::Stock)),
        ("listing1-auto", vec!["listing1.xml"], Expectation::Auto),
        ("ide-on-q35", vec!["bad-ide-on-q35.xml"], Expectation::Auto),
        ("source-names", vec!["bad-source-name.xml", "bad-format.xml"], Expectation::Builtin(Layout::Patched)),
        ("windows11-bios", vec!["bad-windows11-bios.xml"], Expectation::Described(layout("windows11.layout.toml"))),
        ("malformed-and-good", vec!["malformed-unclosed.xml", "listing1.xml"], Expectation::Builtin(Layout::Patched)),
    ]
}

#[test]
fn human_reports() {
    settings().bind(|| {
        for (name, files, expect) in scenarios() {
            insta::assert_snapshot!(format!("{name}.human"), outcome(&files, &expect).render_human());
        }
    });
}

#[test]
fn json_reports() {
    settings().bind(|| {
        for (name, files, expect) in scenarios() {
            insta::assert_json_snapshot!(format!("{name}.json"), outcome(&files, &expect));
        }
    });
}
