//! `llm_analyze(prompt)`: asks an OpenAI-compatible endpoint about the rows append-only views
//! keep, off the ingest path.
//!
//! The view planner replaces the call by its prompt (`plan::llm`). When a view keeps a row,
//! its epoch writes the row (the prompt in the call's column) and a `pending` record under
//! the row's key in `llm_analyses`, together; a row replayed after a crash finds its record
//! and asks nothing again. Once that epoch is on disk the pipeline hands the requests to
//! [`Llm::submit`], and a tokio task ([`worker`]) calls the endpoint within the configured
//! concurrency and rate, opening a circuit breaker after failures in a row, and overwrites
//! the record with the answer (or the error after the last attempt). A scan of the view shows
//! the record's answer in the column (NULL until it arrives). Records still pending at start
//! are asked again. Without `[llm]` in the config every record says `off`, with why.

mod client;
mod record;
mod worker;

use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

pub use client::{ChatClient, LlmError};
pub use record::{record_key, LlmRecord, LlmRequest, LlmStatus};

use crate::config::LlmConfig;
use crate::metrics::Metrics;
use crate::state::{StateError, Store, Table};

/// Why a record is `off` when no endpoint is configured.
pub const OFF_REASON: &str =
    "llm_analyze is off: add an [llm] table (url, model) to the config file and restart weir";

/// The `llm_analyze` service of a server: a queue to its worker, or off.
pub struct Llm {
    queue: Option<UnboundedSender<LlmRequest>>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// Why calls are not made (no `[llm]`, or a setting the client refused).
    off: Option<String>,
}

impl Llm {
    /// Starts the worker on the current tokio runtime when `config` is given and valid.
    pub fn start(config: Option<LlmConfig>, store: Arc<Store>, metrics: Arc<Metrics>) -> Arc<Self> {
        let (queue, off) = match config.map(|c| ChatClient::new(&c).map(|client| (c, client))) {
            None => (None, Some(OFF_REASON.to_string())),
            Some(Err(e)) => {
                tracing::error!(error = %e, "llm_analyze is off");
                (None, Some(format!("llm_analyze is off: {e}")))
            }
            Some(Ok((config, client))) => {
                let (tx, rx) = unbounded_channel();
                let worker = worker::Worker::new(config, client, store.clone(), metrics.clone());
                tokio::spawn(worker.run(rx, tx.clone()));
                (Some(tx), None)
            }
        };
        Arc::new(Self {
            queue,
            store,
            metrics,
            off,
        })
    }

    /// Asks the endpoint for requests whose pending records are on disk; when off, marks
    /// their records `off` with the reason.
    pub fn submit(&self, requests: Vec<LlmRequest>) {
        if requests.is_empty() {
            return;
        }
        match (&self.queue, &self.off) {
            (Some(queue), _) => {
                for request in requests {
                    self.metrics.llm_queued.inc();
                    let _ = queue.send(request);
                }
            }
            (None, reason) => {
                let reason = reason.clone().unwrap_or_default();
                let result = update_records(&self.store, &requests, |record| {
                    record.status = LlmStatus::Off;
                    record.error = Some(reason.clone());
                });
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot mark llm_analyze records off");
                }
            }
        }
    }

    /// Asks again for every record still pending (at start: calls cut off by a stop).
    pub fn resume(&self) -> Result<usize, StateError> {
        let pending: Vec<LlmRequest> = self
            .store
            .scan_prefix(Table::LlmAnalyses, b"")?
            .into_iter()
            .filter_map(|(key, value)| {
                let record = LlmRecord::decode(&value)?;
                (record.status == LlmStatus::Pending).then_some(LlmRequest::new(key, record.prompt))
            })
            .collect();
        let n = pending.len();
        self.submit(pending);
        Ok(n)
    }
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.off {
            Some(reason) => write!(f, "Llm(off: {reason})"),
            None => f.write_str("Llm(on)"),
        }
    }
}

/// Rewrites the records of `requests` that still exist with `change` (a record whose view
/// or row is gone stays gone).
fn update_records(
    store: &Store,
    requests: &[LlmRequest],
    change: impl Fn(&mut LlmRecord),
) -> Result<(), StateError> {
    let keys: Vec<Vec<u8>> = requests.iter().map(|r| r.key.clone()).collect();
    // Read and rewritten with no epoch written in between: an epoch's retention or a DROP
    // that deletes a record while it is answered is not undone.
    store.update_existing(Table::LlmAnalyses, &keys, |value| {
        let mut record = LlmRecord::decode(value)?;
        change(&mut record);
        Some(record.encode())
    })
}
