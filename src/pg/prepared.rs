//! The named prepared statements a connection holds, so `DISCARD ALL` can drop them, and
//! the text of those that read session settings, so they are planned again when executed.
//!
//! pgwire 0.41's portal store can remove a statement by name but cannot list or clear
//! them, so Weir records each name it parses in the connection's metadata (under
//! [`PREFIX`]) and removes those statements on `DISCARD ALL`, as PostgreSQL does
//! (`DEALLOCATE ALL` is part of it).
//!
//! A statement that calls `current_setting` or reads `search_path` has the connection's
//! settings inlined when it is planned (`rewrite.rs`); planned once at Parse, it would keep
//! answering with the values of that moment after a `SET`. Its text is kept with its name,
//! and Execute plans it again with the settings then in force.

use std::collections::HashMap;

/// Where a connection's prepared statement names are kept in its metadata.
const PREFIX: &str = "weir.prepared.";

/// Records that the connection prepared `sql` as the statement called `name`.
pub fn remember(metadata: &mut HashMap<String, String>, name: &str, sql: &str) {
    let lower = sql.to_ascii_lowercase();
    let reads_settings = lower.contains("current_setting") || lower.contains("search_path");
    let kept = if reads_settings { sql } else { "" };
    metadata.insert(format!("{PREFIX}{name}"), kept.to_string());
}

/// The text of statement `name` when it reads session settings (and must be planned again
/// at each execution).
pub fn reads_settings<'a>(metadata: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    metadata
        .get(&format!("{PREFIX}{name}"))
        .map(String::as_str)
        .filter(|sql| !sql.is_empty())
}

/// Records that the connection closed its statement called `name`.
pub fn forget(metadata: &mut HashMap<String, String>, name: &str) {
    metadata.remove(&format!("{PREFIX}{name}"));
}

/// Forgets the names of every statement the connection prepared and returns them, for
/// the caller to drop from its portal store.
pub fn take_all(metadata: &mut HashMap<String, String>) -> Vec<String> {
    let names: Vec<String> = metadata
        .keys()
        .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
        .collect();
    for name in &names {
        metadata.remove(&format!("{PREFIX}{name}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_all_returns_and_forgets_the_names() {
        let mut meta = HashMap::from([("user".to_string(), "ana".to_string())]);
        remember(&mut meta, "a", "SELECT 1");
        remember(&mut meta, "b", "SELECT 2");
        remember(&mut meta, "c", "SELECT 3");
        forget(&mut meta, "c");
        let mut names = take_all(&mut meta);
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(meta.len(), 1);
        assert!(take_all(&mut meta).is_empty());
    }

    #[test]
    fn statements_that_read_settings_keep_their_text() {
        let mut meta = HashMap::new();
        remember(&mut meta, "plain", "SELECT n FROM v WHERE k = $1");
        let reads = "SELECT Current_Setting('application_name')";
        remember(&mut meta, "s", reads);
        assert_eq!(reads_settings(&meta, "plain"), None);
        assert_eq!(reads_settings(&meta, "s"), Some(reads));
        assert_eq!(reads_settings(&meta, "gone"), None);
        forget(&mut meta, "s");
        assert_eq!(reads_settings(&meta, "s"), None);
    }
}
