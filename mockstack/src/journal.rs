//! The request journal: every API call mockstack answered, so tests can check what a client did.

use std::sync::Mutex;

use serde::Serialize;

/// One answered request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JournalEntry {
    /// Position in the journal, from 0.
    pub seq: u64,
    /// `identity`, `image`, `compute` or `mockstack`.
    pub service: String,
    pub method: String,
    /// The path below the service prefix, without the query string, e.g. `/v2/images`.
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub request_id: String,
    /// Virtual milliseconds since the mock's clock started.
    pub at_ms: u64,
    /// The `OpenStack-API-Version` the response carried, if any.
    pub microversion: Option<String>,
}

impl JournalEntry {
    /// `GET /v2/images` style.
    pub fn call(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<Vec<JournalEntry>>,
}

impl Journal {
    pub fn record(&self, mut entry: JournalEntry) {
        let mut entries = self.entries.lock().unwrap();
        entry.seq = entries.len() as u64;
        entries.push(entry);
    }

    pub fn entries(&self) -> Vec<JournalEntry> {
        self.entries.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }
}
