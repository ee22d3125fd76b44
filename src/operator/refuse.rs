//! Rows a view refuses: when the steps below a view's aggregate (WHERE, projections), the
//! aggregate's inputs or an append-only view's steps fail on a row (division by zero, a bad
//! cast), that row becomes a dead letter of the view and the other rows go on.
//!
//! The batch is evaluated whole first; only when that fails is it evaluated row by row to
//! find the rows at fault, so the common case costs nothing extra.

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;

use super::groups::AggregateInput;
use crate::plan::{run_steps, ViewPlan};

/// A row of the source a view refused, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    /// The offset after the row in its split.
    pub end: u64,
    /// The row as JSON.
    pub raw: String,
    pub error: String,
}

fn evaluate(plan: &ViewPlan, rows: RecordBatch) -> Result<AggregateInput> {
    let rows = run_steps(&plan.pre, rows)?;
    AggregateInput::evaluate(&plan.aggregate, &rows)
}

/// Runs the per-batch steps of `plan` over `rows` and evaluates the aggregate's inputs. Rows
/// on which that fails are left out: `refused` gets their index in `rows` and the error.
pub fn evaluate_isolating(
    plan: &ViewPlan,
    rows: RecordBatch,
    refused: &mut Vec<(usize, String)>,
) -> Result<AggregateInput> {
    Ok(isolate_rows(rows, refused, |rows| evaluate(plan, rows))?.1)
}

/// Runs `eval` over `rows`; when it fails, runs it row by row to find the rows at fault,
/// reports them in `refused` and runs it over the others. Returns which rows of `rows` it ran
/// over in the end (None: all of them) and its result.
pub fn isolate_rows<T>(
    rows: RecordBatch,
    refused: &mut Vec<(usize, String)>,
    eval: impl Fn(RecordBatch) -> Result<T>,
) -> Result<(Option<Vec<u32>>, T)> {
    if let Ok(out) = eval(rows.clone()) {
        return Ok((None, out));
    }
    let mut good = Vec::with_capacity(rows.num_rows());
    for i in 0..rows.num_rows() {
        match eval(rows.slice(i, 1)) {
            Ok(_) => good.push(i as u32),
            Err(e) => refused.push((i, e.to_string())),
        }
    }
    // Whatever fails on the rows that pass one by one is not a row's fault: the view fails.
    let out = eval(take_record_batch(&rows, &UInt32Array::from(good.clone()))?)?;
    Ok((Some(good), out))
}
