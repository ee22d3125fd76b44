//! Pipelines: one per source, moving records from the reader through the decoder into every
//! view of the source, and committing epochs.
//!
//! Two threads per source keep both cores busy: the reader thread reads and decodes; the
//! operator thread folds batches into the views and, once per epoch, writes every view's
//! changes, the positions that produced them, dead letters and late rows in one atomic
//! write, which a third thread makes while the operator thread computes the next epoch
//! ([`committer`]). A view set change (a view created or dropped) stops the pipeline after a
//! commit and starts a new one; each view resumes from its own stored position. A new view on
//! a running source replays the source's history from a second reader while the other views
//! go on, and joins them once it caught up (`catchup`). A panic in any thread fails that
//! pipeline only (`panics`). Every pipeline thread runs at a lower priority than the
//! threads answering queries (`priority`).

mod catchup;
mod committer;
mod decode_pool;
mod panics;
pub mod priority;
mod progress;
mod reader;
mod report;
mod runner;

pub use progress::SourceProgress;
pub use runner::{Runner, RunnerConfig};

/// Errors of the pipeline layer.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}
