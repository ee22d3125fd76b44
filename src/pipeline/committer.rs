//! The epoch writer: a thread per pipeline that writes one epoch's write set to RocksDB while
//! the operator thread computes the next epoch.
//!
//! At most one epoch is in flight. The operator thread hands a finished write set over with
//! [`Committer::submit`], and waits for it with [`Committer::settle`] before it hands over the
//! next one, and before it reads anything from the store that the write in flight may change.
//! So epochs reach RocksDB in order, each in one atomic write, and whatever follows a write
//! (publishing counts, telling the reader which offsets are durable) is carried with it as
//! `T` and happens only once it is written.
//!
//! The writer hands each write set back emptied, and [`Committer::take_set`] gives it out
//! again: an epoch's keys and values go into buffers the previous epochs already grew (and
//! the kernel already paged in), not into fresh memory.
//!
//! Why a merge may still read the store with a write in flight: a group the cache does not
//! hold was evicted at the end of an earlier epoch's flush, and eviction never drops groups of
//! the epoch being flushed; so every group read during epoch N+1's flush was last written in
//! an epoch before N, whose write was settled before epoch N was submitted. Entity states of
//! stateful calls follow the same rule (`operator::stateful`: an epoch never lets go of an
//! entity it changed). Flush N+1 does drop groups that epoch N wrote; they are read again
//! only in flush N+2, after the runner settled N between flush N+1 and submitting it. So that
//! settle must stay before anything that reads `view_rows` or `group_state` after the views'
//! flush, and the views' flush must stay the only place that evicts. Writers outside the
//! epochs that read before they write use `Store::update_existing`, which no epoch write can
//! land in the middle of.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::state::{StateError, Store, WriteSet};

/// Writes epochs on their own thread, one at a time, in the order submitted.
pub struct Committer<T> {
    jobs: Option<SyncSender<(WriteSet, T)>>,
    done: Receiver<(Result<(), StateError>, T, WriteSet)>,
    in_flight: bool,
    /// A written set, emptied, for the next epoch.
    spare: Option<WriteSet>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Committer<T> {
    /// Starts the writer thread of pipeline `name`, `nice` steps behind the query threads.
    pub fn start(store: Arc<Store>, name: &str, nice: i32) -> Self {
        let (jobs, inbox) = sync_channel::<(WriteSet, T)>(1);
        let (outbox, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("commit-{name}"))
            .spawn(move || {
                super::priority::lower_current_thread(nice);
                for (mut set, after) in inbox {
                    let result = store.write(&set);
                    set.clear();
                    if outbox.send((result, after, set)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn commit thread");
        Self {
            jobs: Some(jobs),
            done,
            in_flight: false,
            spare: None,
            thread: Some(thread),
        }
    }

    /// Hands `set` to the writer; `after` comes back from [`Committer::settle`] once the set is
    /// written. The previous epoch must have been settled.
    pub fn submit(&mut self, set: WriteSet, after: T) -> Result<(), StateError> {
        assert!(
            !self.in_flight,
            "settle the epoch in flight before the next"
        );
        let jobs = self.jobs.as_ref().expect("the writer runs until drop");
        jobs.send((set, after)).map_err(|_| writer_gone())?;
        self.in_flight = true;
        Ok(())
    }

    /// An empty write set for the next epoch: the last one written, if it came back.
    pub fn take_set(&mut self) -> WriteSet {
        self.spare.take().unwrap_or_default()
    }

    /// Whether an epoch was submitted and not settled yet.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Waits for the epoch in flight, if any: its write's result and what came with it.
    pub fn settle(&mut self) -> Option<(Result<(), StateError>, T)> {
        if !self.in_flight {
            return None;
        }
        let done = self.done.recv().unwrap_or_else(|_| thread_died());
        Some(self.settled(done))
    }

    /// Like [`Committer::settle`], but only if the epoch in flight is already written.
    pub fn poll(&mut self) -> Option<(Result<(), StateError>, T)> {
        if !self.in_flight {
            return None;
        }
        match self.done.try_recv() {
            Ok(done) => Some(self.settled(done)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => thread_died(),
        }
    }

    fn settled(
        &mut self,
        (result, after, set): (Result<(), StateError>, T, WriteSet),
    ) -> (Result<(), StateError>, T) {
        self.in_flight = false;
        self.spare = Some(set);
        (result, after)
    }
}

fn thread_died() -> ! {
    panic!("the commit thread ended with an epoch in flight (it panicked)")
}

fn writer_gone() -> StateError {
    StateError::Storage("the commit thread is gone".into())
}

impl<T> Drop for Committer<T> {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the write it may be doing.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Table;

    #[test]
    fn epochs_are_written_in_order_and_settle_after_their_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut committer = Committer::start(store.clone(), "test", 0);
        assert!(committer.settle().is_none(), "nothing in flight yet");
        for epoch in 0..50u32 {
            let mut set = committer.take_set();
            assert!(set.is_empty(), "sets come back emptied");
            set.put(Table::Progress, b"k", epoch.to_be_bytes());
            set.put(Table::Progress, format!("e{epoch}"), b"x");
            committer.submit(set, epoch).unwrap();
            let (result, after) = committer.settle().expect("one in flight");
            result.unwrap();
            assert_eq!(after, epoch);
            assert!(committer.poll().is_none(), "settled already");
            // Once settled, the write is visible.
            assert_eq!(
                store.get(Table::Progress, b"k").unwrap(),
                Some(epoch.to_be_bytes().to_vec())
            );
        }
        let mut set = WriteSet::default();
        set.put(Table::Progress, b"last", b"y");
        committer.submit(set, 99).unwrap();
        // Dropping with an epoch in flight still writes it.
        drop(committer);
        assert_eq!(
            store.get(Table::Progress, b"last").unwrap(),
            Some(b"y".to_vec())
        );
    }
}
