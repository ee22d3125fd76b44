//! Rows a view refuses: when the steps below a view's aggregate (WHERE, projections) or the
//! aggregate's inputs fail on a row (division by zero, a bad cast), that row becomes a dead
//! letter of the view and the other rows go on.
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
    if let Ok(input) = evaluate(plan, rows.clone()) {
        return Ok(input);
    }
    let mut good = Vec::with_capacity(rows.num_rows());
    for i in 0..rows.num_rows() {
        match evaluate(plan, rows.slice(i, 1)) {
            Ok(_) => good.push(i as u32),
            Err(e) => refused.push((i, e.to_string())),
        }
    }
    // Whatever fails on the rows that pass one by one is not a row's fault: the view fails.
    evaluate(plan, take_record_batch(&rows, &UInt32Array::from(good))?)
}
