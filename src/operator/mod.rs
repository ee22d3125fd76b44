//! Operators: the stateful part of a view.
//!
//! `watermark` tracks event time, `window` assigns rows to tumbling or hopping windows and
//! finds late rows, `groups` keeps one window's groups and accumulators (DataFusion's
//! vectorized `GroupValues` and `GroupsAccumulator`), and `view` drives them for one view:
//! apply a batch, close windows the watermark passed, and write an epoch's changes.

mod groups;
mod view;
mod watermark;
mod window;

pub use groups::GroupState;
pub use view::{ChunkPlace, LateRow, ViewOperator, ViewProgress, GLOBAL_WINDOW};
pub use watermark::{SplitWatermark, WatermarkTracker};
pub use window::{assign_windows, Assigned};
