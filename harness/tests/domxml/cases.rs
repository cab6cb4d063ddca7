//! The data-driven case table (`fixtures/domxml/cases.toml`): every fixture, checked by one `check` function.

use std::collections::BTreeSet;

use guestsim::Layout;
use harness::domxml::{self, Expectation, ParseError, Position, RULES, Severity};

use crate::support::{Case, case_table, fixture, fixture_dir, layout};

/// Runs one case; returns a description of every difference.
fn check(case: &Case) -> Result<(), String> {
    let expect = match (&case.expect, &case.layout) {
        (Some(name), None) => name.parse::<Expectation>().map_err(|e| format!("{}: {e}", case.file))?,
        (None, Some(file)) => Expectation::Described(layout(file)),
        _ => return Err(format!("{}: give exactly one of expect or layout", case.file)),
    };
    let report = domxml::check_xml(&fixture(&case.file), &expect).map_err(|e| format!("{}: {e}", case.file))?;
    let detected = report.layout_detected.map_or("none", Layout::as_str);
    let actual: Vec<String> =
        report.findings.iter().map(|f| format!("{} {} {}:{}", f.rule, f.severity, f.line, f.column)).collect();
    let mut problems = Vec::new();
    if detected != case.detected {
        problems.push(format!("detected {detected}, expected {}", case.detected));
    }
    if actual != case.findings {
        problems.push(format!("findings {actual:#?}\nexpected {:#?}", case.findings));
    }
    for finding in &report.findings {
        if finding.message.is_empty() || finding.help.is_empty() || finding.message.contains('\n') {
            problems.push(format!(
                "{} at {}:{} needs a one-line message and help",
                finding.rule, finding.line, finding.column
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} (expect {}):\n{}", case.file, expect.name(), problems.join("\n")))
    }
}

#[test]
fn every_case_reports_exactly_its_findings() {
    let table = case_table();
    assert!(table.cases.len() > 40, "the case table looks truncated: {} cases", table.cases.len());
    let failures: Vec<String> = table.cases.iter().filter_map(|c| check(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        table.cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_rule_fires_in_some_case_and_stays_quiet_in_others() {
    let table = case_table();
    let fired: BTreeSet<&str> =
        table.cases.iter().flat_map(|c| c.findings.iter().filter_map(|f| f.split(' ').next())).collect();
    let missing: Vec<&str> = RULES.iter().map(|r| r.id).filter(|id| !fired.contains(id)).collect();
    assert!(missing.is_empty(), "rules no case exercises: {missing:?}");
    let unknown: Vec<&&str> = fired.iter().filter(|id| RULES.iter().all(|r| r.id != **id)).collect();
    assert!(unknown.is_empty(), "cases cite rules that do not exist: {unknown:?}");
    let clean = table.cases.iter().filter(|c| c.findings.is_empty()).count();
    assert!(clean >= 10, "only {clean} cases expect no finding at all");
}

#[test]
fn every_fixture_is_used() {
    let table = case_table();
    let mut used: BTreeSet<String> = table.cases.iter().map(|c| c.file.clone()).collect();
    used.extend(table.cases.iter().filter_map(|c| c.layout.clone()));
    used.extend(MALFORMED.iter().map(|(name, ..)| name.to_string()));
    used.insert("cases.toml".into());
    let unused: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| !used.contains(name))
        .collect();
    assert!(unused.is_empty(), "fixtures no test uses: {unused:?}");
}

/// A domain laid out like the real Nova 34 dumpxml of a stock ISO boot.
#[test]
fn stock_domain_is_recognised_and_its_consequence_reported() {
    let domain = domxml::parse(&fixture("stock-i440fx.xml")).unwrap();
    assert_eq!(domxml::classify(&domain), Some(Layout::Stock));

    let as_patched = domxml::check(&domain, &Expectation::Builtin(Layout::Patched));
    let capture = as_patched.findings.iter().find(|f| f.rule == "DX031").expect("ISO-capture finding");
    assert_eq!(capture.severity, Severity::Error);
    assert!(capture.message.contains("the snapshot will capture the ISO"), "{}", capture.message);
    assert!(as_patched.fails(false));

    let as_stock = domxml::check(&domain, &Expectation::Builtin(Layout::Stock));
    assert!(!as_stock.fails(true), "{:#?}", as_stock.findings);
    let info = as_stock.findings.iter().find(|f| f.rule == "DX031").expect("informational consequence");
    assert_eq!(info.severity, Severity::Info);
    assert!(info.message.contains("the snapshot will capture the ISO"));
}

#[test]
fn listing_1_passes_patched_and_is_recognised_by_auto() {
    let report = domxml::check_xml(&fixture("listing1.xml"), &Expectation::Builtin(Layout::Patched)).unwrap();
    assert_eq!(report.findings, vec![]);
    let auto = domxml::check_xml(&fixture("listing1.xml"), &Expectation::Auto).unwrap();
    assert_eq!(auto.layout_detected, Some(Layout::Patched));
    assert_eq!(auto.checked_as.as_deref(), Some("patched"));
}

#[test]
fn listing_1_model_has_what_the_article_shows() {
    let domain = domxml::parse(&fixture("listing1.xml")).unwrap();
    let summary: Vec<String> = domain
        .disks
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {} ro={} {} @{}",
                d.device,
                d.target_dev().unwrap(),
                d.bus().unwrap(),
                d.source_file_name().unwrap(),
                d.readonly,
                d.address.as_ref().unwrap().value,
                d.pos
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "disk vda virtio disk.newos ro=false pci 0000:00:04.0 @3:1",
            "cdrom hda ide disk ro=true drive controller 0 bus 0 target 0 unit 0 @9:1",
            "cdrom hdb ide disk.virtio ro=true drive controller 0 bus 0 target 0 unit 1 @16:1",
        ]
    );
}

const MALFORMED: &[(&str, u32, u32, &str)] = &[
    ("malformed-unclosed.xml", 5, 1, "expected `</target>`"),
    ("malformed-bad-slot.xml", 5, 3, "slot=\"four\""),
    ("malformed-not-a-domain.xml", 1, 1, "unexpected <network>"),
];

#[test]
fn malformed_documents_are_errors_with_line_and_column() {
    for (name, line, column, text) in MALFORMED {
        let err = domxml::parse(&fixture(name)).expect_err(name);
        assert_eq!(err.pos(), Position { line: *line, column: *column }, "{name}: {err}");
        assert!(err.to_string().contains(text), "{name}: {err}");
    }
}

#[test]
fn inputs_that_are_not_domains_get_clear_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "1:1: no element"),
        (b"<!-- nothing -->\n", "1:1: no element"),
        (b"<disk/>\n<devices/>", "2:1: unexpected <devices>"),
        (b"<disk type='file'>\n  <target dev='vda'/>\n</disk>\ntext", "4:1: malformed XML"),
        (b"<disk>\n\xff</disk>", "2:1: not UTF-8"),
        (b"<disk>&bogus;</disk>", "1:7: malformed XML: unknown entity"),
        (b"<domain><os><loader secure='maybe'/></os></domain>", "1:13: <loader secure=\"maybe\">"),
    ];
    for (input, expected) in cases {
        let err: ParseError = domxml::parse_bytes(input).expect_err(expected);
        assert!(err.to_string().starts_with(expected), "{:?}: got {err}", String::from_utf8_lossy(input));
    }
}

#[test]
fn a_devices_element_and_a_bom_are_accepted() {
    let with_bom = format!("\u{feff}{}", fixture("devices-patched-q35.xml"));
    let domain = domxml::parse_bytes(with_bom.as_bytes()).unwrap();
    assert_eq!(domain.document, domxml::model::DocumentKind::Devices);
    assert_eq!(domain.disks.len(), 3);
    assert_eq!(domain.controllers.len(), 1);
}

#[test]
fn built_in_layouts_round_trip_as_data() {
    for kind in [Layout::Stock, Layout::Patched, Layout::PatchedFloppy] {
        let spec = domxml::LayoutSpec::builtin(kind);
        let json = serde_json::to_string(&spec).unwrap();
        let back: domxml::LayoutSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        let toml_text = toml::to_string(&spec).unwrap();
        let back: domxml::LayoutSpec = toml::from_str(&toml_text).unwrap();
        assert_eq!(back, spec);
    }
    let expectation: Expectation = serde_json::from_str(r#"{"layout": {"name": "x", "devices": []}}"#).unwrap();
    assert_eq!(expectation.name(), "x");
    let expectation: Expectation = serde_json::from_str(r#""patched-floppy""#).unwrap();
    assert_eq!(expectation, Expectation::Builtin(Layout::PatchedFloppy));
    let err =
        toml::from_str::<domxml::LayoutSpec>("name = 'x'\n[[devices]]\nrole = 'root'\nkind = 'tape'\nbus = 'virtio'\n")
            .unwrap_err();
    assert!(err.to_string().contains("tape"), "{err}");
}
