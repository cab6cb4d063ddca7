//! Smoke test of the benchmark: its cheapest part runs and prints the table and the JSON; no timing is asserted.

use std::process::Command;

#[test]
fn quick_waiting_part_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--quick", "--only", "waiting", "--scenarios", scenarios, "--json"])
        .arg(&json)
        .env_remove("ISOHARNESS_REALSTACK_CLOUDS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("measured against (same run)"), "{stdout}");
    assert!(stdout.contains("fixed 2 s poll (Packer)"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let figures = report["figures"].as_array().unwrap();
    assert!(!figures.is_empty());
    for figure in figures {
        assert_eq!(figure["part"], "waiting", "{figure}");
        assert!(figure["unit"].as_str().is_some_and(|u| !u.is_empty()), "{figure}");
        assert!(figure["reference"]["name"].as_str().is_some(), "every waiting figure names its reference: {figure}");
    }
}

#[test]
fn an_unknown_part_is_refused_with_the_known_ones() {
    let output = Command::new(env!("CARGO_BIN_EXE_bench")).args(["--only", "everything"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upload") && stderr.contains("waiting"), "{stderr}");
}
