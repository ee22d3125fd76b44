//! The file source: one JSON-lines file or a directory of them, read once or followed.
//!
//! Each file is a split; which one is the source's [`FileRegistry`]'s business, so a restart
//! resumes by file (see `file_registry.rs`). Files are read one after another in split order.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::file_registry::{file_name, ListedFile, SharedFiles};
use super::{Chunk, FileMode, LineChunk, Position, Reader, SourceError};

/// Bytes read per chunk; a longer line grows the read until it is whole.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads complete lines from a file or a directory of files, one file after another.
pub struct FileReader {
    root: PathBuf,
    mode: FileMode,
    /// The files listed, by split.
    files: Vec<(u32, PathBuf)>,
    /// The first file in `files` at or after `pos`.
    at: usize,
    /// Where reading goes on: a split and the offset in it. Past a finished file it is the
    /// next split number, which need not exist yet.
    pos: Position,
    open: Option<(u32, File)>,
    registry: SharedFiles,
}

fn io_err(path: &Path, error: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn list_files(root: &Path) -> Result<Vec<ListedFile>, SourceError> {
    let meta = std::fs::metadata(root).map_err(|e| io_err(root, e))?;
    if !meta.is_dir() {
        return Ok(vec![ListedFile::at(root.to_path_buf(), &meta)]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| io_err(root, e))? {
        let path = entry.map_err(|e| io_err(root, e))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // A file deleted since the listing is simply not listed.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => files.push(ListedFile::at(path, &meta)),
            _ => {}
        }
    }
    Ok(files)
}

impl FileReader {
    /// Opens `root` and positions the reader at `from`; `registry` says which split each file
    /// is (and learns the files listed now).
    pub fn open(
        root: PathBuf,
        mode: FileMode,
        from: Position,
        registry: SharedFiles,
    ) -> Result<Self, SourceError> {
        let mut reader = Self {
            root,
            mode,
            files: Vec::new(),
            at: 0,
            pos: from,
            open: None,
            registry,
        };
        match list_files(&reader.root) {
            Ok(listed) => reader.files = reader.registry.lock().assign(listed, true),
            // A followed path may appear later.
            Err(_) if mode == FileMode::Follow => {}
            Err(e) => return Err(e),
        }
        reader.locate();
        Ok(reader)
    }

    /// Points `at` at the first file at or after `pos` (and `pos` at its start when `pos`'s
    /// own split is gone).
    fn locate(&mut self) {
        self.at = self.files.partition_point(|(s, _)| *s < self.pos.split);
        if let Some((split, _)) = self.files.get(self.at) {
            if *split > self.pos.split {
                self.pos = Position {
                    split: *split,
                    offset: 0,
                };
            }
        }
    }

    /// The current file is finished: go on with the next one.
    fn next_file(&mut self) {
        self.pos = Position {
            split: self.pos.split + 1,
            offset: 0,
        };
        self.locate();
    }

    /// Lists the files again (a followed directory grows, a file is renamed or deleted).
    fn relist(&mut self) {
        if let Ok(listed) = list_files(&self.root) {
            self.files = self.registry.lock().assign(listed, false);
            self.locate();
        }
    }

    /// Opens the current file, unless it is open already (it stays open while it is read, so
    /// a file renamed meanwhile is read to its end). False when it is gone (deleted since it
    /// was listed) or was truncated below what was read of it (it then gets a new split, read
    /// from its start after the files known now, and a copy of it, if one was listed, reads
    /// on in its place): the reader moved on.
    fn open_current(&mut self) -> Result<bool, SourceError> {
        let (split, path) = &self.files[self.at];
        let split = *split;
        if self.open.as_ref().map(|(s, _)| *s) != Some(split) {
            match File::open(path) {
                Ok(file) => self.open = Some((split, file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "a listed file is gone; going on with the next");
                    self.next_file();
                    return Ok(false);
                }
                Err(e) => return Err(io_err(path, e)),
            }
        }
        let file = &self.open.as_ref().expect("opened above").1;
        let len = file.metadata().map_err(|e| io_err(path, e))?.len();
        if len < self.pos.offset {
            let path = path.clone();
            self.open = None;
            // Copy-then-truncate rotation copies before it truncates: list the copy now, so
            // that it is known as a copy of this file.
            self.relist();
            if !self.files.iter().any(|(s, p)| *s == split && *p == path) {
                // The other reader of this source (a catch-up beside the main one) already
                // gave the file a new split, or its copy took the file's place.
                return Ok(false);
            }
            let copied = self.registry.lock().truncated(split, &path);
            self.relist();
            if !copied {
                tracing::warn!(
                    path = %path.display(),
                    read = self.pos.offset,
                    len,
                    "a file is shorter than what was read of it (truncated): reading it again from its start"
                );
                return Ok(false);
            }
            let copy = self.files.get(self.at).filter(|(s, _)| *s == split);
            let copy_len = copy
                .and_then(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len());
            tracing::info!(
                path = %path.display(),
                copy = %copy.map(|(_, p)| p.display().to_string()).unwrap_or_default(),
                read = self.pos.offset,
                "a file was copied, then truncated (copytruncate rotation): reading on in the copy, then the file from its start"
            );
            if copy_len.is_none_or(|l| l < self.pos.offset) {
                // The copy holds no more than was read.
                self.next_file();
            }
            return Ok(false);
        }
        Ok(true)
    }
}

/// Reads `file` from `offset`: whole lines of about [`CHUNK_BYTES`] (more when one line is
/// longer); returns the bytes and whether the file ended.
fn read_at(file: &mut File, offset: u64, path: &Path) -> Result<(Vec<u8>, bool), SourceError> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err(path, e))?;
    let mut data = Vec::with_capacity(CHUNK_BYTES);
    let mut limit = CHUNK_BYTES;
    loop {
        let read = file
            .by_ref()
            .take((limit - data.len()) as u64)
            .read_to_end(&mut data)
            .map_err(|e| io_err(path, e))?;
        let at_eof = data.len() < limit || read == 0;
        if at_eof {
            return Ok((data, true));
        }
        if memrchr_newline(&data).is_some() {
            return Ok((data, false));
        }
        limit *= 2; // one line longer than the buffer: keep reading until it ends
    }
}

fn memrchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|b| *b == b'\n')
}

impl Reader for FileReader {
    fn next_chunk(&mut self) -> Result<Chunk, SourceError> {
        loop {
            if self.at >= self.files.len() {
                if self.mode == FileMode::Follow {
                    // Pick up files added to a followed directory (or a path that appeared).
                    self.relist();
                    if self.at < self.files.len() {
                        continue;
                    }
                    return Ok(Chunk::Idle);
                }
                return Ok(Chunk::End);
            }
            if !self.open_current()? {
                continue;
            }
            let path = &self.files[self.at].1;
            let file = &mut self.open.as_mut().expect("opened").1;
            let (mut data, at_eof) = read_at(file, self.pos.offset, path)?;
            let is_last_file = self.at + 1 == self.files.len();
            let complete = match memrchr_newline(&data) {
                Some(i) => i + 1,
                None => 0,
            };
            let take = if at_eof && (self.mode == FileMode::Once || !is_last_file) {
                data.len() // a finished file's last line needs no newline
            } else {
                complete
            };
            if take == 0 {
                if at_eof && (!is_last_file || self.mode == FileMode::Once) {
                    self.next_file();
                    continue;
                }
                if self.mode == FileMode::Follow && at_eof {
                    let was = self.pos;
                    self.relist();
                    if self.at + 1 < self.files.len() || self.pos != was {
                        continue;
                    }
                }
                return Ok(Chunk::Idle);
            }
            data.truncate(take);
            self.registry
                .lock()
                .note_read(self.pos.split, self.pos.offset, &data);
            let chunk = LineChunk {
                file_name: file_name(&self.files[self.at].1),
                split: self.pos.split,
                start_offset: self.pos.offset,
                data,
                record_ends: None,
                extra: None,
                skipped: 0,
                rejected: Vec::new(),
                end: self.pos.offset + take as u64,
            };
            self.pos.offset += take as u64;
            return Ok(Chunk::Lines(chunk));
        }
    }
}

impl FileReader {
    /// The position after everything handed out so far.
    pub fn position(&self) -> Position {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(reader: &mut FileReader) -> Vec<u8> {
        let mut all = Vec::new();
        while let Chunk::Lines(c) = reader.next_chunk().unwrap() {
            all.extend_from_slice(&c.data);
        }
        all
    }

    fn open(path: &Path, mode: FileMode, from: Position, registry: &SharedFiles) -> FileReader {
        FileReader::open(path.to_path_buf(), mode, from, registry.clone()).unwrap()
    }

    fn at(split: u32, offset: u64) -> Position {
        Position { split, offset }
    }

    #[test]
    fn once_mode_reads_last_line_without_newline_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":2}").unwrap();
        let mut r = open(&path, FileMode::Once, at(0, 0), &SharedFiles::default());
        assert_eq!(collect(&mut r), b"{\"a\":1}\n{\"a\":2}");
        assert!(matches!(r.next_chunk().unwrap(), Chunk::End));
    }

    #[test]
    fn follow_mode_waits_for_whole_lines_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\"").unwrap();
        let registry = SharedFiles::default();
        let mut r = open(&path, FileMode::Follow, at(0, 0), &registry);
        assert_eq!(collect(&mut r), b"{\"a\":1}\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b":2}\n").unwrap();
        assert_eq!(collect(&mut r), b"{\"a\":2}\n");
        assert_eq!(r.position().offset, 16);
        let mut again = open(&path, FileMode::Follow, at(0, 8), &registry);
        assert_eq!(collect(&mut again), b"{\"a\":2}\n");
    }

    #[test]
    fn directory_is_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2.json"), b"b\n").unwrap();
        std::fs::write(dir.path().join("1.json"), b"a\n").unwrap();
        let mut r = open(
            dir.path(),
            FileMode::Once,
            at(0, 0),
            &SharedFiles::default(),
        );
        assert_eq!(collect(&mut r), b"a\nb\n");
        assert_eq!(r.position(), at(2, 0));
    }

    /// Reads `dir` once to its end with `registry`, as a restart would from `from`.
    fn read_from(dir: &Path, from: Position, registry: &SharedFiles) -> Vec<u8> {
        collect(&mut open(dir, FileMode::Once, from, registry))
    }

    #[test]
    fn deleting_a_file_already_read_skips_nothing_at_restart() {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [("a", "a1\na2\n"), ("b", "b1\nb2\n"), ("c", "c1\n")] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let registry = SharedFiles::default();
        // Everything of a was read and committed: position (split 0, 6).
        let mut r = open(dir.path(), FileMode::Once, at(0, 0), &registry);
        let Chunk::Lines(first) = r.next_chunk().unwrap() else {
            panic!("a line chunk")
        };
        assert_eq!(
            (first.split, first.end, first.data.as_slice()),
            (0, 6, &b"a1\na2\n"[..])
        );
        std::fs::remove_file(dir.path().join("a")).unwrap();
        assert_eq!(read_from(dir.path(), at(0, 6), &registry), b"b1\nb2\nc1\n");
        // Part of b was read: the rest of b, then c.
        assert_eq!(read_from(dir.path(), at(1, 3), &registry), b"b2\nc1\n");
    }

    #[test]
    fn a_file_added_with_an_earlier_name_is_read_after_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), "b1\n").unwrap();
        std::fs::write(dir.path().join("c"), "c1\n").unwrap();
        let registry = SharedFiles::default();
        assert_eq!(read_from(dir.path(), at(0, 0), &registry), b"b1\nc1\n");
        std::fs::write(dir.path().join("a"), "a1\n").unwrap();
        // Restart where the last run ended (end of c, split 1): only the new file is read.
        let mut r = open(dir.path(), FileMode::Once, at(1, 3), &registry);
        let Chunk::Lines(chunk) = r.next_chunk().unwrap() else {
            panic!("a line chunk")
        };
        assert_eq!(
            (chunk.split, chunk.file_name.as_str(), chunk.data.as_slice()),
            (2, "a", &b"a1\n"[..])
        );
        assert!(matches!(r.next_chunk().unwrap(), Chunk::End));
    }

    #[test]
    fn a_renamed_file_keeps_its_split_and_a_new_one_follows() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "1\n").unwrap();
        let registry = SharedFiles::default();
        let mut r = open(dir.path(), FileMode::Follow, at(0, 0), &registry);
        assert_eq!(collect(&mut r), b"1\n");
        // Rotation: a last line lands, the file is renamed, a new one starts.
        append(&log, b"2\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        std::fs::write(&log, "3\n").unwrap();
        assert_eq!(collect(&mut r), b"2\n3\n");
        // A restart after it reads nothing again.
        let mut again = open(dir.path(), FileMode::Follow, r.position(), &registry);
        assert_eq!(collect(&mut again), b"");
        // Nor does a restart from the end of the renamed file, before the new one was read.
        let mut again = open(dir.path(), FileMode::Follow, at(0, 4), &registry);
        assert_eq!(collect(&mut again), b"3\n");
    }

    #[test]
    fn a_truncated_file_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "old line one\nold line two\n").unwrap();
        let registry = SharedFiles::default();
        let mut r = open(dir.path(), FileMode::Follow, at(0, 0), &registry);
        assert_eq!(collect(&mut r), b"old line one\nold line two\n");
        std::fs::write(&log, "new\n").unwrap();
        let mut chunks = Vec::new();
        while let Chunk::Lines(c) = r.next_chunk().unwrap() {
            chunks.push((c.split, c.start_offset, c.data));
        }
        assert_eq!(chunks, vec![(1, 0, b"new\n".to_vec())]);
    }

    /// logrotate's `copytruncate`: the file is copied to `copy`, then truncated, and the
    /// application writes on into it.
    fn copy_then_truncate(log: &Path, copy: &Path, then: &[u8]) {
        std::fs::copy(log, copy).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(log).unwrap();
        f.set_len(0).unwrap();
        drop(f);
        append(log, then);
    }

    fn append(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn copy_then_truncate_rotation_reads_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "line 1\nline 2\n").unwrap();
        let registry = SharedFiles::default();
        let mut r = open(dir.path(), FileMode::Follow, at(0, 0), &registry);
        assert_eq!(collect(&mut r), b"line 1\nline 2\n");
        // A line lands after the last read; then the rotation; then the application writes on.
        append(&log, b"line 3\n");
        copy_then_truncate(&log, &dir.path().join("app.log.1"), b"line 4\n");
        assert_eq!(collect(&mut r), b"line 3\nline 4\n");
        append(&log, b"line 5\n");
        assert_eq!(
            collect(&mut r),
            b"line 5\n",
            "the truncated file is followed"
        );
        // A restart from where it stopped reads nothing again; one from the middle of the
        // original reads the rest of it from the copy, then the new lines.
        let end = r.position();
        let mut again = open(dir.path(), FileMode::Follow, end, &registry);
        assert_eq!(collect(&mut again), b"");
        let mut again = open(dir.path(), FileMode::Follow, at(0, 7), &registry);
        assert_eq!(collect(&mut again), b"line 2\nline 3\nline 4\nline 5\n");
    }

    #[test]
    fn a_copy_listed_before_the_truncation_is_not_read_while_the_original_has_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let copy = dir.path().join("app.log.1");
        std::fs::write(&log, "line 1\n").unwrap();
        let registry = SharedFiles::default();
        let mut r = open(dir.path(), FileMode::Follow, at(0, 0), &registry);
        assert_eq!(collect(&mut r), b"line 1\n");
        append(&log, b"line 2\n");
        std::fs::copy(&log, &copy).unwrap();
        // The reader lists the copy at the end of the original, and reads on in the original.
        assert_eq!(collect(&mut r), b"line 2\n");
        append(&log, b"line 3\n");
        assert_eq!(
            collect(&mut r),
            b"line 3\n",
            "the original is still followed"
        );
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(0).unwrap();
        append(&log, b"line 4\n");
        assert_eq!(collect(&mut r), b"line 4\n");
    }

    #[test]
    fn a_new_file_that_only_starts_like_a_read_one_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "{\"n\":1}\n").unwrap();
        let registry = SharedFiles::default();
        let mut r = open(dir.path(), FileMode::Follow, at(0, 0), &registry);
        assert_eq!(collect(&mut r), b"{\"n\":1}\n");
        std::fs::write(dir.path().join("b.json"), "{\"n\":2}\n{\"n\":3}\n").unwrap();
        assert_eq!(collect(&mut r), b"{\"n\":2}\n{\"n\":3}\n");
    }
}
