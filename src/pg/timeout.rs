//! `statement_timeout` over a query's whole run. datafusion-postgres applies it only while a
//! statement is planned, but DataFusion computes a query's rows while they are sent, so a
//! long query ran on past its timeout. Here a query's row stream ends with `57014` ("canceling
//! statement due to statement timeout", as PostgreSQL words it) once the session's timeout
//! has passed since the statement began; dropping the stream stops DataFusion's work.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::error::{ErrorInfo, PgWireError};
use tokio::time::Instant;

use super::settings::STATEMENT_TIMEOUT_MS;

/// When a statement that begins now must have finished, by the session's `statement_timeout`.
pub fn deadline(metadata: &HashMap<String, String>) -> Option<Instant> {
    let ms: u64 = metadata.get(STATEMENT_TIMEOUT_MS)?.parse().ok()?;
    (ms > 0).then(|| Instant::now() + Duration::from_millis(ms))
}

fn canceled() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "57014".into(),
        "canceling statement due to statement timeout".into(),
    )))
}

/// `response` with its rows cut off by `deadline`.
pub fn within(response: Response, deadline: Option<Instant>) -> Response {
    let Some(deadline) = deadline else {
        return response;
    };
    let Response::Query(query) = response else {
        return response;
    };
    let QueryResponse {
        command_tag,
        row_schema,
        data_rows,
        ..
    } = query;
    let timer = Box::pin(tokio::time::sleep_until(deadline));
    let rows = futures::stream::unfold(Some((data_rows, timer)), |state| async move {
        let (mut rows, mut timer) = state?;
        tokio::select! {
            row = rows.next() => row.map(|row| (row, Some((rows, timer)))),
            _ = &mut timer => Some((Err(canceled()), None)),
        }
    });
    let mut limited = QueryResponse::new(row_schema, rows);
    limited.set_command_tag(&command_tag);
    Response::Query(limited)
}
