//! The Postgres wire edge: sessions, statement routing and SQLSTATE mapping.
//!
//! Weir DDL goes to the engine; every other statement (SELECTs over views, system tables,
//! pg_catalog) goes to DataFusion through `datafusion-postgres`; session statements (SET,
//! SHOW, RESET, DISCARD, savepoints) are answered per connection by `session`.
//! Every error leaves here as a Postgres error with a SQLSTATE, and the session goes on.
//! `auth` decides who may connect (SCRAM-SHA-256 when a password or users are set) and
//! what a reader may not run; `tls` sets up TLS on the port from PEM files.

mod auth;
mod catalog_functions;
mod catalog_sql;
mod copy;
mod errors;
mod extended;
mod functions;
mod guard;
mod handler;
mod interrupt;
pub(crate) mod point_query;
mod prepared;
mod rewrite;
mod session;
mod settings;
mod split;
mod subqueries;
mod text;
mod tls;

pub use auth::Accounts;
pub use errors::{datafusion_sqlstate, engine_error_info};
pub use handler::{serve_pg, WeirHandlers};
pub use split::split_statements;
pub use tls::{acceptor as tls_acceptor, TlsError};
