//! SQLSTATE codes, chosen once, here at the edge.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};

use super::subqueries::TOO_MANY_ROWS;
use crate::catalog::CatalogError;
use crate::engine::EngineError;
use crate::plan::PlanError;
use crate::source::SourceError;

fn info(code: &str, message: String) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), code.to_string(), message)
}

/// The SQLSTATE of a DataFusion error.
pub fn datafusion_sqlstate(error: &DataFusionError) -> &'static str {
    match error.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(e, _) => {
            let text = e.to_string();
            if text.contains("No field named") {
                "42703"
            } else if text.contains("not found") {
                "42P01"
            } else {
                "42P17"
            }
        }
        DataFusionError::Plan(msg) if msg.contains("Correlated scalar subquery") => "0A000",
        DataFusionError::Plan(msg) => {
            if msg.contains("table") && msg.contains("not found") {
                "42P01"
            } else if msg.contains("function")
                && (msg.contains("Invalid") || msg.contains("not found"))
            {
                "42883"
            } else {
                "42601"
            }
        }
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(e, _) if e.to_string().contains("Divide by zero") => "22012",
        DataFusionError::Execution(msg) if msg.contains("unrecognized configuration parameter") => {
            "42704"
        }
        DataFusionError::Execution(msg)
            if msg.contains(TOO_MANY_ROWS)
                || msg.contains("subquery returned more than one row") =>
        {
            "21000"
        }
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => "22000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        _ => "XX000",
    }
}

fn datafusion_info(error: &DataFusionError) -> ErrorInfo {
    let message = error.find_root().to_string();
    let message = ["Error during planning: ", "Execution error: "]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .unwrap_or(&message)
        .to_string();
    // DataFusion names the subquery it could not turn into a join only as `<subquery>`.
    let message = if message.contains("ScalarSubquery(") {
        "this correlated subquery is not supported (DataFusion cannot turn it into a join); \
         rewrite it as a join, or aggregate it over equality conditions"
            .to_string()
    } else {
        message
    };
    info(datafusion_sqlstate(error), message)
}

/// A Postgres error for an engine error.
pub fn engine_error_info(error: &EngineError) -> ErrorInfo {
    let message = error.to_string();
    let code = match error {
        EngineError::Plan(PlanError::Syntax(_)) => "42601",
        EngineError::Plan(PlanError::Unsupported(_)) => "0A000",
        EngineError::Plan(PlanError::Invalid(_)) => "22023",
        EngineError::Plan(PlanError::LimitExceeded(_)) => "54000",
        EngineError::Plan(PlanError::UnknownRelation { .. }) => "42P01",
        EngineError::Plan(PlanError::Arrow(_)) => "42703",
        EngineError::Plan(PlanError::DataFusion(e)) | EngineError::DataFusion(e) => {
            return datafusion_info(e)
        }
        EngineError::Catalog(CatalogError::AlreadyExists { .. }) => "42P07",
        EngineError::Catalog(CatalogError::NotFound { .. }) => "42P01",
        EngineError::Catalog(CatalogError::InUse { .. }) => "2BP01",
        EngineError::Catalog(CatalogError::State(_)) | EngineError::State(_) => "58030",
        EngineError::Source(SourceError::Options(_)) => "22023",
        EngineError::Source(SourceError::Io { .. }) => "58030",
        EngineError::Pipeline(_) => "XX000",
    };
    info(code, message)
}

/// Replaces a generic error (`XX000`) with one carrying the right SQLSTATE.
pub fn refine(error: &mut PgWireError) {
    if let PgWireError::ApiError(inner) = error {
        let refined = if let Some(df) = inner.downcast_ref::<DataFusionError>() {
            datafusion_info(df)
        } else if let Some(parse) = inner.downcast_ref::<ParserError>() {
            info("42601", parse.to_string())
        } else {
            info("XX000", inner.to_string())
        };
        *error = PgWireError::UserError(Box::new(refined));
    }
}
