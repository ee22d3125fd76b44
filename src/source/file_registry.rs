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
//! - Copy-then-truncate rotation (logrotate's `copytruncate`: `app.log` copied to `app.log.1`,
//!   then `app.log` truncated and written on): the registry keeps, for each file, how many
//!   bytes from its start were read and their CRC-32. A new file whose first bytes are exactly
//!   all that was read of a listed file is a *copy* of it: it is not read while the original holds
//!   the same bytes. When the original is found truncated, its copy takes over its split, so
//!   reading goes on in the copy where it stopped in the original (the lines written between
//!   the last read and the copy are read from it), and the truncated file gets a new split and
//!   is followed from its start. A copy first listed together with the change of its original
//!   (Weir was stopped, or killed, between the copy and the truncation; or the original was
//!   deleted once copied) takes the split of the file that is gone or changed at its start
//!   the same way.
//! - A file that is no longer listed is forgotten; split numbers are never reused.

use std::collections::{HashMap, HashSet};
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
    /// How many bytes from its start were read, and their CRC-32.
    #[serde(default)]
    read: Option<(u64, u32)>,
    /// It is a copy of the file of this split (its first bytes are what was read of that
    /// one): not read while that file is listed.
    #[serde(default)]
    copy_of: Option<u32>,
}

/// Bytes of a file's beginning hashed to tell it from a later file under the same inode.
pub const HEAD_BYTES: usize = 64;

/// FNV-1a: a hash that is stored, so it must not change between builds (std's may).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The first `len` bytes of the file at `path` (all of it when shorter), if it can be read.
fn first_bytes(path: &Path, len: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(len);
    std::fs::File::open(path)
        .ok()?
        .take(len as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// How many bytes `head` holds, and their hash.
fn hash_head(head: &[u8]) -> (u32, u64) {
    (head.len() as u32, fnv1a(head))
}

/// The hash of the first `len` bytes of the file at `path` (of all of it when shorter).
fn head_of(path: &Path, len: usize) -> Option<(u32, u64)> {
    first_bytes(path, len).map(|b| hash_head(&b))
}

/// The registry the readers of one source share (a source may run a catch-up reader beside
/// its main one; both must see the same splits).
pub type SharedFiles = Arc<Mutex<FileRegistry>>;

/// The CRC-32 of the first `len` bytes of the file at `path`, if it has that many.
fn prefix_crc(path: &Path, len: u64) -> Option<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?.take(len);
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    (total == len).then(|| hasher.finalize())
}

/// A file as listed now.
#[derive(Debug, Clone)]
pub struct ListedFile {
    pub path: PathBuf,
    pub identity: Option<(u64, u64)>,
    /// Its length when listed.
    pub len: u64,
}

impl ListedFile {
    /// `path` with its identity and length, read from the file system.
    pub fn at(path: PathBuf, meta: &std::fs::Metadata) -> Self {
        Self {
            identity: identity(meta),
            len: meta.len(),
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
    /// order), forgets known files no longer listed, and returns the listed files by split
    /// (copies of a listed file left out: see the module docs). `verify` checks the first
    /// bytes of every known file (at start, when anything may have happened meanwhile);
    /// otherwise only of those listed under a new name.
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
        let mut paths = HashMap::new();
        let mut fresh = Vec::new();
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
            match found.filter(|i| known[*i].as_ref().is_some_and(same)) {
                Some(i) => {
                    let k = known[i].take().expect("found above");
                    paths.insert(k.split, file.path.clone());
                    self.files.push(KnownFile {
                        name,
                        identity: file.identity,
                        ..k
                    });
                }
                None => fresh.push(file),
            }
        }
        // A copy whose original is gone (deleted, or found changed at start) reads on in
        // the original's place.
        let mut present: HashSet<u32> = self
            .files
            .iter()
            .filter(|k| k.copy_of.is_none())
            .map(|k| k.split)
            .collect();
        for k in &mut self.files {
            if let Some(of) = k.copy_of.filter(|of| present.insert(*of)) {
                let path = paths.remove(&k.split).expect("a listed file");
                paths.insert(of, path);
                k.split = of;
                k.copy_of = None;
            }
        }
        // Known files no longer listed as they were: gone, or changed at their start.
        let mut gone: Vec<KnownFile> = known
            .into_iter()
            .flatten()
            .filter(|k| k.copy_of.is_none() && !present.contains(&k.split))
            .collect();
        for file in fresh {
            let first = first_bytes(&file.path, HEAD_BYTES);
            // A copy of a file that is gone or changed at its start (a kill between a copy and
            // a truncation, or an original deleted once copied) reads on in that file's place.
            if let Some(i) = gone
                .iter()
                .position(|k| is_copy(k, &file, first.as_deref()))
            {
                let original = gone.swap_remove(i);
                present.insert(original.split);
                paths.insert(original.split, file.path.clone());
                self.files.push(KnownFile {
                    split: original.split,
                    name: file.name(),
                    identity: file.identity,
                    head: first.as_deref().map(hash_head),
                    read: original.read,
                    copy_of: None,
                });
                continue;
            }
            let original = self
                .files
                .iter()
                .find(|k| k.copy_of.is_none() && is_copy(k, &file, first.as_deref()));
            if let Some(original) = original {
                // Said once, when first listed: a file that only starts like one already read
                // (not a rotation) is otherwise waited on without a word.
                tracing::info!(
                    file = %file.name(),
                    original = %original.name,
                    "the new file starts with all that was read of the original: taken for a \
                     copy made by copy-then-truncate rotation, it is read from where the \
                     original stopped once the original is truncated or gone"
                );
            }
            let copy_of = original.map(|k| (k.split, k.read));
            self.next += 1;
            let split = self.next - 1;
            paths.insert(split, file.path.clone());
            self.files.push(KnownFile {
                split,
                name: file.name(),
                identity: file.identity,
                head: first.as_deref().map(hash_head),
                read: copy_of.and_then(|(_, read)| read),
                copy_of: copy_of.map(|(of, _)| of),
            });
        }
        self.files.sort_by_key(|k| k.split);
        let mut by_split: Vec<(u32, PathBuf)> = self
            .files
            .iter()
            .filter(|k| k.copy_of.is_none())
            .map(|k| (k.split, paths[&k.split].clone()))
            .collect();
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
        file.read = None;
        self.next += 1;
        let new = file.split;
        self.files.push(file);
        Some(new)
    }

    /// The file of `split`, now at `path`, was found truncated: a copy of it, if one is known,
    /// takes its split (reading goes on in the copy); the file gets a new split, read from its
    /// start. Returns whether a copy took over.
    pub fn truncated(&mut self, split: u32, path: &Path) -> bool {
        self.renumber(split, path);
        let copy = self.files.iter_mut().find(|k| k.copy_of == Some(split));
        let copied = copy.is_some();
        if let Some(copy) = copy {
            copy.copy_of = None;
            copy.split = split;
        }
        self.files.sort_by_key(|k| k.split);
        copied
    }

    /// Notes that `data`, from offset `start` of the file of `split`, was read: the running
    /// CRC of the file's first bytes grows when `data` goes past what it covers.
    pub fn note_read(&mut self, split: u32, start: u64, data: &[u8]) {
        let Ok(i) = self.files.binary_search_by_key(&split, |k| k.split) else {
            return;
        };
        let file = &mut self.files[i];
        let (len, crc) = file.read.unwrap_or((0, 0));
        let end = start + data.len() as u64;
        if start > len || end <= len {
            return; // a gap (it cannot grow), or nothing new
        }
        let mut hasher = crc32fast::Hasher::new_with_initial(crc);
        hasher.update(&data[(len - start) as usize..]);
        file.read = Some((end, hasher.finalize()));
    }
}

/// Whether `file`, listed for the first time, is a copy of the known file `original`: it
/// starts with exactly the bytes read of `original`. A file shorter than that is never a
/// copy, though it may be one still being written: a new log started after a rename can
/// begin with the same lines as the old one, and must be read.
fn is_copy(original: &KnownFile, file: &ListedFile, first: Option<&[u8]>) -> bool {
    let Some((read, crc)) = original.read else {
        return false;
    };
    if read == 0
        || file.len == 0
        || (original.identity.is_some() && original.identity == file.identity)
    {
        return false;
    }
    // The first bytes first (`first`, read once): they rule out almost every other file.
    let Some(first) = first else {
        return false; // it cannot be read
    };
    if let Some((len, hash)) = original.head {
        if first.len() >= len as usize && fnv1a(&first[..len as usize]) != hash {
            return false;
        }
    }
    file.len >= read && prefix_crc(&file.path, read) == Some(crc)
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
                len: 0,
            })
            .collect()
    }

    /// Writes `body` to `name` in `dir`, and lists it with inode `inode`.
    fn written(dir: &Path, name: &str, body: &str, inode: u64) -> ListedFile {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        ListedFile {
            path,
            identity: Some((1, inode)),
            len: body.len() as u64,
        }
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
                len: body.len() as u64,
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

    #[test]
    fn a_copy_is_left_out_while_its_original_is_listed_and_takes_its_split_after() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, body: &str, inode: u64| written(dir.path(), name, body, inode);
        let mut r = FileRegistry::default();
        r.assign(vec![file("app.log", "a\nb\n", 7)], false);
        r.note_read(0, 0, b"a\n");
        r.note_read(0, 0, b"a\nb\n"); // read again after a restart: counted once
        assert_eq!(r.files[0].read.map(|(len, _)| len), Some(4));
        // A file holding fewer bytes than were read is not a copy, even one that starts the
        // same (a new log after a rename rotation may); nor is one holding other bytes.
        let short = r.assign(
            vec![file("app.log", "a\nb\n", 7), file("new", "a\n", 10)],
            false,
        );
        assert_eq!(short.len(), 2, "the shorter file is read");
        std::fs::remove_file(dir.path().join("new")).unwrap();
        let other = r.assign(
            vec![file("app.log", "a\nb\n", 7), file("x", "a\nc\n", 9)],
            false,
        );
        assert_eq!(splits(&other), [(0, "app.log".into()), (2, "x".into())]);
        // The copy (a line more than was read) is left out while the original is listed.
        let copied = r.assign(
            vec![
                file("app.log", "a\nb\nc\n", 7),
                file("app.log.1", "a\nb\nc\n", 8),
                file("x", "a\nc\n", 9),
            ],
            false,
        );
        assert_eq!(splits(&copied), [(0, "app.log".into()), (2, "x".into())]);
        // The original gone, the copy reads on in its place.
        std::fs::remove_file(dir.path().join("app.log")).unwrap();
        let after = r.assign(
            vec![file("app.log.1", "a\nb\nc\n", 8), file("x", "a\nc\n", 9)],
            true,
        );
        assert_eq!(splits(&after), [(0, "app.log.1".into()), (2, "x".into())]);
    }

    /// A kill between the copy and the truncation: at the next start the original is found
    /// changed at its start, and the copy, never seen while Weir ran, reads on in its place.
    #[test]
    fn a_copy_first_seen_at_start_takes_the_split_of_its_truncated_original() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, body: &str, inode: u64| written(dir.path(), name, body, inode);
        let mut r = FileRegistry::default();
        r.assign(vec![file("app.log", "a\nb\n", 7)], false);
        r.note_read(0, 0, b"a\n");
        let at_start = r.assign(
            vec![file("app.log", "z\n", 7), file("app.log.1", "a\nb\nc\n", 8)],
            true,
        );
        // The truncated file is another file now (new split), the copy is split 0 and keeps
        // what was read of it.
        assert_eq!(
            splits(&at_start),
            [(0, "app.log.1".into()), (1, "app.log".into())]
        );
        let copy = r.files.iter().find(|k| k.split == 0).unwrap();
        assert_eq!(copy.read.map(|(len, _)| len), Some(2));
        // A file that holds other bytes does not take a gone file's split.
        let mut r = FileRegistry::default();
        r.assign(vec![file("b.log", "a\nb\n", 17)], false);
        r.note_read(0, 0, b"a\nb\n");
        let other = r.assign(vec![file("c.log", "x\ny\nz\n", 18)], true);
        assert_eq!(splits(&other), [(1, "c.log".into())]);
    }
}
