//! Sources: where raw records come from, and the position of each record.
//!
//! A source is read through a [`Reader`], which hands out chunks together with the position
//! after them. Positions are totally ordered and are what a view stores with its state, so a
//! restarted reader resumes exactly where the last durable epoch ended. Decoding is not done
//! here (see `decode`), except by the generator, whose rows are typed from the start.

mod embedded_kafka;
mod file;
mod file_registry;
pub(crate) mod generator;
mod kafka;
mod labelled_logins;
mod options;

use std::collections::BTreeMap;
use std::path::PathBuf;

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

pub use embedded_kafka::{EmbeddedKafka, JsonProducer, MOCK_PARTITION_BYTES};
pub use file::FileReader;
pub use file_registry::{FileRegistry, SharedFiles};
pub use generator::{generate, GeneratorKind, GeneratorReader, GeneratorSpec};
pub use kafka::{KafkaReader, KafkaSpec, StartOffset, DEFAULT_MAX_MESSAGE_BYTES};
pub use options::{parse_format, parse_max_future, parse_source_spec, FileMode, SourceSpec};

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

/// Where a record sits in its source: the split it is in and the offset after it in that
/// split. A split is a file as the source's [`FileRegistry`] numbers it (offsets are bytes), the generator's
/// one stream (split 0, offsets are event numbers) or a Kafka partition (offsets are message
/// offsets plus one).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    pub split: u32,
    pub offset: u64,
}

/// How far a consumer of a source got in each of its splits: the offset after the last record
/// it took from the split. A split it never read from is absent (offset 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontier(BTreeMap<u32, u64>);

impl Frontier {
    /// The offset after the last record taken from `split` (0 when none was).
    pub fn get(&self, split: u32) -> u64 {
        self.0.get(&split).copied().unwrap_or(0)
    }

    /// Whether the split was ever read from.
    pub fn has(&self, split: u32) -> bool {
        self.0.contains_key(&split)
    }

    /// Moves the split forward to `offset` (never back).
    pub fn advance(&mut self, split: u32, offset: u64) {
        let at = self.0.entry(split).or_insert(0);
        *at = (*at).max(offset);
    }

    /// Where a source whose splits are read one after another (files, the generator) is: the
    /// last split and its offset.
    pub fn last(&self) -> Position {
        self.0
            .last_key_value()
            .map(|(split, offset)| Position {
                split: *split,
                offset: *offset,
            })
            .unwrap_or_default()
    }

    /// Every split and its offset, in split order.
    pub fn splits(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.0.iter().map(|(s, o)| (*s, *o))
    }

    /// Whether this frontier is at or past `other` in every split `other` has.
    pub fn covers(&self, other: &Frontier) -> bool {
        other
            .splits()
            .all(|(split, offset)| self.get(split) >= offset)
    }
}

/// Where a new reader starts: the frontier of every consumer that still needs input, and
/// where the source first started reading each split.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub consumers: Vec<Frontier>,
    pub origin: Frontier,
    /// Everything the source ever read (its `high`): history a rate-limited source (the
    /// generator) replays at full speed; only what comes after it is paced.
    pub history: Frontier,
    /// Which split each file is (file sources), shared by the source's readers.
    pub files: SharedFiles,
}

impl Resume {
    /// For sequential sources: the earliest point any consumer is at.
    pub fn sequential(&self) -> Position {
        self.consumers
            .iter()
            .map(Frontier::last)
            .min()
            .unwrap_or_default()
    }

    /// For split-parallel sources: where `split` must be read from, or `None` when some
    /// consumer never read it (it then starts at the source's origin).
    pub fn split(&self, split: u32) -> Option<u64> {
        self.consumers
            .iter()
            .map(|f| f.has(split).then(|| f.get(split)))
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().min())
    }
}

/// Complete JSON lines read from one split.
pub struct LineChunk {
    /// Name of the file (or the partition number), for dead-letter positions.
    pub file_name: String,
    /// The split every line of the chunk is in.
    pub split: u32,
    /// Byte offset of `data[0]` in the file.
    pub start_offset: u64,
    /// Whole lines (the last one may lack its newline only at the end of a finished file).
    pub data: Vec<u8>,
    /// For record sources (Kafka): one line per record, no blank lines, and the offset after
    /// each record. Dead letters are then placed as `file_name/offset`.
    pub record_ends: Option<Vec<u64>>,
    /// Columns appended to the decoded rows (Kafka metadata), one value per line.
    pub extra: Option<RecordBatch>,
    /// Empty records (Kafka tombstones) skipped in the chunk; they have no line.
    pub skipped: u64,
    /// Records refused before decoding (oversized Kafka messages); they have no line and
    /// become dead letters.
    pub rejected: Vec<RejectedRecord>,
    /// Offset after the whole chunk in its split.
    pub end: u64,
}

/// A record the reader refused to decode, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRecord {
    /// The record's own offset in its split (a Kafka message offset).
    pub offset: u64,
    /// The start of the record, for the dead letter.
    pub raw: String,
    pub reason: String,
}

/// Rows that need no decoding, with the position after each row.
pub struct TypedChunk {
    pub batch: RecordBatch,
    pub split: u32,
    pub row_ends: Vec<u64>,
}

/// The state of one split of a split-parallel source (a Kafka partition), as its reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitStatus {
    pub split: u32,
    /// Offset after the last record read (not yet durable).
    pub read: u64,
    /// The broker's high watermark (offset of the next record to be written), when known.
    pub high_watermark: Option<i64>,
    /// No record for longer than the idle timeout: it does not hold the watermark back.
    pub idle: bool,
}

/// What a reader produced.
pub enum Chunk {
    Lines(LineChunk),
    Typed(TypedChunk),
    /// Nothing new for now (a followed file has no new complete line).
    Idle,
    /// The set of splits or their idleness changed (split-parallel sources).
    Splits(Vec<SplitStatus>),
    /// The input cannot be read for now (a broker is down); the reader keeps trying.
    Stalled(String),
    /// A bounded source is fully read.
    End,
}

/// A source reader: hands out chunks in position order within each split, starting where
/// its [`Resume`] says.
pub trait Reader: Send {
    fn next_chunk(&mut self) -> Result<Chunk, SourceError>;
    /// The decoder found event times up to `max` (ms) in the last chunk of `split` (the
    /// Kafka reader uses it to keep partitions aligned in event time).
    fn event_time(&mut self, _split: u32, _max: i64) {}
    /// Called after an epoch made everything up to `durable` safe (Kafka commits its
    /// consumer-group offsets from here, every few seconds, so lag tools see progress).
    fn durable(&mut self, _durable: &Frontier) {}
}

/// Checks at CREATE time what would otherwise fail when the source's pipeline starts: the
/// Kafka client configuration, a file path that does not exist (for a followed path, which
/// may appear later, its directory), columns the generator does not have.
pub fn check_source(
    spec: &SourceSpec,
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<(), SourceError> {
    match spec {
        SourceSpec::Kafka(k) => kafka::check_config(k),
        SourceSpec::File {
            path,
            mode: FileMode::Follow,
        } => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(SourceError::Io {
                    path: dir.to_path_buf(),
                    error: std::io::Error::other("not a directory"),
                }),
                Err(error) => Err(SourceError::Io {
                    path: dir.to_path_buf(),
                    error,
                }),
            }
        }
        _ => open_reader(spec, schema, &Resume::default()).map(drop),
    }
}

/// Opens a reader for `spec` that resumes at `from`. `schema` is the schema rows are decoded
/// into (declared columns, then any metadata columns).
pub fn open_reader(
    spec: &SourceSpec,
    schema: datafusion::arrow::datatypes::SchemaRef,
    from: &Resume,
) -> Result<Box<dyn Reader>, SourceError> {
    Ok(match spec {
        SourceSpec::File { path, mode } => Box::new(FileReader::open(
            path.clone(),
            *mode,
            from.sequential(),
            from.files.clone(),
        )?),
        SourceSpec::Generator(g) => Box::new(GeneratorReader::new(
            g.clone(),
            schema,
            from.sequential(),
            from.history.get(0),
        )?),
        SourceSpec::Kafka(k) => Box::new(KafkaReader::open(k.clone(), from)?),
    })
}
