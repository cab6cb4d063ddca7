//! The fuzz oracles on the stable toolchain: every committed seed replayed, then proptest cases built from arbitrary
//! bytes and from mutated seeds. `ISOHARNESS_FUZZ_CASES` sets the case count per target (default 256, which keeps
//! the normal `cargo test` quick); the large runs are opt-in, e.g.
//! `ISOHARNESS_FUZZ_CASES=1000000 cargo test --release -p parser-oracles --test arbitrary_bytes`. The cases come
//! from a seeded generator (`ISOHARNESS_FUZZ_SEED`, default 0), so a run is the same every time and a failure
//! replays: the normal test run never turns red by chance.

use std::path::{Path, PathBuf};

use parser_oracles::{TARGETS, oracle};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = seed_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable seed directory").path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect()
}

fn cases() -> u32 {
    std::env::var("ISOHARNESS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// The generator's seed: `ISOHARNESS_FUZZ_SEED` (a number), 0 by default.
fn rng() -> TestRng {
    let seed: u64 = std::env::var("ISOHARNESS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// A seed with a few bytes overwritten, a few inserted, and perhaps cut short: most of it stays well-formed, so the
/// parser gets past its first checks, which uniformly random bytes rarely do.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    (
        0..count,
        proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 0..12),
        proptest::option::weighted(0.2, any::<usize>()),
    )
        .prop_map(move |(which, edits, cut)| {
            let mut data = seeds[which].clone();
            for (at, byte, insert) in edits {
                let at = at % (data.len() + 1);
                if insert || at == data.len() {
                    data.insert(at, byte);
                } else {
                    data[at] = byte;
                }
            }
            if let Some(cut) = cut {
                data.truncate(cut % (data.len() + 1));
            }
            data
        })
}

fn run(target: &str) {
    let check = oracle(target).expect("a target of TARGETS");
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "{target}: no committed seeds in {}", seed_dir(target).display());
    for seed in &seeds {
        check(seed);
    }
    let strategy = prop_oneof![proptest::collection::vec(any::<u8>(), 0..4096), mutated(seeds)];
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng());
    let outcome = runner.run(&strategy, |data| {
        check(&data);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{target}: {failure}");
    }
}

#[test]
fn every_target_is_tested_here() {
    let here = include_str!("arbitrary_bytes.rs");
    for (target, _) in TARGETS {
        assert!(here.contains(&format!("fn {target}()")), "{target} has no test in this file");
    }
}

#[test]
fn domain_xml() {
    run("domain_xml");
}

#[test]
fn scenario_toml() {
    run("scenario_toml");
}

#[test]
fn cloud_config() {
    run("cloud_config");
}

#[test]
fn image_inspect() {
    run("image_inspect");
}

#[test]
fn iso9660() {
    run("iso9660");
}

#[test]
fn fat_floppy() {
    run("fat_floppy");
}

#[test]
fn qcow2_reader() {
    run("qcow2_reader");
}

#[test]
fn glance_list_query() {
    run("glance_list_query");
}

#[test]
fn glance_patch() {
    run("glance_patch");
}

#[test]
fn nova_request() {
    run("nova_request");
}

#[test]
fn nova_query() {
    run("nova_query");
}
