//! When the consumer group's offsets are committed.
//!
//! Weir keeps its read positions in RocksDB with the views' state; the consumer group's
//! offsets are committed only so that standard lag tools see its progress. Committing after
//! every epoch (ten a second in the Kafka benchmark) gains those tools nothing and costs the
//! broker a write each time: noida-db rewrites its whole state file for each commit (570 MB
//! for 1M messages, most of a core for ~5 s), which ran beside every Kafka stream it served.
//! So the newest durable offsets are committed at most once per [`COMMIT_EVERY`] (what
//! Kafka's own `auto.commit.interval.ms` defaults to), the first one `COMMIT_EVERY` after the
//! reader opened; offsets that became durable in between wait and are committed when due,
//! even if no epoch follows.

use std::time::{Duration, Instant};

use crate::source::Frontier;

/// The shortest time between two consumer-group commits.
pub(super) const COMMIT_EVERY: Duration = Duration::from_secs(5);

/// The durable offsets not yet committed to the consumer group, and when the next commit may
/// be sent.
#[derive(Debug)]
pub(super) struct GroupCommits {
    pending: Option<Frontier>,
    next_at: Instant,
    every: Duration,
}

impl GroupCommits {
    pub(super) fn new(now: Instant, every: Duration) -> Self {
        Self {
            pending: None,
            next_at: now + every,
            every,
        }
    }

    /// Notes offsets that became durable (newer ones replace older ones).
    pub(super) fn durable(&mut self, durable: &Frontier) {
        self.pending = Some(durable.clone());
    }

    /// The offsets to commit now, if any are waiting and a commit is due.
    pub(super) fn due(&mut self, now: Instant) -> Option<Frontier> {
        if now < self.next_at {
            return None;
        }
        let due = self.pending.take()?;
        self.next_at = now + self.every;
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontier(offset: u64) -> Frontier {
        let mut f = Frontier::default();
        f.advance(0, offset);
        f
    }

    #[test]
    fn the_newest_offsets_are_committed_once_per_interval() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut commits = GroupCommits::new(t0, every);
        commits.durable(&frontier(10));
        assert!(commits.due(t0).is_none(), "not before one interval");
        commits.durable(&frontier(20));
        let first = commits.due(t0 + every).expect("due after one interval");
        assert_eq!(first.get(0), 20, "the newest offsets");
        assert!(
            commits.due(t0 + every * 3).is_none(),
            "nothing new to commit"
        );
        commits.durable(&frontier(30));
        assert!(commits.due(t0 + every + every / 2).is_none(), "too soon");
        let later = commits
            .due(t0 + every * 2)
            .expect("due, with no epoch since");
        assert_eq!(later.get(0), 30);
    }
}
