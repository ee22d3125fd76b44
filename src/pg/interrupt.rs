//! Stopping a query while its rows are computed: by `statement_timeout` or by a client's
//! CancelRequest. DataFusion computes a query's rows while they are sent, but
//! datafusion-postgres applies the timeout only while a statement is planned, and pgwire
//! listens for a cancel only until the handler returns. So a long query ran on regardless.
//!
//! Here a query's row stream ends with `57014` once the session's timeout has passed since
//! the statement began ("canceling statement due to statement timeout") or once the client
//! cancels it ("canceling statement due to user request"), as PostgreSQL words them; the
//! session goes on. Dropping the stream stops DataFusion's work.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::StreamExt;
use pgwire::api::results::{QueryResponse, Response, SendableRowStream};
use pgwire::api::{ClientInfo, ConnectionHandle};
use pgwire::error::{ErrorInfo, PgWireError};
use tokio::time::{Instant, Sleep};

use super::settings::STATEMENT_TIMEOUT_MS;

/// When a statement that begins now must have finished, by the session's `statement_timeout`.
fn deadline(metadata: &HashMap<String, String>) -> Option<Instant> {
    let ms: u64 = metadata.get(STATEMENT_TIMEOUT_MS)?.parse().ok()?;
    (ms > 0).then(|| Instant::now() + Duration::from_millis(ms))
}

/// What may stop a statement of `client` that begins now.
pub struct Stops {
    deadline: Option<Instant>,
    cancel: Option<Arc<ConnectionHandle>>,
}

impl Stops {
    pub fn of<C: ClientInfo>(client: &C) -> Self {
        Self {
            deadline: deadline(client.metadata()),
            cancel: client
                .session_extensions()
                .get::<Arc<ConnectionHandle>>()
                .map(|handle| (*handle).clone()),
        }
    }
}

fn canceled(why: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "57014".into(),
        format!("canceling statement due to {why}"),
    )))
}

/// A query's rows and what may stop them.
struct Guarded {
    rows: SendableRowStream,
    timer: Option<Pin<Box<Sleep>>>,
    /// The connection's cancel signal, installed when the rows are first asked for.
    cancel: Option<oneshot::Receiver<()>>,
    handle: Option<Arc<ConnectionHandle>>,
}

/// Resolves when the client cancels; never when the signal is replaced (its sender dropped
/// by the next statement) or there is none.
async fn cancelled(cancel: &mut Option<oneshot::Receiver<()>>) {
    if let Some(rx) = cancel {
        if rx.await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

async fn expired(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// `response` with its rows cut off by what may stop it.
pub fn interruptible(response: Response, stops: &Stops) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let QueryResponse {
        command_tag,
        row_schema,
        data_rows,
        ..
    } = query;
    let guarded = Guarded {
        rows: data_rows,
        timer: stops
            .deadline
            .map(|at| Box::pin(tokio::time::sleep_until(at))),
        cancel: None,
        handle: stops.cancel.clone(),
    };
    let rows = futures::stream::unfold(Some(guarded), |state| async move {
        let mut g = state?;
        // pgwire's own cancel receiver lives only while the handler runs, and the rows are
        // computed after it: the connection's next one is installed here, when they are
        // first asked for (a cancel in between is lost, as one after the last row is).
        if let Some(handle) = g.handle.take() {
            g.cancel = Some(handle.start_query().await);
        }
        tokio::select! {
            row = g.rows.next() => row.map(|row| (row, Some(g))),
            _ = expired(&mut g.timer) => Some((Err(canceled("statement timeout")), None)),
            _ = cancelled(&mut g.cancel) => Some((Err(canceled("user request")), None)),
        }
    });
    let mut limited = QueryResponse::new(row_schema, rows);
    limited.set_command_tag(&command_tag);
    Response::Query(limited)
}
