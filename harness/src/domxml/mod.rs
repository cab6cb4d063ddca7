//! The libvirt domain XML validator: its own parse of a domain into a device model, checked against an ISO-install layout.
//!
//! Independent of mockstack's renderer on purpose, so it can catch mockstack's mistakes as well as a
//! real compute host's. [`parse`] reads a whole `<domain>` (as `virsh dumpxml` prints it), a
//! `<devices>` element or a fragment of `<disk>` elements (Listing 1 of the article); [`check`]
//! returns a [`Report`] with every [`Finding`] (rule id, severity, line:column, message, help).
//! The rules are listed in [`rules::RULES`].

pub mod expect;
pub mod inputs;
pub mod model;
pub mod report;
pub mod rules;
pub mod xml;

pub use expect::{Expectation, ExpectedBus, ExpectedDevice, ExpectedKind, FirmwareNeeds, LayoutSpec, Role, classify};
pub use inputs::{InputsReport, check_inputs, load_layout};
pub use model::{LibvirtDomain, parse};
pub use report::{Counts, Finding, Report, Severity};
pub use rules::{RULES, Rule, check};
pub use xml::Position;

/// Why a document could not be read as a libvirt domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (quick-xml's message), at the offending markup.
    #[error("{pos}: malformed XML: {message}")]
    Syntax { pos: Position, message: String },
    /// Not UTF-8; libvirt writes UTF-8 only.
    #[error("{pos}: not UTF-8 text")]
    NotUtf8 { pos: Position },
    /// Only whitespace, comments or a declaration.
    #[error("1:1: no element: expected <domain>, <devices> or <disk>")]
    Empty,
    /// A top-level element that is neither a single `<domain>`/`<devices>` nor a run of `<disk>`s.
    #[error("{pos}: unexpected <{name}>: expected one <domain>, one <devices>, or one or more <disk> elements")]
    UnexpectedRoot { pos: Position, name: String },
    /// An attribute value libvirt would reject (a PCI slot that is not a number).
    #[error("{pos}: <{element} {attr}={value:?}>: expected {expected}")]
    InvalidValue { pos: Position, element: String, attr: String, value: String, expected: String },
}

impl ParseError {
    /// Where the problem is (1:1 when the document is empty).
    pub fn pos(&self) -> Position {
        match self {
            ParseError::Syntax { pos, .. }
            | ParseError::NotUtf8 { pos }
            | ParseError::UnexpectedRoot { pos, .. }
            | ParseError::InvalidValue { pos, .. } => *pos,
            ParseError::Empty => Position { line: 1, column: 1 },
        }
    }
}

/// Parses raw bytes (a file's content): UTF-8 is required, a BOM is skipped.
pub fn parse_bytes(bytes: &[u8]) -> Result<LibvirtDomain, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let text = std::str::from_utf8(valid).unwrap_or_default();
            Err(ParseError::NotUtf8 { pos: xml::LineIndex::new(text).position(text.len()) })
        }
    }
}

/// Why a domain's layout was not recognised: check-xml's report of it as `auto` (its findings say why, DX039 among
/// them), or why it could not be read as a domain at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutUnrecognised {
    Checked(Report),
    Unreadable(ParseError),
}

impl LayoutUnrecognised {
    /// check-xml's human rendering of why, with `file` naming the domain XML.
    pub fn render_human(&self, file: &str) -> String {
        match self {
            LayoutUnrecognised::Checked(report) => report.render_human(file),
            LayoutUnrecognised::Unreadable(e) => format!("{file}:{e}\n"),
        }
    }
}

/// The built-in layout a domain implements, recognised as `check-xml --layout auto` recognises it (the same
/// [`check`] with [`Expectation::Auto`]).
pub fn recognise_layout(xml: &str) -> Result<guestsim::Layout, LayoutUnrecognised> {
    let report = check_xml(xml, &Expectation::Auto).map_err(LayoutUnrecognised::Unreadable)?;
    report.layout_detected.ok_or(LayoutUnrecognised::Checked(report))
}

/// Parses and checks in one step.
pub fn check_xml(xml: &str, expect: &Expectation) -> Result<Report, ParseError> {
    Ok(check(&parse(xml)?, expect))
}
