//! The named prepared statements a connection holds, so `DISCARD ALL` can drop them.
//!
//! pgwire 0.41's portal store can remove a statement by name but cannot list or clear
//! them, so Weir records each name it parses in the connection's metadata (under
//! [`PREFIX`]) and removes those statements on `DISCARD ALL`, as PostgreSQL does
//! (`DEALLOCATE ALL` is part of it).

use std::collections::HashMap;

/// Where a connection's prepared statement names are kept in its metadata.
const PREFIX: &str = "weir.prepared.";

/// Records that the connection prepared a statement called `name`.
pub fn remember(metadata: &mut HashMap<String, String>, name: &str) {
    metadata.insert(format!("{PREFIX}{name}"), String::new());
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
        remember(&mut meta, "a");
        remember(&mut meta, "b");
        remember(&mut meta, "c");
        forget(&mut meta, "c");
        let mut names = take_all(&mut meta);
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(meta.len(), 1);
        assert!(take_all(&mut meta).is_empty());
    }
}
