//! The Postgres wire edge: sessions, statement routing and SQLSTATE mapping.
//!
//! Weir DDL goes to the engine; every other statement (SELECTs over views, system tables,
//! pg_catalog, SET/SHOW, transactions) goes to DataFusion through `datafusion-postgres`.
//! Every error leaves here as a Postgres error with a SQLSTATE, and the session goes on.

mod errors;
mod extended;
mod handler;
mod split;

pub use errors::{datafusion_sqlstate, engine_error_info};
pub use handler::{serve_pg, WeirHandlers};
pub use split::split_statements;
