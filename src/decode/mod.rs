//! Decode: raw records into Arrow record batches of a source's declared schema.
//!
//! A record that does not decode — not JSON, a value that does not fit its column, a missing
//! event-time value, an event time far ahead of the watermark ([`FutureGuard`]) — becomes a
//! [`DeadLetter`] with the reason; the rest of the chunk goes on.

mod flat_json;
mod future;
mod json;
mod skipped;

pub use future::{FutureGuard, DEFAULT_MAX_FUTURE_BOUNDED_MS, DEFAULT_MAX_FUTURE_LIVE_MS};
pub use json::{line_spans, Format, JsonDecoder, Unguarded};
pub use skipped::SourceLines;

use datafusion::arrow::record_batch::RecordBatch;

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Where the record is: `file:byte_offset` for files.
    pub position: String,
    pub raw: String,
    pub error: String,
    /// Wall-clock time it was stored (Unix ms), for the age limit; set when it is written.
    #[serde(default)]
    pub at_ms: i64,
    /// Offset after the record in its file (not stored; used to count each record once).
    #[serde(skip)]
    pub end: u64,
}

/// The decoded rows of one chunk.
pub struct Decoded {
    pub batch: RecordBatch,
    /// The position (offset in the chunk's file) after each row of `batch`.
    pub row_ends: Vec<u64>,
    pub dead: Vec<DeadLetter>,
    /// The chunk's lines, when the decoder skipped columns no view reads.
    pub lines: Option<SourceLines>,
}
