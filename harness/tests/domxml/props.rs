//! Properties: generated valid layouts pass, each rule-breaking mutation is caught by its rule, and no input makes the parser panic.

use guestsim::Layout;
use harness::domxml::{self, Expectation, Severity};
use proptest::prelude::*;

use crate::support::{GenAddress, GenDomain, GenLayout, fixture, render};

fn gen_layout() -> impl Strategy<Value = GenLayout> {
    prop_oneof![
        any::<bool>().prop_map(|ephemeral| GenLayout::Stock { ephemeral }),
        Just(GenLayout::Patched),
        Just(GenLayout::PatchedFloppy),
    ]
}

fn gen_domain() -> impl Strategy<Value = (GenLayout, GenDomain)> {
    (
        gen_layout(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["disk.eph0", "disk.local"]),
    )
        .prop_map(|(layout, q35, whole, per_device_boot, with_addresses, eph)| {
            (layout, GenDomain::new(layout, q35, whole, per_device_boot, with_addresses, eph))
        })
}

fn kind(layout: GenLayout) -> Layout {
    match layout {
        GenLayout::Stock { .. } => Layout::Stock,
        GenLayout::Patched => Layout::Patched,
        GenLayout::PatchedFloppy => Layout::PatchedFloppy,
    }
}

fn expectation(kind: Layout) -> Expectation {
    Expectation::Builtin(kind)
}

/// A single change that breaks one rule, and the rule that must catch it.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    VirtioTargetOnIde,
    CdromWritable,
    DuplicateTarget,
    SwapFirstTwoDisks,
    DropDriversCdrom,
    DropFloppy,
    UnknownCache,
    IsoOpenedAsQcow2,
    DuplicateDriveAddress,
    DuplicatePciAddress,
    IdeOnQ35,
    RootReadonly,
}

const MUTATIONS: [Mutation; 12] = [
    Mutation::VirtioTargetOnIde,
    Mutation::CdromWritable,
    Mutation::DuplicateTarget,
    Mutation::SwapFirstTwoDisks,
    Mutation::DropDriversCdrom,
    Mutation::DropFloppy,
    Mutation::UnknownCache,
    Mutation::IsoOpenedAsQcow2,
    Mutation::DuplicateDriveAddress,
    Mutation::DuplicatePciAddress,
    Mutation::IdeOnQ35,
    Mutation::RootReadonly,
];

/// Applies the mutation when it makes sense for this domain; returns the rule that must fire.
fn mutate(layout: GenLayout, domain: &mut GenDomain, mutation: Mutation) -> Option<&'static str> {
    let patched = !matches!(layout, GenLayout::Stock { .. });
    let cdrom = domain.disks.iter().position(|d| d.device == "cdrom")?;
    match mutation {
        Mutation::VirtioTargetOnIde => {
            let disk = domain.disks.iter_mut().find(|d| d.bus == "virtio")?;
            disk.bus = "ide";
            disk.address = None;
            Some("DX001")
        }
        Mutation::CdromWritable => {
            domain.disks[cdrom].readonly = false;
            Some("DX010")
        }
        Mutation::DuplicateTarget => {
            let first = domain.disks.first()?.clone();
            let other = domain.disks.len().checked_sub(1).filter(|&last| last > 0)?;
            domain.disks[other].dev = first.dev.clone();
            domain.disks[other].bus = first.bus;
            domain.disks[other].address = None;
            Some("DX002")
        }
        Mutation::SwapFirstTwoDisks if patched => {
            domain.disks.swap(0, 1);
            Some("DX031")
        }
        Mutation::DropDriversCdrom if patched => {
            domain.disks.retain(|d| d.file != "disk.virtio");
            Some("DX036")
        }
        Mutation::DropFloppy if layout == GenLayout::PatchedFloppy => {
            domain.disks.retain(|d| d.device != "floppy");
            Some("DX038")
        }
        Mutation::UnknownCache => {
            domain.cache = "fastest";
            Some("DX013")
        }
        Mutation::IsoOpenedAsQcow2 => {
            domain.disks[cdrom].file = "ubuntu-24.04.iso".into();
            Some("DX011")
        }
        Mutation::DuplicateDriveAddress if domain.with_addresses => {
            let second = domain.disks.iter().rposition(|d| d.device == "cdrom").filter(|&i| i != cdrom)?;
            domain.disks[second].address = domain.disks[cdrom].address;
            Some("DX004")
        }
        Mutation::DuplicatePciAddress if domain.with_addresses => {
            let pci = domain.disks.iter().position(|d| matches!(d.address, Some(GenAddress::Pci { .. })))?;
            let mut copy = domain.disks[pci].clone();
            copy.dev = "vdz".into();
            copy.file = "disk.eph1".into();
            copy.boot = None;
            domain.disks.push(copy);
            Some("DX003")
        }
        Mutation::IdeOnQ35 if domain.q35 && domain.whole_domain => {
            let disk = &mut domain.disks[cdrom];
            disk.bus = "ide";
            disk.dev = "hdc".into();
            disk.address = None;
            Some("DX005")
        }
        Mutation::RootReadonly if patched => {
            domain.disks[0].readonly = true;
            Some("DX033")
        }
        _ => None,
    }
}

fn all_domains() -> Vec<(GenLayout, GenDomain)> {
    let mut all = Vec::new();
    for layout in [
        GenLayout::Stock { ephemeral: true },
        GenLayout::Stock { ephemeral: false },
        GenLayout::Patched,
        GenLayout::PatchedFloppy,
    ] {
        for bits in 0..32u32 {
            let eph = if bits & 16 == 0 { "disk.eph0" } else { "disk.local" };
            all.push((layout, GenDomain::new(layout, bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0, eph)));
        }
    }
    all
}

/// Every mutation on every generated layout it applies to (deterministic, complements the random properties).
#[test]
fn every_mutation_is_caught_wherever_it_applies() {
    let mut applied = std::collections::BTreeMap::new();
    let mut misses = Vec::new();
    for (layout, domain) in all_domains() {
        for mutation in MUTATIONS {
            let mut mutated = domain.clone();
            let Some(rule) = mutate(layout, &mut mutated, mutation) else { continue };
            *applied.entry(format!("{mutation:?}")).or_insert(0) += 1;
            let xml = render(&mutated);
            let report = match domxml::parse(&xml) {
                Ok(parsed) => domxml::check(&parsed, &expectation(kind(layout))),
                Err(e) => {
                    misses.push(format!("{mutation:?}: {e}"));
                    continue;
                }
            };
            if !report.findings.iter().any(|f| f.rule == rule && f.severity == Severity::Error) {
                misses.push(format!("{mutation:?} on {layout:?} did not fire {rule}: {:?}\n{xml}", report.rule_ids()));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n\n"));
    assert_eq!(applied.len(), MUTATIONS.len(), "mutations that never applied: {applied:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_valid_layouts_pass((layout, domain) in gen_domain()) {
        let xml = render(&domain);
        let parsed = domxml::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        let want = kind(layout);
        prop_assert_eq!(domxml::classify(&parsed), Some(want), "{}", xml);
        for expect in [expectation(want), Expectation::Auto] {
            let report = domxml::check(&parsed, &expect);
            let failing: Vec<_> = report.findings.iter().filter(|f| f.severity != Severity::Info).collect();
            prop_assert!(failing.is_empty(), "{:#?}\n{}", failing, xml);
        }
    }

    #[test]
    fn each_rule_breaking_mutation_is_caught_by_its_rule(
        (layout, mut domain) in gen_domain(),
        mutation in prop::sample::select(MUTATIONS.to_vec()),
    ) {
        let Some(rule) = mutate(layout, &mut domain, mutation) else { return Ok(()) };
        let xml = render(&domain);
        let parsed = domxml::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        let report = domxml::check(&parsed, &expectation(kind(layout)));
        prop_assert!(
            report.findings.iter().any(|f| f.rule == rule && f.severity == Severity::Error),
            "{:?} should fire {} but the report is {:#?}\n{}", mutation, rule, report.findings, xml
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(domain) = domxml::parse_bytes(&bytes) {
            let _ = domxml::check(&domain, &Expectation::Auto);
        }
    }

    #[test]
    fn xml_shaped_noise_never_panics(pieces in prop::collection::vec(prop::sample::select(vec![
        "<disk", "<domain>", "</domain>", "<devices>", "</devices>", "</disk>", ">", "/>", " device='cdrom'", " type='pci'",
        "<target dev='", "hda", "' bus='ide'/>", "<address type='drive' unit='", "<boot order='", "0x", "9999999999",
        "'", "\"", "&amp;", "&#0;", "&#x110000;", "<!--", "-->", "<![CDATA[", "]]>", "<?xml version='1.0'?>", "\n", "é",
    ]), 0..40)) {
        let text: String = pieces.concat();
        if let Ok(domain) = domxml::parse(&text) {
            for expect in [Expectation::Auto, Expectation::Builtin(Layout::Stock), Expectation::Builtin(Layout::Patched), Expectation::Builtin(Layout::PatchedFloppy)] {
                let _ = domxml::check(&domain, &expect);
            }
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        file in prop::sample::select(vec!["listing1.xml", "stock-i440fx.xml", "windows11-q35-uefi.xml", "bad-boot-conflict.xml", "devices-patched-q35.xml"]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, any::<prop::sample::Index>(), "[<>/='\"a-z0-9 &;#x]{0,6}"), 1..6),
    ) {
        let mut bytes = fixture(file).into_bytes();
        for (at, op, other, text) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            let j = other.index(bytes.len());
            let (lo, hi) = (i.min(j), i.max(j));
            match op {
                0 => { bytes.drain(lo..hi.min(lo + 40)); }
                1 => { bytes.splice(i..i, text.bytes()); }
                2 => { let piece: Vec<u8> = bytes[lo..hi.min(lo + 80)].to_vec(); bytes.splice(j..j, piece); }
                _ => { bytes[i] = text.bytes().next().unwrap_or(b'<'); }
            }
        }
        if let Ok(domain) = domxml::parse_bytes(&bytes) {
            for expect in [Expectation::Auto, Expectation::Builtin(Layout::Stock), Expectation::Builtin(Layout::Patched), Expectation::Builtin(Layout::PatchedFloppy)] {
                let report = domxml::check(&domain, &expect);
                for f in &report.findings {
                    prop_assert!(f.line >= 1 && f.column >= 1);
                }
            }
        }
    }
}
