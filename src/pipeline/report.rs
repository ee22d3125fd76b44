//! What a pipeline tells the status board and Prometheus about itself.
//!
//! A [`Report`] is taken from the operator thread's state when an epoch is handed to the
//! writer and published once that epoch is written, so `weir_catalog` and the metrics never
//! show counts that a crash could still take back. Statuses that do not follow a write
//! (stalled, failed) are taken and published at once.

use crate::catalog::{PartitionStatus, SourceDef, StatusBoard};
use crate::metrics::Metrics;
use crate::state::Store;

/// A source's and its views' state at one epoch.
pub struct Report {
    pub status: String,
    pub error: Option<String>,
    pub events: u64,
    pub bad_records: u64,
    pub skipped: u64,
    pub watermark: Option<i64>,
    pub partitions: Vec<PartitionStatus>,
    pub views: Vec<ViewReport>,
}

/// One view's part of a [`Report`].
pub struct ViewReport {
    pub name: String,
    pub failed: Option<String>,
    pub finished: bool,
    /// Still replaying the source's history on the catch-up reader.
    pub catching_up: bool,
    pub watermark: Option<i64>,
    pub rows: u64,
    pub late_rows: u64,
    pub rows_written: u64,
    pub open_windows: u64,
}

impl Report {
    /// Writes the report to the status board and the metrics. `published` holds, per view,
    /// the (late rows, rows written) counters already added to Prometheus.
    pub fn publish(
        self,
        source: &SourceDef,
        board: &StatusBoard,
        metrics: &Metrics,
        store: &Store,
        cache_bytes: usize,
        published: &mut [(u64, u64)],
    ) {
        let m = metrics;
        let name = source.name.as_str();
        board.update_source(name, |s| {
            m.source_events
                .with_label_values(&[name])
                .inc_by(self.events.saturating_sub(s.events));
            m.source_bad_records
                .with_label_values(&[name])
                .inc_by(self.bad_records.saturating_sub(s.bad_records));
            m.source_skipped
                .with_label_values(&[name])
                .inc_by(self.skipped.saturating_sub(s.skipped));
            s.connector = source.spec.connector().to_string();
            s.status = self.status.clone();
            s.error = self.error.clone();
            s.events = self.events;
            s.bad_records = self.bad_records;
            s.watermark = self.watermark;
            s.skipped = self.skipped;
            s.partitions = self.partitions.clone();
        });
        if let Some(w) = self.watermark {
            m.source_watermark.with_label_values(&[name]).set(w);
            let now = chrono::Utc::now().timestamp_millis();
            m.source_watermark_lag
                .with_label_values(&[name])
                .set((now - w) as f64 / 1000.0);
        }
        for p in &self.partitions {
            let partition = p.partition.to_string();
            let labels = [name, partition.as_str()];
            if let Some(high) = p.high_watermark {
                m.partition_lag
                    .with_label_values(&labels)
                    .set((high - p.offset as i64).max(0));
            }
            if let Some(w) = p.watermark {
                m.partition_watermark.with_label_values(&labels).set(w);
            }
        }
        m.state_bytes.set(store.approximate_size() as i64);
        m.state_cache_bytes.set(cache_bytes as i64);
        let trouble = matches!(self.status.as_str(), "failed" | "stalled");
        for (view, published) in self.views.into_iter().zip(published.iter_mut()) {
            m.view_late_rows
                .with_label_values(&[&view.name])
                .inc_by(view.late_rows.saturating_sub(published.0));
            m.view_rows_written
                .with_label_values(&[&view.name])
                .inc_by(view.rows_written.saturating_sub(published.1));
            *published = (view.late_rows, view.rows_written);
            if let Some(w) = view.watermark {
                m.view_watermark.with_label_values(&[&view.name]).set(w);
            }
            board.update_view(&view.name, |s| {
                s.source = source.name.clone();
                s.status = if view.failed.is_some() {
                    "failed".into()
                } else if view.finished {
                    "finished".into()
                } else if trouble {
                    self.status.clone()
                } else if view.catching_up {
                    "catching up".into()
                } else {
                    "running".into()
                };
                s.error =
                    view.failed
                        .clone()
                        .or_else(|| if trouble { self.error.clone() } else { None });
                s.watermark = view.watermark;
                s.rows = view.rows;
                s.late_rows = view.late_rows;
                s.open_windows = view.open_windows;
            });
        }
    }
}
