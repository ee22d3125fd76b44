//! A view over a view: fed the final rows of its upstream view's closed windows, window by
//! window in window order, read from the store once the epoch that closed them is written.
//!
//! The view keeps where it is in its progress (`upstream_through`: the last upstream window
//! applied), written with its state in the same epoch write, so after a crash it goes on with
//! the next window: nothing lost, nothing applied twice. A new view over a view that already
//! closed windows starts with the first one stored. Its rows get positions in the order they
//! are read (`upstream_rows`), which is the same at every replay, so an append-only view over
//! a view keys its rows the same way each time.

use std::ops::ControlFlow;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

use super::{state_err, ChunkPlace, ViewOperator};
use crate::plan::Upstream;
use crate::state::{for_each_view_row, for_each_view_value, RowCodec, ViewKeys};

/// Rows handed to the view at once: a window with more is applied in several batches.
const ROWS_PER_BATCH: usize = 8192;

impl ViewOperator {
    /// Whether the view reads another view's final rows instead of its source.
    pub fn is_chained(&self) -> bool {
        self.plan.upstream.is_some()
    }

    /// The view this one reads, if it reads a view.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.plan.upstream.as_ref()
    }

    /// Windows starting at or before this are final once the view's last flush is written:
    /// closed, with their rows in the store. `i64::MAX` once every window closed; None for a
    /// view whose rows are never final (no windows) or before its first event.
    pub fn final_through(&self) -> Option<i64> {
        let (spec, _) = self.plan.window.filter(|_| !self.plan.append)?;
        match self.progress.watermark.as_ref()?.watermark() {
            i64::MIN => None,
            i64::MAX => Some(i64::MAX),
            w => Some(w.saturating_sub(spec.size_ms())),
        }
    }

    /// Whether the upstream's windows final through `through` (`i64::MAX`: all of them, the
    /// upstream finished) hold anything this view has not applied.
    pub fn upstream_pending(&self, through: Option<i64>) -> bool {
        if !self.is_chained() || self.is_failed() || self.progress.finished {
            return false;
        }
        match (through, self.progress.upstream_through) {
            (Some(i64::MAX), _) | (Some(_), None) => true,
            (Some(t), Some(done)) => t > done,
            (None, _) => false,
        }
    }

    /// Applies the upstream's rows of the windows after the last one applied, through
    /// `through`, from the store (which must hold them: the epoch that closed them is
    /// written). Once every upstream window is final and read (`through` is `i64::MAX`), the
    /// view finishes too.
    pub fn feed_from_upstream(&mut self, through: Option<i64>) -> Result<()> {
        if !self.upstream_pending(through) {
            return Ok(());
        }
        let up = self.plan.upstream.clone().expect("a chained view");
        if let Some(through) = through {
            let from = match self.progress.upstream_through {
                Some(done) if done == i64::MAX => return Ok(()),
                Some(done) => done + 1,
                None => i64::MIN,
            };
            if through >= from {
                let last = self.read_upstream(&up, from, through)?;
                // Past the last window when every window is final: the watermark stays at
                // the event times the rows had (retention measures age against it).
                match last.filter(|_| through == i64::MAX) {
                    Some(last) => self.upstream_window_done(&up, last)?,
                    None if through == i64::MAX => {}
                    None => self.upstream_window_done(&up, through)?,
                }
            }
        }
        if through == Some(i64::MAX) {
            self.progress.upstream_through = Some(i64::MAX);
            self.finish()?;
        }
        Ok(())
    }

    /// Reads and applies upstream windows `from..=through`, advancing the watermark past
    /// each but the last read, whose start it returns.
    fn read_upstream(&mut self, up: &Upstream, from: i64, through: i64) -> Result<Option<i64>> {
        let codec = RowCodec::for_schema(&up.schema, "view_rows").map_err(state_err)?;
        let keys = ViewKeys::new(&up.view);
        let (a, b) = keys.windows(from, through.saturating_add(1));
        let store = self.store.clone();
        let read = store.read_view();
        let mut rows: Vec<Vec<u8>> = Vec::new();
        let mut window: Option<i64> = None;
        let mut failure = None;
        for_each_view_value(&read, &keys, true, &a, &b, |key, value| {
            let step = (|| -> Result<()> {
                let (start, _) = keys.parse(key).ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "a key of view \"{}\" does not parse",
                        up.view
                    ))
                })?;
                if window.is_some_and(|w| w != start) || rows.len() >= ROWS_PER_BATCH {
                    self.apply_upstream_rows(&codec, up, &std::mem::take(&mut rows))?;
                }
                if let Some(done) = window.filter(|w| *w != start) {
                    self.upstream_window_done(up, done)?;
                }
                window = Some(start);
                // Never breaks: every row of the window is taken.
                let _ = for_each_view_row(value, |row| {
                    rows.push(row.to_vec());
                    ControlFlow::Continue(())
                })
                .map_err(state_err)?;
                Ok(())
            })();
            match step {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        })
        .map_err(state_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.apply_upstream_rows(&codec, up, &rows)?;
        Ok(window)
    }

    /// Applies upstream rows (encoded by `codec`), positioned after those applied before.
    fn apply_upstream_rows(
        &mut self,
        codec: &RowCodec,
        up: &Upstream,
        rows: &[Vec<u8>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let columns = codec
            .decode(rows.iter().map(Vec::as_slice))
            .map_err(state_err)?;
        let batch = RecordBatch::try_new(up.schema.clone(), columns)?;
        let first = self.progress.upstream_rows;
        let row_ends: Vec<u64> = (1..=rows.len() as u64).map(|i| first + i).collect();
        let end = first + rows.len() as u64;
        let place = ChunkPlace {
            split: 0,
            row_ends: &row_ends,
            end,
            watermark_split: 0,
            lines: None,
        };
        self.apply_rows(&batch, place, 0)?;
        self.progress.upstream_rows = end;
        Ok(())
    }

    /// Every upstream window starting at or before `through` is applied: the view's
    /// watermark moves to the earliest event time the upstream's next rows can have, which
    /// may close windows.
    fn upstream_window_done(&mut self, up: &Upstream, through: i64) -> Result<()> {
        self.progress.upstream_through = Some(through);
        let Some((column, _)) = self.plan.watermark else {
            return Ok(());
        };
        let next = up.next_time(column, through);
        if let Some(tracker) = self.progress.watermark.as_mut() {
            tracker.observe(0, next);
        }
        if let Some((spec, _)) = self.plan.window {
            self.close_windows(spec.size_ms())?;
        }
        Ok(())
    }
}
