//! The benchmark's one table: every figure with its unit, what it was measured against in the same run, the ratio and
//! the target; and the same as JSON.

use std::fmt;

use serde::Serialize;

/// The parts of the benchmark, selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Streamed upload against the machine's md5/sha512 rates and real Glance.
    Upload,
    /// API throughput and latency at 8 connections, mockstack against the real services.
    Api,
    /// One seven-step build on embedded mockstack and on the real cloud.
    Build,
    /// The whole default matrix, and how its time grows with scenarios and jobs.
    Matrix,
    /// API calls per minute of waiting: adaptive polling against a fixed 2 s poll.
    Waiting,
}

impl Part {
    pub const ALL: [Part; 5] = [Part::Upload, Part::Api, Part::Build, Part::Matrix, Part::Waiting];

    pub fn name(self) -> &'static str {
        match self {
            Part::Upload => "upload",
            Part::Api => "api",
            Part::Build => "build",
            Part::Matrix => "matrix",
            Part::Waiting => "waiting",
        }
    }
}

/// What a figure was measured against, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub name: String,
    /// None when the reference could not be measured in this run (then there is no ratio).
    pub value: Option<f64>,
    pub unit: String,
}

/// How the ratio is formed and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RatioKind {
    /// value ÷ reference, shown as a plain number (0.52).
    Fraction,
    /// value ÷ reference, shown as a multiple (85×).
    Times,
    /// reference ÷ value, shown as a multiple: how many times less the figure takes (a time, a count).
    TimesLess,
}

/// The goal a figure is held against; the table says whether it was met, tests never do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "on", content = "bound")]
pub enum Goal {
    RatioAtLeast(f64),
    ValueBelow(f64),
    ValueAtLeast(f64),
}

/// One measured (or not measured) figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub part: Part,
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    /// Why there is no value, e.g. "not measured: no real cloud".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// None for the figures that are themselves references (the machine's hash rates).
    pub reference: Option<Reference>,
    pub ratio_kind: RatioKind,
    pub ratio: Option<f64>,
    pub target: Option<Goal>,
    /// Whether the target was met; None without a target or without the numbers to judge.
    pub met: Option<bool>,
    /// A short remark shown under the figure's name (the method, a caveat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Figure {
    /// A measured value.
    pub fn new(part: Part, name: impl Into<String>, value: f64, unit: impl Into<String>) -> Figure {
        Figure {
            part,
            name: name.into(),
            value: Some(value),
            unit: unit.into(),
            missing: None,
            reference: None,
            ratio_kind: RatioKind::Fraction,
            ratio: None,
            target: None,
            met: None,
            note: None,
        }
    }

    /// A value that may be missing (a real-cloud column without a real cloud).
    pub fn maybe(part: Part, name: impl Into<String>, value: Result<f64, String>, unit: impl Into<String>) -> Figure {
        match value {
            Ok(v) => Figure::new(part, name, v, unit),
            Err(why) => Figure { value: None, missing: Some(why), ..Figure::new(part, name, 0.0, unit) },
        }
    }

    /// Measured against `reference` (value and unit), the ratio formed as `kind` says.
    pub fn against(
        mut self,
        name: impl Into<String>,
        value: Option<f64>,
        unit: impl Into<String>,
        kind: RatioKind,
    ) -> Figure {
        self.reference = Some(Reference { name: name.into(), value, unit: unit.into() });
        self.ratio_kind = kind;
        self.ratio = match (self.value, value) {
            (Some(v), Some(r)) if kind == RatioKind::TimesLess && v > 0.0 => Some(r / v),
            (Some(v), Some(r)) if kind != RatioKind::TimesLess && r > 0.0 => Some(v / r),
            _ => None,
        };
        self.judge()
    }

    pub fn target(mut self, target: Goal) -> Figure {
        self.target = Some(target);
        self.judge()
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }

    fn judge(mut self) -> Figure {
        self.met = match self.target {
            Some(Goal::RatioAtLeast(bound)) => self.ratio.map(|r| r >= bound),
            Some(Goal::ValueBelow(bound)) => self.value.map(|v| v < bound),
            Some(Goal::ValueAtLeast(bound)) => self.value.map(|v| v >= bound),
            None => None,
        };
        self
    }

    fn value_text(&self) -> String {
        match (self.value, &self.missing) {
            (Some(v), _) => format!("{} {}", number(v), self.unit),
            (None, Some(why)) => why.clone(),
            (None, None) => "not measured".into(),
        }
    }

    fn reference_text(&self) -> String {
        match &self.reference {
            None => "(reference)".into(),
            Some(r) => match r.value {
                Some(v) => format!("{}: {} {}", r.name, number(v), r.unit),
                None => format!("{}: not measured", r.name),
            },
        }
    }

    fn ratio_text(&self) -> String {
        match self.ratio {
            None => "-".into(),
            Some(r) => match self.ratio_kind {
                RatioKind::Fraction => format!("{r:.2}"),
                RatioKind::Times | RatioKind::TimesLess => format!("{}×", number(r)),
            },
        }
    }

    fn target_text(&self) -> String {
        let Some(target) = self.target else { return String::new() };
        let bound = match target {
            Goal::RatioAtLeast(b) => match self.ratio_kind {
                RatioKind::Fraction => format!("≥ {b}"),
                _ => format!("≥ {b}×"),
            },
            Goal::ValueBelow(b) => format!("< {} {}", number(b), self.unit),
            Goal::ValueAtLeast(b) => format!("≥ {} {}", number(b), self.unit),
        };
        let mark = match self.met {
            Some(true) => "✔",
            Some(false) => "✘",
            None => "?",
        };
        format!("{bound} {mark}")
    }
}

/// Three significant digits, without a fraction part for large numbers.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() && a < 1e15 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub schema: &'static str,
    pub quick: bool,
    pub machine: MachineInfo,
    pub figures: Vec<Figure>,
}

/// The machine the figures come from (they hold only here, and only as ratios).
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub cpus: usize,
    pub cpu_model: String,
    /// The 1-minute load average when the run started: other work on a shared machine.
    pub load_average: Option<f64>,
}

impl MachineInfo {
    pub fn probe() -> MachineInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()));
        MachineInfo {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            load_average,
        }
    }
}

impl BenchReport {
    pub fn new(quick: bool) -> BenchReport {
        BenchReport { schema: "isoharness.bench/1", quick, machine: MachineInfo::probe(), figures: Vec::new() }
    }

    pub fn table(&self) -> String {
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header(["part", "figure", "value", "measured against (same run)", "ratio", "target"]);
        for f in &self.figures {
            let name = match &f.note {
                Some(note) => format!("{}\n  ({note})", f.name),
                None => f.name.clone(),
            };
            table.add_row([
                f.part.name().to_string(),
                name,
                f.value_text(),
                f.reference_text(),
                f.ratio_text(),
                f.target_text(),
            ]);
        }
        table.to_string()
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "isoharness bench{} on {} × {} (load average {} at the start)",
            if self.quick { " --quick" } else { "" },
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.load_average.map(number).unwrap_or_else(|| "?".into())
        )?;
        writeln!(f, "{}", self.table())?;
        let missed: Vec<&Figure> = self.figures.iter().filter(|f| f.met == Some(false)).collect();
        let met = self.figures.iter().filter(|f| f.met == Some(true)).count();
        write!(f, "targets: {met} met, {} missed", missed.len())?;
        for m in missed {
            write!(f, "\n  missed: {} ({})", m.name, m.target_text())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_their_kind_and_targets_are_judged_on_them() {
        let fraction = Figure::new(Part::Upload, "upload", 300.0, "MB/s")
            .against("sha512", Some(600.0), "MB/s", RatioKind::Fraction)
            .target(Goal::RatioAtLeast(0.8));
        assert_eq!(fraction.ratio, Some(0.5));
        assert_eq!(fraction.met, Some(false));
        let less = Figure::new(Part::Build, "build", 0.02, "s").against(
            "real cloud build",
            Some(30.0),
            "s",
            RatioKind::TimesLess,
        );
        assert_eq!(less.ratio, Some(1500.0));
        let below = Figure::new(Part::Build, "build", 40.0, "ms").target(Goal::ValueBelow(50.0));
        assert_eq!(below.met, Some(true));
    }

    #[test]
    fn a_missing_value_or_reference_has_no_ratio_and_no_verdict() {
        let missing = Figure::maybe(Part::Api, "real Glance", Err("not measured: no real cloud".into()), "req/s");
        assert_eq!(missing.value_text(), "not measured: no real cloud");
        let against_missing = Figure::new(Part::Api, "mockstack", 5000.0, "req/s")
            .against("real Glance", None, "req/s", RatioKind::Times)
            .target(Goal::RatioAtLeast(50.0));
        assert_eq!(against_missing.ratio, None);
        assert_eq!(against_missing.met, None);
        assert!(against_missing.target_text().ends_with('?'));
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        for (v, shown) in [(574.3, "574"), (27.46, "27.5"), (0.523, "0.523"), (4.5678, "4.57"), (12.0, "12")] {
            assert_eq!(number(v), shown, "{v}");
        }
    }
}
