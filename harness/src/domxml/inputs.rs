//! Checking several inputs at once, as `isoharness check-xml` does: each input's bytes (or why they could not be
//! read) in, one [`InputsReport`] out, with the exit status the inputs call for. No IO, so tests call it directly.
//!
//! The JSON form (`--format json`) is one object, schema `isoharness.check-xml/1`:
//! `{"schema", "expectation", "deny_warnings", "exit_code", "files": [{"file", "status"
//! ("pass"|"fail"|"unreadable"), "error" (only when unreadable: {"line","column","message"}, no position when the
//! file could not be read), "layout_detected" ("stock"|"patched"|"patched-floppy"|null), "checked_as", "counts"
//! {"error","warning","info"}, "findings": [{"rule","name","severity","line","column","message","help"}]}]}`.
//! `exit_code` is 0 when every input passes, 1 when an input has an error finding (or a warning under
//! `deny_warnings`), 2 when an input cannot be read or parsed; informational findings never fail a check.

use std::path::Path;

use serde::Serialize;

use super::{Counts, Expectation, Finding, LayoutSpec, Report};
use crate::exit::ExitStatus;
use guestsim::Layout;

/// The outcome for one input.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    pub file: String,
    pub status: FileStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<InputError>,
    pub layout_detected: Option<Layout>,
    pub checked_as: Option<String>,
    pub counts: Counts,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Pass,
    Fail,
    Unreadable,
}

/// Why an input could not be checked.
#[derive(Debug, Clone, Serialize)]
pub struct InputError {
    /// Absent when the input could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
}

/// Everything a check of several inputs found, in input order.
#[derive(Debug, Clone, Serialize)]
pub struct InputsReport {
    pub schema: &'static str,
    pub expectation: String,
    pub deny_warnings: bool,
    /// Serialized as the number (0, 1 or 2).
    pub exit_code: ExitStatus,
    pub files: Vec<FileResult>,
}

impl FileResult {
    /// The error line of an input that could not be checked (for stderr), or None when it was checked.
    pub fn render_error(&self) -> Option<String> {
        match &self.error {
            Some(InputError { line: Some(line), column: Some(column), message }) => {
                Some(format!("{}:{line}:{column}: error: cannot check: {message}\n", self.file))
            }
            Some(InputError { message, .. }) => Some(format!("{}: error: {message}\n", self.file)),
            None => None,
        }
    }

    /// The human report of a checked input (rustc-like findings), or None when it could not be checked.
    pub fn render_report(&self, expectation: &str) -> Option<String> {
        if self.error.is_some() {
            return None;
        }
        let report = Report {
            layout_detected: self.layout_detected,
            expectation: expectation.to_string(),
            checked_as: self.checked_as.clone(),
            findings: self.findings.clone(),
        };
        Some(report.render_human(&self.file))
    }
}

impl InputsReport {
    /// Every input's report or error line, in input order (the command sends the error lines to stderr).
    pub fn render_human(&self) -> String {
        self.files
            .iter()
            .filter_map(|file| file.render_error().or_else(|| file.render_report(&self.expectation)))
            .collect()
    }
}

/// Checks already-read inputs `(name, bytes or why they could not be read)`.
pub fn check_inputs(
    inputs: Vec<(String, Result<Vec<u8>, String>)>,
    expect: &Expectation,
    deny_warnings: bool,
) -> InputsReport {
    let mut files = Vec::new();
    let mut exit_code = ExitStatus::Ok;
    for (name, content) in inputs {
        let parsed = content.map_err(|message| InputError { line: None, column: None, message }).and_then(|bytes| {
            super::parse_bytes(&bytes).map_err(|e| {
                let pos = e.pos();
                let full = e.to_string();
                let message = full.strip_prefix(&format!("{pos}: ")).unwrap_or(&full).to_string();
                InputError { line: Some(pos.line), column: Some(pos.column), message }
            })
        });
        let result = match parsed {
            Err(error) => {
                exit_code = exit_code.max(ExitStatus::Usage);
                FileResult {
                    file: name,
                    status: FileStatus::Unreadable,
                    error: Some(error),
                    layout_detected: None,
                    checked_as: None,
                    counts: Counts::default(),
                    findings: Vec::new(),
                }
            }
            Ok(domain) => {
                let report = super::check(&domain, expect);
                let fails = report.fails(deny_warnings);
                if fails {
                    exit_code = exit_code.max(ExitStatus::Findings);
                }
                FileResult {
                    file: name,
                    status: if fails { FileStatus::Fail } else { FileStatus::Pass },
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
    InputsReport {
        schema: "isoharness.check-xml/1",
        expectation: expect.name().to_string(),
        deny_warnings,
        exit_code,
        files,
    }
}

/// Why a layout file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not a layout: {message}")]
    Invalid { path: String, message: String },
}

/// Reads a layout described as data: TOML, or JSON for `.json` files.
pub fn load_layout(path: &Path) -> Result<LayoutSpec, LayoutFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LayoutFileError::Read { path: name.clone(), source })?;
    if path.extension().is_some_and(|e| e == "json") {
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| LayoutFileError::Invalid { path: name, message: e.to_string() })
    } else {
        toml::from_str(&text).map_err(|e| LayoutFileError::Invalid { path: name, message: e.to_string() })
    }
}
