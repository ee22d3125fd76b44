//! Stateful function calls (`ewma_zscore`, `is_novel`, `anomaly_score`, `is_anomalous`) in an
//! append-only view's steps.
//!
//! Each distinct call is lifted out of the expressions that mention it into a step of its own
//! that appends the call's result as a column (`__weir_stateful_<slot>`), placed just before
//! the first step that mentions it, so it sees exactly the rows that reach that step, in
//! arrival order. Every mention, in WHERE and SELECT alike, then reads that column: a call is
//! evaluated once per row however often the query names it. The column lives on through the
//! projections below the top one, and only the top step drops it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::{cast, Expr};
use datafusion::physical_expr::PhysicalExpr;
use weir_udfs::stateful::StatefulKind;

use super::steps::{compile, Step};
use super::PlanError;

/// One lifted call: which function, its place among the view's calls (its state's key), and
/// its arguments cast to the types the function takes.
#[derive(Debug)]
pub struct StatefulCall {
    pub kind: StatefulKind,
    pub slot: usize,
    pub args: Vec<Arc<dyn PhysicalExpr>>,
}

/// The name of a lifted call's column.
pub fn column_name(slot: usize) -> String {
    format!("__weir_stateful_{slot}")
}

fn kind_of(expr: &Expr) -> Option<StatefulKind> {
    match expr {
        Expr::ScalarFunction(f) => StatefulKind::from_name(f.func.name()),
        _ => None,
    }
}

/// Whether `expr` calls a stateful function.
pub fn mentions_stateful(expr: &Expr) -> bool {
    expr.exists(|e| Ok(kind_of(e).is_some())).unwrap_or(false)
}

/// The calls lifted so far, and which of their columns the current batch holds.
#[derive(Default)]
pub struct Lifter {
    /// Each lifted call (its arguments rewritten to read inner calls' columns) and its slot.
    calls: Vec<Expr>,
    /// Slots whose columns the batch holds, in column order after the plan's own columns.
    live: Vec<(usize, DataType)>,
}

impl Lifter {
    pub fn has_live(&self) -> bool {
        !self.live.is_empty()
    }

    /// `input` with the live columns appended.
    pub fn extend(&self, input: &DFSchema) -> Result<DFSchemaRef, PlanError> {
        if self.live.is_empty() {
            return Ok(Arc::new(input.clone()));
        }
        let fields: Vec<Field> = self
            .live
            .iter()
            .map(|(slot, t)| Field::new(column_name(*slot), t.clone(), true))
            .collect();
        let extra = DFSchema::from_unqualified_fields(fields.into(), HashMap::new())?;
        let mut joined = input.clone();
        joined.merge(&extra);
        Ok(Arc::new(joined))
    }

    /// Column expressions of the live columns (to carry them through a projection).
    pub fn live_columns(&self) -> Vec<Expr> {
        self.live
            .iter()
            .map(|(slot, _)| {
                Expr::Column(datafusion::common::Column::from_name(column_name(*slot)))
            })
            .collect()
    }

    /// Forgets the live columns (the top step drops them).
    pub fn drop_live(&mut self) {
        self.live.clear();
    }

    /// A projection from `schema` plus the live columns to `schema` alone: the top step of a
    /// view whose top node does not project.
    pub fn drop_step(&mut self, schema: &DFSchema) -> Result<Step, PlanError> {
        let columns: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
        let input = self.extend(schema)?;
        self.drop_live();
        Ok(Step::project(&columns, &input, schema)?)
    }

    /// Rewrites `expr` (over `input`, the step's input schema without live columns) so that
    /// its stateful calls read columns; pushes a call step to `lifted` for each call not
    /// lifted before, innermost first.
    pub fn rewrite(
        &mut self,
        expr: Expr,
        input: &DFSchema,
        lifted: &mut Vec<StatefulCall>,
    ) -> Result<Expr, PlanError> {
        let mut failure = None;
        let rewritten = expr
            .transform_up(|e| {
                let Some(kind) = kind_of(&e) else {
                    return Ok(Transformed::no(e));
                };
                let slot = match self.calls.iter().position(|c| *c == e) {
                    Some(slot) if self.live.iter().any(|(s, _)| *s == slot) => slot,
                    Some(_) => {
                        failure = Some(PlanError::Unsupported(format!(
                            "{}(...) is used again after the projection that produced it; select it as a column and refer to that column",
                            kind.name()
                        )));
                        return Ok(Transformed::new(e, false, TreeNodeRecursion::Stop));
                    }
                    None => match self.lift(kind, &e, input) {
                        Ok(call) => {
                            let slot = call.slot;
                            lifted.push(call);
                            slot
                        }
                        Err(err) => {
                            failure = Some(err);
                            return Ok(Transformed::new(e, false, TreeNodeRecursion::Stop));
                        }
                    },
                };
                Ok(Transformed::yes(Expr::Column(
                    datafusion::common::Column::from_name(column_name(slot)),
                )))
            })?
            .data;
        match failure {
            Some(err) => Err(err),
            None => Ok(rewritten),
        }
    }

    fn lift(
        &mut self,
        kind: StatefulKind,
        call: &Expr,
        input: &DFSchema,
    ) -> Result<StatefulCall, PlanError> {
        let Expr::ScalarFunction(f) = call else {
            unreachable!("kind_of matched a scalar function");
        };
        let types = kind
            .argument_types(f.args.len())
            .map_err(PlanError::Invalid)?;
        let schema = self.extend(input)?;
        let args = f
            .args
            .iter()
            .zip(types)
            .map(|(arg, t)| compile(&cast(arg.clone(), t), &schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let slot = self.calls.len();
        self.calls.push(call.clone());
        self.live.push((slot, kind.return_type()));
        Ok(StatefulCall { kind, slot, args })
    }
}
