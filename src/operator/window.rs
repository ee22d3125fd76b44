//! Window assignment: each row to its tumbling or hopping windows, late rows set aside.
//!
//! Lateness is decided row by row against the watermark as it stood just before the row, so
//! the outcome does not depend on how the input was cut into batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

use super::SplitWatermark;
use crate::plan::WindowSpec;

/// A batch assigned to windows: its rows grouped by window, windows in start order.
pub struct Assigned {
    /// Each window the batch reaches, in start order, with its rows (input order).
    pub windows: Vec<WindowRows>,
    /// Assigning by panes: the rows whose windows were all open, grouped by the slide-sized
    /// pane they fall in (`start` is the pane's; its window columns are the pane's bounds).
    /// Such a row is in none of `windows`.
    pub panes: Vec<WindowRows>,
    /// Rows of the input that fell in closed windows: the row, the watermark it met and how
    /// many of its windows were closed (a HOP row may be late for its oldest windows only; it
    /// is applied to the others).
    pub late: Vec<(u32, i64, u32)>,
}

/// The rows of one batch that fall in one window.
pub struct WindowRows {
    pub start: i64,
    /// Those input rows plus `window_start`, `window_end`.
    pub batch: RecordBatch,
    /// The input row each row of `batch` was copied from.
    pub origin: Vec<u32>,
}

/// Above this many slides between a batch's first and last window, rows are grouped through a
/// map instead of a table indexed by window.
const DENSE_WINDOWS: i64 = 4096;

/// Rows grouped by window start: a table indexed by slide when the batch's windows span few
/// slides, else a map.
struct RowLists {
    lowest: i64,
    slide: i64,
    dense: Vec<Vec<u32>>,
    sparse: BTreeMap<i64, Vec<u32>>,
}

impl RowLists {
    fn new(lowest: i64, slide: i64, span: i64) -> Self {
        let mut dense = Vec::new();
        if span <= DENSE_WINDOWS {
            dense.resize_with(span as usize, Vec::new);
        }
        Self {
            lowest,
            slide,
            dense,
            sparse: BTreeMap::new(),
        }
    }

    fn push(&mut self, start: i64, row: u32) {
        if self.dense.is_empty() {
            self.sparse.entry(start).or_default().push(row);
        } else {
            self.dense[((start - self.lowest) / self.slide) as usize].push(row);
        }
    }

    /// Each window with rows, in start order.
    fn into_lists(self) -> impl Iterator<Item = (i64, Vec<u32>)> {
        let (lowest, slide) = (self.lowest, self.slide);
        self.dense
            .into_iter()
            .enumerate()
            .map(move |(k, rows)| (lowest + k as i64 * slide, rows))
            .chain(self.sparse)
            .filter(|(_, rows)| !rows.is_empty())
    }
}

/// Assigns the rows of `batch` to windows of `spec` by the event time in column `time_col`,
/// advancing the watermark of `split` row by row. `schema` is the batch's schema plus the
/// window columns; columns whose `used` flag is false come out as nulls (not copied).
///
/// Rows are grouped by window as they are assigned and each window's rows are copied once,
/// straight from the input: a HOP row is in `size / slide` windows, so copying every row once
/// per window and then again to group them was the largest cost of a HOP view.
///
/// `by_panes` (a HOP whose size is a whole number of slides) puts a row whose windows are all
/// open in its pane instead, copied once: see `Assigned::panes`.
pub fn assign_windows(
    batch: &RecordBatch,
    time_col: usize,
    spec: WindowSpec,
    tracker: &mut SplitWatermark<'_>,
    schema: &SchemaRef,
    used: &[bool],
    by_panes: bool,
) -> Result<Assigned> {
    let times = batch
        .column(time_col)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| {
            DataFusionError::Internal("window column is not a millisecond timestamp".into())
        })?;
    let size = spec.size_ms();
    let slide = spec.slide_ms();
    let per_row = spec.windows_per_row();
    // The windows this batch can reach, to index them by (start - lowest) / slide: from the
    // oldest window of the earliest row to the newest of the latest.
    let bounds = times
        .iter()
        .flatten()
        .map(|t| t.div_euclid(slide) * slide)
        .fold(None, |b: Option<(i64, i64)>, last| {
            Some(b.map_or((last, last), |(lo, hi)| (lo.min(last), hi.max(last))))
        });
    let lowest = bounds.map(|(lo, _)| lo.saturating_sub((per_row - 1) * slide));
    let span = match (lowest, bounds) {
        (Some(lo), Some((_, hi))) => hi.saturating_sub(lo) / slide + 1,
        _ => 0,
    };
    let lowest = lowest.unwrap_or(0);
    let mut windows = RowLists::new(lowest, slide, span);
    let mut panes = RowLists::new(lowest, slide, if by_panes { span } else { 0 });
    let mut late = Vec::new();
    for (i, t) in times.values().iter().enumerate() {
        if times.is_null(i) {
            continue; // the decoder already sent these to dead letters
        }
        let t = *t;
        let watermark = tracker.watermark();
        // The newest and the oldest window holding t: the oldest is the last start s, going
        // down by slides, with s + size > t.
        let last = t.div_euclid(slide) * slide;
        let oldest = last - (last + size - t - 1) / slide * slide;
        tracker.observe(t);
        if by_panes && oldest + size > watermark {
            panes.push(last, i as u32);
            continue;
        }
        let mut missed = 0;
        for start in (oldest..=last).step_by(slide as usize) {
            if start + size <= watermark {
                missed += 1;
            } else {
                windows.push(start, i as u32);
            }
        }
        if missed > 0 {
            late.push((i as u32, watermark, missed));
        }
    }
    let copy = |lists: RowLists, width: i64| -> Result<Vec<WindowRows>> {
        let mut out = Vec::new();
        for (start, rows) in lists.into_lists() {
            let indices = UInt32Array::from(rows);
            let n = indices.len();
            let mut cols: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| match used.get(i) {
                    Some(false) => Ok(new_null_array(c.data_type(), n)),
                    _ => take(c, &indices, None),
                })
                .collect::<Result<_, _>>()?;
            cols.push(Arc::new(TimestampMillisecondArray::from(vec![start; n])));
            cols.push(Arc::new(TimestampMillisecondArray::from(vec![
                start + width;
                n
            ])));
            out.push(WindowRows {
                start,
                batch: RecordBatch::try_new(schema.clone(), cols)?,
                origin: indices.values().to_vec(),
            });
        }
        Ok(out)
    };
    Ok(Assigned {
        windows: copy(windows, size)?,
        panes: copy(panes, slide)?,
        late,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::WatermarkTracker;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    /// Assigns rows with event times `times` (one column, `ts`) to the windows of `spec`
    /// under a watermark `delay` behind; returns them and the watermark after the last row.
    fn assign(times: &[i64], delay: i64, spec: WindowSpec, by_panes: bool) -> (Assigned, i64) {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Arc::new(Schema::new(vec![Field::new("ts", ts.clone(), true)]));
        let out = Arc::new(Schema::new(vec![
            Field::new("ts", ts.clone(), true),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMillisecondArray::from(times.to_vec()))],
        )
        .unwrap();
        let mut tracker = WatermarkTracker::new(delay);
        let assigned = assign_windows(
            &batch,
            0,
            spec,
            &mut tracker.split(0),
            &out,
            &[true],
            by_panes,
        )
        .unwrap();
        (assigned, tracker.watermark())
    }

    fn hop(slide_ms: i64, size_ms: i64) -> WindowSpec {
        WindowSpec::Hop { slide_ms, size_ms }
    }

    /// The window of each assigned row, in the order the windows come.
    fn starts(a: &Assigned) -> Vec<i64> {
        a.windows
            .iter()
            .flat_map(|w| std::iter::repeat_n(w.start, w.batch.num_rows()))
            .collect()
    }

    fn window_end(rows: &WindowRows) -> i64 {
        let end = rows.batch.column(2).as_any();
        end.downcast_ref::<TimestampMillisecondArray>()
            .unwrap()
            .value(0)
    }

    #[test]
    fn rows_far_apart_in_time_are_grouped_too() {
        let far = 3_600_000 * 24 * 365;
        let spec = WindowSpec::Tumble { size_ms: 1_000 };
        let (a, _) = assign(&[far, 0, far + 1, 1], i64::MAX / 4, spec, false);
        assert_eq!(starts(&a), vec![0, 0, far, far]);
        assert_eq!(a.windows[0].origin, vec![1, 3]);
        assert_eq!(a.windows[1].origin, vec![0, 2]);
    }

    #[test]
    fn tumbling_windows_and_late_rows() {
        let times = [1_000, 61_000, 59_000, 125_000, 30_000];
        let spec = WindowSpec::Tumble { size_ms: 60_000 };
        let (a, watermark) = assign(&times, 5_000, spec, false);
        // 59_000 is on time (watermark 56_000 < 60_000); 30_000 comes after watermark 120_000.
        assert_eq!(starts(&a), vec![0, 0, 60_000, 120_000]);
        assert_eq!(a.windows[0].origin, vec![0, 2]);
        assert_eq!(a.late, vec![(4, 120_000, 1)]);
        assert_eq!(watermark, 120_000);
    }

    #[test]
    fn hopping_windows_repeat_rows() {
        let (a, _) = assign(&[65_000, -1], 0, hop(20_000, 60_000), false);
        assert_eq!(starts(&a), vec![20_000, 40_000, 60_000]);
        assert_eq!(a.late, vec![(1, 65_000, 3)]);
        let w = &a.windows[1];
        assert_eq!((w.batch.num_rows(), w.batch.num_columns()), (1, 3));
        assert_eq!(window_end(w), 100_000);
    }

    #[test]
    fn hop_rows_late_for_some_windows_are_counted_and_applied_to_the_others() {
        let (a, _) = assign(&[70_000, 50_000], 0, hop(30_000, 60_000), false);
        // 50_000 falls in [30_000, 90_000), still open, and [0, 60_000), closed at 70_000.
        assert_eq!(starts(&a), vec![30_000, 30_000, 60_000]);
        assert_eq!(a.windows[0].origin, vec![0, 1]);
        assert_eq!(a.late, vec![(1, 70_000, 1)]);
    }

    #[test]
    fn by_panes_rows_with_all_windows_open_go_to_their_pane_once() {
        let times = [70_000, 50_000, 95_000, 10_000];
        let (a, _) = assign(&times, 0, hop(30_000, 60_000), true);
        // 70_000 and 95_000 meet open windows only: their panes [60_000, 90_000) and
        // [90_000, 120_000). 50_000 comes at watermark 70_000, when [0, 60_000) has closed: it
        // goes to its open window [30_000, 90_000) alone. 10_000 is late for both its windows.
        let panes: Vec<(i64, Vec<u32>)> = a
            .panes
            .iter()
            .map(|p| (p.start, p.origin.clone()))
            .collect();
        assert_eq!(panes, vec![(60_000, vec![0]), (90_000, vec![2])]);
        assert_eq!(window_end(&a.panes[0]), 90_000);
        assert_eq!(starts(&a), vec![30_000]);
        assert_eq!(a.windows[0].origin, vec![1]);
        assert_eq!(a.late, vec![(1, 70_000, 1), (3, 95_000, 2)]);
    }
}
