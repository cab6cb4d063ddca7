//! `isoharness check-xml`: check libvirt domain XML files (or stdin) against an ISO-install layout; findings on
//! stdout, inputs that cannot be read on stderr. The checking itself and the JSON schema are
//! `harness::domxml::inputs`.

use std::io::Read;
use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, ValueEnum};
use harness::domxml::{self, Expectation};
use harness::exit::ExitStatus;

use super::Format;

/// The exit statuses `check-xml` ends with.
pub const STATUSES: &[ExitStatus] = &[ExitStatus::Ok, ExitStatus::Findings, ExitStatus::Usage];

#[derive(Debug, Args)]
pub struct CheckXmlArgs {
    /// Domain XML files (`virsh dumpxml` output, a `<devices>` element, or `<disk>` fragments); `-` reads stdin
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The layout to check against
    #[arg(long, value_name = "NAME", alias = "expect", default_value = "auto", value_parser = LayoutNameParser)]
    pub layout: Expectation,
    /// Check against a layout described as data instead (TOML, or JSON when the name ends in .json)
    #[arg(long, value_name = "FILE", conflicts_with = "layout")]
    pub layout_file: Option<PathBuf>,
    /// The report on stdout: human (rustc-like findings) or json (schema isoharness.check-xml/1)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Make warnings fail the check too
    #[arg(long, value_enum, value_name = "LINT")]
    pub deny: Vec<Deny>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deny {
    /// Warnings fail the check like errors
    Warnings,
}

/// Parses a built-in layout name with [`Expectation`]'s own `FromStr` (and its message), and lists the names in
/// `--help`.
#[derive(Debug, Clone, Copy)]
struct LayoutNameParser;

impl TypedValueParser for LayoutNameParser {
    type Value = Expectation;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Expectation, clap::Error> {
        let text = value.to_str().ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidUtf8))?;
        text.parse().map_err(|message: String| clap::Error::raw(clap::error::ErrorKind::InvalidValue, message + "\n"))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            [
                ("auto", "recognise the layout first, then check the domain as that layout"),
                ("stock", "upstream Nova: the ISO is the root CD-ROM (what a snapshot then copies)"),
                ("patched", "the article's layout: a blank virtio root disk first, the OS and VirtIO ISOs as CD-ROMs"),
                ("patched-floppy", "patched, plus a read-only driver floppy"),
            ]
            .into_iter()
            .map(|(name, help)| PossibleValue::new(name).help(help)),
        ))
    }
}

pub fn run(args: CheckXmlArgs) -> anyhow::Result<ExitStatus> {
    let expect = match &args.layout_file {
        Some(path) => Expectation::Described(domxml::load_layout(path)?),
        None => args.layout.clone(),
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
    let report = domxml::check_inputs(inputs, &expect, args.deny.contains(&Deny::Warnings));
    for file in &report.files {
        if let Some(error) = file.render_error() {
            eprint!("{error}");
        }
    }
    match args.format {
        Format::Human => {
            for file in &report.files {
                if let Some(text) = file.render_report(&report.expectation) {
                    print!("{text}");
                }
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.exit_code)
}
