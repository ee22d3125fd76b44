//! Append-only views: a view without aggregate keeps every source row that passes its WHERE,
//! through its projection.
//!
//! Each kept row is stored under `view \0 event-time position`, where the position is the
//! row's split (4 bytes) and the offset after it in that split (8 bytes), all big-endian.
//! Keys are therefore in event-time order (retention deletes one key range) and fixed by the
//! input alone: a row applied again after a crash overwrites itself, so a view is exact even
//! where a replay overlaps what was stored. A source without event time keys every row at
//! time 0, in source order.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::Result;

use super::refuse::isolate_rows;
use super::stateful::EntityStates;
use crate::plan::{run_steps_tracked, stateful_column, StatefulCall, Step, ViewPlan};
use crate::state::{Store, ViewKeys};

/// One row the view keeps: its key's event time and position, and its encoded row.
pub struct AppendedRow {
    pub event_time: i64,
    pub split: u32,
    /// Offset after the row in its split.
    pub end: u64,
    pub row: Vec<u8>,
    /// The `llm_analyze` columns of the row that have a prompt, with it.
    pub prompts: Vec<(usize, String)>,
}

impl AppendedRow {
    pub fn key(&self, keys: &ViewKeys) -> Vec<u8> {
        let mut position = [0u8; 12];
        position[..4].copy_from_slice(&self.split.to_be_bytes());
        position[4..].copy_from_slice(&self.end.to_be_bytes());
        keys.group(self.event_time, &position)
    }
}

/// The view's rows of `batch` and, for each, its row in `batch`. Rows the view's expressions
/// fail on are left out and reported in `refused` (by their row in `batch`). Stateful calls
/// learn from the rows that reach them, once each, in order.
pub fn evaluate(
    plan: &ViewPlan,
    batch: RecordBatch,
    refused: &mut Vec<(usize, String)>,
    states: &mut EntityStates,
    store: &Store,
) -> Result<(RecordBatch, Vec<u32>)> {
    let calls: Vec<&StatefulCall> = plan
        .pre
        .iter()
        .filter_map(|s| match s {
            Step::Stateful(call) => Some(call),
            _ => None,
        })
        .collect();
    let mut origin: Vec<u32> = (0..batch.num_rows() as u32).collect();
    let mut rows = batch;
    for (i, segment) in plan
        .pre
        .split(|s| matches!(s, Step::Stateful(_)))
        .enumerate()
    {
        let mut local = Vec::new();
        let (kept, (out, through)) =
            isolate_rows(rows, &mut local, |rows| run_steps_tracked(segment, rows))?;
        refused.extend(local.drain(..).map(|(r, e)| (origin[r] as usize, e)));
        origin = through
            .iter()
            .map(|j| origin[kept.as_ref().map_or(*j, |k| k[*j as usize]) as usize])
            .collect();
        rows = out;
        let Some(call) = calls.get(i) else {
            break;
        };
        // Arguments that fail on a row refuse the row before the call learns from it.
        let (kept, args) = isolate_rows(rows.clone(), &mut local, |rows| {
            EntityStates::arguments(call, &rows)
        })?;
        refused.extend(local.drain(..).map(|(r, e)| (origin[r] as usize, e)));
        if let Some(kept) = kept {
            rows = take_record_batch(&rows, &UInt32Array::from(kept.clone()))?;
            origin = kept.iter().map(|k| origin[*k as usize]).collect();
        }
        let column = states.evaluate(call, &args, rows.num_rows(), store)?;
        let mut fields: Vec<Field> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            stateful_column(call.slot),
            column.data_type().clone(),
            true,
        ));
        let mut columns = rows.columns().to_vec();
        columns.push(column);
        rows = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
        )?;
    }
    Ok((rows, origin))
}

/// The `llm_analyze` prompts of each row of the view's `rows` (its columns that show a call,
/// where not NULL).
pub fn prompts<'a>(
    plan: &ViewPlan,
    rows: &'a RecordBatch,
) -> impl Fn(usize) -> Vec<(usize, String)> + 'a {
    let columns: Vec<(usize, &'a StringArray)> = plan
        .llm_columns
        .iter()
        .filter_map(|c| Some((*c, rows.column(*c).as_any().downcast_ref::<StringArray>()?)))
        .collect();
    move |row| {
        columns
            .iter()
            .filter(|(_, prompts)| prompts.is_valid(row))
            .map(|(c, prompts)| (*c, prompts.value(row).to_string()))
            .collect()
    }
}

/// The event time of each row of `batch` (0 for every row when the view has none).
pub fn event_times<'a>(plan: &ViewPlan, batch: &'a RecordBatch) -> impl Fn(usize) -> i64 + 'a {
    let times = plan.watermark.and_then(|(col, _)| {
        batch
            .column(col)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
    });
    move |i| match times {
        Some(t) if t.is_valid(i) => t.value(i),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_event_time_then_position() {
        let keys = ViewKeys::new("v");
        let row = |event_time, split, end| AppendedRow {
            event_time,
            split,
            end,
            row: Vec::new(),
            prompts: Vec::new(),
        };
        let mut rows = [
            row(5, 0, 9),
            row(-3, 2, 1),
            row(5, 0, 2),
            row(5, 1, 1),
            row(0, 0, 300),
        ];
        rows.sort_by_key(|r| r.key(&keys));
        let order: Vec<(i64, u32, u64)> = rows
            .iter()
            .map(|r| (r.event_time, r.split, r.end))
            .collect();
        assert_eq!(
            order,
            vec![(-3, 2, 1), (0, 0, 300), (5, 0, 2), (5, 0, 9), (5, 1, 1)]
        );
    }
}
