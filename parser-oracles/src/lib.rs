//! One oracle per parser that reads outside input: feed it arbitrary bytes, and it panics only when the parser
//! misbehaves (panics itself, or breaks an invariant checked here, such as an error located outside the input).
//!
//! The same functions run under cargo-fuzz (the `fuzz/` crate, nightly, coverage-guided) and under proptest on the
//! stable toolchain (`tests/arbitrary_bytes.rs`), so a finding from either replays in the other. Each oracle decodes
//! the bytes the way the real caller receives them (a file's bytes, a request body, a query string) and then calls
//! the same public entry point the product uses.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use guestsim::guest::Medium;
use guestsim::media::floppy::FloppyImage;
use guestsim::media::iso9660::IsoImage;
use guestsim::sniff;
use harness::cloud::config::{ConfigEnv, ConfigError, ConfigRequest};
use harness::domxml;
use harness::scenario::{Scenario, ScenarioError};
use mockstack::glance::ListQuery;
use mockstack::glance::patch::{self, Dialect};
use mockstack::nova::{microversion::ApiVersion, request, schema};
use serde_json::Value;

/// An oracle: returns normally for every input the parser handles (accepting or refusing it), panics otherwise.
pub type Oracle = fn(&[u8]);

/// Every fuzzed parser, by the name of its fuzz target (`fuzz/fuzz_targets/<name>.rs`) and seed directory.
pub const TARGETS: [(&str, Oracle); 11] = [
    ("domain_xml", domain_xml),
    ("scenario_toml", scenario_toml),
    ("cloud_config", cloud_config),
    ("image_inspect", image_inspect),
    ("iso9660", iso9660),
    ("fat_floppy", fat_floppy),
    ("qcow2_reader", qcow2_reader),
    ("glance_list_query", glance_list_query),
    ("glance_patch", glance_patch),
    ("nova_request", nova_request),
    ("nova_query", nova_query),
];

/// The oracle named `name` in [`TARGETS`].
pub fn oracle(name: &str) -> Option<Oracle> {
    TARGETS.iter().find(|(target, _)| *target == name).map(|(_, oracle)| *oracle)
}

/// Panics unless a 1-based `line:column` (columns in characters) points into `text` or just past the end of a line:
/// an error must point at the input it complains about.
pub fn assert_location_within(text: &str, line: usize, column: usize, what: &str) {
    assert!(line >= 1 && column >= 1, "{what}: location {line}:{column} is not 1-based");
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(at) = lines.get(line - 1) else {
        panic!("{what}: line {line} is past the input's {} lines", lines.len());
    };
    let width = at.chars().count();
    assert!(column <= width + 1, "{what}: column {column} is past line {line}'s {width} characters");
}

/// `check-xml` on one file's bytes: parse, check against every expectation, render as the CLI does.
pub fn domain_xml(data: &[u8]) {
    let report = domxml::check_inputs(vec![("fuzz.xml".into(), Ok(data.to_vec()))], &domxml::Expectation::Auto, false);
    let _ = report.render_human();
    let without_bom = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let text = String::from_utf8_lossy(without_bom);
    match domxml::parse_bytes(data) {
        Err(error) => {
            let pos = error.pos();
            assert_location_within(&text, pos.line as usize, pos.column as usize, &error.to_string());
        }
        Ok(domain) => {
            for layout in guestsim::Layout::ALL {
                let checked = domxml::check(&domain, &domxml::Expectation::Builtin(layout));
                let _ = checked.render_human("fuzz.xml");
                for finding in &checked.findings {
                    assert_location_within(&text, finding.line as usize, finding.column as usize, &finding.message);
                }
            }
        }
    }
}

/// A scenario file's text, as `Scenario::load` hands it to `Scenario::parse`.
pub fn scenario_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(ScenarioError::Invalid { line, column, message, .. }) = Scenario::parse(Path::new("fuzz.toml"), &text) {
        assert_location_within(&text, line, column, &message);
    }
}

/// A `clouds.yaml` and a `secure.yaml` (or `.json`): the first byte picks the syntax, a 0xFF byte (never in UTF-8
/// text) separates the two files.
pub fn cloud_config(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let extension = if selector & 1 == 0 { "yaml" } else { "json" };
    let (clouds, secure) = match rest.iter().position(|&b| b == 0xFF) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let clouds_path = PathBuf::from(format!("/fuzz/clouds.{extension}"));
    let secure_path = PathBuf::from(format!("/fuzz/secure.{extension}"));
    let clouds_text = String::from_utf8_lossy(clouds).into_owned();
    let secure_text = secure.map(|s| String::from_utf8_lossy(s).into_owned());
    let env = ConfigEnv {
        vars: [
            ("OS_CLIENT_CONFIG_FILE".to_string(), clouds_path.display().to_string()),
            ("OS_CLIENT_SECURE_FILE".to_string(), secure_path.display().to_string()),
        ]
        .into(),
        current_dir: PathBuf::from("/fuzz/cwd"),
        home_dir: None,
    };
    // Only the two fuzzed files exist: nothing is read from the real disk.
    let files = |path: &Path| {
        if path == clouds_path {
            Some(clouds_text.clone())
        } else if path == secure_path {
            secure_text.clone()
        } else {
            None
        }
    };
    for cloud in [None, Some("fuzz".to_string())] {
        let request = ConfigRequest { cloud, region_name: None };
        if let Err(ConfigError::Parse { path, location: Some((line, column)), message, .. }) =
            harness::cloud::config::resolve(&request, &env, &files)
        {
            let text = if path == clouds_path { &clouds_text } else { secure_text.as_deref().unwrap_or_default() };
            assert_location_within(text, line, column, &message);
        }
    }
}

/// Image inspection as `validate-image` does it (qcow2/raw/VMDK/VHDX/VDI detection, partition and ISO 9660 sniffing) and guestsim's sniffers
/// that mockstack's Glance uses on uploads.
pub fn image_inspect(data: &[u8]) {
    let inspected = harness::inspect::inspect_bytes(data);
    if let Ok(inspection) = &inspected {
        let is_qcow2 = inspection.format == harness::inspect::ContainerFormat::Qcow2;
        assert_eq!(is_qcow2, sniff::is_qcow2(data), "inspect and sniff disagree on qcow2");
        if inspection.format == harness::inspect::ContainerFormat::Raw {
            assert_eq!(inspection.virtual_size, data.len() as u64, "a raw image's size is its length");
        }
    }
    let _ = sniff::qcow2_virtual_size(data);
    let descriptor = data.get(sniff::ISO9660_DESCRIPTOR_OFFSET as usize..).unwrap_or_default();
    let _ = sniff::is_iso9660(descriptor);
    let _ = sniff::iso9660_volume_size(descriptor);
    let _ = sniff::has_boot_signature(data);
    let _ = sniff::has_gpt_header(data);
    let _ = sniff::is_fat_boot_sector(data);
}

/// Reads everything a medium offers, as the simulated guest and the harness do.
fn read_medium(medium: &dyn Medium) {
    let _ = medium.volume_id();
    for file in medium.files() {
        assert!(medium.exists(&file), "{file} is listed but does not exist");
        let _ = medium.read(&file);
    }
    let _ = guestsim::media::guest_facts(medium);
}

/// guestsim's ISO 9660 reader (El Torito, Joliet, multi-extent files) on an image held in memory.
pub fn iso9660(data: &[u8]) {
    let Ok(image) = IsoImage::from_bytes(data.to_vec()) else { return };
    for entry in image.boot_entries() {
        let _ = entry.platform();
    }
    let _ = image.dir_paths();
    for path in image.file_paths() {
        let size = image.file_size(path);
        if let Ok(Some(content)) = image.read_file(path) {
            assert_eq!(Some(content.len() as u64), size, "{path}: read length differs from its size");
        }
    }
    read_medium(&image);
}

/// guestsim's FAT floppy reader on an image held in memory.
pub fn fat_floppy(data: &[u8]) {
    if let Ok(image) = FloppyImage::from_bytes(data.to_vec()) {
        let _ = image.label();
        read_medium(&image);
    }
}

/// guestsim's qcow2 reader (the simulated compute host's disks and snapshots).
pub fn qcow2_reader(data: &[u8]) {
    let Ok(mut reader) = guestsim::hypervisor::qcow2::Qcow2Reader::new(std::io::Cursor::new(data)) else { return };
    let size = reader.virtual_size();
    let mut head = vec![0u8; size.min(64 * 1024) as usize];
    let _ = reader.read_at(0, &mut head);
    let mut tail = vec![0u8; size.min(4096) as usize];
    let _ = reader.read_at(size - tail.len() as u64, &mut tail);
    let mut past_end = [0u8; 1];
    assert!(reader.read_at(size, &mut past_end).is_err(), "reading past the virtual size must fail");
    if let Ok(ranges) = reader.allocated_ranges() {
        let mut end = 0;
        for (start, len) in ranges {
            assert!(start >= end && len > 0 && start + len <= size, "ranges must be increasing, within the disk");
            end = start + len;
        }
    }
}

/// Glance's `GET /v2/images` query string (decoded as a form) into a list query.
pub fn glance_list_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let params = request::query_pairs(Some(&text));
    let _ = ListQuery::from_params(&params);
}

/// A Glance `PATCH /v2/images/{id}` body in both JSON-patch dialects, and the media type that picks the dialect.
pub fn glance_patch(data: &[u8]) {
    let _ = Dialect::from_content_type(&String::from_utf8_lossy(data));
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    for dialect in [Dialect::Draft10, Dialect::Draft4] {
        if let Ok(changes) = patch::parse(&body, dialect) {
            let given = body.as_array().map(Vec::len);
            assert_eq!(Some(changes.len()), given, "one change per operation");
        }
    }
}

fn nova_schemas() -> &'static [(String, Value)] {
    static SCHEMAS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    SCHEMAS.get_or_init(mockstack::nova::request_body_schemas)
}

/// A compute request body (JSON) checked against every Nova request schema, and `/action` dispatch by its key.
pub fn nova_request(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let _ = request::action_name(&body);
    for (name, schema_value) in nova_schemas() {
        if let Err(error) = schema::validate(schema_value, &body) {
            let _ = error.body_detail();
            // The error's path must lead to a value of the body: it names the field the client got wrong.
            let mut at = &body;
            for segment in &error.path {
                at = match at {
                    Value::Object(map) => map.get(segment),
                    Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                    _ => None,
                }
                .unwrap_or_else(|| panic!("{name}: error path {:?} leaves the body", error.path));
            }
        }
    }
}

/// A compute query string and microversion header: form decoding, microversion parsing, name and UUID checks.
pub fn nova_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = request::query_pairs(Some(&text));
    let _ = ApiVersion::parse(&text);
    let _ = schema::is_uuid_like(&text);
    let _ = schema::is_valid_name(&text);
}
