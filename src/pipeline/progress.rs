//! A source's durable progress: how far it was ever decoded, and its counters.

use serde::{Deserialize, Serialize};

use crate::operator::WatermarkTracker;
use crate::source::{FileRegistry, Frontier};

/// Stored under `source/<name>` in the progress table, with every epoch of the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// Everything before this frontier has been decoded and counted once.
    pub high: Frontier,
    /// Where the source first started reading each split (a view created later starts there).
    pub origin: Frontier,
    pub events: u64,
    pub bad_records: u64,
    /// Skipped empty records (Kafka tombstones).
    pub skipped: u64,
    /// The first dead letter still kept (older ones were dropped by the limits).
    #[serde(default)]
    pub dead_letters_from: u64,
    /// Event time per split; its delay is the declared watermark delay (0 without one).
    pub event_time: WatermarkTracker,
    /// Which split each file is (file sources): stored so a restart resumes by file.
    #[serde(default)]
    pub files: FileRegistry,
}

impl SourceProgress {
    pub fn new(delay_ms: i64) -> Self {
        Self {
            high: Frontier::default(),
            origin: Frontier::default(),
            events: 0,
            bad_records: 0,
            skipped: 0,
            dead_letters_from: 0,
            event_time: WatermarkTracker::new(delay_ms),
            files: FileRegistry::default(),
        }
    }

    pub fn key(source: &str) -> Vec<u8> {
        format!("source/{source}").into_bytes()
    }
}
