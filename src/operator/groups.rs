//! One window's groups: group keys interned by a `GroupValues` table (ours from `interning`
//! for one integer or string column, else DataFusion's), aggregates kept by
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

use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::datatypes::{Field, FieldRef, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{DataFusionError, Result, ScalarValue};
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
///
/// Group columns that hold one value for the whole window (`window_start`, `window_end`) are
/// not interned: the groups are told apart by the other columns alone (for `GROUP BY auction,
/// window_start, window_end`, DataFusion's fast one-column `GroupValues` instead of its
/// multi-column one), and those columns are put back, repeated, when the state is drained.
pub struct GroupState {
    keys: Keys,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    indices: Vec<usize>,
    /// What each group column is in this state.
    columns: Vec<GroupColumn>,
    /// The group columns that are interned, in order (all of them when none is constant).
    interned: Vec<usize>,
}

/// A group column of one window's state.
enum GroupColumn {
    /// Interned: the groups differ in it.
    Interned,
    /// The same in every row of the window: its value, once a row has come.
    Constant(Option<ArrayRef>),
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

/// Whether `aggregate` folds each distinct value of its argument once, so that what counts as
/// the same value changes its result (count, sum, avg DISTINCT; not min or max).
fn counts_distinct_values(aggregate: &AggregateFunctionExpr) -> bool {
    aggregate.is_distinct() && !matches!(aggregate.fun().name(), "min" | "max")
}

/// `array` with -0.0 made 0.0, when it holds floats. SQL compares -0.0 equal to 0.0, and
/// DataFusion's batch plans (DISTINCT rewritten as GROUP BY) count them as one value, but its
/// DISTINCT accumulators hash a float's bytes and keep both.
fn without_negative_zero(array: ArrayRef) -> ArrayRef {
    // Adding 0.0 turns -0.0 into 0.0 and leaves every other value as it is.
    match array.data_type() {
        DataType::Float64 => Arc::new(
            array
                .as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(|v| v + 0.0),
        ),
        DataType::Float32 => Arc::new(
            array
                .as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(|v| v + 0.0),
        ),
        _ => array,
    }
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
                .map(|a| {
                    let args = all(&a.expressions())?;
                    Ok(if counts_distinct_values(a) {
                        args.into_iter().map(without_negative_zero).collect()
                    } else {
                        args
                    })
                })
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
        Self::sized(plan, 0)
    }

    /// A state whose key table starts with room for about `groups` groups: a view sizes a
    /// new window's table from the last window that opened and closed within one epoch, so
    /// that the table does not grow (rehashing every group) a dozen times as rows come.
    pub fn sized(plan: &AggregatePlan, groups: usize) -> Result<Self> {
        let columns: Vec<GroupColumn> = (0..plan.group_exprs.len())
            .map(|g| match plan.constant_groups.get(g) {
                Some(true) => GroupColumn::Constant(None),
                _ => GroupColumn::Interned,
            })
            .collect();
        let interned: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, GroupColumn::Interned))
            .map(|(g, _)| g)
            .collect();
        let fields: Vec<FieldRef> = interned
            .iter()
            .map(|g| plan.group_schema.field(*g).clone().into())
            .collect();
        let keys = if interned.is_empty() {
            Keys::Global { exists: false }
        } else {
            let ours = match fields.as_slice() {
                [one] => super::interning::one_column_table(one.data_type(), groups),
                _ => None,
            };
            match ours {
                Some(table) => Keys::Grouped(table),
                None => Keys::Grouped(new_group_values(
                    Arc::new(Schema::new(fields)),
                    &GroupOrdering::None,
                )?),
            }
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
            columns,
            interned,
        })
    }

    /// The group columns of `n` groups: the interned ones as `interned` gives them, the
    /// constant ones repeated.
    fn group_columns(&self, interned: Vec<ArrayRef>, n: usize) -> Result<Vec<ArrayRef>> {
        let mut interned = interned.into_iter();
        self.columns
            .iter()
            .map(|c| match c {
                GroupColumn::Interned => interned.next().ok_or_else(|| {
                    DataFusionError::Internal("fewer interned group columns than planned".into())
                }),
                GroupColumn::Constant(Some(value)) => {
                    ScalarValue::try_from_array(value, 0)?.to_array_of_size(n)
                }
                GroupColumn::Constant(None) => Err(DataFusionError::Internal(
                    "a window's groups were drained before any row reached them".into(),
                )),
            })
            .collect()
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
        for (column, key) in self.columns.iter_mut().zip(&input.keys) {
            if let GroupColumn::Constant(value @ None) = column {
                *value = Some(key.slice(0, 1));
            }
        }
        self.number_groups(&input.keys, input.rows)?;
        let total = self.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            let filter = input.filters[i]
                .as_ref()
                .and_then(|f| f.as_any().downcast_ref::<BooleanArray>());
            acc.update_batch(&input.args[i], &self.indices, filter, total)?;
        }
        Ok(())
    }

    /// Sets `indices` to the group of each of `rows` rows whose group columns are `keys`
    /// (constant ones included; only the interned ones tell groups apart), creating groups
    /// not seen before.
    fn number_groups(&mut self, keys: &[ArrayRef], rows: usize) -> Result<()> {
        match &mut self.keys {
            Keys::Grouped(groups) if self.interned.len() == keys.len() => {
                groups.intern(keys, &mut self.indices)
            }
            Keys::Grouped(groups) => {
                let keys: Vec<ArrayRef> = self.interned.iter().map(|g| keys[*g].clone()).collect();
                groups.intern(&keys, &mut self.indices)
            }
            Keys::Global { exists } => {
                *exists = true;
                self.indices.clear();
                self.indices.resize(rows, 0);
                Ok(())
            }
        }
    }

    /// Folds a drained partial state (a [`take_snapshot`](Self::take_snapshot) of the same
    /// plan) into the groups, as if the rows behind it came here. `constants` gives the value
    /// (one row) of each group column that is constant here, in order: a HOP pane's snapshot
    /// holds the pane's bounds where each of its windows has its own.
    pub fn merge_snapshot(
        &mut self,
        plan: &AggregatePlan,
        snapshot: &RecordBatch,
        constants: &[ArrayRef],
    ) -> Result<()> {
        let n = snapshot.num_rows();
        if n == 0 {
            return Ok(());
        }
        let mut given = constants.iter();
        for column in self.columns.iter_mut() {
            if let GroupColumn::Constant(value) = column {
                let constant = given.next().ok_or_else(|| {
                    DataFusionError::Internal("fewer constants than constant group columns".into())
                })?;
                value.get_or_insert_with(|| constant.clone());
            }
        }
        self.number_groups(&snapshot.columns()[..plan.group_exprs.len()], n)?;
        let total = self.len();
        for (acc, values) in self
            .accumulators
            .iter_mut()
            .zip(state_columns(plan, snapshot)?)
        {
            acc.merge_batch(values, &self.indices, total)?;
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
            let interned = match &mut self.keys {
                Keys::Grouped(groups) => groups.emit(EmitTo::All)?,
                Keys::Global { exists } => {
                    *exists = false;
                    Vec::new()
                }
            };
            let mut cols = self.group_columns(interned, n)?;
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
        let interned: Vec<ArrayRef> = match &mut self.keys {
            Keys::Grouped(groups) => groups.emit(EmitTo::All)?,
            Keys::Global { .. } => Vec::new(),
        };
        let mut cols = self.group_columns(interned, n)?;
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
/// DataFusion's accumulators assume. Without `keep_state` (a closing window keeps its rows
/// alone) no state columns are made.
pub fn merge_with_stored(
    plan: &AggregatePlan,
    delta: &RecordBatch,
    stored: &[ArrayRef],
    stored_groups: &[usize],
    keep_state: bool,
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
        let merged = || -> Result<_> {
            let mut acc = new_accumulator(aggregate)?;
            acc.merge_batch(values, &own, n)?;
            if let Some(old) = old {
                acc.merge_batch(old, stored_groups, n)?;
            }
            Ok(acc)
        };
        if keep_state {
            match old {
                // Nothing stored: the delta's state is the merged state already, and another
                // merge would only copy it.
                None => states.extend(values.iter().cloned()),
                Some(_) => states.extend(merged()?.state(EmitTo::All)?),
            }
        }
        outputs.push(merged()?.evaluate(EmitTo::All)?);
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};

    use super::*;
    use crate::plan::{plan_sql, run_steps, SourceSchema, WatermarkDef};

    /// A HOP window's groups are told apart by `auction` alone; `window_start` and
    /// `window_end` come back repeated when the state is drained or evaluated.
    #[tokio::test]
    async fn window_columns_are_not_interned_and_come_back_on_emit() {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let source = SourceSchema {
            name: "bids".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("auction", DataType::Int64, true),
                Field::new("channel", DataType::Utf8, true),
                Field::new("ts", ts.clone(), true),
            ])),
            watermark: Some(WatermarkDef {
                column: "ts".into(),
                delay_ms: 0,
            }),
            upstream: None,
        };
        let sql = "SELECT window_start, auction, window_end, count(*) AS n \
                   FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds') \
                   WHERE channel <> 'web' GROUP BY window_start, auction, window_end";
        let plan = plan_sql(sql, &source).await;
        assert_eq!(plan.aggregate.constant_groups, vec![true, false, true]);
        // One window's rows, as window assignment hands them over.
        let rows = 4;
        let input = RecordBatch::try_new(
            plan.input_schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![7, 8, 7, 9])),
                Arc::new(StringArray::from(vec!["app", "app", "app", "web"])),
                Arc::new(TimestampMillisecondArray::from(vec![1_000; rows])),
                Arc::new(TimestampMillisecondArray::from(vec![-8_000; rows])),
                Arc::new(TimestampMillisecondArray::from(vec![2_000; rows])),
            ],
        )
        .unwrap();
        let batch = run_steps(&plan.pre, input).unwrap();
        let drained = |state: &mut GroupState| state.take_snapshot(&plan.aggregate).unwrap();
        for snapshot in [false, true] {
            let mut state = GroupState::new(&plan.aggregate).unwrap();
            state.update(&plan.aggregate, &batch).unwrap();
            state.update(&plan.aggregate, &batch.slice(0, 1)).unwrap();
            assert_eq!(state.len(), 2, "auctions 7 and 8");
            let out = if snapshot {
                drained(&mut state)
            } else {
                state.evaluate(&plan.aggregate).unwrap()
            };
            let times = |c: usize| out.column(c).as_primitive::<TimestampMillisecondType>();
            assert_eq!(times(0).values().to_vec(), vec![-8_000, -8_000]);
            assert_eq!(times(2).values().to_vec(), vec![2_000, 2_000]);
            let auctions = out.column(1).as_primitive::<Int64Type>().values().to_vec();
            let counts = out.column(3).as_primitive::<Int64Type>().values().to_vec();
            let mut pairs: Vec<(i64, i64)> = auctions.into_iter().zip(counts).collect();
            pairs.sort();
            assert_eq!(pairs, vec![(7, 3), (8, 1)]);
        }
        // A window with only window columns for groups: one group once a row reached it.
        let sql = "SELECT window_start, count(*) AS n \
                   FROM HOP(bids, ts, INTERVAL '2 seconds', INTERVAL '10 seconds') GROUP BY window_start";
        let plan = plan_sql(sql, &source).await;
        let mut state = GroupState::new(&plan.aggregate).unwrap();
        assert_eq!(state.len(), 0);
        let input = RecordBatch::try_new(
            plan.input_schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(StringArray::from(vec!["app", "web"])),
                Arc::new(TimestampMillisecondArray::from(vec![1_000; 2])),
                Arc::new(TimestampMillisecondArray::from(vec![0; 2])),
                Arc::new(TimestampMillisecondArray::from(vec![10_000; 2])),
            ],
        )
        .unwrap();
        let batch = run_steps(&plan.pre, input).unwrap();
        state.update(&plan.aggregate, &batch).unwrap();
        let out = state.evaluate(&plan.aggregate).unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().value(0), 2);
    }
}
