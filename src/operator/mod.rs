//! Operators: the stateful part of a view.
//!
//! `watermark` tracks event time, `window` assigns rows to tumbling or hopping windows and
//! finds late rows, `groups` keeps an epoch's partial aggregate of a window (DataFusion's
//! vectorized `GroupValues` and `GroupsAccumulator`; `interning` has the key tables for one
//! integer or string column, which look rows up ahead of time), `merge` folds it into the
//! stored state of just the groups it touched, in the order `key_order` finds, `cache` keeps
//! recently touched group states in memory within a budget, and `view` drives them for one
//! view: apply a batch, close windows the watermark passed, and write an epoch's changes;
//! `append` keeps the rows of a view without aggregate; `refuse` sets aside the rows a view's
//! expressions fail on; `prefetch` asks the CPU for memory a lookup will read.

mod append;
mod cache;
mod groups;
mod interning;
mod key_filter;
mod key_order;
mod merge;
mod prefetch;
mod refuse;
mod stateful;
mod view;
mod watermark;
mod window;

pub use cache::CacheBudget;
pub use groups::GroupState;
pub use merge::Codecs;
pub use refuse::RefusedRow;
pub use view::{
    progress_key, written_at, ChunkPlace, LateRow, StateCounters, ViewOperator, ViewProgress,
    GLOBAL_WINDOW,
};
pub use watermark::{SplitWatermark, WatermarkTracker};
pub use window::{assign_windows, Assigned, WindowRows};
