//! Scenarios: one TOML file per guest OS under `scenarios/`, parsed and validated with errors that name the file, line and key.
//!
//! The schema is documented in the README ("Scenario files"). A scenario describes the guest
//! (its facts, as the simulated installer reads them from the generated ISO), the media for a
//! real cloud, the flavor, the image metadata to set at step 7, how install completion is
//! detected, and optionally pinned expected outcomes per layout.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use guestsim::guest::GuestFacts;
use guestsim::{Layout, OutcomeKind};
use serde::{Deserialize, Serialize};

/// One scenario file, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// The file stem, e.g. `windows-server-2012`: the scenario's name in reports and trial names.
    pub name: String,
    pub path: PathBuf,
    pub about: About,
    pub guest: GuestFacts,
    pub media: Media,
    pub flavor: FlavorSpec,
    pub image: ImageMetadata,
    pub completion: Completion,
    /// Outcomes a person pinned per layout; checked against the derived ones.
    pub expect: BTreeMap<Layout, OutcomeKind>,
}

/// The `[scenario]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct About {
    #[serde(default)]
    pub description: String,
    /// True for the rows that rebuild the article's lost Table 1 from the installer rules.
    #[serde(default)]
    pub reconstruction: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The `[media]` table: what a real cloud needs; mockstack generates the media from `[guest]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Path to the real installation ISO (relative to the scenario file).
    pub iso: Option<PathBuf>,
    /// An existing Glance image (name or id) holding the ISO; never deleted by isoharness.
    pub image: Option<String>,
    /// An unattended-answer file (autounattend.xml, kickstart, preseed) for the real ISO.
    pub answer_file: Option<PathBuf>,
    /// Which VirtIO-win driver ISO mockstack generates: `full` (all OS folders, like build
    /// 0.1.285) or `rhel` (a RHEL-style build without xp, 2k3 and 2k8).
    #[serde(default)]
    pub virtio_win: VirtioWinBuild,
    /// Path to a real VirtIO-win ISO to upload to a real cloud when no image named
    /// `virtio_win_image` exists there.
    pub virtio_win_iso: Option<PathBuf>,
    /// The Glance image name of the VirtIO driver ISO.
    #[serde(default = "default_virtio_win_image")]
    pub virtio_win_image: String,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            iso: None,
            image: None,
            answer_file: None,
            virtio_win: VirtioWinBuild::default(),
            virtio_win_iso: None,
            virtio_win_image: default_virtio_win_image(),
        }
    }
}

fn default_virtio_win_image() -> String {
    guestsim::DEFAULT_VIRTIO_WIN_IMAGE.to_string()
}

pub use guestsim::media::virtio_win::VirtioWinBuild;

/// The `[flavor]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorSpec {
    /// Use this existing flavor (never deleted) instead of creating one.
    pub name: Option<String>,
    #[serde(default = "one")]
    pub vcpus: u32,
    pub ram_mb: u32,
    pub disk_gb: u32,
    #[serde(default)]
    pub ephemeral_gb: u32,
    #[serde(default)]
    pub swap_mb: u32,
}

fn one() -> u32 {
    1
}

/// The `[image]` table: metadata step 7 sets on the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMetadata {
    /// Name of the final image; defaults to the scenario name.
    pub name: Option<String>,
    /// Properties to set, e.g. os_type, os_distro, hw_disk_bus, hw_vif_model.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Properties the boot image (the OS ISO) carries, e.g. hw_machine_type, hw_firmware_type.
    #[serde(default)]
    pub iso_properties: BTreeMap<String, String>,
    #[serde(default = "default_visibility")]
    pub visibility: String,
}

impl Default for ImageMetadata {
    fn default() -> Self {
        ImageMetadata {
            name: None,
            properties: BTreeMap::new(),
            iso_properties: BTreeMap::new(),
            visibility: default_visibility(),
        }
    }
}

fn default_visibility() -> String {
    "private".into()
}

/// The `[completion]` table: how the end of the install is detected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// Deadline for the whole install, in seconds.
    #[serde(default = "default_install_timeout")]
    pub install_timeout_s: u64,
    /// Failure when the console log does not grow for this long (seconds); 0 turns it off.
    #[serde(default = "default_inactivity_timeout")]
    pub inactivity_timeout_s: u64,
    /// A console-log regex that marks success before the guest powers off.
    pub success_console: Option<String>,
    /// A console-log regex that marks failure.
    pub failure_console: Option<String>,
    /// Deadline for booting the finished image in the boot test, in seconds.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_s: u64,
    /// A console-log regex that marks the finished image as booted in the boot test; by default the guest agent's
    /// finish line, or the OS's login prompt (Linux) or Emergency Management Services line (Windows).
    #[serde(default)]
    pub boot_console: Option<String>,
}

fn default_install_timeout() -> u64 {
    4 * 3600
}
/// Off by default: Windows setup writes nothing to the serial console while it works.
fn default_inactivity_timeout() -> u64 {
    0
}
fn default_boot_timeout() -> u64 {
    900
}

impl Default for Completion {
    fn default() -> Self {
        Completion {
            install_timeout_s: default_install_timeout(),
            inactivity_timeout_s: default_inactivity_timeout(),
            success_console: None,
            failure_console: None,
            boot_timeout_s: default_boot_timeout(),
            boot_console: None,
        }
    }
}

impl Completion {
    pub fn install_timeout(&self) -> Duration {
        Duration::from_secs(self.install_timeout_s)
    }
}

/// The file as written; converted into a [`Scenario`] after validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    scenario: About,
    guest: GuestFacts,
    #[serde(default)]
    media: Media,
    flavor: FlavorSpec,
    #[serde(default)]
    image: ImageMetadata,
    #[serde(default)]
    completion: Completion,
    #[serde(default)]
    expect: BTreeMap<String, OutcomeKind>,
}

/// A scenario that cannot be used, with where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The io error is part of the message, not a `source`: anyhow's chain would repeat it.
    #[error("{path}: cannot read: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}", located(path, *line, *column, key, message))]
    Invalid { path: PathBuf, line: usize, column: usize, key: String, message: String },
    #[error("{dir}: no scenario files (*.toml) found")]
    Empty { dir: PathBuf },
}

fn located(path: &Path, line: usize, column: usize, key: &str, message: &str) -> String {
    let mut out = format!("{}:{line}:{column}: ", path.display());
    if !key.is_empty() {
        out.push_str(&format!("`{key}`: "));
    }
    out.push_str(message);
    out
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.guest.name)
    }
}

impl Scenario {
    /// Reads and validates one scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let bytes = std::fs::read(path).map_err(|error| ScenarioError::Read { path: path.to_path_buf(), error })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Where the text stops being UTF-8: a binary file, or one saved in another encoding.
            let valid = std::str::from_utf8(&e.as_bytes()[..e.utf8_error().valid_up_to()]).unwrap_or_default();
            let (line, column) = line_column(valid, valid.len());
            let message = "not UTF-8 text: a scenario file is TOML, which is UTF-8".to_string();
            ScenarioError::Invalid { path: path.to_path_buf(), line, column, key: String::new(), message }
        })?;
        Scenario::parse(path, &text)
    }

    /// Parses scenario text; `path` names it in errors and gives the scenario its name.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            let (line, column) = line_column(text, span.map(|s| s.start).unwrap_or(0));
            ScenarioError::Invalid { path: path.to_path_buf(), line, column, key, message }
        };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| invalid(e.span(), String::new(), e.message().to_string()))?;
        let file: ScenarioFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            invalid(inner.span(), if key == "." { String::new() } else { key }, inner.message().to_string())
        })?;
        let at_key = |key: &str| {
            let (line, column) = key_position(text, key);
            let key = key.to_string();
            move |message: String| ScenarioError::Invalid { path: path.to_path_buf(), line, column, key, message }
        };

        let mut expect = BTreeMap::new();
        for (layout, outcome) in file.expect {
            let key = format!("expect.{layout}");
            let parsed: Layout = layout.parse().map_err(|_| {
                at_key(&key)(format!(
                    "unknown layout `{layout}`, expected one of {}",
                    Layout::ALL.map(|l| l.as_str()).join(", ")
                ))
            })?;
            expect.insert(parsed, outcome);
        }
        let guest = &file.guest;
        if guest.family == guestsim::guest::OsFamily::Windows
            && guest.virtio_storage == guestsim::guest::DriverSource::Cdrom
            && guest.virtio_win_folder.is_none()
        {
            return Err(at_key("guest.virtio_storage")(
                "a Windows guest that loads drivers from a CD-ROM needs `virtio_win_folder` (e.g. \"2k12\")".into(),
            ));
        }
        if guest.virtio_storage == guestsim::guest::DriverSource::Floppy && guest.floppy_folder.is_none() {
            return Err(at_key("guest.virtio_storage")(
                "a guest that loads drivers from a floppy needs `floppy_folder` (e.g. \"Win2003\")".into(),
            ));
        }
        if file.flavor.disk_gb < guest.min_disk_gb {
            return Err(at_key("flavor.disk_gb")(format!(
                "{} GB is less than the guest's min_disk_gb of {}",
                file.flavor.disk_gb, guest.min_disk_gb
            )));
        }
        if file.flavor.ram_mb < guest.min_ram_mb {
            return Err(at_key("flavor.ram_mb")(format!(
                "{} MB is less than the guest's min_ram_mb of {}",
                file.flavor.ram_mb, guest.min_ram_mb
            )));
        }
        for (key, pattern) in [
            ("completion.success_console", &file.completion.success_console),
            ("completion.failure_console", &file.completion.failure_console),
            ("completion.boot_console", &file.completion.boot_console),
        ] {
            if let Some(p) = pattern
                && let Err(e) = regex::Regex::new(p)
            {
                return Err(at_key(key)(format!("not a valid regex: {e}")));
            }
        }
        if file.media.iso.is_some() && file.media.image.is_some() {
            return Err(at_key("media.image")("give either `media.iso` or `media.image`, not both".into()));
        }
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Scenario {
            name,
            path: path.to_path_buf(),
            about: file.scenario,
            guest: file.guest,
            media: file.media,
            flavor: file.flavor,
            image: file.image,
            completion: file.completion,
            expect,
        })
    }

    /// Loads every `*.toml` in `dir`, sorted by name; all errors are returned, not just the first.
    pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
        let entries =
            std::fs::read_dir(dir).map_err(|error| vec![ScenarioError::Read { path: dir.to_path_buf(), error }])?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(vec![ScenarioError::Empty { dir: dir.to_path_buf() }]);
        }
        let (ok, errors): (Vec<_>, Vec<_>) = paths.iter().map(|p| Scenario::load(p)).partition(Result::is_ok);
        if errors.is_empty() {
            Ok(ok.into_iter().map(|r| r.expect("partitioned ok")).collect())
        } else {
            Err(errors.into_iter().map(|r| r.expect_err("partitioned err")).collect())
        }
    }

    /// The image name the final image gets.
    pub fn image_name(&self) -> String {
        self.image.name.clone().unwrap_or_else(|| self.name.clone())
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// Where a dotted key (`table.key`) is written, for errors found after parsing; the table
/// header when the key itself is absent, 1:1 when neither is written.
fn key_position(text: &str, dotted: &str) -> (usize, usize) {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut in_table = table.is_empty();
    let mut table_line = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            let name = trimmed.trim_start_matches('[').split(']').next().unwrap_or("").trim();
            in_table = name == table;
            if in_table {
                table_line = Some(index + 1);
            }
            continue;
        }
        if in_table {
            let lhs = trimmed.split('=').next().unwrap_or("").trim().trim_matches('"');
            if trimmed.contains('=') && lhs == key {
                return (index + 1, line.len() - trimmed.len() + 1);
            }
        }
    }
    (table_line.unwrap_or(1), 1)
}

#[cfg(test)]
mod tests;
