//! The operator of one materialized view: applies batches, closes windows, writes epochs.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::array::{Array, TimestampMillisecondArray};
use datafusion::arrow::compute::{max, take_record_batch};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

use super::{assign_windows, GroupState, WatermarkTracker};
use crate::plan::{run_steps, ViewPlan};
use crate::source::Frontier;
use crate::state::{
    batch_from_ipc, batch_to_ipc, window_key, window_key_prefix, window_start_of_key, Store, Table,
    WriteSet,
};

/// The window key of a view without windows: all its groups live in this one "window".
pub const GLOBAL_WINDOW: i64 = 0;

/// What a view has durably done; written in the same batch as its rows and state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewProgress {
    /// Offsets after the last input rows folded into the stored state, per split.
    pub frontier: Frontier,
    pub watermark: Option<WatermarkTracker>,
    /// Rows the view holds now.
    pub rows: u64,
    /// Rows written so far for each open window.
    pub open_rows: BTreeMap<i64, u64>,
    pub late_rows: u64,
    pub rows_written: u64,
    /// Set when the view failed; it then stops.
    pub error: Option<String>,
    /// True once its bounded input is read and every window closed.
    pub finished: bool,
}

/// A row that arrived after its window closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateRow {
    pub event_time: i64,
    pub watermark: i64,
    pub raw: String,
}

struct Window {
    state: GroupState,
    dirty: bool,
}

/// Runs one view.
pub struct ViewOperator {
    pub name: String,
    plan: Arc<ViewPlan>,
    windows: BTreeMap<i64, Window>,
    progress: ViewProgress,
    /// Final rows of windows closed since the last flush.
    closed: Vec<(i64, RecordBatch)>,
    late: Vec<LateRow>,
}

/// Where a chunk's rows come from.
#[derive(Debug, Clone, Copy)]
pub struct ChunkPlace<'a> {
    pub split: u32,
    /// Offset after each row, increasing.
    pub row_ends: &'a [u64],
    /// Offset after the whole chunk.
    pub end: u64,
    /// The split whose watermark the rows advance (0 for sequential sources).
    pub watermark_split: u32,
}

/// The progress key of a view.
pub fn progress_key(view: &str) -> Vec<u8> {
    format!("view/{view}").into_bytes()
}

fn state_err(e: crate::state::StateError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One row of `batch` as a JSON object, for late rows.
fn row_json(batch: &RecordBatch, row: usize) -> String {
    let mut writer = LineDelimitedWriter::new(Vec::new());
    if writer.write(&batch.slice(row, 1)).is_err() || writer.finish().is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&writer.into_inner())
        .trim_end()
        .to_string()
}

impl ViewOperator {
    /// Loads the view's stored progress and open windows (a new view starts empty).
    pub fn load(name: &str, plan: Arc<ViewPlan>, store: &Store) -> Result<Self> {
        let progress = match store
            .get(Table::Progress, &progress_key(name))
            .map_err(state_err)?
        {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            None => ViewProgress {
                watermark: plan
                    .watermark
                    .map(|(_, delay)| WatermarkTracker::new(delay)),
                ..ViewProgress::default()
            },
        };
        let mut windows = BTreeMap::new();
        for (key, value) in store
            .scan_prefix(Table::WindowState, &window_key_prefix(name))
            .map_err(state_err)?
        {
            let start = window_start_of_key(&key)
                .ok_or_else(|| DataFusionError::Internal("bad window key".into()))?;
            let snapshot = batch_from_ipc(&value)?;
            let state = GroupState::from_snapshot(&plan.aggregate, &snapshot)?;
            windows.insert(
                start,
                Window {
                    state,
                    dirty: false,
                },
            );
        }
        if plan.window.is_none()
            && plan.aggregate.group_exprs.is_empty()
            && !windows.contains_key(&GLOBAL_WINDOW)
        {
            // A global aggregate has its one row before any input (count 0, sum NULL, ...);
            // it is written with the view's first epoch.
            windows.insert(
                GLOBAL_WINDOW,
                Window {
                    state: GroupState::new(&plan.aggregate)?,
                    dirty: true,
                },
            );
        }
        Ok(Self {
            name: name.to_string(),
            plan,
            windows,
            progress,
            closed: Vec::new(),
            late: Vec::new(),
        })
    }

    pub fn progress(&self) -> &ViewProgress {
        &self.progress
    }

    pub fn frontier(&self) -> &Frontier {
        &self.progress.frontier
    }

    pub fn is_failed(&self) -> bool {
        self.progress.error.is_some()
    }

    /// Marks the view failed with `error`; it applies nothing more.
    pub fn fail(&mut self, error: String) {
        self.progress.error = Some(error);
    }

    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Folds the rows of `batch` (all from `chunk.split`) that lie after the view's frontier.
    pub fn apply(&mut self, batch: &RecordBatch, chunk: ChunkPlace<'_>) -> Result<()> {
        let at = self.progress.frontier.get(chunk.split);
        if self.is_failed() || self.progress.finished || chunk.end <= at {
            return Ok(());
        }
        let first = chunk.row_ends.partition_point(|e| *e <= at);
        let batch = if first == 0 {
            batch.clone()
        } else {
            batch.slice(first, batch.num_rows() - first)
        };
        if batch.num_rows() > 0 {
            match self.plan.window {
                Some((spec, time_col)) => {
                    self.apply_windowed(&batch, spec, time_col, chunk.watermark_split)?
                }
                None => self.apply_global(&batch, chunk.watermark_split)?,
            }
        }
        self.progress.frontier.advance(chunk.split, chunk.end);
        Ok(())
    }

    /// The source's splits changed or went idle: the watermark may move and close windows.
    pub fn set_splits(&mut self, splits: &[(u32, bool)]) -> Result<()> {
        if self.is_failed() || self.progress.finished {
            return Ok(());
        }
        if let Some(w) = self.progress.watermark.as_mut() {
            w.set_splits(splits.iter().copied());
        }
        if let Some((spec, _)) = self.plan.window {
            self.close_windows(spec.size_ms())?;
        }
        Ok(())
    }

    fn apply_windowed(
        &mut self,
        batch: &RecordBatch,
        spec: crate::plan::WindowSpec,
        time_col: usize,
        split: u32,
    ) -> Result<()> {
        let tracker = self
            .progress
            .watermark
            .as_mut()
            .expect("windowed views have a watermark");
        let assigned = assign_windows(
            batch,
            time_col,
            spec,
            &mut tracker.split(split),
            &self.plan.input_schema,
            &self.plan.used_columns,
        )?;
        for (row, watermark) in assigned.late {
            let times = batch
                .column(time_col)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>();
            let event_time = times.map_or(0, |t| t.value(row as usize));
            self.late.push(LateRow {
                event_time,
                watermark,
                raw: row_json(batch, row as usize),
            });
        }
        // Fold each window's rows; a batch usually spans one or two windows.
        let starts = &assigned.starts;
        if starts.windows(2).all(|w| w[0] == w[1]) {
            if let Some(start) = starts.first() {
                self.fold(*start, assigned.batch)?;
            }
        } else {
            let mut order: Vec<u32> = (0..starts.len() as u32).collect();
            order.sort_by_key(|i| starts[*i as usize]);
            let mut from = 0;
            while from < order.len() {
                let start = starts[order[from] as usize];
                let to = from + order[from..].partition_point(|i| starts[*i as usize] == start);
                let indices = UInt32Array::from(order[from..to].to_vec());
                self.fold(start, take_record_batch(&assigned.batch, &indices)?)?;
                from = to;
            }
        }
        self.close_windows(spec.size_ms())
    }

    fn apply_global(&mut self, batch: &RecordBatch, split: u32) -> Result<()> {
        if let (Some(tracker), Some((col, _))) =
            (self.progress.watermark.as_mut(), self.plan.watermark)
        {
            if let Some(times) = batch
                .column(col)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
            {
                if let Some(m) = max(times) {
                    tracker.observe(split, m);
                }
            }
        }
        self.fold(GLOBAL_WINDOW, batch.clone())
    }

    fn fold(&mut self, start: i64, rows: RecordBatch) -> Result<()> {
        let rows = run_steps(&self.plan.pre, rows)?;
        if rows.num_rows() == 0 {
            // A window (or group) exists only where a row reached it.
            return Ok(());
        }
        let window = match self.windows.entry(start) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(Window {
                state: GroupState::new(&self.plan.aggregate)?,
                dirty: true,
            }),
        };
        window.state.update(&self.plan.aggregate, &rows)?;
        window.dirty = true;
        Ok(())
    }

    /// Emits and drops every window whose end the watermark reached.
    fn close_windows(&mut self, size_ms: i64) -> Result<()> {
        let watermark = self
            .progress
            .watermark
            .as_ref()
            .map_or(i64::MIN, |w| w.watermark());
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().saturating_add(size_ms) > watermark {
                break;
            }
            let (start, window) = entry.remove_entry();
            let rows = run_steps(
                &self.plan.post,
                window.state.evaluate(&self.plan.aggregate)?,
            )?;
            self.closed.push((start, rows));
        }
        Ok(())
    }

    /// The input is finished: the watermark goes to +infinity and every window closes.
    pub fn finish(&mut self) -> Result<()> {
        if self.is_failed() || self.progress.finished {
            return Ok(());
        }
        if let Some((spec, _)) = self.plan.window {
            if let Some(w) = self.progress.watermark.as_mut() {
                w.finished = true;
            }
            self.close_windows(spec.size_ms())?;
        }
        self.progress.finished = true;
        Ok(())
    }

    fn put_rows(
        &mut self,
        ws: &mut WriteSet,
        start: i64,
        rows: &RecordBatch,
        open: bool,
    ) -> Result<()> {
        let key = window_key(&self.name, start);
        if rows.num_rows() == 0 {
            ws.delete(Table::ViewRows, key);
        } else {
            ws.put(Table::ViewRows, key, batch_to_ipc(rows)?);
        }
        let new = rows.num_rows() as u64;
        let old = if open {
            self.progress.open_rows.insert(start, new)
        } else {
            self.progress.open_rows.remove(&start)
        };
        self.progress.rows = (self.progress.rows + new).saturating_sub(old.unwrap_or(0));
        self.progress.rows_written += new;
        Ok(())
    }

    /// Adds the epoch's changes to `ws`: final rows of closed windows, current rows and state
    /// of open windows that changed, late rows and the view's progress.
    pub fn flush(&mut self, ws: &mut WriteSet) -> Result<()> {
        for (start, rows) in std::mem::take(&mut self.closed) {
            self.put_rows(ws, start, &rows, false)?;
            ws.delete(Table::WindowState, window_key(&self.name, start));
        }
        let dirty: Vec<i64> = self
            .windows
            .iter()
            .filter(|(_, w)| w.dirty)
            .map(|(s, _)| *s)
            .collect();
        for start in dirty {
            let window = self.windows.get_mut(&start).expect("listed above");
            let snapshot = window.state.take_snapshot(&self.plan.aggregate)?;
            window.state = GroupState::from_snapshot(&self.plan.aggregate, &snapshot)?;
            window.dirty = false;
            let current = GroupState::evaluate_snapshot(&self.plan.aggregate, &snapshot)?;
            let rows = run_steps(&self.plan.post, current)?;
            ws.put(
                Table::WindowState,
                window_key(&self.name, start),
                batch_to_ipc(&snapshot)?,
            );
            self.put_rows(ws, start, &rows, true)?;
        }
        for late in std::mem::take(&mut self.late) {
            let mut key = window_key_prefix(&self.name);
            key.extend_from_slice(&self.progress.late_rows.to_be_bytes());
            self.progress.late_rows += 1;
            ws.put(
                Table::LateRows,
                key,
                serde_json::to_vec(&late).expect("late rows serialize"),
            );
        }
        ws.put(
            Table::Progress,
            progress_key(&self.name),
            serde_json::to_vec(&self.progress).expect("progress serializes"),
        );
        Ok(())
    }

    /// Removes everything the view stored.
    pub fn delete_all(name: &str, ws: &mut WriteSet) {
        for table in [Table::ViewRows, Table::WindowState, Table::LateRows] {
            ws.delete_prefix(table, window_key_prefix(name));
        }
        ws.delete(Table::Progress, progress_key(name));
    }
}
