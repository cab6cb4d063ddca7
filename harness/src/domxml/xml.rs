//! A small positioned element tree read with quick-xml: every element knows its line:column, so findings can point at it.

use std::fmt;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde::Serialize;

use super::ParseError;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Turns byte offsets of one document into line:column positions.
///
/// The parser asks for positions in increasing order, so the column is counted on from the last position asked for
/// on the same line: a document on one long line costs linear time, not quadratic.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// The last position computed: (byte offset, line index, characters before it on its line).
    last: std::cell::Cell<(usize, usize, usize)>,
    /// Bytes examined so far to count columns: the work the positions cost, which tests bound by the input's size.
    scanned: std::cell::Cell<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts, last: std::cell::Cell::new((0, 0, 0)), scanned: std::cell::Cell::new(0) }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset).saturating_sub(1);
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let (last_offset, last_line, last_column) = self.last.get();
        let (from, before) = if last_line == line && (start..=offset).contains(&last_offset) {
            (last_offset, last_column)
        } else {
            (start, 0)
        };
        // Characters are counted by their first bytes, so an offset inside a multi-byte character counts it whole.
        self.scanned.set(self.scanned.get() + (offset - from));
        let column = before + self.text.as_bytes()[from..offset].iter().filter(|b| (**b & 0xC0) != 0x80).count();
        self.last.set((offset, line, column));
        Position { line: clamp_u32(line + 1), column: clamp_u32(column + 1) }
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One attribute, its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub value: String,
}

/// One element: name, attributes, child elements and its concatenated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub pos: Position,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.value.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element> + 's {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text content.
    pub fn text(&self) -> &str {
        self.text.trim()
    }
}

/// How deep elements may nest: libxml2's limit, which libvirt parses domain XML with ("Excessive depth in
/// document: 256"). A real domain nests six deep.
pub const MAX_DEPTH: usize = 256;

/// The top-level elements of a document (a well-formed domain has one; a fragment may have several).
pub fn parse_elements(text: &str) -> Result<Vec<Element>, ParseError> {
    parse_indexed(text, &LineIndex::new(text))
}

fn parse_indexed(text: &str, index: &LineIndex<'_>) -> Result<Vec<Element>, ParseError> {
    // XML 1.0 allows no control character but tab, line feed and carriage return (libxml2 stops at one), and no
    // U+FFFE or U+FFFF.
    if let Some((at, c)) = text
        .char_indices()
        .find(|(_, c)| (*c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
    {
        return Err(ParseError::Syntax {
            pos: index.position(at),
            message: format!("character U+{:04X} is not allowed in XML", u32::from(c)),
        });
    }
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;

    let mut roots = Vec::new();
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(start);
                return Err(ParseError::Syntax { pos: index.position(at), message: e.to_string() });
            }
        };
        let pos = index.position(start);
        match event {
            Event::Start(tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError::Syntax {
                        pos,
                        message: format!(
                            "elements nested deeper than {MAX_DEPTH} (libvirt's XML parser stops there too)"
                        ),
                    });
                }
                stack.push(element_from(&tag, pos)?)
            }
            Event::Empty(tag) => {
                let element = element_from(&tag, pos)?;
                attach(element, &mut stack, &mut roots);
            }
            Event::End(_) => {
                // check_end_names guarantees the end matches the open element; guard anyway.
                let Some(element) = stack.pop() else {
                    return Err(ParseError::Syntax { pos, message: "closing tag without an opening tag".into() });
                };
                attach(element, &mut stack, &mut roots);
            }
            Event::Text(t) => {
                let content = t.xml_content(XmlVersion::Implicit1_0);
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => {
                        let leading = content.len() - content.trim_start().len();
                        let pos = index.position(start + leading);
                        return Err(ParseError::Syntax { pos, message: "text outside of any element".into() });
                    }
                }
            }
            Event::CData(c) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&c.xml_content(XmlVersion::Implicit1_0));
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match predefined_entity(&r) {
                        Some(s) => s.to_string(),
                        None => {
                            return Err(ParseError::Syntax {
                                pos,
                                message: format!("unknown entity reference &{};", &*r),
                            });
                        }
                    },
                    Err(e) => return Err(ParseError::Syntax { pos, message: e.to_string() }),
                };
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&resolved),
                    None => {
                        return Err(ParseError::Syntax {
                            pos,
                            message: "entity reference outside of any element".into(),
                        });
                    }
                }
            }
            Event::Decl(decl) => {
                // The text is read as UTF-8, as libvirt writes it; a document that says otherwise would be read
                // differently by libvirt (or refused, for an encoding libxml2 does not know).
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| ParseError::Syntax { pos, message: e.to_string() })?;
                    let name: &str = &encoding;
                    if !name.eq_ignore_ascii_case("utf-8") && !name.eq_ignore_ascii_case("utf8") {
                        return Err(ParseError::Syntax {
                            pos,
                            message: format!("the declaration names encoding `{name}`: libvirt's domain XML is UTF-8"),
                        });
                    }
                }
            }
            Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(ParseError::Syntax {
            pos: index.position(text.len()),
            message: format!("unexpected end of document: <{}> opened at {} is not closed", open.name, open.pos),
        });
    }
    Ok(roots)
}

fn attach(element: Element, stack: &mut [Element], roots: &mut Vec<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => roots.push(element),
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn element_from(tag: &BytesStart<'_>, pos: Position) -> Result<Element, ParseError> {
    let name = tag.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in tag.attributes().with_checks(true) {
        let attr = attr.map_err(|e| ParseError::Syntax { pos, message: format!("in <{name}>: {e}") })?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| ParseError::Syntax { pos, message: format!("in <{name}>: {e}") })?;
        attrs.push(Attr { name: attr.key.as_ref().to_string(), value: value.into_owned() });
    }
    Ok(Element { name, pos, attrs, children: Vec::new(), text: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let index = LineIndex::new("ab\nçd\n");
        assert_eq!(index.position(0), Position { line: 1, column: 1 });
        assert_eq!(index.position(3), Position { line: 2, column: 1 });
        assert_eq!(index.position(5), Position { line: 2, column: 2 });
        assert_eq!(index.position(4), Position { line: 2, column: 2 });
        assert_eq!(index.position(100), Position { line: 3, column: 1 });
    }

    #[test]
    fn elements_carry_their_start_position() {
        let roots = parse_elements("<a>\n  <b x='1'/>\n  <c>t&amp;u</c>\n</a>").unwrap();
        assert_eq!(roots.len(), 1);
        let a = &roots[0];
        assert_eq!(a.children[0].pos, Position { line: 2, column: 3 });
        assert_eq!(a.children[0].attr("x"), Some("1"));
        assert_eq!(a.children[1].text(), "t&u");
    }

    #[test]
    fn nesting_past_libxml2s_depth_is_an_error_at_the_element_that_goes_too_deep() {
        let deep = |depth: usize| format!("<domain>{}{}</domain>", "<a>".repeat(depth - 1), "</a>".repeat(depth - 1));
        assert!(parse_elements(&deep(MAX_DEPTH)).is_ok());
        let error = parse_elements(&deep(MAX_DEPTH + 1)).unwrap_err();
        let column = u32::try_from(9 + 3 * (MAX_DEPTH - 1)).unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "1:{column}: malformed XML: elements nested deeper than 256 (libvirt's XML parser stops there too)"
            )
        );
        // Far deeper input stops at the same element, without exhausting the stack.
        assert!(parse_elements(&deep(150_000)).unwrap_err().to_string().starts_with(&format!("1:{column}:")));
    }

    #[test]
    fn positions_on_one_long_line_are_counted_on_from_the_last_one() {
        let line = "é".repeat(1000);
        let index = LineIndex::new(&line);
        for i in 0..1000 {
            assert_eq!(index.position(2 * i), Position { line: 1, column: u32::try_from(i + 1).unwrap() });
        }
        assert_eq!(index.position(1), Position { line: 1, column: 2 }, "backwards: counted from the line's start");
        assert_eq!(index.position(3), Position { line: 1, column: 3 }, "inside a character counts it whole");
    }

    /// Linear time, measured as work rather than wall-clock: the bytes scanned to locate every element of a document on
    /// one line stay within the document's length, so doubling the document at most doubles the work.
    #[test]
    fn locating_elements_scans_each_byte_once() {
        let scanned = |disks: usize| {
            let text =
                format!("<domain><devices>{}</devices></domain>", "<disk type='file' device='disk'/>".repeat(disks));
            let index = LineIndex::new(&text);
            assert_eq!(parse_indexed(&text, &index).unwrap()[0].children[0].children.len(), disks);
            let work = index.scanned.get();
            assert!(work <= text.len(), "{work} bytes scanned for a {}-byte document", text.len());
            work
        };
        let (once, twice) = (scanned(2_000), scanned(4_000));
        assert!(once > 0 && twice <= 2 * once + 64, "doubling the input took {once} -> {twice} bytes of scanning");
    }

    #[test]
    fn control_characters_and_other_encodings_are_errors_at_their_place() {
        let nul = parse_elements("<domain>\n  <name>a\u{0}b</name>\n</domain>").unwrap_err();
        assert_eq!(nul.to_string(), "2:10: malformed XML: character U+0000 is not allowed in XML");
        assert!(parse_elements("<domain>\t<name>x</name>\r\n</domain>").is_ok(), "tab, CR and LF are text");
        let bogus = parse_elements("<?xml version='1.0' encoding='bogus'?>\n<domain/>").unwrap_err();
        assert_eq!(
            bogus.to_string(),
            "1:1: malformed XML: the declaration names encoding `bogus`: libvirt's domain XML is UTF-8"
        );
        assert!(parse_elements("<?xml version='1.0' encoding='UTF-8'?>\n<domain/>").is_ok());
    }

    #[test]
    fn unclosed_element_is_an_error_with_position() {
        let err = parse_elements("<a>\n<b>").unwrap_err();
        assert!(err.to_string().contains("not closed"), "{err}");
    }
}
