//! A panic in a pipeline thread fails that pipeline, not the server: the source and its views
//! show `failed` with the panic message (on the status board, so a restart tries again), and
//! `weir_pipelines_failed_total` counts it. Every other pipeline and all queries go on.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::catalog::StatusBoard;
use crate::metrics::Metrics;

/// Environment variable naming a view whose pipeline panics when the view gets rows: a fault
/// to inject in tests (`WEIR_PANIC_IN_VIEW=<view>`), never set in production.
const PANIC_IN_VIEW: &str = "WEIR_PANIC_IN_VIEW";

/// What a pipeline thread needs to report its own panic.
#[derive(Clone)]
pub struct PanicReport {
    pub board: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub source: String,
    pub views: Vec<String>,
}

/// The message a panic carried.
pub(super) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl PanicReport {
    /// Runs `body`; if it panics, marks the source and its views failed with the message,
    /// which it returns.
    pub fn run(&self, thread: &str, body: impl FnOnce()) -> Option<String> {
        let payload = catch_unwind(AssertUnwindSafe(body)).err()?;
        let error = format!("{thread} thread panicked: {}", message(payload.as_ref()));
        tracing::error!(source = %self.source, %error, "pipeline failed");
        self.board.update_source(&self.source, |s| {
            s.status = "failed".into();
            s.error = Some(error.clone());
        });
        for view in &self.views {
            self.board.update_view(view, |v| {
                v.status = "failed".into();
                v.error = Some(error.clone());
            });
        }
        self.metrics
            .pipelines_failed
            .with_label_values(&[&self.source])
            .inc();
        Some(error)
    }
}

/// Panics when the fault injected by [`PANIC_IN_VIEW`] names `view`.
pub fn injected_panic(view: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let fault = FAULT.get_or_init(|| std::env::var(PANIC_IN_VIEW).ok());
    if fault.as_deref() == Some(view) {
        panic!("injected fault in view {view}");
    }
}
