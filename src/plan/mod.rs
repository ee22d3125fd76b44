//! Plan: Weir's SQL dialect on top of DataFusion's.
//!
//! `ddl` parses the statements DataFusion does not know (`CREATE SOURCE`, `WATERMARK FOR`,
//! `DROP SOURCE`, `SHOW SOURCES`, ...). `view` turns a materialized view's SELECT into a
//! [`ViewPlan`]: DataFusion plans and type-checks the query, and the plan is split at its
//! aggregate into per-batch steps below it, incremental accumulators, and steps above it that
//! run when a window's rows are emitted. `upstream` lets a view read another (windowed)
//! view's final rows as its input.

mod ddl;
mod interval;
mod llm;
mod stateful;
mod steps;
mod upstream;
mod view;

pub use ddl::{
    leading_words, parse_statement, ColumnDef, CreateSource, CreateView, IncludeColumn, KafkaMeta,
    WatermarkDef, WeirStatement,
};
pub use interval::interval_text_ms;
pub use stateful::{column_name as stateful_column, StatefulCall};
pub use steps::{nullable, run_steps, run_steps_tracked, Step};
pub use upstream::{view_as_source, Upstream};
#[cfg(test)]
pub use view::plan_sql;
pub use view::{
    plan_view, AggregatePlan, GroupRole, SourceSchema, ViewPlan, WindowSpec, WINDOW_END,
    WINDOW_START,
};

/// Errors of the planning layer.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    /// A definition beyond one of Weir's limits (e.g. windows per row).
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{kind} \"{name}\" does not exist")]
    UnknownRelation { kind: &'static str, name: String },
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for PlanError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        PlanError::Syntax(
            e.to_string()
                .trim_start_matches("sql parser error: ")
                .to_string(),
        )
    }
}
