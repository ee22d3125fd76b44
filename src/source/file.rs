//! The file source: one JSON-lines file or a directory of them, read once or followed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Chunk, FileMode, LineChunk, Position, Reader, SourceError};

/// Bytes read per chunk; a longer line grows the read until it is whole.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads complete lines from a file or a directory of files in name order.
pub struct FileReader {
    root: PathBuf,
    mode: FileMode,
    files: Vec<PathBuf>,
    pos: Position,
    open: Option<(u32, File)>,
}

fn io_err(path: &Path, error: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn list_files(root: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let meta = std::fs::metadata(root).map_err(|e| io_err(root, e))?;
    if !meta.is_dir() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| io_err(root, e))? {
        let path = entry.map_err(|e| io_err(root, e))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if path.is_file() && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl FileReader {
    /// Opens `root` and positions the reader at `from`.
    pub fn open(root: PathBuf, mode: FileMode, from: Position) -> Result<Self, SourceError> {
        let files = match list_files(&root) {
            Ok(files) => files,
            // A followed path may appear later.
            Err(_) if mode == FileMode::Follow => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            root,
            mode,
            files,
            pos: from,
            open: None,
        })
    }

    fn file(&mut self, index: u32) -> Result<&mut File, SourceError> {
        if self.open.as_ref().map(|(i, _)| *i) != Some(index) {
            let path = &self.files[index as usize];
            let file = File::open(path).map_err(|e| io_err(path, e))?;
            self.open = Some((index, file));
        }
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }

    /// Reads from the current position; returns the bytes and whether the file ended.
    fn read_from_position(&mut self) -> Result<(Vec<u8>, bool), SourceError> {
        let index = self.pos.split;
        let offset = self.pos.offset;
        let path = self.files[index as usize].clone();
        let file = self.file(index)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(&path, e))?;
        let mut data = Vec::with_capacity(CHUNK_BYTES);
        let mut limit = CHUNK_BYTES;
        loop {
            let read = file
                .by_ref()
                .take((limit - data.len()) as u64)
                .read_to_end(&mut data)
                .map_err(|e| io_err(&path, e))?;
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
}

fn memrchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|b| *b == b'\n')
}

impl Reader for FileReader {
    fn next_chunk(&mut self) -> Result<Chunk, SourceError> {
        loop {
            if self.pos.split as usize >= self.files.len() {
                if self.mode == FileMode::Follow {
                    // Pick up files added to a followed directory (or a path that appeared).
                    if let Ok(files) = list_files(&self.root) {
                        if files.len() > self.files.len() && files.starts_with(&self.files) {
                            self.files = files;
                            continue;
                        }
                    }
                    return Ok(Chunk::Idle);
                }
                return Ok(Chunk::End);
            }
            let (mut data, at_eof) = self.read_from_position()?;
            let is_last_file = self.pos.split as usize + 1 == self.files.len();
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
                if at_eof && !is_last_file {
                    self.pos = Position {
                        split: self.pos.split + 1,
                        offset: 0,
                    };
                    continue;
                }
                if at_eof && self.mode == FileMode::Once {
                    self.pos = Position {
                        split: self.pos.split + 1,
                        offset: 0,
                    };
                    continue;
                }
                if self.mode == FileMode::Follow && at_eof {
                    if let Ok(files) = list_files(&self.root) {
                        if files.len() > self.files.len() && files.starts_with(&self.files) {
                            self.files = files;
                            continue;
                        }
                    }
                }
                return Ok(Chunk::Idle);
            }
            data.truncate(take);
            let chunk = LineChunk {
                file_name: self.files[self.pos.split as usize]
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
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

    #[test]
    fn once_mode_reads_last_line_without_newline_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":2}").unwrap();
        let mut r = FileReader::open(path, FileMode::Once, Position::default()).unwrap();
        assert_eq!(collect(&mut r), b"{\"a\":1}\n{\"a\":2}");
        assert!(matches!(r.next_chunk().unwrap(), Chunk::End));
    }

    #[test]
    fn follow_mode_waits_for_whole_lines_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\"").unwrap();
        let mut r = FileReader::open(path.clone(), FileMode::Follow, Position::default()).unwrap();
        assert_eq!(collect(&mut r), b"{\"a\":1}\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b":2}\n").unwrap();
        assert_eq!(collect(&mut r), b"{\"a\":2}\n");
        assert_eq!(r.position().offset, 16);
        let mut again = FileReader::open(
            path,
            FileMode::Follow,
            Position {
                split: 0,
                offset: 8,
            },
        )
        .unwrap();
        assert_eq!(collect(&mut again), b"{\"a\":2}\n");
    }

    #[test]
    fn directory_is_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2.json"), b"b\n").unwrap();
        std::fs::write(dir.path().join("1.json"), b"a\n").unwrap();
        let mut r = FileReader::open(
            dir.path().to_path_buf(),
            FileMode::Once,
            Position::default(),
        )
        .unwrap();
        assert_eq!(collect(&mut r), b"a\nb\n");
        assert_eq!(
            r.position(),
            Position {
                split: 2,
                offset: 0
            }
        );
    }
}
