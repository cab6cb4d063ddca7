//! The matrix report, for people (table, markdown, one self-contained html page) and for CI
//! (JSON, JUnit XML).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::twin::{Agreement, Observed, TwinComparison};
use guestsim::{Layout, Outcome, OutcomeKind};
use serde::{Deserialize, Serialize};

/// One (scenario, layout) cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub scenario: String,
    pub guest: String,
    pub reconstruction: bool,
    pub layout: Layout,
    /// Derived from the guest facts and the layout's devices, with why the rules expect it.
    pub expected: Outcome,
    /// What the scenario file pinned, if anything.
    pub pinned: Option<OutcomeKind>,
    /// What the run produced; None when it could not run to a conclusion.
    pub observed: Option<OutcomeKind>,
    pub reason: String,
    pub evidence: Vec<String>,
    /// Domain XML validator findings (rule ids and messages) for the install server.
    pub xml_findings: Vec<String>,
    pub wall_seconds: f64,
    pub virtual_seconds: f64,
    pub api_calls: usize,
    /// Why the cell was not run on this hypervisor (`matrix --media generated` on a real cloud: the tiny installer
    /// does not stand for the guest); such a cell is neither passed nor failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_runnable: Option<String>,
    /// A real hypervisor's cell compared with the same cell on an embedded mockstack (`matrix --twin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<TwinComparison>,
    /// What the build saw (console, snapshot content, domain XML), for the comparison.
    #[serde(skip)]
    pub observed_by: Observed,
}

impl Cell {
    /// A cell passes when it ran, matched the derivation, and any pin agrees with both. A cell that was not runnable
    /// does not pass (nor fail: see [`Cell::judged`]).
    pub fn passed(&self) -> bool {
        self.judged()
            && self.observed == Some(self.expected.kind)
            && self.pinned.is_none_or(|p| p == self.expected.kind)
            && self.twin.as_ref().is_none_or(|t| t.agreement == Agreement::Agrees)
    }

    /// Whether the cell says anything about the guest: false when it was not runnable on this hypervisor.
    pub fn judged(&self) -> bool {
        self.not_runnable.is_none()
    }

    /// Why a judged cell failed; `None` for a cell that passed or was not runnable.
    pub fn problem(&self) -> Option<String> {
        if !self.judged() {
            return None;
        }
        let expected = self.expected.kind;
        if let Some(p) = self.pinned
            && p != expected
        {
            return Some(format!("pinned {p} but the rules derive {expected}"));
        }
        match self.observed {
            None => Some(format!("did not finish: {}", self.reason)),
            Some(o) if o != expected => Some(format!("observed {o}, expected {expected}: {}", self.reason)),
            Some(_) => self
                .twin
                .as_ref()
                .filter(|t| t.agreement == Agreement::Differs)
                .map(|t| format!("differs from mockstack: {}", t.differences.join("; "))),
        }
    }

    /// `agrees`/`differs` with mockstack, for a real cell compared with its twin.
    fn twin_word(&self) -> Option<&'static str> {
        self.twin.as_ref().map(|t| t.agreement.into())
    }

    fn mark(&self) -> String {
        if !self.judged() {
            return "–".into();
        }
        let symbol = match self.observed {
            Some(OutcomeKind::ImageOk) => "✔",
            Some(OutcomeKind::IsoCopy) => "✘ iso",
            Some(OutcomeKind::NoTargetDisk) => "✘ disk",
            Some(OutcomeKind::Rejected) => "⊘",
            Some(OutcomeKind::NeedsConsole) => "✘ console",
            Some(OutcomeKind::InstallFailed) => "✘ failed",
            Some(OutcomeKind::TimedOut) => "✘ time",
            None => "?",
        };
        let twin = match self.twin.as_ref().map(|t| t.agreement) {
            Some(Agreement::Agrees) => " =",
            Some(Agreement::Differs) => " ≠",
            None => "",
        };
        if self.passed() { format!("{symbol}{twin}") } else { format!("{symbol}{twin} (!)") }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixReport {
    /// `mockstack` or the cloud's name.
    pub cloud: String,
    pub layouts: Vec<Layout>,
    /// On a real cloud: the one layout, and whether it was given or recognised (`--layout auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout_used: Option<crate::workflow::LayoutUsed>,
    pub cells: Vec<Cell>,
    pub wall_seconds: f64,
}

/// The renderings of a [`MatrixReport`] (`isoharness matrix --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MatrixFormat {
    Table,
    Json,
    Junit,
    Markdown,
    Html,
}

impl MatrixReport {
    /// Whether every judged cell passed; cells not runnable on this hypervisor are not looked at.
    pub fn passed(&self) -> bool {
        self.cells.iter().filter(|c| c.judged()).all(Cell::passed)
    }

    /// How many cells were judged (ran, or were meant to run, on this hypervisor).
    pub fn judged(&self) -> usize {
        self.cells.iter().filter(|c| c.judged()).count()
    }

    /// The cells not runnable on this hypervisor.
    pub fn not_runnable(&self) -> usize {
        self.cells.len() - self.judged()
    }

    fn scenarios(&self) -> Vec<(&str, &str, bool)> {
        let mut seen = BTreeSet::new();
        self.cells
            .iter()
            .filter(|c| seen.insert(c.scenario.as_str()))
            .map(|c| (c.scenario.as_str(), c.guest.as_str(), c.reconstruction))
            .collect()
    }

    fn cell(&self, scenario: &str, layout: Layout) -> Option<&Cell> {
        self.cells.iter().find(|c| c.scenario == scenario && c.layout == layout)
    }

    pub fn summary(&self) -> String {
        let judged = self.judged();
        let failed = self.cells.iter().filter(|c| c.judged() && !c.passed()).count();
        let not_runnable = match self.not_runnable() {
            0 => String::new(),
            n => format!(", {n} not runnable here"),
        };
        let rate = if self.wall_seconds > 0.0 { judged as f64 / self.wall_seconds } else { 0.0 };
        format!(
            "{} cells ({} scenarios × {} layouts) on {}: {} as expected, {} not{not_runnable}, in {:.2}s ({:.0} cells/s)",
            self.cells.len(),
            self.scenarios().len(),
            self.layouts.len(),
            self.cloud,
            judged - failed,
            failed,
            self.wall_seconds,
            rate
        )
    }

    pub fn render(&self, format: MatrixFormat) -> String {
        match format {
            MatrixFormat::Table => self.table(),
            MatrixFormat::Json => serde_json::to_string_pretty(self).expect("reports serialize") + "\n",
            MatrixFormat::Junit => self.junit(),
            MatrixFormat::Markdown => self.markdown(),
            MatrixFormat::Html => self.html(),
        }
    }

    fn table(&self) -> String {
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        let mut header = vec!["guest OS".to_string()];
        header.extend(self.layouts.iter().map(|l| l.to_string()));
        table.set_header(header);
        for (scenario, guest, reconstruction) in self.scenarios() {
            let mut row = vec![if reconstruction { format!("{guest} *") } else { guest.to_string() }];
            for layout in &self.layouts {
                row.push(self.cell(scenario, *layout).map(Cell::mark).unwrap_or_default());
            }
            table.add_row(row);
        }
        let mut out = format!("{table}\n");
        // Attended installs, failures and timeouts are rare in a matrix: their legend entries show only where a cell
        // has them.
        let seen = |kind: OutcomeKind| self.cells.iter().any(|c| c.expected.kind == kind || c.observed == Some(kind));
        let legend = [
            (OutcomeKind::ImageOk, "✔ image-ok", true),
            (OutcomeKind::IsoCopy, "✘ iso: iso-copy", true),
            (OutcomeKind::NoTargetDisk, "✘ disk: no-target-disk", true),
            (OutcomeKind::NeedsConsole, "✘ console: needs-console", false),
            (OutcomeKind::InstallFailed, "✘ failed: install-failed", false),
            (OutcomeKind::TimedOut, "✘ time: timed-out", false),
            (OutcomeKind::Rejected, "⊘ rejected", true),
        ];
        for (kind, entry, always) in legend {
            if always || seen(kind) {
                out.push_str(entry);
                out.push_str("   ");
            }
        }
        out.push_str("(!) differs from the expectation\n");
        if self.not_runnable() > 0 {
            out.push_str("– not runnable on this hypervisor (the tiny installer does not stand for the guest)\n");
        }
        if self.cells.iter().any(|c| c.twin.is_some()) {
            out.push_str("= agrees with the same cell on an embedded mockstack   ≠ differs from it\n");
        }
        out.push_str(
            "* a row of the article's Table 1, reconstructed from the installer rules (the original is lost)\n",
        );
        for cell in self.cells.iter().filter(|c| c.judged() && !c.passed()) {
            let _ =
                writeln!(out, "MISMATCH {} on {}: {}", cell.scenario, cell.layout, cell.problem().unwrap_or_default());
        }
        if let Some(used) = &self.layout_used {
            let _ = writeln!(out, "layout: {used}");
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| guest OS |");
        for l in &self.layouts {
            let _ = write!(out, " {l} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(self.layouts.len()));
        out.push('\n');
        for (scenario, guest, reconstruction) in self.scenarios() {
            let _ = write!(out, "| {guest}{} |", if reconstruction { " \\*" } else { "" });
            for layout in &self.layouts {
                let cell = self.cell(scenario, *layout);
                let text = cell
                    .map(|c| {
                        if !c.judged() {
                            return "not runnable".to_string();
                        }
                        let observed = c.observed.map(|o| o.to_string()).unwrap_or_else(|| "error".into());
                        let observed = match c.twin_word() {
                            Some(word) => format!("{observed}, {word}"),
                            None => observed,
                        };
                        if c.passed() { observed } else { format!("**{observed}** (expected {})", c.expected.kind) }
                    })
                    .unwrap_or_default();
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push_str("\n\\* reconstructed row of the article's Table 1 (the original is lost)\n\n");
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    fn junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
        let mut report = Report::new("isoharness-matrix");
        for layout in &self.layouts {
            let mut suite = TestSuite::new(format!("matrix.{layout}"));
            for cell in self.cells.iter().filter(|c| c.layout == *layout) {
                let status = if let Some(why) = &cell.not_runnable {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("not runnable on this hypervisor: {why}"));
                    s
                } else if cell.passed() {
                    TestCaseStatus::success()
                } else {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(cell.problem().unwrap_or_default());
                    s.set_description(cell.evidence.join("\n"));
                    s
                };
                let mut case = TestCase::new(format!("{}::{layout}", cell.scenario), status);
                case.set_classname(format!("isoharness.matrix.{layout}"));
                case.set_time(std::time::Duration::from_secs_f64(cell.wall_seconds.max(0.0)));
                let mut out = format!(
                    "expected {} ({}); observed {}; {}",
                    cell.expected.kind,
                    cell.expected.reason,
                    cell.observed.map(|o| o.to_string()).unwrap_or_else(|| "nothing".into()),
                    cell.reason
                );
                if let Some(twin) = &cell.twin {
                    out.push_str(&twin.render_text());
                }
                case.set_system_out(out);
                suite.add_test_case(case);
            }
            report.add_test_suite(suite);
        }
        report.to_string().unwrap_or_else(|e| format!("<!-- cannot render JUnit XML: {e} -->\n"))
    }

    fn html(&self) -> String {
        let mut out = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>isoharness matrix</title>\n<style>\
             body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
             .image-ok{background:#dfd}.iso-copy{background:#fdd}.no-target-disk{background:#fed}.rejected{background:#eee}.needs-console{background:#eef}.install-failed{background:#fcc}.timed-out{background:#ffd}\
             .not-runnable{background:#fff;color:#888}.differs{outline:3px solid #c00}</style></head><body>\n<h1>Guest-OS matrix</h1>\n",
        );
        let _ = writeln!(out, "<p>{}</p>", escape(&self.summary()));
        out.push_str("<table><tr><th>guest OS</th>");
        for l in &self.layouts {
            let _ = write!(out, "<th>{l}</th>");
        }
        out.push_str("</tr>\n");
        for (scenario, guest, reconstruction) in self.scenarios() {
            let _ = write!(out, "<tr><th>{}{}</th>", escape(guest), if reconstruction { " *" } else { "" });
            for layout in &self.layouts {
                match self.cell(scenario, *layout) {
                    Some(c) if !c.judged() => {
                        let _ = write!(
                            out,
                            "<td class=\"not-runnable\" title=\"{}\">not runnable</td>",
                            escape(c.not_runnable.as_deref().unwrap_or_default())
                        );
                    }
                    Some(c) => {
                        let observed = c.observed.map(|o| o.to_string()).unwrap_or_else(|| "error".into());
                        let class = if c.passed() { observed.clone() } else { format!("{observed} differs") };
                        let mut title = format!("expected {}: {}. {}", c.expected.kind, c.expected.reason, c.reason);
                        let mut text = observed;
                        if let Some(twin) = &c.twin {
                            title.push_str(&twin.render_text());
                            text = format!("{text}<br><small>{}</small>", twin.agreement);
                        }
                        let _ = write!(out, "<td class=\"{class}\" title=\"{}\">{text}</td>", escape(&title));
                    }
                    None => out.push_str("<td></td>"),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n<p>* a row of the article's Table 1, reconstructed from the installer rules (the original is lost).</p>\n</body></html>\n");
        out
    }
}

/// A matrix JSON report (`isoharness matrix --format json`) read from `path`; an error names the file and the line
/// and column serde stopped at.
pub fn parse_report(path: &Path, text: &str) -> Result<MatrixReport, String> {
    serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        let message = message.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&message);
        format!(
            "{}:{line}:{column}: not a matrix JSON report (`isoharness matrix --format json`): {message}",
            path.display()
        )
    })
}

/// One matrix from several reports (`isoharness report merge`): every input's cells, one column per layout, the
/// clouds of all inputs named (each with the layout it used, where it recorded one), the wall times summed. The same
/// (scenario, layout) cell in two inputs is an error naming both files.
pub fn merge(inputs: Vec<(PathBuf, MatrixReport)>) -> Result<MatrixReport, String> {
    let mut cells: Vec<(Cell, usize)> = Vec::new();
    let mut layouts: Vec<Layout> = Vec::new();
    let mut clouds: Vec<String> = Vec::new();
    let mut wall_seconds = 0.0;
    let single = inputs.len() == 1;
    let mut layout_used = None;
    for (index, (path, report)) in inputs.iter().enumerate() {
        for cell in &report.cells {
            if let Some((_, first)) = cells.iter().find(|(c, _)| c.scenario == cell.scenario && c.layout == cell.layout)
            {
                return Err(format!(
                    "the cell {} on {} is in both {} and {}: merge reports of different layouts or scenarios",
                    cell.scenario,
                    cell.layout,
                    inputs[*first].0.display(),
                    path.display()
                ));
            }
            cells.push((cell.clone(), index));
        }
        layouts.extend(report.layouts.iter().filter(|l| !layouts.contains(l)).copied().collect::<Vec<_>>());
        let cloud = match &report.layout_used {
            Some(used) if !single => format!("{} [{used}]", report.cloud),
            _ => report.cloud.clone(),
        };
        if !clouds.contains(&cloud) {
            clouds.push(cloud);
        }
        wall_seconds += report.wall_seconds;
        if single {
            layout_used.clone_from(&report.layout_used);
        }
    }
    layouts.sort();
    let mut cells: Vec<Cell> = cells.into_iter().map(|(c, _)| c).collect();
    cells.sort_by(|a, b| (a.scenario.as_str(), a.layout).cmp(&(b.scenario.as_str(), b.layout)));
    Ok(MatrixReport { cloud: clouds.join(" + "), layouts, layout_used, cells, wall_seconds })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(scenario: &str, layout: Layout, expected: OutcomeKind, observed: Option<OutcomeKind>) -> Cell {
        Cell {
            scenario: scenario.into(),
            guest: format!("Guest {scenario}"),
            reconstruction: scenario.starts_with('r'),
            layout,
            expected: Outcome::new(expected, "rule"),
            pinned: None,
            observed,
            reason: String::new(),
            evidence: vec![],
            xml_findings: vec![],
            wall_seconds: 0.01,
            virtual_seconds: 900.0,
            api_calls: 30,
            not_runnable: None,
            twin: None,
            observed_by: Observed::default(),
        }
    }

    fn report() -> MatrixReport {
        MatrixReport {
            cloud: "mockstack".into(),
            layouts: vec![Layout::Stock, Layout::Patched],
            layout_used: None,
            cells: vec![
                cell("rhel", Layout::Stock, OutcomeKind::IsoCopy, Some(OutcomeKind::IsoCopy)),
                cell("rhel", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::ImageOk)),
                cell("win", Layout::Stock, OutcomeKind::NoTargetDisk, Some(OutcomeKind::NoTargetDisk)),
                cell("win", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::IsoCopy)),
            ],
            wall_seconds: 0.5,
        }
    }

    #[test]
    fn a_cell_fails_when_observation_or_pin_disagrees() {
        let mut c = cell("x", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::ImageOk));
        assert!(c.passed());
        c.pinned = Some(OutcomeKind::IsoCopy);
        assert_eq!(c.problem().unwrap(), "pinned iso-copy but the rules derive image-ok");
        c.pinned = None;
        c.observed = None;
        c.reason = "timeout".into();
        assert_eq!(c.problem().unwrap(), "did not finish: timeout");
        assert!(!report().passed());
    }

    #[test]
    fn an_attended_install_is_compared_as_needs_console_not_as_rejected() {
        let mut c = cell("attended", Layout::Patched, OutcomeKind::NeedsConsole, Some(OutcomeKind::NeedsConsole));
        assert!(c.passed(), "{:?}", c.problem());
        c.observed = Some(OutcomeKind::Rejected);
        assert_eq!(c.problem().unwrap(), "observed rejected, expected needs-console: ");
        let r = MatrixReport {
            cloud: "mockstack".into(),
            layouts: vec![Layout::Patched],
            layout_used: None,
            cells: vec![c],
            wall_seconds: 0.1,
        };
        let table = r.render(MatrixFormat::Table);
        assert!(table.contains("✘ console: needs-console"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&r.render(MatrixFormat::Json)).unwrap();
        assert_eq!(json["cells"][0]["expected"]["kind"], "needs-console");
        assert_eq!(json["cells"][0]["expected"]["reason"], "rule");
        assert!(!report().render(MatrixFormat::Table).contains("needs-console"), "the legend shows it only when used");
    }

    #[test]
    fn every_format_names_every_cell_and_flags_the_mismatch() {
        let r = report();
        let table = r.render(MatrixFormat::Table);
        assert!(table.contains("MISMATCH win on patched: observed iso-copy, expected image-ok"), "{table}");
        assert!(table.contains("Guest rhel *"));
        assert!(
            r.render(MatrixFormat::Markdown)
                .contains("| Guest win | no-target-disk | **iso-copy** (expected image-ok) |")
        );
        let json: serde_json::Value = serde_json::from_str(&r.render(MatrixFormat::Json)).unwrap();
        assert_eq!(json["cells"].as_array().unwrap().len(), 4);
        let junit = r.render(MatrixFormat::Junit);
        assert!(junit.contains("tests=\"4\"") && junit.contains("failures=\"1\""), "{junit}");
        assert!(junit.contains("name=\"win::patched\""));
        let html = r.render(MatrixFormat::Html);
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("class=\"iso-copy differs\""));
        assert!(r.summary().starts_with("4 cells (2 scenarios × 2 layouts) on mockstack: 3 as expected, 1 not"));
    }

    fn not_runnable(scenario: &str, layout: Layout) -> Cell {
        let mut c = cell(scenario, layout, OutcomeKind::ImageOk, None);
        c.not_runnable =
            Some("the tiny installer installs like an unattended BIOS guest, and this guest boots through UEFI".into());
        c.reason = c.not_runnable.clone().unwrap();
        c
    }

    fn one_layout(cloud: &str, layout: Layout, cells: Vec<Cell>) -> MatrixReport {
        MatrixReport {
            cloud: cloud.into(),
            layouts: vec![layout],
            layout_used: Some(crate::workflow::LayoutUsed { layout, source: crate::workflow::LayoutSource::Given }),
            cells,
            wall_seconds: 2.0,
        }
    }

    #[test]
    fn a_not_runnable_cell_is_neither_passed_nor_failed() {
        let c = not_runnable("win", Layout::Patched);
        assert!(!c.passed() && !c.judged());
        assert_eq!(c.problem(), None);
        let mut r = one_layout("real", Layout::Patched, vec![c]);
        assert!(r.passed(), "nothing judged, nothing failed");
        assert_eq!((r.judged(), r.not_runnable()), (0, 1));
        r.cells.push(cell("rhel", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::ImageOk)));
        assert!(r.passed(), "passed() looks only at judged cells");
        r.cells.push(cell("sles", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::IsoCopy)));
        assert!(!r.passed());
        assert!(r.summary().contains(": 1 as expected, 1 not, 1 not runnable here, in"), "{}", r.summary());
        assert!(!report().summary().contains("not runnable"), "only counted where there are some");
    }

    #[test]
    fn every_format_renders_a_not_runnable_cell_as_such() {
        let r = one_layout(
            "real",
            Layout::Patched,
            vec![
                cell("rhel", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::ImageOk)),
                not_runnable("win", Layout::Patched),
            ],
        );
        let table = r.render(MatrixFormat::Table);
        assert!(table.contains("│ Guest win    ┆ –"), "{table}");
        assert!(
            table.contains("– not runnable on this hypervisor (the tiny installer does not stand for the guest)"),
            "{table}"
        );
        assert!(!table.contains("MISMATCH"), "{table}");
        assert!(!report().render(MatrixFormat::Table).contains("– not runnable"), "the legend shows it only when used");
        assert!(r.render(MatrixFormat::Markdown).contains("| Guest win | not runnable |"));
        let html = r.render(MatrixFormat::Html);
        assert!(html.contains("<td class=\"not-runnable\" title=\"the tiny installer"), "{html}");
        let junit = r.render(MatrixFormat::Junit);
        assert!(junit.contains("skipped=\"1\"") && junit.contains("failures=\"0\""), "{junit}");
        assert!(junit.contains("<skipped message=\"not runnable on this hypervisor: the tiny installer"), "{junit}");
        let json: serde_json::Value = serde_json::from_str(&r.render(MatrixFormat::Json)).unwrap();
        assert!(json["cells"][1]["not_runnable"].as_str().unwrap().contains("UEFI"));
        assert!(json["cells"][0].get("not_runnable").is_none(), "absent when None: embedded JSON unchanged");
        let back = parse_report(Path::new("r.json"), &r.render(MatrixFormat::Json)).unwrap();
        assert_eq!(back.render(MatrixFormat::Table), table, "the JSON report reads back whole");
    }

    #[test]
    fn merge_puts_each_input_in_its_layouts_column() {
        let stock = one_layout(
            "stock-cloud",
            Layout::Stock,
            vec![
                cell("rhel", Layout::Stock, OutcomeKind::IsoCopy, Some(OutcomeKind::IsoCopy)),
                not_runnable("win", Layout::Stock),
            ],
        );
        let patched = one_layout(
            "patched-cloud",
            Layout::Patched,
            vec![
                cell("rhel", Layout::Patched, OutcomeKind::ImageOk, Some(OutcomeKind::ImageOk)),
                not_runnable("win", Layout::Patched),
            ],
        );
        // Given patched first: the columns still follow the layouts' order.
        let merged = merge(vec![("p.json".into(), patched), ("s.json".into(), stock)]).unwrap();
        assert_eq!(merged.layouts, vec![Layout::Stock, Layout::Patched]);
        assert_eq!(merged.cells.len(), 4);
        assert_eq!(merged.wall_seconds, 4.0);
        assert_eq!(
            merged.cloud,
            "patched-cloud [patched (given with --layout)] + stock-cloud [stock (given with --layout)]"
        );
        assert_eq!(merged.layout_used, None);
        assert!(merged.passed());
        assert_eq!(merged.not_runnable(), 2);
        let table = merged.render(MatrixFormat::Table);
        assert!(table.contains("│ guest OS     ┆ stock ┆ patched │"), "{table}");
        assert!(table.contains("│ Guest rhel * ┆ ✘ iso ┆ ✔"), "{table}");
        assert!(table.contains("│ Guest win    ┆ –     ┆ –"), "{table}");
        assert!(merged.summary().contains("2 as expected, 0 not, 2 not runnable here"), "{}", merged.summary());
    }

    #[test]
    fn merge_refuses_a_cell_given_twice_naming_both_files() {
        let a = one_layout("a", Layout::Patched, vec![cell("rhel", Layout::Patched, OutcomeKind::ImageOk, None)]);
        let error = merge(vec![("a.json".into(), a.clone()), ("b.json".into(), a)]).unwrap_err();
        assert!(error.contains("rhel on patched is in both a.json and b.json"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_matrix_report_is_named_with_its_line_and_column() {
        let error = parse_report(Path::new("x.json"), "{\n  \"cloud\": 3\n}").unwrap_err();
        assert!(error.starts_with("x.json:2:12: not a matrix JSON report"), "{error}");
    }
}
