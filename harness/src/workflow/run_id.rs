//! A run's id: the prefix of every resource name one run creates, and its key in the ledger.

use std::fmt;

/// `ih-` and 8 hex digits, fresh for each run: `isoharness cleanup --run ih-3f2a9c1d` finds that run's resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    #[allow(clippy::new_without_default)] // a fresh random id each time, not a default value
    pub fn new() -> RunId {
        RunId(format!("ih-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::RunId;

    #[test]
    fn run_ids_are_fresh_and_shaped_for_cleanup() {
        let (a, b) = (RunId::new(), RunId::new());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("ih-") && a.as_str().len() == 11, "{a}");
    }
}
