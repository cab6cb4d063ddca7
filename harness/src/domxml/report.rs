//! Findings and reports: the rule catalogue entry each finding cites, and the human (rustc-like) and JSON renderings.

use guestsim::Layout;
use serde::Serialize;

use super::rules::Rule;
use super::xml::Position;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    /// The layout is wrong: the install or its snapshot will not give an installed image, or libvirt rejects it.
    Error,
    /// Likely a mistake, or a risk for some guests; fails the check only with `--deny warnings`.
    Warning,
    /// A consequence worth knowing (the stock layout's snapshot is the ISO); never fails a check.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One thing wrong (or worth knowing) about a domain, at an element's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. `DX001`.
    pub rule: &'static str,
    /// Stable rule name, e.g. `target-bus-mismatch`.
    pub name: &'static str,
    pub severity: Severity,
    pub line: u32,
    pub column: u32,
    /// One line: what is wrong and why it matters.
    pub message: String,
    /// One line: what to change.
    pub help: String,
}

impl Finding {
    pub fn new(rule: &Rule, pos: Position, message: impl Into<String>, help: impl Into<String>) -> Finding {
        Finding {
            rule: rule.id,
            name: rule.name,
            severity: rule.severity,
            line: pos.line,
            column: pos.column,
            message: message.into(),
            help: help.into(),
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }

    pub fn pos(&self) -> Position {
        Position { line: self.line, column: self.column }
    }
}

/// The outcome of checking one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The built-in layout the domain looks like, whatever was expected.
    pub layout_detected: Option<Layout>,
    /// The expectation as given (`auto`, `patched`, a scenario layout's name).
    pub expectation: String,
    /// The layout the domain was checked against (`auto` resolved); `None` when auto found no layout.
    pub checked_as: Option<String>,
    /// Every finding, sorted by position then rule.
    pub findings: Vec<Finding>,
}

/// How many findings of each severity a report holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub error: usize,
    pub warning: usize,
    pub info: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for finding in &self.findings {
            match finding.severity {
                Severity::Error => counts.error += 1,
                Severity::Warning => counts.warning += 1,
                Severity::Info => counts.info += 1,
            }
        }
        counts
    }

    /// Whether the domain fails: any error, or any warning when warnings are denied.
    pub fn fails(&self, deny_warnings: bool) -> bool {
        let counts = self.counts();
        counts.error > 0 || (deny_warnings && counts.warning > 0)
    }

    /// The ids of the rules that fired, in report order (tests compare these).
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.rule).collect()
    }

    /// rustc-style lines: `FILE:LINE:COL: error[DX001]: message` then `  help: ...`, then a summary line.
    pub fn render_human(&self, file: &str) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{file}:{}:{}: {}[{}]: {}\n  help: {}\n",
                f.line, f.column, f.severity, f.rule, f.message, f.help
            ));
        }
        let counts = self.counts();
        let detected = self.layout_detected.map_or("no known layout", Layout::as_str);
        let checked = self.checked_as.as_deref().unwrap_or("generic rules only");
        out.push_str(&format!(
            "{file}: detected {detected}; checked as {checked}: {} error{}, {} warning{}, {} info\n",
            counts.error,
            plural(counts.error),
            counts.warning,
            plural(counts.warning),
            counts.info
        ));
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
