//! State: everything Weir keeps on disk, behind a narrow API with no RocksDB type above it.
//!
//! One RocksDB database holds the tables (column families): the catalog, per-view and
//! per-source progress (positions, watermarks, counters), view rows and group state (one
//! entry per group, laid out by `keyed` and read back by `view_read`), dead letters and late rows. An epoch's changes for
//! one source — the groups it touched, windows it closed and the positions that produced
//! them — go to disk in one atomic [`WriteSet`], so after a crash the store always holds a
//! consistent cut of the pipeline.

mod codec;
mod keyed;
mod log;
mod store;
mod view_read;

pub use codec::{window_key, window_key_prefix, window_start_bytes, window_start_of_key};
pub use keyed::{
    encode_view_row, for_each_view_row, RowBlockWriter, RowCodec, StoredGroup, StoredValue,
    ViewKeys, OLDEST_READ_FORMAT, STATE_FORMAT, VIEW_ROW_HEADER,
};
pub use log::{log_key, Log, LogLimits};
pub use store::{prefix_end, ReadView, SharedReadView, Store, Table, WriteSet, STORE_FORMAT};
pub use view_read::{
    find_row_in_blocks, for_each_open_block_key, for_each_view_value, open_block_entries,
    OpenBlockFinder,
};

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("corrupt state record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("arrow encoding error: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(
        "the state store in {dir} was written by a newer Weir (store format {found}; this Weir \
         reads format {known}): run that Weir, or start this one with another --data-dir"
    )]
    NewerStore {
        dir: std::path::PathBuf,
        found: u32,
        known: u32,
    },
}
