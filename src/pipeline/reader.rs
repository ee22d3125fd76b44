//! The reader threads: read chunks, decode them, hand them to the operator thread. A pipeline
//! has its main reader and, while some of its views replay history, a catch-up reader (see
//! `catchup`); their messages share one channel, tagged with the [`Feed`] they come from.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;

use super::decode_pool::DecodePool;
use super::panics::PanicReport;
use crate::decode::{DeadLetter, Decoded, JsonDecoder, SourceLines, Unguarded};
use crate::source::{Chunk, Frontier, LineChunk, Reader, SplitStatus};

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
        /// The chunk's lines, when the decoder skipped columns (to show a row whole).
        lines: Option<SourceLines>,
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
/// each committed epoch back to the reader. With `decode_threads` above 1, chunks are decoded
/// by a [`DecodePool`] while the next ones are read; messages still go out in read order.
pub fn run_reader(
    mut reader: Box<dyn Reader>,
    mut decoder: JsonDecoder,
    (feed, tx): (Feed, SyncSender<(Feed, Message)>),
    durable: Receiver<Frontier>,
    stop: Arc<AtomicBool>,
    decode_threads: usize,
) {
    let name = std::thread::current().name().unwrap_or("read").to_string();
    let mut pool = (decode_threads > 1).then(|| DecodePool::new(&decoder, decode_threads, &name));
    // Messages in read order; `None` stands for the oldest chunk still in the pool.
    let mut queue: VecDeque<Option<Message>> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(frontier) = durable.try_iter().last() {
            reader.durable(&frontier);
        }
        let message = match reader.next_chunk() {
            Ok(Chunk::Lines(chunk)) => match pool.as_mut() {
                Some(pool) => {
                    pool.submit(chunk);
                    None
                }
                None => {
                    let unguarded = decoder.decode_unguarded(&chunk);
                    Some(admitted(&mut decoder, reader.as_mut(), chunk, unguarded))
                }
            },
            Ok(Chunk::Typed(chunk)) => Some(Message::Data {
                start: chunk.row_ends.first().map_or(0, |e| e - 1),
                end: chunk.row_ends.last().copied().unwrap_or(0),
                batch: chunk.batch,
                split: chunk.split,
                row_ends: chunk.row_ends,
                dead: Vec::new(),
                skipped: 0,
                bytes: 0,
                lines: None,
            }),
            Ok(Chunk::Idle) => Some(Message::Idle),
            Ok(Chunk::Splits(splits)) => Some(Message::Splits(splits)),
            Ok(Chunk::Stalled(reason)) => Some(Message::Stalled(reason)),
            Ok(Chunk::End) => Some(Message::End),
            Err(e) => Some(Message::Failed(e.to_string())),
        };
        // Before a pause or the end, everything decoded goes out; otherwise what is ready,
        // and the oldest chunk when the pool is full.
        let idle = matches!(message, Some(Message::Idle | Message::Stalled(_)));
        let pause = idle || matches!(message, Some(Message::End | Message::Failed(_)));
        queue.push_back(message);
        while let Some(front) = queue.front_mut() {
            let message = match front.take() {
                Some(message) => message,
                None => {
                    let pool = pool.as_mut().expect("only a pool leaves a chunk pending");
                    let wait = pause || !pool.has_room();
                    match pool.take(wait) {
                        Some((chunk, unguarded)) => {
                            admitted(&mut decoder, reader.as_mut(), chunk, unguarded)
                        }
                        None => break,
                    }
                }
            };
            queue.pop_front();
            let last = matches!(message, Message::End | Message::Failed(_));
            if tx.send((feed, message)).is_err() || last {
                return;
            }
        }
        if idle {
            std::thread::sleep(IDLE_POLL);
        }
    }
}

/// The message of a chunk decoded but for the future guard, once the guard has seen it (in
/// read order); the reader learns the chunk's largest event time.
fn admitted(
    decoder: &mut JsonDecoder,
    reader: &mut dyn Reader,
    chunk: LineChunk,
    unguarded: Unguarded,
) -> Message {
    let (split, start, end) = (chunk.split, chunk.start_offset, chunk.end);
    let (skipped, bytes) = (chunk.skipped, chunk.data.len() as u64);
    let decoded: Decoded = decoder.admit(chunk, unguarded);
    if let Some(max) = decoder.max_event_time(&decoded.batch) {
        reader.event_time(split, max);
    }
    Message::Data {
        batch: decoded.batch,
        split,
        row_ends: decoded.row_ends,
        dead: decoded.dead,
        start,
        end,
        skipped,
        bytes,
        lines: decoded.lines,
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
    (decode_threads, nice): (usize, i32),
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // Before the decode workers start: they inherit it.
            super::priority::lower_current_thread(nice);
            let failed = tx.clone();
            let panicked = report.run("reader", || {
                run_reader(reader, decoder, (feed, tx), durable, stop, decode_threads)
            });
            if let Some(error) = panicked {
                let _ = failed.send((feed, Message::Failed(error)));
            }
        })
        .expect("spawn reader thread")
}
