//! A source's durable progress: how far it was ever decoded, and its counters.

use serde::{Deserialize, Serialize};

use crate::source::Position;

/// Stored under `source/<name>` in the progress table, with every epoch of the source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// Everything before this position has been decoded and counted once.
    pub high: Position,
    pub events: u64,
    pub bad_records: u64,
    pub max_event_time: Option<i64>,
}

impl SourceProgress {
    pub fn key(source: &str) -> Vec<u8> {
        format!("source/{source}").into_bytes()
    }
}
