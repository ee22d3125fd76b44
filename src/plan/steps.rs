//! Stateless per-batch steps (filters and projections) compiled to DataFusion physical expressions.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{filter, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{DFSchema, Result};
use datafusion::error::DataFusionError;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};

use super::stateful::StatefulCall;

/// One stateless step of a view's plan.
#[derive(Debug)]
pub enum Step {
    /// Keep the rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns.
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    /// Append the result of a stateful function call as a column (only an append-only view's
    /// operator runs it: it needs the entities' state).
    Stateful(StatefulCall),
}

/// The same schema with every field nullable: stored and emitted rows may hold NULLs
/// wherever an expression can produce them.
pub fn nullable(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Simplifies `expr` the way DataFusion's optimizer does before it runs a plan. Some
/// functions can only run simplified: `coalesce`, `nvl`, `ifnull` and `nvl2` become CASE
/// expressions there and refuse to be evaluated as they are. Time functions (`now()`) are left
/// alone: a view runs for ever, so no query start time may be folded into it.
pub(super) fn simplify(expr: Expr, input: &DFSchema) -> Result<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(input.clone()))
        .build();
    ExprSimplifier::new(context).simplify(expr)
}

pub(super) fn compile(expr: &Expr, input: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    let expr = simplify(expr.clone(), input)?;
    create_physical_expr(&expr, input, &ExecutionProps::new(), &Default::default())
}

fn mask_of(predicate: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    mask.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Plan("a filter must be a boolean expression".into()))
}

impl Step {
    pub(super) fn filter(predicate: &Expr, input: &DFSchema) -> Result<Self> {
        Ok(Step::Filter(compile(predicate, input)?))
    }

    pub(super) fn project(exprs: &[Expr], input: &DFSchema, output: &DFSchema) -> Result<Self> {
        let exprs = exprs
            .iter()
            .map(|e| compile(e, input))
            .collect::<Result<Vec<_>>>()?;
        Ok(Step::Project {
            exprs,
            schema: nullable(output.as_arrow()),
        })
    }

    /// Applies the step to one batch.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match self {
            Step::Filter(predicate) => {
                let mask = mask_of(predicate, &batch)?;
                if mask.true_count() == batch.num_rows() && mask.null_count() == 0 {
                    return Ok(batch);
                }
                Ok(filter_record_batch(&batch, &mask)?)
            }
            Step::Project { exprs, schema } => {
                let cols = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                Ok(RecordBatch::try_new_with_options(
                    schema.clone(),
                    cols,
                    &options,
                )?)
            }
            Step::Stateful(call) => Err(DataFusionError::Internal(format!(
                "{} needs its view's state to run",
                call.kind.name()
            ))),
        }
    }
}

/// Applies `steps` in order.
pub fn run_steps(steps: &[Step], mut batch: RecordBatch) -> Result<RecordBatch> {
    for step in steps {
        batch = step.apply(batch)?;
    }
    Ok(batch)
}

/// Applies `steps` in order and says which input row each output row came from (filters drop
/// rows, projections keep them).
pub fn run_steps_tracked(
    steps: &[Step],
    mut batch: RecordBatch,
) -> Result<(RecordBatch, Vec<u32>)> {
    let mut origin = UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    for step in steps {
        if let Step::Filter(predicate) = step {
            let mask = mask_of(predicate, &batch)?;
            origin = filter(&origin, &mask)?
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("filtered indices".into()))?;
            batch = filter_record_batch(&batch, &mask)?;
        } else {
            batch = step.apply(batch)?;
        }
    }
    Ok((batch, origin.values().to_vec()))
}
