//! `llm_analyze(prompt)` in a view: a whole column of an append-only view's SELECT list.
//!
//! The call is replaced by its prompt (as text): the view evaluates the prompt like any
//! column, and the operator turns the column of each kept row into a request (see
//! `crate::llm`). The stored row keeps the prompt there; a scan shows the answer in its
//! place (NULL until one arrives). Anywhere else — WHERE, inside another expression, a view
//! that aggregates — the call is refused with an error that says where it runs.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{cast, Expr, LogicalPlan, Projection};
use weir_udfs::llm::LLM_ANALYZE;

use super::PlanError;

fn prompt_of(expr: &Expr) -> Option<&Expr> {
    match expr {
        Expr::ScalarFunction(f) if f.func.name() == LLM_ANALYZE => f.args.first(),
        _ => None,
    }
}

fn mentions_llm(expr: &Expr) -> bool {
    expr.exists(|e| Ok(prompt_of(e).is_some())).unwrap_or(false)
}

pub(super) fn misplaced() -> PlanError {
    PlanError::Unsupported(
        "llm_analyze(prompt) is a whole column of an append-only view (no GROUP BY), e.g. CREATE MATERIALIZED VIEW v AS SELECT *, llm_analyze('Explain: ' || msg) AS analysis FROM <source> WHERE ...; it cannot be inside another expression, in WHERE or in an aggregating view".into(),
    )
}

/// `plan` with each `llm_analyze(prompt)` column of its top projection replaced by the
/// prompt as text, and the indices of those columns. Fails when the call is anywhere else.
pub fn lift_columns(plan: &LogicalPlan) -> Result<(LogicalPlan, Vec<usize>), PlanError> {
    let mut columns = Vec::new();
    let lifted = match plan {
        LogicalPlan::Projection(p) if p.expr.iter().any(mentions_llm) => {
            let mut exprs = Vec::with_capacity(p.expr.len());
            for (i, expr) in p.expr.iter().enumerate() {
                let (inner, name) = match expr {
                    Expr::Alias(a) => (a.expr.as_ref(), Some(a.name.clone())),
                    other => (other, None),
                };
                match prompt_of(inner) {
                    Some(prompt) if !mentions_llm(prompt) => {
                        columns.push(i);
                        let name = name.unwrap_or_else(|| p.schema.field(i).name().clone());
                        exprs.push(cast(prompt.clone(), DataType::Utf8).alias(name));
                    }
                    _ if mentions_llm(expr) => return Err(misplaced()),
                    _ => exprs.push(expr.clone()),
                }
            }
            LogicalPlan::Projection(Projection::try_new_with_schema(
                exprs,
                p.input.clone(),
                p.schema.clone(),
            )?)
        }
        other => other.clone(),
    };
    if lifted.exists(|n| Ok(n.expressions().iter().any(mentions_llm)))? {
        return Err(misplaced());
    }
    Ok((lifted, columns))
}
