//! Event-time alignment of a Kafka source's partitions.
//!
//! A broker rarely hands over every partition's backlog at the same moment: the first fetch
//! may bring one partition's messages while the others' come a little later. A reader that
//! took whatever had arrived would run that partition far ahead in event time, and since the
//! watermark is the minimum over partitions, every window between the slowest and the fastest
//! partition would stay open — many windows, each rewritten at every epoch. So while
//! partitions still have a backlog, a partition whose event time is more than `MAX_DRIFT_MS`
//! ahead of the slowest such partition waits for it (the idea of Flink's watermark alignment).
//! A partition with nothing left to read never holds others back, and the reader stops
//! waiting after a while (see `KafkaReader`) so a partition whose fetches fail cannot stop
//! the source.

/// How far (event time, ms) a partition may run ahead of the slowest partition with a backlog.
/// It must exceed what a partition advances before the reader learns its event time: a round
/// takes up to a few hundred messages per partition, and a partition's time is known only once
/// its chunks are decoded. At 5 s (less than one round's advance in the Kafka bench: 48
/// partitions, ~16 s of one partition's event time per round) nearly every partition waited
/// behind a slowest one whose time was stale, the reader read one partition at a time, and
/// partitions ended up 200-400 s apart (hundreds of HOP windows open); at 30 s they stay
/// within about that.
pub(super) const MAX_DRIFT_MS: i64 = 30_000;

/// What alignment needs to know of one partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartitionTime {
    /// Largest event time decoded from the partition so far (None before its first row).
    pub event_time: Option<i64>,
    /// Whether messages remain to be read (its high watermark is known and not reached).
    pub backlog: bool,
}

/// The event time of the slowest partition that still has messages to read; a partition
/// with a backlog and no row yet counts as slowest of all. None when no partition has a
/// backlog.
pub(super) fn slowest_with_backlog(all: impl Iterator<Item = PartitionTime>) -> Option<i64> {
    all.filter(|p| p.backlog)
        .map(|p| p.event_time.unwrap_or(i64::MIN))
        .min()
}

/// Whether a partition at `at` must wait for the slowest partition with a backlog.
pub(super) fn must_wait(at: PartitionTime, slowest: Option<i64>) -> bool {
    let Some(time) = at.event_time else {
        // A partition that has given no row yet is the one others wait for.
        return false;
    };
    slowest.is_some_and(|slowest| time > slowest.saturating_add(MAX_DRIFT_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(event_time: Option<i64>, backlog: bool) -> PartitionTime {
        PartitionTime {
            event_time,
            backlog,
        }
    }

    #[test]
    fn a_partition_far_ahead_of_one_with_a_backlog_waits() {
        let all = [p(Some(100_000), true), p(Some(10_000), true)];
        assert!(must_wait(all[0], slowest_with_backlog(all.iter().copied())));
        assert!(!must_wait(
            all[1],
            slowest_with_backlog(all.iter().copied())
        ));
        // Within the drift both read.
        let close = [p(Some(14_000), true), p(Some(10_000), true)];
        assert!(!must_wait(
            close[0],
            slowest_with_backlog(close.iter().copied())
        ));
    }

    #[test]
    fn a_partition_with_no_row_yet_holds_the_others_until_it_has_one() {
        let all = [p(Some(100_000), true), p(None, true)];
        assert!(must_wait(all[0], slowest_with_backlog(all.iter().copied())));
        assert!(!must_wait(
            all[1],
            slowest_with_backlog(all.iter().copied())
        ));
    }

    #[test]
    fn partitions_with_nothing_left_to_read_hold_nobody() {
        // The slow partition is caught up (or its high watermark unknown): no waiting.
        let all = [
            p(Some(100_000), true),
            p(Some(10_000), false),
            p(None, false),
        ];
        assert!(!must_wait(
            all[0],
            slowest_with_backlog(all.iter().copied())
        ));
    }
}
