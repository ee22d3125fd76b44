//! Window assignment: each row to its tumbling or hopping windows, late rows set aside.
//!
//! Lateness is decided row by row against the watermark as it stood just before the row, so
//! the outcome does not depend on how the input was cut into batches.

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

/// A batch assigned to windows.
pub struct Assigned {
    /// Input rows (repeated once per window they fall in) plus `window_start`, `window_end`.
    pub batch: RecordBatch,
    /// The window start of each row of `batch`.
    pub starts: Vec<i64>,
    /// The input row each row of `batch` was copied from.
    pub origin: Vec<u32>,
    /// Rows of the input that fell in closed windows: the row, the watermark it met and how
    /// many of its windows were closed (a HOP row may be late for its oldest windows only; it
    /// is applied to the others).
    pub late: Vec<(u32, i64, u32)>,
}

/// Assigns the rows of `batch` to windows of `spec` by the event time in column `time_col`,
/// advancing the watermark of `split` row by row. `schema` is the batch's schema plus the
/// window columns; columns whose `used` flag is false come out as nulls (not copied).
pub fn assign_windows(
    batch: &RecordBatch,
    time_col: usize,
    spec: WindowSpec,
    tracker: &mut SplitWatermark<'_>,
    schema: &SchemaRef,
    used: &[bool],
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
    let mut rows: Vec<u32> = Vec::with_capacity(times.len() * spec.windows_per_row() as usize);
    let mut starts: Vec<i64> = Vec::with_capacity(rows.capacity());
    let mut late = Vec::new();
    for (i, t) in times.values().iter().enumerate() {
        if times.is_null(i) {
            continue; // the decoder already sent these to dead letters
        }
        let t = *t;
        let watermark = tracker.watermark();
        let last = t.div_euclid(slide) * slide;
        let mut start = last;
        let mut missed = 0;
        while start + size > t {
            if start + size <= watermark {
                missed += 1;
            } else {
                rows.push(i as u32);
                starts.push(start);
            }
            start -= slide;
        }
        if missed > 0 {
            late.push((i as u32, watermark, missed));
        }
        tracker.observe(t);
    }
    let origin = rows.clone();
    let indices = UInt32Array::from(rows);
    let mut cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| match used.get(i) {
            Some(false) => Ok(new_null_array(c.data_type(), indices.len())),
            _ => take(c, &indices, None),
        })
        .collect::<Result<_, _>>()?;
    let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
    cols.push(Arc::new(TimestampMillisecondArray::from(starts.clone())));
    cols.push(Arc::new(TimestampMillisecondArray::from(ends)));
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok(Assigned {
        batch,
        starts,
        origin,
        late,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::WatermarkTracker;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn input(times: &[i64]) -> (RecordBatch, SchemaRef) {
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
        (batch, out)
    }

    #[test]
    fn tumbling_windows_and_late_rows() {
        let (batch, schema) = input(&[1_000, 61_000, 59_000, 125_000, 30_000]);
        let mut tracker = WatermarkTracker::new(5_000);
        let a = assign_windows(
            &batch,
            0,
            WindowSpec::Tumble { size_ms: 60_000 },
            &mut tracker.split(0),
            &schema,
            &[],
        )
        .unwrap();
        // 59_000 is on time (watermark 56_000 < 60_000); 30_000 comes after watermark 120_000.
        assert_eq!(a.starts, vec![0, 60_000, 0, 120_000]);
        assert_eq!(a.late, vec![(4, 120_000, 1)]);
        assert_eq!(tracker.watermark(), 120_000);
    }

    #[test]
    fn hopping_windows_repeat_rows() {
        let (batch, schema) = input(&[65_000, -1]);
        let mut tracker = WatermarkTracker::new(0);
        let spec = WindowSpec::Hop {
            slide_ms: 20_000,
            size_ms: 60_000,
        };
        let a = assign_windows(&batch, 0, spec, &mut tracker.split(0), &schema, &[true]).unwrap();
        assert_eq!(a.starts, vec![60_000, 40_000, 20_000]);
        assert_eq!(a.late, vec![(1, 65_000, 3)]);
        assert_eq!(a.batch.num_rows(), 3);
    }

    #[test]
    fn hop_rows_late_for_some_windows_are_counted_and_applied_to_the_others() {
        let (batch, schema) = input(&[70_000, 50_000]);
        let mut tracker = WatermarkTracker::new(0);
        let spec = WindowSpec::Hop {
            slide_ms: 30_000,
            size_ms: 60_000,
        };
        let a = assign_windows(&batch, 0, spec, &mut tracker.split(0), &schema, &[true]).unwrap();
        // 50_000 falls in [30_000, 90_000), still open, and [0, 60_000), closed at 70_000.
        assert_eq!(a.starts, vec![60_000, 30_000, 30_000]);
        assert_eq!(a.late, vec![(1, 70_000, 1)]);
    }
}
