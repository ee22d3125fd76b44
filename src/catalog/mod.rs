//! Catalog: the definitions of sources and views, persisted, and the tables queries see.
//!
//! `definitions` holds what `CREATE SOURCE` / `CREATE MATERIALIZED VIEW` declared and stores
//! their SQL so a restart re-creates them; `status` is the live board the pipelines update;
//! `view_scan` exposes each view as a table whose scans read only the keys a query asks
//! for, `tables` the `weir_catalog` system tables, `functions` the table of functions, and
//! `information_schema` and `pg_catalog` what Postgres clients read.

mod definitions;
mod functions;
mod information_schema;
mod pg_catalog;
mod status;
mod tables;
mod view_scan;

pub use definitions::{CatalogEntry, EntryKind, SourceDef, ViewDef};
pub use information_schema::{PgInformationSchema, INFORMATION_SCHEMA};
pub use pg_catalog::correct_pg_catalog;
pub use status::{PartitionStatus, SourceStatus, StatusBoard, ViewStatus};
pub use tables::{register_system_tables, SYSTEM_SCHEMA};
pub use view_scan::{OneSnapshotPerQuery, ViewTable};

/// Errors of the catalog layer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} \"{name}\" does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("cannot drop {kind} \"{name}\" because materialized views read it: {views}; drop them first")]
    InUse {
        kind: &'static str,
        name: String,
        views: String,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}
