//! Sources: where raw records come from, and the position of each record.
//!
//! A source is read through a [`Reader`], which hands out chunks together with the position
//! after them. Positions are totally ordered and are what a view stores with its state, so a
//! restarted reader resumes exactly where the last durable epoch ended. Decoding is not done
//! here (see `decode`), except by the generator, whose rows are typed from the start.

mod file;
mod generator;
mod options;

use std::path::PathBuf;

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

pub use file::FileReader;
pub use generator::{generate, GeneratorKind, GeneratorReader, GeneratorSpec};
pub use options::{parse_source_spec, FileMode, SourceSpec};

/// Errors of the source layer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source option error: {0}")]
    Options(String),
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Where a record sits in its source: for files the file's index in the sorted listing and the
/// byte offset after the record; for the generator file 0 and the event number after it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    pub file: u32,
    pub offset: u64,
}

/// Complete JSON lines read from one file.
pub struct LineChunk {
    /// Name of the file, for dead-letter positions.
    pub file_name: String,
    /// Index of the file; every line of the chunk is in it.
    pub file: u32,
    /// Byte offset of `data[0]` in the file.
    pub start_offset: u64,
    /// Whole lines (the last one may lack its newline only at the end of a finished file).
    pub data: Vec<u8>,
}

/// Rows that need no decoding, with the position after each row.
pub struct TypedChunk {
    pub batch: RecordBatch,
    pub file: u32,
    pub row_ends: Vec<u64>,
}

/// What a reader produced.
pub enum Chunk {
    Lines(LineChunk),
    Typed(TypedChunk),
    /// Nothing new for now (a followed file has no new complete line).
    Idle,
    /// A bounded source is fully read.
    End,
}

/// A source reader: hands out chunks in position order, starting at the position it was
/// opened at.
pub trait Reader: Send {
    fn next_chunk(&mut self) -> Result<Chunk, SourceError>;
    /// The position after everything handed out so far.
    fn position(&self) -> Position;
}

/// Opens a reader for `spec` that starts at `from`.
pub fn open_reader(
    spec: &SourceSpec,
    schema: datafusion::arrow::datatypes::SchemaRef,
    from: Position,
) -> Result<Box<dyn Reader>, SourceError> {
    Ok(match spec {
        SourceSpec::File { path, mode } => Box::new(FileReader::open(path.clone(), *mode, from)?),
        SourceSpec::Generator(g) => Box::new(GeneratorReader::new(g.clone(), schema, from)?),
    })
}
