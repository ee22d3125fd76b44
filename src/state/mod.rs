//! State: everything Weir keeps on disk, behind a narrow API with no RocksDB type above it.
//!
//! One RocksDB database holds six tables (column families): the catalog, per-view and
//! per-source progress (positions, watermarks, counters), view rows, open-window state,
//! dead letters and late rows. An epoch's changes for one source — view rows, window state and
//! the positions that produced them — go to disk in one atomic [`WriteSet`], so after a crash the
//! store always holds a consistent cut of the pipeline.

mod codec;
mod store;

pub use codec::{batch_from_ipc, batch_to_ipc, window_key, window_key_prefix, window_start_of_key};
pub use store::{ReadView, Store, Table, WriteSet};

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("corrupt state record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("arrow encoding error: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}
