//! Decoding on several threads. A source's reader reads chunks on its own thread; decoding them
//! (JSON or CSV to Arrow) was the one core that bounded a pipeline, so the reader hands each
//! chunk to a pool of decode workers in turn and takes the results back in the same turn.
//! The results therefore come back in the order the chunks were read, and everything that
//! depends on that order (the future guard, frontiers, dead-letter numbering, the operator)
//! runs on the reader's thread as before.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::decode::{JsonDecoder, Unguarded};
use crate::source::LineChunk;

/// A decoded chunk, or the message of the panic that decoding it raised.
type Outcome = (LineChunk, Result<Unguarded, String>);

/// Chunks a worker may hold (queued and being decoded).
const PER_WORKER: usize = 2;

/// Decode workers fed in turn.
pub struct DecodePool {
    to: Vec<SyncSender<LineChunk>>,
    from: Vec<Receiver<Outcome>>,
    workers: Vec<JoinHandle<()>>,
    next_to: usize,
    next_from: usize,
    in_flight: usize,
}

impl DecodePool {
    /// Starts `threads` workers decoding with copies of `decoder` (without its guard), their
    /// threads named after `name`.
    pub fn new(decoder: &JsonDecoder, threads: usize, name: &str) -> Self {
        let decoder = Arc::new(decoder.without_guard());
        let mut pool = Self {
            to: Vec::new(),
            from: Vec::new(),
            workers: Vec::new(),
            next_to: 0,
            next_from: 0,
            in_flight: 0,
        };
        for i in 0..threads {
            let (to, chunks) = sync_channel::<LineChunk>(PER_WORKER);
            let (done, from) = sync_channel::<Outcome>(PER_WORKER);
            let decoder = decoder.clone();
            let worker = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for chunk in chunks {
                        let decoded =
                            catch_unwind(AssertUnwindSafe(|| decoder.decode_unguarded(&chunk)))
                                .map_err(|e| super::panics::message(e.as_ref()));
                        if done.send((chunk, decoded)).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawn a decode worker");
            pool.to.push(to);
            pool.from.push(from);
            pool.workers.push(worker);
        }
        pool
    }

    /// Whether a chunk more can be handed out without waiting for a result first.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.to.len() * PER_WORKER
    }

    /// Hands `chunk` to the next worker in turn.
    pub fn submit(&mut self, chunk: LineChunk) {
        self.to[self.next_to]
            .send(chunk)
            .expect("decode workers live as long as their pool");
        self.next_to = (self.next_to + 1) % self.to.len();
        self.in_flight += 1;
    }

    /// The oldest chunk handed out, decoded: waits for it when `wait`, else only if it is
    /// ready. A panic while decoding it is raised here, on the reader's thread.
    pub fn take(&mut self, wait: bool) -> Option<(LineChunk, Unguarded)> {
        if self.in_flight == 0 {
            return None;
        }
        let from = &self.from[self.next_from];
        let (chunk, decoded) = if wait {
            from.recv().expect("a decode worker stopped")
        } else {
            match from.try_recv() {
                Ok(outcome) => outcome,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => panic!("a decode worker stopped"),
            }
        };
        self.next_from = (self.next_from + 1) % self.from.len();
        self.in_flight -= 1;
        match decoded {
            Ok(decoded) => Some((chunk, decoded)),
            Err(message) => panic!("decoding a chunk of {}: {message}", chunk.file_name),
        }
    }
}

impl Drop for DecodePool {
    fn drop(&mut self) {
        self.to.clear();
        self.from.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn chunk(n: u64) -> LineChunk {
        let data: String = (0..100)
            .map(|i| format!("{{\"x\": {}}}\n", n * 100 + i))
            .collect();
        LineChunk {
            file_name: format!("f{n}"),
            split: 0,
            start_offset: 0,
            data: data.into_bytes(),
            record_ends: None,
            extra: None,
            skipped: 0,
            rejected: Vec::new(),
            end: 0,
        }
    }

    /// Chunks come back in the order they were handed out, whichever worker decoded them.
    #[test]
    fn results_come_back_in_submission_order() {
        let mut pool = DecodePool::new(&JsonDecoder::new(chunk_schema(), None), 3, "test-decode");
        let mut next = 0u64;
        let mut seen = Vec::new();
        for n in 0..50 {
            while !pool.has_room() {
                seen.push(pool.take(true).unwrap());
            }
            pool.submit(chunk(n));
            if let Some(done) = pool.take(false) {
                seen.push(done);
            }
        }
        while let Some(done) = pool.take(true) {
            seen.push(done);
        }
        assert_eq!(seen.len(), 50);
        for (chunk, decoded) in seen {
            assert_eq!(chunk.file_name, format!("f{next}"));
            let mut decoder = JsonDecoder::new(chunk_schema(), None);
            let rows = decoder.admit(chunk, decoded).batch;
            let x = rows
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert_eq!(x.value(0), next as i64 * 100);
            assert_eq!(x.len(), 100);
            next += 1;
        }
    }

    fn chunk_schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]))
    }
}
