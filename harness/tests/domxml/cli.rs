//! The `isoharness check-xml` binary: exit codes 0/1/2, stdin, JSON output, `--deny warnings`, `--layout NAME` and
//! `--layout-file FILE`, findings on stdout and unreadable inputs on stderr.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::fixture_dir;

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isoharness"))
        .arg("check-xml")
        .args(args)
        .current_dir(fixture_dir())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isoharness runs");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn passing_inputs_exit_0() {
    let out = run(&["listing1.xml", "patched-i440fx.xml", "--layout", "patched"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("listing1.xml: detected patched; checked as patched: 0 errors"));
}

#[test]
fn error_findings_exit_1_in_rustc_style() {
    let out = run(&["stock-i440fx.xml", "--layout", "patched"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("stock-i440fx.xml:26:5: error[DX031]: the first disk is cdrom hda (disk), a CD-ROM"),
        "{text}"
    );
    assert!(text.contains("\n  help: make the blank root disk"), "{text}");
}

#[test]
fn warnings_fail_only_when_denied() {
    let allowed = run(&["patched-installer-boots-first.xml"], None);
    assert_eq!(allowed.status.code(), Some(0));
    assert!(stdout(&allowed).contains("warning[DX023]"));
    let denied = run(&["patched-installer-boots-first.xml", "--deny", "warnings"], None);
    assert_eq!(denied.status.code(), Some(1));
    let info_only = run(&["stock-i440fx.xml", "--layout", "stock", "--deny", "warnings"], None);
    assert_eq!(info_only.status.code(), Some(0), "informational findings never fail");
}

#[test]
fn unreadable_inputs_exit_2_and_the_others_are_still_reported() {
    let out = run(&["malformed-unclosed.xml", "no-such-file.xml", "stock-i440fx.xml", "--layout", "patched"], None);
    assert_eq!(out.status.code(), Some(2));
    // What could not be read is an error (stderr); the findings are the report (stdout).
    let (report, errors) = (stdout(&out), stderr(&out));
    assert!(errors.contains("malformed-unclosed.xml:5:1: error: cannot check: malformed XML"), "{errors}");
    assert!(errors.contains("no-such-file.xml: error: cannot read no-such-file.xml"), "{errors}");
    assert!(report.contains("stock-i440fx.xml:26:5: error[DX031]"), "{report}");
    assert!(!report.contains("cannot"), "{report}");
    assert!(!errors.contains("DX031"), "{errors}");
}

#[test]
fn stdin_is_read_for_a_dash() {
    let listing = std::fs::read(fixture_dir().join("listing1.xml")).unwrap();
    let out = run(&["-", "--layout", "patched"], Some(&listing));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("<stdin>: detected patched"));
    let out = run(&["-"], Some(b"<disk"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("<stdin>:1:1: error: cannot check"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn json_output_follows_the_documented_schema() {
    let out = run(&["stock-i440fx.xml", "malformed-bad-slot.xml", "--layout", "patched", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(json["schema"], "isoharness.check-xml/1");
    assert_eq!(json["exit_code"], 2);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files[0]["status"], "fail");
    assert_eq!(files[0]["layout_detected"], "stock");
    assert_eq!(files[0]["checked_as"], "patched");
    let capture = files[0]["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "DX031").unwrap();
    assert_eq!(capture["name"], "snapshot-captures-iso");
    assert_eq!(capture["severity"], "error");
    assert_eq!((capture["line"].as_u64(), capture["column"].as_u64()), (Some(26), Some(5)));
    assert_eq!(files[1]["status"], "unreadable");
    assert_eq!(files[1]["error"]["line"], 5);
    assert_eq!(files[1]["error"]["column"], 3);
}

#[test]
fn a_layout_file_describes_the_expectation() {
    let out =
        run(&["bad-windows11-bios.xml", "windows11-q35-uefi.xml", "--layout-file", "windows11.layout.toml"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("error[DX045]: the windows11 layout needs TPM 2.0, and the domain has no TPM"), "{text}");
    assert!(text.contains("windows11-q35-uefi.xml: detected patched; checked as windows11: 0 errors"), "{text}");
}

#[test]
fn bad_arguments_exit_2() {
    let out = run(&["listing1.xml", "--layout", "sideways"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown expectation \"sideways\""));
    let out = run(&["listing1.xml", "--layout-file", "no-such.layout.toml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read no-such.layout.toml"), "{}", stderr(&out));
    let out = run(&[], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_layout_is_a_name_as_in_every_other_command_and_expect_still_works() {
    let out = run(&["stock-i440fx.xml", "--expect", "patched"], None);
    assert_eq!(out.status.code(), Some(1), "--expect is an alias of --layout");
    let out = run(&["stock-i440fx.xml", "--layout", "patched", "--layout-file", "windows11.layout.toml"], None);
    assert_eq!(out.status.code(), Some(2), "a name and a file do not mix");
    let help = Command::new(env!("CARGO_BIN_EXE_isoharness")).args(["check-xml", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for text in ["--layout <NAME>", "--layout-file <FILE>", "patched-floppy", "auto"] {
        assert!(help.contains(text), "{text}: {help}");
    }
    assert!(!help.contains("--expect"), "the old spelling stays hidden: {help}");
}
