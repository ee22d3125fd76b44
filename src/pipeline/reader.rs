//! The reader threads: read chunks, decode them, hand them to the operator thread. A pipeline
//! has its main reader and, while some of its views replay history, a catch-up reader (see
//! `catchup`); their messages share one channel, tagged with the [`Feed`] they come from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;

use super::panics::PanicReport;
use crate::decode::{DeadLetter, JsonDecoder};
use crate::source::{Chunk, Frontier, Reader, SplitStatus};

/// What the reader thread sends.
pub enum Message {
    Data {
        batch: RecordBatch,
        split: u32,
        row_ends: Vec<u64>,
        dead: Vec<DeadLetter>,
        /// Offset of the chunk's first record in its split.
        start: u64,
        /// Offset after the chunk.
        end: u64,
        /// Empty records skipped in the chunk.
        skipped: u64,
        /// Bytes of raw records in the chunk.
        bytes: u64,
    },
    /// No new input for now.
    Idle,
    /// The splits of the source, and whether each is idle.
    Splits(Vec<SplitStatus>),
    /// The input cannot be read for now; the reader keeps trying.
    Stalled(String),
    /// The bounded input is fully read.
    End,
    Failed(String),
}

/// Which reader of a pipeline a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The reader every caught-up view follows.
    Main,
    /// The reader that replays history for the views still catching up.
    CatchUp,
}

/// How long a reader waits before polling an idle source again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Reads until the input ends, fails, or `stop` is set. `durable` brings the frontier of
/// each committed epoch back to the reader.
pub fn run_reader(
    mut reader: Box<dyn Reader>,
    mut decoder: JsonDecoder,
    (feed, tx): (Feed, SyncSender<(Feed, Message)>),
    durable: Receiver<Frontier>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(frontier) = durable.try_iter().last() {
            reader.durable(&frontier);
        }
        let message = match reader.next_chunk() {
            Ok(Chunk::Lines(chunk)) => {
                let decoded = decoder.decode(&chunk);
                if let Some(max) = decoder.max_event_time(&decoded.batch) {
                    reader.event_time(chunk.split, max);
                }
                Message::Data {
                    batch: decoded.batch,
                    split: chunk.split,
                    row_ends: decoded.row_ends,
                    dead: decoded.dead,
                    start: chunk.start_offset,
                    end: chunk.end,
                    skipped: chunk.skipped,
                    bytes: chunk.data.len() as u64,
                }
            }
            Ok(Chunk::Typed(chunk)) => Message::Data {
                start: chunk.row_ends.first().map_or(0, |e| e - 1),
                end: chunk.row_ends.last().copied().unwrap_or(0),
                batch: chunk.batch,
                split: chunk.split,
                row_ends: chunk.row_ends,
                dead: Vec::new(),
                skipped: 0,
                bytes: 0,
            },
            Ok(Chunk::Idle) => Message::Idle,
            Ok(Chunk::Splits(splits)) => Message::Splits(splits),
            Ok(Chunk::Stalled(reason)) => Message::Stalled(reason),
            Ok(Chunk::End) => Message::End,
            Err(e) => Message::Failed(e.to_string()),
        };
        let last = matches!(message, Message::End | Message::Failed(_));
        let idle = matches!(message, Message::Idle | Message::Stalled(_));
        if tx.send((feed, message)).is_err() || last {
            return;
        }
        if idle {
            std::thread::sleep(IDLE_POLL);
        }
    }
}

/// Starts a reader thread. A panic in it is reported (`report`) and then sent on as the feed's
/// failure, so the operator thread stops even while another reader still sends.
pub fn spawn_reader(
    thread_name: String,
    (reader, decoder): (Box<dyn Reader>, JsonDecoder),
    (feed, tx): (Feed, SyncSender<(Feed, Message)>),
    durable: Receiver<Frontier>,
    stop: Arc<AtomicBool>,
    report: PanicReport,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let failed = tx.clone();
            let panicked = report.run("reader", || {
                run_reader(reader, decoder, (feed, tx), durable, stop)
            });
            if let Some(error) = panicked {
                let _ = failed.send((feed, Message::Failed(error)));
            }
        })
        .expect("spawn reader thread")
}
