//! SQL functions registered into every Weir session (queries and view plans alike).
//!
//! Security analytics needs to talk about networks, not single addresses: `ip_subnet`
//! groups addresses into their CIDR block. Anomaly scores and sketches join this crate next.

mod ip_subnet;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use ip_subnet::IpSubnet;

/// Every function of this crate.
pub fn all() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(IpSubnet::new())]
}

/// Registers every function of this crate into `ctx`.
pub fn register(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
}
