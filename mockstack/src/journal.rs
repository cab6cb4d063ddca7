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
    /// The fault rule applied to the request (`rule 0 (name): http_error`), if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl JournalEntry {
    /// `GET /v2/images` style.
    pub fn call(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// How many requests the journal keeps: the newest, so that a mock serving a CI fleet for days stays bounded.
pub const JOURNAL_CAP: usize = 100_000;

#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    entries: std::collections::VecDeque<JournalEntry>,
    /// The sequence number of the next entry: it counts every request since the last clear, kept or not.
    next_seq: u64,
}

impl Journal {
    pub fn record(&self, mut entry: JournalEntry) {
        let mut kept = self.inner.lock().unwrap();
        entry.seq = kept.next_seq;
        kept.next_seq += 1;
        if kept.entries.len() == JOURNAL_CAP {
            kept.entries.pop_front();
        }
        kept.entries.push_back(entry);
    }

    /// The kept entries, oldest first.
    pub fn entries(&self) -> Vec<JournalEntry> {
        self.inner.lock().unwrap().entries.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        *self.inner.lock().unwrap() = Kept::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> JournalEntry {
        JournalEntry {
            seq: 0,
            service: "image".into(),
            method: "GET".into(),
            path: "/v2/images".into(),
            query: None,
            status: 200,
            request_id: "req-1".into(),
            at_ms: 0,
            microversion: None,
            fault: None,
        }
    }

    #[test]
    fn the_journal_keeps_the_newest_requests_up_to_its_cap_and_numbers_them_all() {
        let journal = Journal::default();
        for _ in 0..JOURNAL_CAP + 10 {
            journal.record(entry());
        }
        assert_eq!(journal.len(), JOURNAL_CAP);
        let entries = journal.entries();
        assert_eq!(entries[0].seq, 10, "the ten oldest were dropped");
        assert_eq!(entries[JOURNAL_CAP - 1].seq, (JOURNAL_CAP + 9) as u64);
        journal.clear();
        journal.record(entry());
        assert_eq!(journal.entries()[0].seq, 0);
    }
}
