//! The reader thread: read chunks, decode them, hand them to the operator thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;

use crate::decode::{DeadLetter, JsonDecoder};
use crate::source::{Chunk, Position, Reader};

/// What the reader thread sends.
pub enum Message {
    Data {
        batch: RecordBatch,
        file: u32,
        row_ends: Vec<u64>,
        dead: Vec<DeadLetter>,
        /// Position after the chunk.
        end: Position,
    },
    /// No new input for now.
    Idle,
    /// The bounded input is fully read.
    End,
    Failed(String),
}

/// How long a reader waits before polling an idle source again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Reads until the input ends, fails, or `stop` is set.
pub fn run_reader(
    mut reader: Box<dyn Reader>,
    decoder: JsonDecoder,
    tx: SyncSender<Message>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let message = match reader.next_chunk() {
            Ok(Chunk::Lines(chunk)) => {
                let decoded = decoder.decode(&chunk);
                Message::Data {
                    batch: decoded.batch,
                    file: chunk.file,
                    row_ends: decoded.row_ends,
                    dead: decoded.dead,
                    end: reader.position(),
                }
            }
            Ok(Chunk::Typed(chunk)) => Message::Data {
                batch: chunk.batch,
                file: chunk.file,
                row_ends: chunk.row_ends,
                dead: Vec::new(),
                end: reader.position(),
            },
            Ok(Chunk::Idle) => Message::Idle,
            Ok(Chunk::End) => Message::End,
            Err(e) => Message::Failed(e.to_string()),
        };
        let last = matches!(message, Message::End | Message::Failed(_));
        let idle = matches!(message, Message::Idle);
        if tx.send(message).is_err() || last {
            return;
        }
        if idle {
            std::thread::sleep(IDLE_POLL);
        }
    }
}
