//! One window's groups: group keys interned by DataFusion's `GroupValues`, aggregates kept by
//! `GroupsAccumulator`s, updated a whole batch at a time.
//!
//! A `GroupState` holds one epoch's partial aggregate of a window. At commit it is drained as
//! one Arrow batch — group key columns, then every accumulator's state columns — and merged
//! with the stored state of its groups ([`merge_with_stored`]).
//!
//! A group exists only once a row has reached it: DataFusion's accumulators assume that every
//! group saw a row of the batch that created it (their null tracking counts such a group as
//! "has a value"). So a global aggregate that has seen no row holds no group, and its one
//! output row (count 0, other aggregates NULL, as SQL says) comes from fresh row accumulators.

use std::sync::Arc;

use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::plan::AggregatePlan;

/// The group keys of a window: interned keys, or the single group of a global aggregate
/// (which exists once a row reached it).
enum Keys {
    Grouped(Box<dyn GroupValues>),
    Global { exists: bool },
}

/// The groups and accumulators of one window (or of a whole non-windowed view).
pub struct GroupState {
    keys: Keys,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    indices: Vec<usize>,
}

fn new_accumulator(aggregate: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        aggregate.create_groups_accumulator()
    } else {
        let aggregate = Arc::clone(aggregate);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            aggregate.create_accumulator()
        })))
    }
}

fn evaluate_to_array(
    expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<ArrayRef> {
    expr.evaluate(batch)?.into_array(batch.num_rows())
}

/// What a batch feeds an aggregate, evaluated: group keys, each aggregate's arguments and
/// FILTER. Evaluating is where a row can fail (division by zero, a bad cast), so it happens
/// before any group is touched.
pub struct AggregateInput {
    rows: usize,
    keys: Vec<ArrayRef>,
    args: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<ArrayRef>>,
}

impl AggregateInput {
    /// Whether no row is left (a window exists only where a row reached it).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn evaluate(plan: &AggregatePlan, batch: &RecordBatch) -> Result<Self> {
        let all = |exprs: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>]| {
            exprs
                .iter()
                .map(|e| evaluate_to_array(e, batch))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            rows: batch.num_rows(),
            keys: all(&plan.group_exprs)?,
            args: plan
                .aggregates
                .iter()
                .map(|a| all(&a.expressions()))
                .collect::<Result<_>>()?,
            filters: plan
                .filters
                .iter()
                .map(|f| f.as_ref().map(|f| evaluate_to_array(f, batch)).transpose())
                .collect::<Result<_>>()?,
        })
    }
}

impl GroupState {
    pub fn new(plan: &AggregatePlan) -> Result<Self> {
        let keys = if plan.group_exprs.is_empty() {
            Keys::Global { exists: false }
        } else {
            Keys::Grouped(new_group_values(
                plan.group_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        let accumulators = plan
            .aggregates
            .iter()
            .map(new_accumulator)
            .collect::<Result<_>>()?;
        Ok(Self {
            keys,
            accumulators,
            indices: Vec::new(),
        })
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        match &self.keys {
            Keys::Grouped(g) => g.len(),
            Keys::Global { exists } => usize::from(*exists),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds `batch` (the rows after the view's per-batch steps) into the groups.
    pub fn update(&mut self, plan: &AggregatePlan, batch: &RecordBatch) -> Result<()> {
        self.update_evaluated(&AggregateInput::evaluate(plan, batch)?)
    }

    /// Folds inputs evaluated by [`AggregateInput::evaluate`] into the groups.
    pub fn update_evaluated(&mut self, input: &AggregateInput) -> Result<()> {
        if input.rows == 0 {
            return Ok(());
        }
        match &mut self.keys {
            Keys::Grouped(groups) => groups.intern(&input.keys, &mut self.indices)?,
            Keys::Global { exists } => {
                *exists = true;
                self.indices.clear();
                self.indices.resize(input.rows, 0);
            }
        }
        let total = self.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            let filter = input.filters[i]
                .as_ref()
                .and_then(|f| f.as_any().downcast_ref::<BooleanArray>());
            acc.update_batch(&input.args[i], &self.indices, filter, total)?;
        }
        Ok(())
    }

    /// Drains the state into one batch: group key columns, then each accumulator's state.
    pub fn take_snapshot(&mut self, plan: &AggregatePlan) -> Result<RecordBatch> {
        let n = self.len();
        let cols: Vec<ArrayRef> = if n == 0 {
            // Some accumulators cannot emit zero groups (row accumulators behind the adapter).
            empty_snapshot_columns(plan)?
        } else {
            let mut cols = match &mut self.keys {
                Keys::Grouped(groups) => groups.emit(EmitTo::All)?,
                Keys::Global { exists } => {
                    *exists = false;
                    Vec::new()
                }
            };
            for acc in &mut self.accumulators {
                cols.extend(acc.state(EmitTo::All)?);
            }
            cols
        };
        let n_keys = plan.group_exprs.len();
        let fields: Vec<Field> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = if i < n_keys {
                    format!("k{i}")
                } else {
                    format!("s{i}")
                };
                Field::new(name, c.data_type().clone(), true)
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &options,
        )?)
    }

    /// Consumes the state into the aggregate's output: group columns, then aggregate values.
    pub fn evaluate(mut self, plan: &AggregatePlan) -> Result<RecordBatch> {
        let n = self.len();
        if n == 0 {
            return empty_output(plan);
        }
        let mut cols: Vec<ArrayRef> = match &mut self.keys {
            Keys::Grouped(groups) => groups.emit(EmitTo::All)?,
            Keys::Global { .. } => Vec::new(),
        };
        for acc in &mut self.accumulators {
            cols.push(acc.evaluate(EmitTo::All)?);
        }
        output_batch(plan, cols, n)
    }
}

/// Merges the groups of `delta` (a snapshot: key columns, then state columns) with the stored
/// state of some of them: row `j` of `stored` (state columns only) belongs to the group in row
/// `stored_groups[j]` of `delta`. Returns the merged state columns (one row per row of
/// `delta`) and the aggregate's output rows in the same order.
///
/// `delta` is merged first: every group then has a row in the batch that creates it, as
/// DataFusion's accumulators assume.
pub fn merge_with_stored(
    plan: &AggregatePlan,
    delta: &RecordBatch,
    stored: &[ArrayRef],
    stored_groups: &[usize],
) -> Result<(Vec<ArrayRef>, RecordBatch)> {
    let n = delta.num_rows();
    let own: Vec<usize> = (0..n).collect();
    let mut states = Vec::new();
    let mut outputs: Vec<ArrayRef> = delta.columns()[..plan.group_exprs.len()].to_vec();
    let mut col = 0;
    for (aggregate, values) in plan.aggregates.iter().zip(state_columns(plan, delta)?) {
        let width = values.len();
        let old = if stored_groups.is_empty() {
            None
        } else {
            Some(stored.get(col..col + width).ok_or_else(|| {
                DataFusionError::Internal("stored state has too few columns".into())
            })?)
        };
        let mut keep = new_accumulator(aggregate)?;
        let mut eval = new_accumulator(aggregate)?;
        for acc in [&mut keep, &mut eval] {
            acc.merge_batch(values, &own, n)?;
            if let Some(old) = old {
                acc.merge_batch(old, stored_groups, n)?;
            }
        }
        states.extend(keep.state(EmitTo::All)?);
        outputs.push(eval.evaluate(EmitTo::All)?);
        col += width;
    }
    Ok((states, output_batch(plan, outputs, n)?))
}

/// The data types of the state columns of every aggregate, in snapshot order.
pub fn state_types(plan: &AggregatePlan) -> Result<Vec<datafusion::arrow::datatypes::DataType>> {
    let mut types = Vec::new();
    for aggregate in &plan.aggregates {
        types.extend(
            aggregate
                .state_fields()?
                .iter()
                .map(|f| f.data_type().clone()),
        );
    }
    Ok(types)
}

/// The columns of a snapshot without groups: empty key columns, then empty state columns.
fn empty_snapshot_columns(plan: &AggregatePlan) -> Result<Vec<ArrayRef>> {
    let mut cols: Vec<ArrayRef> = plan
        .group_schema
        .fields()
        .iter()
        .map(|f| new_empty_array(f.data_type()))
        .collect();
    for aggregate in &plan.aggregates {
        for field in aggregate.state_fields()? {
            cols.push(new_empty_array(field.data_type()));
        }
    }
    Ok(cols)
}

/// The output of a state without groups: no rows, except for a global aggregate, which has
/// one row over no input (count 0, other aggregates as their accumulators say: NULL).
pub fn empty_output(plan: &AggregatePlan) -> Result<RecordBatch> {
    if !plan.group_exprs.is_empty() {
        return Ok(RecordBatch::new_empty(plan.output_schema.clone()));
    }
    let cols = plan
        .aggregates
        .iter()
        .map(|aggregate| aggregate.create_accumulator()?.evaluate()?.to_array())
        .collect::<Result<Vec<_>>>()?;
    output_batch(plan, cols, 1)
}

/// The state columns of each aggregate in a snapshot (after the group key columns).
fn state_columns<'a>(
    plan: &AggregatePlan,
    snapshot: &'a RecordBatch,
) -> Result<Vec<&'a [ArrayRef]>> {
    let mut col = plan.group_exprs.len();
    let mut states = Vec::with_capacity(plan.aggregates.len());
    for aggregate in &plan.aggregates {
        let width = aggregate.state_fields()?.len();
        let values = snapshot.columns().get(col..col + width).ok_or_else(|| {
            DataFusionError::Internal(
                "snapshot has fewer state columns than the view's aggregates".into(),
            )
        })?;
        states.push(values);
        col += width;
    }
    Ok(states)
}

/// The aggregate's output rows: group columns, then one column per aggregate.
fn output_batch(plan: &AggregatePlan, cols: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        plan.output_schema.clone(),
        cols,
        &options,
    )?)
}
