//! The live status board: what each source and view is doing, for system tables and metrics.

use std::collections::BTreeMap;

use parking_lot::RwLock;

/// Live state of a source.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    pub connector: String,
    /// `idle` (no view reads it), `running`, `stalled` (input unreachable), `finished` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub events: u64,
    pub bad_records: u64,
    pub watermark: Option<i64>,
    /// Empty records skipped (Kafka tombstones).
    pub skipped: u64,
    /// Per-partition state of a Kafka source.
    pub partitions: Vec<PartitionStatus>,
}

/// Live state of one partition of a Kafka source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionStatus {
    pub partition: u32,
    /// Offset of the next message to decode (everything before it is counted).
    pub offset: u64,
    /// The broker's high watermark, when known.
    pub high_watermark: Option<i64>,
    /// Event-time watermark of the partition.
    pub watermark: Option<i64>,
    pub idle: bool,
}

/// Live state of a view.
#[derive(Debug, Clone, Default)]
pub struct ViewStatus {
    pub source: String,
    /// `running`, `finished` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub watermark: Option<i64>,
    pub rows: u64,
    pub late_rows: u64,
    pub open_windows: u64,
}

/// Shared by the pipelines (writers) and the query side (readers).
#[derive(Debug, Default)]
pub struct StatusBoard {
    pub sources: RwLock<BTreeMap<String, SourceStatus>>,
    pub views: RwLock<BTreeMap<String, ViewStatus>>,
}

impl StatusBoard {
    pub fn update_source(&self, name: &str, f: impl FnOnce(&mut SourceStatus)) {
        f(self.sources.write().entry(name.to_string()).or_default());
    }

    pub fn update_view(&self, name: &str, f: impl FnOnce(&mut ViewStatus)) {
        f(self.views.write().entry(name.to_string()).or_default());
    }

    /// True when every view is finished or failed and every source finished, failed or idle.
    pub fn all_settled(&self) -> bool {
        self.views.read().values().all(|v| v.status != "running")
            && self
                .sources
                .read()
                .values()
                .all(|s| s.status != "running" && s.status != "stalled")
    }
}
