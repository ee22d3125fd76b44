//! Which split each file of a file source is: given once, when the file is first listed, and
//! stored with the source's progress, so a restart resumes by file, not by a position in
//! today's listing.
//!
//! - A file is known by its device and inode (on Unix), so a file renamed by log rotation keeps
//!   its split and is not read again; by its name elsewhere and in registries stored before
//!   identities were recorded. An inode is reused by the file system once its file is deleted,
//!   so the registry also keeps a hash of the file's first bytes (up to [`HEAD_BYTES`]) and
//!   checks it whenever the name under that inode changed, and for every file at start: a
//!   file whose first bytes differ is another file.
//! - Files first listed together get splits in name order. A file that appears later gets the
//!   next split whatever its name, so it is read after every file already known: deleting a
//!   file that was read, or adding one whose name sorts earlier, never makes a restart skip or
//!   repeat data.
//! - A file found shorter than what was read of it (truncated) gets a new split and is read
//!   again from its start.
//! - A file that is no longer listed is forgotten; split numbers are never reused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The split of every file a source has listed and still lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRegistry {
    /// Ordered by split.
    files: Vec<KnownFile>,
    /// The split the next new file gets.
    next: u32,
}

/// A file the registry knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KnownFile {
    split: u32,
    /// Its name in the source's directory when last listed.
    name: String,
    /// Device and inode, where the platform has them.
    #[serde(default)]
    identity: Option<(u64, u64)>,
    /// How many of its first bytes were hashed when it was first listed, and their hash.
    #[serde(default)]
    head: Option<(u32, u64)>,
}

/// Bytes of a file's beginning hashed to tell it from a later file under the same inode.
pub const HEAD_BYTES: usize = 64;

/// FNV-1a: a hash that is stored, so it must not change between builds (std's may).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The hash of the first `len` bytes of the file at `path` (of all of it when shorter).
fn head_of(path: &Path, len: usize) -> Option<(u32, u64)> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(len);
    std::fs::File::open(path)
        .ok()?
        .take(len as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some((bytes.len() as u32, fnv1a(&bytes)))
}

/// The registry the readers of one source share (a source may run a catch-up reader beside
/// its main one; both must see the same splits).
pub type SharedFiles = Arc<Mutex<FileRegistry>>;

/// A file as listed now.
#[derive(Debug, Clone)]
pub struct ListedFile {
    pub path: PathBuf,
    pub identity: Option<(u64, u64)>,
}

impl ListedFile {
    /// `path` with its identity, read from the file system.
    pub fn at(path: PathBuf, meta: &std::fs::Metadata) -> Self {
        Self {
            identity: identity(meta),
            path,
        }
    }

    fn name(&self) -> String {
        file_name(&self.path)
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The last component of `path`, as text.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl FileRegistry {
    /// Matches `listed` with the known files, gives each new one the next split (in name
    /// order), forgets known files no longer listed, and returns the listed files by split.
    /// `verify` checks the first bytes of every known file (at start, when anything may have
    /// happened meanwhile); otherwise only of those listed under a new name.
    pub fn assign(&mut self, mut listed: Vec<ListedFile>, verify: bool) -> Vec<(u32, PathBuf)> {
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        let mut known: Vec<Option<KnownFile>> = std::mem::take(&mut self.files)
            .into_iter()
            .map(Some)
            .collect();
        let mut by_identity = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, k) in known.iter().flatten().enumerate() {
            match k.identity {
                Some(id) => by_identity.insert(id, i),
                None => by_name.insert(k.name.clone(), i),
            };
        }
        let mut by_split = Vec::with_capacity(listed.len());
        for file in listed {
            let name = file.name();
            // Known by identity; or by name when it was stored without one (older registry)
            // or this platform has none.
            let found = match file.identity {
                Some(id) => by_identity.get(&id).or_else(|| by_name.get(&name)).copied(),
                None => known
                    .iter()
                    .position(|k| k.as_ref().is_some_and(|k| k.name == name)),
            };
            let same = |k: &KnownFile| {
                let unchanged = k.name == name && !verify;
                unchanged
                    || k.head.is_none_or(|(len, hash)| {
                        head_of(&file.path, len as usize) == Some((len, hash))
                    })
            };
            let (split, head) = match found.filter(|i| known[*i].as_ref().is_some_and(same)) {
                Some(i) => {
                    let k = known[i].take().expect("found above");
                    (k.split, k.head)
                }
                None => {
                    self.next += 1;
                    (self.next - 1, head_of(&file.path, HEAD_BYTES))
                }
            };
            self.files.push(KnownFile {
                split,
                name,
                identity: file.identity,
                head,
            });
            by_split.push((split, file.path));
        }
        self.files.sort_by_key(|k| k.split);
        by_split.sort_by_key(|(split, _)| *split);
        by_split
    }

    /// Gives the file of `split`, now at `path`, a new split (it is read again from its start,
    /// after every file known now); returns the new split.
    pub fn renumber(&mut self, split: u32, path: &Path) -> Option<u32> {
        let i = self.files.iter().position(|k| k.split == split)?;
        let mut file = self.files.remove(i);
        file.split = self.next;
        file.head = head_of(path, HEAD_BYTES);
        self.next += 1;
        let new = file.split;
        self.files.push(file);
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(files: &[(&str, u64)]) -> Vec<ListedFile> {
        files
            .iter()
            .map(|(name, inode)| ListedFile {
                path: PathBuf::from("/d").join(name),
                identity: Some((1, *inode)),
            })
            .collect()
    }

    fn splits(assigned: &[(u32, PathBuf)]) -> Vec<(u32, String)> {
        assigned.iter().map(|(s, p)| (*s, file_name(p))).collect()
    }

    #[test]
    fn splits_follow_first_listing_then_arrival_and_are_never_reused() {
        let mut r = FileRegistry::default();
        let first = r.assign(listed(&[("a", 10), ("b", 11)]), false);
        assert_eq!(splits(&first), [(0, "a".into()), (1, "b".into())]);
        // "0" sorts first but arrived later; "a" was deleted.
        let later = r.assign(listed(&[("0", 12), ("b", 11)]), false);
        assert_eq!(splits(&later), [(1, "b".into()), (2, "0".into())]);
        // "a" comes back as a new file: a new split, not 0.
        let again = r.assign(listed(&[("0", 12), ("a", 13), ("b", 11)]), false);
        assert_eq!(
            splits(&again),
            [(1, "b".into()), (2, "0".into()), (3, "a".into())]
        );
    }

    #[test]
    fn a_file_is_known_by_its_identity_across_renames() {
        let mut r = FileRegistry::default();
        r.assign(listed(&[("app.log", 7)]), false);
        let rotated = r.assign(listed(&[("app.log", 8), ("app.log.1", 7)]), false);
        assert_eq!(
            splits(&rotated),
            [(0, "app.log.1".into()), (1, "app.log".into())]
        );
        // The same name with another identity is another file.
        let replaced = r.assign(listed(&[("app.log", 9)]), false);
        assert_eq!(splits(&replaced), [(2, "app.log".into())]);
    }

    #[test]
    fn a_registry_stored_without_identities_matches_by_name() {
        let stored = r#"{"files":[{"split":0,"name":"a"},{"split":1,"name":"b"}],"next":2}"#;
        let mut r: FileRegistry = serde_json::from_str(stored).unwrap();
        let now = r.assign(listed(&[("b", 5), ("c", 6)]), false);
        assert_eq!(splits(&now), [(1, "b".into()), (2, "c".into())]);
        // Identities are recorded from now on.
        let renamed = r.assign(listed(&[("b2", 5), ("c", 6)]), false);
        assert_eq!(splits(&renamed), [(1, "b2".into()), (2, "c".into())]);
        // An empty stored registry (progress written before it existed) numbers by name.
        let mut old = FileRegistry::default();
        let now = old.assign(listed(&[("y", 1), ("x", 2)]), false);
        assert_eq!(splits(&now), [(0, "x".into()), (1, "y".into())]);
    }

    #[test]
    fn a_reused_inode_under_another_name_is_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, body).unwrap();
            ListedFile {
                path,
                identity: Some((1, 7)),
            }
        };
        let mut r = FileRegistry::default();
        r.assign(vec![at("b", "{\"from\":\"b\"}\n")], false);
        // Renamed, and grown: the same file.
        let renamed = r.assign(vec![at("b.1", "{\"from\":\"b\"}\nmore\n")], false);
        assert_eq!(splits(&renamed), [(0, "b.1".into())]);
        // b.1 deleted, and a new file got its inode.
        let reused = r.assign(vec![at("a", "{\"from\":\"a\"}\n")], false);
        assert_eq!(splits(&reused), [(1, "a".into())]);
        // At start every file is checked, even under its old name.
        std::fs::remove_file(dir.path().join("a")).unwrap();
        let rewritten = r.assign(vec![at("a", "{\"from\":\"z\"}\n")], true);
        assert_eq!(splits(&rewritten), [(2, "a".into())]);
    }

    #[test]
    fn renumbering_moves_a_file_after_every_known_one() {
        let mut r = FileRegistry::default();
        r.assign(listed(&[("a", 1), ("b", 2)]), false);
        assert_eq!(r.renumber(0, Path::new("/d/a")), Some(2));
        assert_eq!(r.renumber(9, Path::new("/d/x")), None);
        let now = r.assign(listed(&[("a", 1), ("b", 2)]), false);
        assert_eq!(splits(&now), [(1, "b".into()), (2, "a".into())]);
    }
}
