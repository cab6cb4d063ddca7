//! `isoharness check-xml`: check libvirt domain XML files (or stdin) against an ISO-install layout.
//!
//! Exit codes: 0 when every input passes, 1 when an input has an error finding (or a warning under
//! `--deny warnings`), 2 when an input cannot be read or parsed (the other inputs are still checked
//! and reported). Informational findings never fail a check.
//!
//! JSON output (`--format json`) is one object, schema `isoharness.check-xml/1`:
//! `{"schema", "expectation", "deny_warnings", "exit_code", "files": [{"file", "status"
//! ("pass"|"fail"|"unreadable"), "error" (only when unreadable: {"line","column","message"}, no position when the file could not be read),
//! "layout_detected" ("stock"|"patched"|"patched-floppy"|null), "checked_as", "counts"
//! {"error","warning","info"}, "findings": [{"rule","name","severity","line","column","message","help"}]}]}`.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use guestsim::Layout;
use serde::Serialize;

use crate::cli::exit;
use crate::domxml::{self, Counts, Expectation, Finding, Report};

#[derive(Debug, Args)]
pub struct CheckXmlArgs {
    /// Domain XML files (`virsh dumpxml` output, a `<devices>` element, or `<disk>` fragments); `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The layout to check against: patched, patched-floppy, stock, or auto (recognise it first).
    #[arg(long, default_value = "auto")]
    pub expect: String,
    /// A layout described as data (TOML, or JSON when the name ends in .json); overrides --expect.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Make warnings fail the check too (`--deny warnings`).
    #[arg(long, value_enum)]
    pub deny: Vec<Deny>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deny {
    Warnings,
}

/// The outcome for one input.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    pub file: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<InputError>,
    pub layout_detected: Option<Layout>,
    pub checked_as: Option<String>,
    pub counts: Counts,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputError {
    /// Absent when the input could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
}

/// Everything `check-xml` found, in input order.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub schema: &'static str,
    pub expectation: String,
    pub deny_warnings: bool,
    pub exit_code: u8,
    pub files: Vec<FileResult>,
}

impl Outcome {
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for file in &self.files {
            match &file.error {
                Some(InputError { line: Some(line), column: Some(column), message }) => {
                    out.push_str(&format!("{}:{line}:{column}: error: cannot check: {message}\n", file.file))
                }
                Some(InputError { message, .. }) => out.push_str(&format!("{}: error: {message}\n", file.file)),
                None => {
                    let report = Report {
                        layout_detected: file.layout_detected,
                        expectation: self.expectation.clone(),
                        checked_as: file.checked_as.clone(),
                        findings: file.findings.clone(),
                    };
                    out.push_str(&report.render_human(&file.file));
                }
            }
        }
        out
    }
}

/// Checks already-read inputs `(name, bytes or read error)`; no IO, so tests can call it directly.
pub fn check_inputs(
    inputs: Vec<(String, Result<Vec<u8>, String>)>,
    expect: &Expectation,
    deny_warnings: bool,
) -> Outcome {
    let mut files = Vec::new();
    let mut exit_code = exit::OK;
    for (name, content) in inputs {
        let parsed = content.map_err(|message| InputError { line: None, column: None, message }).and_then(|bytes| {
            domxml::parse_bytes(&bytes).map_err(|e| {
                let pos = e.pos();
                let full = e.to_string();
                let message = full.strip_prefix(&format!("{pos}: ")).unwrap_or(&full).to_string();
                InputError { line: Some(pos.line), column: Some(pos.column), message }
            })
        });
        let result = match parsed {
            Err(error) => {
                exit_code = exit::USAGE;
                FileResult {
                    file: name,
                    status: Status::Unreadable,
                    error: Some(error),
                    layout_detected: None,
                    checked_as: None,
                    counts: Counts::default(),
                    findings: Vec::new(),
                }
            }
            Ok(domain) => {
                let report = domxml::check(&domain, expect);
                let fails = report.fails(deny_warnings);
                if fails && exit_code == exit::OK {
                    exit_code = exit::FINDINGS;
                }
                FileResult {
                    file: name,
                    status: if fails { Status::Fail } else { Status::Pass },
                    error: None,
                    layout_detected: report.layout_detected,
                    counts: report.counts(),
                    checked_as: report.checked_as,
                    findings: report.findings,
                }
            }
        };
        files.push(result);
    }
    Outcome {
        schema: "isoharness.check-xml/1",
        expectation: expect.name().to_string(),
        deny_warnings,
        exit_code,
        files,
    }
}

pub fn run(args: CheckXmlArgs) -> anyhow::Result<u8> {
    let expect = match &args.layout {
        Some(path) => Expectation::Described(load_layout(path)?),
        None => args.expect.parse().map_err(anyhow::Error::msg)?,
    };
    let mut stdin_used = false;
    let inputs = args
        .files
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                let content = if stdin_used {
                    Err("stdin was already read by an earlier `-`".to_string())
                } else {
                    stdin_used = true;
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf).map(|_| buf).map_err(|e| format!("cannot read stdin: {e}"))
                };
                ("<stdin>".to_string(), content)
            } else {
                let name = path.display().to_string();
                let content = std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"));
                (name, content)
            }
        })
        .collect();
    let outcome = check_inputs(inputs, &expect, args.deny.contains(&Deny::Warnings));
    match args.format {
        Format::Human => print!("{}", outcome.render_human()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
    }
    Ok(outcome.exit_code)
}

/// Reads a layout description: TOML, or JSON for `.json` files.
pub fn load_layout(path: &std::path::Path) -> anyhow::Result<domxml::LayoutSpec> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec = if path.extension().is_some_and(|e| e == "json") {
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).with_context(|| format!("{}: not a layout", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{}: not a layout", path.display()))?
    };
    Ok(spec)
}
