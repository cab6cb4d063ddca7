//! The ledger: every cloud resource a run creates is written down *before* it is created, so
//! that cleanup finds it after a failure, a Ctrl-C or a `kill -9`.
//!
//! One JSON object per line, appended and flushed: `{"run","cloud","kind","name","id","event"}`
//! with `event` one of `intent` (about to create; the id is not known yet), `created`,
//! `deleted`. A resource is live when its last event is not `deleted`. Resources the user
//! brought (an existing image or flavor) are never written here, so never deleted.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What kind of cloud resource a ledger entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ResourceKind {
    Server,
    Image,
    Flavor,
}

impl ResourceKind {
    /// Cleanup order: servers hold images and flavors, so they go first.
    pub fn cleanup_rank(self) -> u8 {
        match self {
            ResourceKind::Server => 0,
            ResourceKind::Image => 1,
            ResourceKind::Flavor => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Intent,
    Created,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub run: String,
    /// Where the resource lives: the cloud's name and its Keystone URL.
    pub cloud: String,
    pub kind: ResourceKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot write the ledger {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the ledger {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a ledger entry: {message}")]
    Corrupt { path: PathBuf, line: usize, message: String },
}

/// An append-only ledger file shared by the runs of one process.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Mutex<File>,
    /// Whether intents are synced to disk before `record` returns.
    durable: bool,
}

/// A resource still alive according to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub run: String,
    pub cloud: String,
    pub kind: ResourceKind,
    pub name: String,
    /// None when the run died between `intent` and `created`: find it by name.
    pub id: Option<String>,
}

impl Ledger {
    /// The default location: `$XDG_STATE_HOME/isoharness/ledger.jsonl` (or `~/.local/state/...`).
    pub fn default_path() -> PathBuf {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("isoharness").join("ledger.jsonl")
    }

    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, true)
    }

    /// A ledger for resources that cannot outlive this process (those of an embedded mockstack): entries are
    /// written but not synced, since after a crash there is nothing left to clean up. A matrix records a dozen
    /// entries per cell from concurrent cells, and syncing each one serialised them.
    pub fn open_scratch(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, false)
    }

    fn open_with(path: &Path, durable: bool) -> Result<Ledger, LedgerError> {
        let write_err = |source| LedgerError::Write { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(write_err)?;
        Ok(Ledger { path: path.to_path_buf(), file: Mutex::new(file), durable })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry; an `intent` is also synced to disk before returning (unless the ledger was opened with
    /// [`Ledger::open_scratch`]). The intent alone lets cleanup find a resource after the machine crashes (by name):
    /// a lost `created` only loses the id, a lost `deleted` only makes cleanup delete again what is gone (which
    /// succeeds), so those are not worth a sync each.
    pub fn record(&self, entry: &Entry) -> Result<(), LedgerError> {
        self.append(entry, self.durable && entry.event == Event::Intent)
    }

    /// Appends one entry about a resource that cannot outlive this process (one of an embedded mockstack):
    /// written, never synced.
    pub fn record_ephemeral(&self, entry: &Entry) -> Result<(), LedgerError> {
        self.append(entry, false)
    }

    fn append(&self, entry: &Entry, sync: bool) -> Result<(), LedgerError> {
        let mut line = serde_json::to_string(entry).expect("ledger entries serialize");
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|_| if sync { file.sync_data() } else { Ok(()) })
            .map_err(|source| LedgerError::Write { path: self.path.clone(), source })
    }

    /// Every resource whose last event is not `deleted`, in cleanup order.
    pub fn live(path: &Path) -> Result<Vec<Live>, LedgerError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(LedgerError::Read { path: path.to_path_buf(), source }),
        };
        let mut last: BTreeMap<(String, String, ResourceKind, String), Entry> = BTreeMap::new();
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| LedgerError::Read { path: path.to_path_buf(), source })?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(&line).map_err(|e| LedgerError::Corrupt {
                path: path.to_path_buf(),
                line: index + 1,
                message: e.to_string(),
            })?;
            let key = (entry.run.clone(), entry.cloud.clone(), entry.kind, entry.name.clone());
            let merged = match last.remove(&key) {
                Some(previous) => Entry { id: entry.id.clone().or(previous.id), ..entry },
                None => entry,
            };
            last.insert(key, merged);
        }
        let mut live: Vec<Live> = last
            .into_values()
            .filter(|e| e.event != Event::Deleted)
            .map(|e| Live { run: e.run, cloud: e.cloud, kind: e.kind, name: e.name, id: e.id })
            .collect();
        live.sort_by_key(|l| (l.kind.cleanup_rank(), l.run.clone(), l.name.clone()));
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: ResourceKind, name: &str, id: Option<&str>, event: Event) -> Entry {
        Entry { run: "ih-1".into(), cloud: "c".into(), kind, name: name.into(), id: id.map(String::from), event }
    }

    #[test]
    fn live_resources_are_those_not_deleted_servers_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ledger.jsonl");
        let ledger = Ledger::open(&path).unwrap();
        for e in [
            entry(ResourceKind::Flavor, "f", None, Event::Intent),
            entry(ResourceKind::Flavor, "f", Some("f1"), Event::Created),
            entry(ResourceKind::Image, "iso", None, Event::Intent),
            entry(ResourceKind::Image, "iso", Some("i1"), Event::Created),
            entry(ResourceKind::Server, "vm", None, Event::Intent),
            entry(ResourceKind::Image, "gone", Some("i2"), Event::Created),
            entry(ResourceKind::Image, "gone", Some("i2"), Event::Deleted),
        ] {
            ledger.record(&e).unwrap();
        }
        let live = Ledger::live(&path).unwrap();
        let summary: Vec<(ResourceKind, &str, Option<&str>)> =
            live.iter().map(|l| (l.kind, l.name.as_str(), l.id.as_deref())).collect();
        assert_eq!(
            summary,
            [
                (ResourceKind::Server, "vm", None),
                (ResourceKind::Image, "iso", Some("i1")),
                (ResourceKind::Flavor, "f", Some("f1"))
            ]
        );
    }

    #[test]
    fn corrupt_line_is_located_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        assert!(Ledger::live(&path).unwrap().is_empty());
        std::fs::write(&path, "\n{\"run\":1}\n").unwrap();
        let err = Ledger::live(&path).unwrap_err().to_string();
        assert!(err.contains("ledger.jsonl:2: not a ledger entry"), "{err}");
    }
}
