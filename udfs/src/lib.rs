//! SQL functions registered into every Weir session (queries and view plans alike).
//!
//! Security analytics needs to talk about networks, not single addresses: `ip_subnet`
//! groups addresses into their CIDR block. Anomaly detection needs robust spreads and
//! frequent values per window: the aggregates `mad`, `zscore_max` and `approx_top_k` keep
//! mergeable states, so views keep them incrementally in their per-group state like any
//! built-in aggregate. The stateful functions (`ewma_zscore`, `is_novel`, `anomaly_score`,
//! `is_anomalous`) learn a baseline per entity as a view's rows flow (see [`stateful`]).
//! `llm_analyze` asks an LLM about the rows an append-only view keeps (see [`llm`]).

mod ip_subnet;
pub mod llm;
mod mad;
pub mod stateful;
mod top_k;
mod zscore_max;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use ip_subnet::IpSubnet;
pub use mad::{median_absolute_deviation, Mad};
pub use top_k::{ApproxTopK, TopK};
pub use zscore_max::{Moments, ZscoreMax};

/// Every scalar function of this crate.
pub fn all() -> Vec<ScalarUDF> {
    let mut udfs = vec![
        ScalarUDF::new_from_impl(IpSubnet::new()),
        ScalarUDF::new_from_impl(llm::LlmAnalyze::default()),
    ];
    udfs.extend(stateful::udfs());
    udfs
}

/// Every aggregate function of this crate.
pub fn aggregates() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(Mad::new()),
        AggregateUDF::new_from_impl(ZscoreMax::new()),
        AggregateUDF::new_from_impl(ApproxTopK::new()),
    ]
}

/// The names of this crate's functions (Weir's own, as `weir_catalog.functions` says).
pub fn names() -> Vec<String> {
    let scalars = all().into_iter().map(|f| f.name().to_string());
    scalars
        .chain(aggregates().into_iter().map(|f| f.name().to_string()))
        .collect()
}

/// Registers every function of this crate into `ctx`.
pub fn register(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
    for udaf in aggregates() {
        ctx.register_udaf(udaf);
    }
}

/// Merges `partial`'s state into `merged`, as a view's commit does with stored states.
#[cfg(test)]
fn merge_into(
    merged: &mut dyn datafusion::logical_expr::Accumulator,
    partial: &mut dyn datafusion::logical_expr::Accumulator,
) {
    let state: Vec<datafusion::arrow::array::ArrayRef> = partial
        .state()
        .unwrap()
        .iter()
        .map(|s| s.to_array().unwrap())
        .collect();
    merged.merge_batch(&state).unwrap();
}
